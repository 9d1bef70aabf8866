//! Training on soft labels: the KD loss (Hinton et al. 2015), soft cross-entropy of the student's
//! softmax at temperature `t` against a stored distribution, scaled by `t²` so its gradient keeps
//! the size of the hard-label one. At `t = 1` it is the plain cross-entropy
//! ([`crate::model::layers::cross_entropy`], which takes any distribution as its target), so a
//! one-hot target gives exactly the hard-label loss and gradient.

use super::Sgd;
use crate::model::layers::cross_entropy;
use crate::model::{forward, Mode, Model};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Soft targets for every sample of a training set: `len x classes` probabilities, row-major,
/// and the student's temperature.
#[derive(Clone, Copy, Debug)]
pub struct SoftTargets<'a> {
    /// The distributions, one row per sample.
    pub probs: &'a [f32],
    /// The student's softmax temperature (1: plain soft cross-entropy).
    pub temperature: f64,
}

impl SoftTargets<'_> {
    /// The rows of samples `idx` as a `[idx.len(), k]` tensor.
    pub fn batch<B: Backend>(&self, idx: &[usize], k: usize, device: &B::Device) -> Tensor<B, 2> {
        let mut v = Vec::with_capacity(idx.len() * k);
        for &i in idx {
            v.extend_from_slice(&self.probs[i * k..(i + 1) * k]);
        }
        Tensor::from_data(TensorData::new(v, [idx.len(), k]), device)
    }
}

/// The KD loss of `logits` against distributions `target`: `t² · CE(target, softmax(logits / t))`
/// (mean over the batch); at `t = 1` exactly [`cross_entropy`].
pub fn kd_loss<B: Backend>(logits: Tensor<B, 2>, target: Tensor<B, 2>, t: f64) -> Tensor<B, 1> {
    if t == 1.0 {
        return cross_entropy(logits, target);
    }
    cross_entropy(logits / t, target) * (t * t)
}

/// The gradient of [`kd_loss`] with respect to the logits, written out: `t · (softmax(z / t) -
/// p) / n`, in f64 on the host (the slow obvious reference the tests compare with).
pub fn kd_logit_grad_reference(logits: &[f32], target: &[f32], k: usize, t: f64) -> Vec<f64> {
    let n = logits.len() / k;
    let mut g = Vec::with_capacity(logits.len());
    for (z, p) in logits.chunks(k).zip(target.chunks(k)) {
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = z.iter().map(|&v| ((v as f64 - m) / t).exp()).collect();
        let s: f64 = e.iter().sum();
        g.extend(
            e.iter()
                .zip(p)
                .map(|(e, &p)| t * (e / s - p as f64) / n as f64),
        );
    }
    g
}

/// [`train_step_masked`] against distributions `target` with the KD loss at student temperature
/// `t` ([`kd_loss`]; `t = 1` and one-hot targets: exactly the hard-label step).
pub fn train_step_kd<AD: AutodiffBackend>(
    model: &mut Model<AD::InnerBackend>,
    opt: &mut Sgd<AD::InnerBackend>,
    x: Tensor<AD, 4>,
    target: Tensor<AD, 2>,
    mask: Option<Tensor<AD, 2>>,
    t: f64,
    lr: f64,
) -> Tensor<AD::InnerBackend, 1> {
    let params: Vec<Tensor<AD, 1>> = model
        .params
        .iter()
        .map(|p| Tensor::from_inner(p.clone()).require_grad())
        .collect();
    let mut bufs: Vec<Tensor<AD, 1>> = model
        .buffers
        .iter()
        .map(|b| Tensor::from_inner(b.clone()))
        .collect();
    let mut logits = forward(&model.spec, &params, &mut bufs, x, Mode::Train);
    if let Some(m) = mask {
        logits = logits + m;
    }
    let loss = kd_loss(logits, target, t);
    let grads = loss.backward();
    let g: Vec<_> = params
        .iter()
        .zip(&model.params)
        .map(|(p, inner)| p.grad(&grads).unwrap_or_else(|| inner.zeros_like()))
        .collect();
    model.buffers = bufs.into_iter().map(|b| b.inner()).collect();
    opt.step(&mut model.params, g, lr);
    loss.inner()
}
