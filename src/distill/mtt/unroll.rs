//! Differentiable unrolled training (groundwork for trajectory matching): `steps` SGD steps on
//! minibatches of the synthetic set, starting from given parameters, whose result stays
//! differentiable with respect to the images and the step size.
//!
//! With burn 0.21 this nests autodiff (BURN_NOTES.md): each inner step runs on `B2 =
//! Autodiff<B1>`; the parameter gradient it returns is a `B1` tensor still tracked by `B1`'s
//! autodiff (PyTorch's `create_graph=True`), so the updated parameters, and a matching loss
//! computed from them on `B1`, backpropagate to the images and `syn_lr`. Run it with
//! `B1 = Flex` (plain) to evaluate the same function without tracking.

use crate::data::augment::Draw;
use crate::model::backward::ConvGrads;
use crate::model::layers::cross_entropy;
use crate::model::{forward, Mode, ModelSpec};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// One inner step's minibatch: row indices into the synthetic set and its DSA draw.
#[derive(Clone, Debug)]
pub struct InnerBatch {
    /// Rows of the synthetic set.
    pub rows: Vec<usize>,
    /// The augmentation (per-sample draws), if any.
    pub draw: Option<Draw>,
}

/// The rows of `b` (augmented by its draw) and their one-hot labels, differentiable in `images`.
fn minibatch<B: Backend>(
    images: &Tensor<B, 4>,
    onehot: &Tensor<B, 2>,
    b: &InnerBatch,
) -> (Tensor<B, 4>, Tensor<B, 2>) {
    let rows: Vec<i64> = b.rows.iter().map(|&r| r as i64).collect();
    let idx =
        Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [b.rows.len()]), &images.device());
    let x = images.clone().select(0, idx.clone());
    let x = match &b.draw {
        Some(d) => d.apply(x),
        None => x,
    };
    (x, onehot.clone().select(0, idx))
}

/// Runs `batches.len()` SGD steps of `spec` from `start` on `images`/`onehot` with step size
/// `syn_lr` (shape `[1]`) and returns the final parameters, as `B1` tensors differentiable (when
/// `B1` tracks) with respect to `images` and `syn_lr`.
pub fn unroll<B2: AutodiffBackend>(
    spec: &ModelSpec,
    start: Vec<Tensor<B2::InnerBackend, 1>>,
    images: Tensor<B2::InnerBackend, 4>,
    onehot: Tensor<B2::InnerBackend, 2>,
    syn_lr: Tensor<B2::InnerBackend, 1>,
    batches: &[InnerBatch],
) -> Vec<Tensor<B2::InnerBackend, 1>> {
    let device = images.device();
    let mut params = start;
    for b in batches {
        let (x1, y1) = minibatch(&images, &onehot, b);
        let p2: Vec<Tensor<B2, 1>> = params
            .iter()
            .map(|p| Tensor::from_inner(p.clone()).require_grad())
            .collect();
        let mut bufs = spec.buffer_tensors::<B2>(&device);
        let logits = forward(spec, &p2, &mut bufs, Tensor::from_inner(x1), Mode::Train);
        let loss = cross_entropy(logits, Tensor::from_inner(y1));
        let grads = loss.backward();
        params = params
            .into_iter()
            .zip(&p2)
            .map(|(p, l)| {
                let g = l.grad(&grads).unwrap_or_else(|| p.zeros_like());
                p - g * syn_lr.clone()
            })
            .collect();
    }
    params
}

/// The same unroll with the hand-written ConvNet backward ([`crate::model::backward`]) instead of
/// a nested autodiff level: every op runs on `B`, so when `B` tracks, the result is
/// differentiable in `images` and `syn_lr` with one autodiff level. `None` when the network is
/// not supported by the hand-written backward (batch norm, max pooling, MLP). `how` picks the ops
/// that form the convolution gradients ([`ConvGrads`]).
pub fn unroll_manual<B: Backend>(
    spec: &ModelSpec,
    start: Vec<Tensor<B, 1>>,
    images: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
    syn_lr: Tensor<B, 1>,
    batches: &[InnerBatch],
    how: ConvGrads,
) -> Option<Vec<Tensor<B, 1>>> {
    let ModelSpec::ConvNet(conv) = spec else {
        return None;
    };
    if !crate::model::backward::supports(conv) {
        return None;
    }
    let mut params = start;
    for b in batches {
        let (x, y) = minibatch(&images, &onehot, b);
        let (_, grads) = crate::model::backward::loss_and_grads_with(conv, &params, x, y, how)?;
        params = params
            .into_iter()
            .zip(grads)
            .map(|(p, g)| p - g * syn_lr.clone())
            .collect();
    }
    Some(params)
}

/// The trajectory-matching loss `||theta - target||^2 / ||start - target||^2` over all parameters.
pub fn matching_loss<B: Backend>(
    theta: &[Tensor<B, 1>],
    start: &[Tensor<B, 1>],
    target: &[Tensor<B, 1>],
) -> Tensor<B, 1> {
    let sq = |a: &[Tensor<B, 1>]| {
        a.iter()
            .zip(target)
            .map(|(p, t)| (p.clone() - t.clone()).powf_scalar(2.0).sum())
            .reduce(|x, y| x + y)
            .expect("at least one parameter")
    };
    sq(theta) / sq(start)
}
