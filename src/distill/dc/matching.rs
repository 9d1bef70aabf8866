//! DC's gradient matching for one class: the network's parameter gradient on the real batch
//! (a constant) against its gradient on the synthetic images (differentiable in them), compared
//! by the reference's layer-wise distance (`match_loss` with `dis_metric = 'ours'`).
//!
//! The synthetic gradient must itself be differentiated with respect to the images (second
//! order). Where the network allows it ([`crate::model::backward::supports`]) it comes from the
//! hand-written ConvNet backward, built from ordinary ops, so one autodiff level (the fast CPU
//! path) suffices; otherwise from a nested autodiff level, as MTT's unroll does (BURN_NOTES.md).

use crate::data::augment::Draw;
use crate::model::backward::loss_and_grads;
use crate::model::layers::{cross_entropy, one_hot};
use crate::model::{forward, Mode, ModelSpec};
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// How the distance views each parameter: `[rows, cols]` (one row per output channel or unit),
/// or None for a 1-D parameter (biases and norm scales), which the reference leaves out.
pub fn row_shapes(spec: &ModelSpec) -> Vec<Option<[usize; 2]>> {
    spec.params()
        .iter()
        .map(|p| match p.shape.as_slice() {
            [o, rest @ ..] if !rest.is_empty() => Some([*o, rest.iter().product()]),
            _ => None,
        })
        .collect()
}

/// The layer-wise distance: over parameters with rows, the sum over rows of
/// `1 - <g_real, g_syn> / (|g_real| |g_syn| + 1e-6)`.
pub fn distance<B: Backend>(
    syn: &[Tensor<B, 1>],
    real: &[Tensor<B, 1>],
    rows: &[Option<[usize; 2]>],
) -> Tensor<B, 1> {
    let device = real[0].device();
    let mut total = Tensor::<B, 1>::zeros([1], &device);
    for ((s, r), shape) in syn.iter().zip(real).zip(rows) {
        let Some(shape) = *shape else { continue };
        let (s, r) = (s.clone().reshape(shape), r.clone().reshape(shape));
        let dot = (s.clone() * r.clone()).sum_dim(1);
        // The tiny term keeps the norm's derivative finite when a row's gradient is exactly zero
        // (a dead unit), where the reference's torch.norm gives zero.
        let norm = |t: Tensor<B, 2>| (t.powf_scalar(2.0).sum_dim(1) + 1e-20).sqrt();
        let cos = dot / (norm(r) * norm(s) + 1e-6);
        total = total + (cos.neg() + 1.0).sum();
    }
    total
}

/// The mean cross-entropy's gradient with respect to `params` on `x` (all of class labels
/// `onehot`), as `B` tensors that stay differentiable in `x` when `B` tracks it. Uses the
/// hand-written backward when `hand_written` and the network supports it, else nested autodiff.
pub fn param_grads<B: AutodiffBackend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    x: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
    hand_written: bool,
) -> Vec<Tensor<B, 1>> {
    if let (true, ModelSpec::ConvNet(conv)) = (hand_written, spec) {
        if let Some((_, g)) = loss_and_grads(conv, params, x.clone(), onehot.clone()) {
            return g;
        }
    }
    let device = x.device();
    let p2: Vec<Tensor<Autodiff<B>, 1>> = params
        .iter()
        .map(|p| Tensor::from_inner(p.clone()).require_grad())
        .collect();
    let mut bufs = spec.buffer_tensors::<Autodiff<B>>(&device);
    let logits = forward(spec, &p2, &mut bufs, Tensor::from_inner(x), Mode::Train);
    let grads = cross_entropy(logits, Tensor::from_inner(onehot)).backward();
    p2.iter()
        .zip(params)
        .map(|(l, p)| l.grad(&grads).unwrap_or_else(|| p.zeros_like()))
        .collect()
}

/// The gradient of the real batch's loss (first order, no image gradient).
pub fn real_grads<B: AutodiffBackend>(
    spec: &ModelSpec,
    params: &[Tensor<B::InnerBackend, 1>],
    x: Tensor<B::InnerBackend, 4>,
    onehot: Tensor<B::InnerBackend, 2>,
) -> Vec<Tensor<B::InnerBackend, 1>> {
    if let ModelSpec::ConvNet(conv) = spec {
        if let Some((_, g)) = loss_and_grads(conv, params, x.clone(), onehot.clone()) {
            return g;
        }
    }
    let device = x.device();
    let p: Vec<Tensor<B, 1>> = params
        .iter()
        .map(|p| Tensor::from_inner(p.clone()).require_grad())
        .collect();
    let mut bufs = spec.buffer_tensors::<B>(&device);
    let logits = forward(spec, &p, &mut bufs, Tensor::from_inner(x), Mode::Train);
    let grads = cross_entropy(logits, Tensor::from_inner(onehot)).backward();
    p.iter()
        .zip(params)
        .map(|(l, p)| l.grad(&grads).unwrap_or_else(|| p.zeros_like()))
        .collect()
}

/// One class's matching: the distance between the real batch's gradient and the synthetic
/// images' gradient (both under the same DSA `draw`), and its gradient with respect to `syn`.
pub fn class_loss<B: AutodiffBackend>(
    spec: &ModelSpec,
    params: &[Tensor<B::InnerBackend, 1>],
    (real, syn): (Tensor<B::InnerBackend, 4>, Tensor<B::InnerBackend, 4>),
    class: usize,
    draw: Option<&Draw>,
    hand_written: bool,
) -> (f64, Tensor<B::InnerBackend, 4>) {
    let device = syn.device();
    let k = spec.num_classes();
    let aug = |x: Tensor<B::InnerBackend, 4>| match draw {
        Some(d) => d.apply(x),
        None => x,
    };
    let labels = |n: usize| vec![class; n];
    let real = aug(real);
    let yr = one_hot::<B::InnerBackend>(&labels(real.dims()[0]), k, &device);
    let gr: Vec<Tensor<B, 1>> = real_grads::<B>(spec, params, real, yr)
        .into_iter()
        .map(Tensor::from_inner)
        .collect();
    let leaf = Tensor::<B, 4>::from_inner(syn.clone()).require_grad();
    let ys = one_hot::<B>(&labels(syn.dims()[0]), k, &device);
    let p: Vec<Tensor<B, 1>> = params.iter().cloned().map(Tensor::from_inner).collect();
    let x = match draw {
        Some(d) => d.apply(leaf.clone()),
        None => leaf.clone(),
    };
    let gs = param_grads(spec, &p, x, ys, hand_written);
    let loss = distance(&gs, &gr, &row_shapes(spec));
    let grads = loss.backward();
    let g = leaf.grad(&grads).unwrap_or_else(|| syn.zeros_like());
    (loss.inner().into_scalar().elem::<f64>(), g)
}
