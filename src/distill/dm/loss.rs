//! DM's loss: per-class mean embeddings of real and synthetic images under one shared DSA
//! draw, their squared distance, and IDM's additions (partitioned images enlarged before the
//! draw, the class-aware cross-entropy of the synthetic images).

use super::DmConfig;
use crate::data::augment::Draw;
use crate::data::Dataset;
use crate::dp::{noisy_mean, DpSettings};
use crate::model::{embed, Mode, ModelSpec, Norm};
use crate::train::batch_images;
use burn::prelude::*;

pub(super) fn uses_batch_norm(spec: &ModelSpec) -> bool {
    matches!(spec, ModelSpec::ConvNet(s) if s.norm == Norm::Batch)
}

fn augmented<B: Backend>(xs: Vec<Tensor<B, 4>>, draws: &[Option<Draw>]) -> Vec<Tensor<B, 4>> {
    xs.into_iter()
        .zip(draws)
        .map(|(x, d)| match d {
            Some(d) => d.apply(x),
            None => x,
        })
        .collect()
}

/// The classifier of `params` (the last two): weight `[F, k]` (transposed for `e · W`), bias
/// `[1, k]`, and the feature count `F`.
fn classifier<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
) -> (Tensor<B, 2>, Tensor<B, 2>, usize) {
    let k = spec.num_classes();
    let w = params[params.len() - 2].clone();
    let f = w.dims()[0] / k;
    let b = params[params.len() - 1].clone().reshape([1, k]);
    (w.reshape([k, f]).transpose(), b, f)
}

/// Per-class embeddings (train mode). With batch norm all classes go through one forward pass,
/// as the reference does; otherwise each class separately (identical for instance norm).
fn embed_classes<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    xs: Vec<Tensor<B, 4>>,
    logits: bool,
) -> Vec<Tensor<B, 2>> {
    let es = embed_plain(spec, params, xs);
    if !logits {
        return es;
    }
    // [features, logits]: the squared distance of the means is the features' plus the logits'.
    let (w, b, _) = classifier(spec, params);
    es.into_iter()
        .map(|e| {
            let l = e.clone().matmul(w.clone()) + b.clone();
            Tensor::cat(vec![e, l], 1)
        })
        .collect()
}

fn embed_plain<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    xs: Vec<Tensor<B, 4>>,
) -> Vec<Tensor<B, 2>> {
    let device = params[0].device();
    let mut bufs = spec.buffer_tensors::<B>(&device);
    if uses_batch_norm(spec) {
        let sizes: Vec<usize> = xs.iter().map(|x| x.dims()[0]).collect();
        let e = embed(spec, params, &mut bufs, Tensor::cat(xs, 0), Mode::Train);
        let mut start = 0;
        sizes
            .into_iter()
            .map(|n| {
                let part = e.clone().narrow(0, start, n);
                start += n;
                part
            })
            .collect()
    } else {
        xs.into_iter()
            .map(|x| embed(spec, params, &mut bufs, x, Mode::Train))
            .collect()
    }
}

/// Mean embedding `[1, F]` of each class's real batch after its DSA draw.
pub fn real_means<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    real: Vec<Tensor<B, 4>>,
    draws: &[Option<Draw>],
    logits: bool,
) -> Vec<Tensor<B, 2>> {
    embed_classes(spec, params, augmented(real, draws), logits)
        .into_iter()
        .map(|e| e.mean_dim(0))
        .collect()
}

/// Private DM's mean embedding `[1, F]` of each of `classes`' Poisson batches (classes of
/// `sizes[c]` images): clipped, summed, noised, over the expected batch size ([`crate::dp`]).
pub(super) fn private_means<B: Backend>(
    cfg: &DmConfig,
    (data, sizes): (&Dataset, &[usize]),
    d: &super::IterationDraw<B>,
    classes: &[usize],
    dp: &DpSettings,
    device: &B::Device,
) -> Vec<Tensor<B, 2>> {
    let logits = cfg.around.is_some();
    let k = cfg.spec.num_classes();
    let dim = d.params[d.params.len() - 2].dims()[0] / k + if logits { k } else { 0 };
    classes
        .iter()
        .map(|&c| {
            let idx = &d.real[c];
            let e = (!idx.is_empty()).then(|| {
                let x = batch_images::<B>(data, idx, device);
                let x = augmented(vec![x], &d.draws[c..=c]);
                embed_classes(&cfg.spec, &d.params, x, logits).remove(0)
            });
            let expected = cfg.settings.batch_real.min(sizes[c]) as f64;
            noisy_mean(e, dim, dp, expected, d.noise[c], device)
        })
        .collect()
}

/// The DM loss: sum over classes of `||mean_real_c - mean(embed(dsa(syn_c)))||^2`.
pub fn dm_loss<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    means: Vec<Tensor<B, 2>>,
    syn: Vec<Tensor<B, 4>>,
    draws: &[Option<Draw>],
    logits: bool,
) -> Tensor<B, 1> {
    dm_loss_clipped(spec, params, means, syn, draws, logits, None, Idm::NONE)
}

/// What IDM adds on the synthetic side: partitioned images enlarged before the draw, and the
/// class-aware term (weight, already times the network's accuracy; 0: off) with the class of
/// each group of images.
#[derive(Clone, Copy, Debug)]
pub struct Idm<'a> {
    /// Parts per side of each stored image (1: plain images).
    pub expand: usize,
    /// The cross-entropy term's weight.
    pub ce: f64,
    /// The class of each group of synthetic images.
    pub classes: &'a [usize],
}

impl Idm<'_> {
    /// Plain DM.
    pub const NONE: Idm<'static> = Idm {
        expand: 1,
        ce: 0.0,
        classes: &[],
    };
}

/// [`dm_loss`] with IDM's additions: partitioned synthetic images enlarged before the draw (the
/// gradient flows back to the stored images) and the class-aware cross-entropy term.
pub fn idm_loss<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    means: Vec<Tensor<B, 2>>,
    syn: Vec<Tensor<B, 4>>,
    draws: &[Option<Draw>],
    idm: Idm<'_>,
) -> Tensor<B, 1> {
    dm_loss_clipped(spec, params, means, syn, draws, false, None, idm)
}

/// [`dm_loss`] with each synthetic embedding scaled to norm at most `clip`, as private DM's real
/// means are, so both sides are matched in the same clipped space, and IDM's additions.
#[allow(clippy::too_many_arguments)]
pub(super) fn dm_loss_clipped<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    means: Vec<Tensor<B, 2>>,
    syn: Vec<Tensor<B, 4>>,
    draws: &[Option<Draw>],
    logits: bool,
    clip: Option<f64>,
    idm: Idm<'_>,
) -> Tensor<B, 1> {
    let syn = syn
        .into_iter()
        .map(|x| crate::distill::expand::expand(x, idm.expand))
        .collect();
    let es = embed_classes(spec, params, augmented(syn, draws), logits);
    es.into_iter()
        .zip(means)
        .enumerate()
        .map(|(i, (e, m))| {
            let ce = (idm.ce > 0.0).then(|| class_term(spec, params, e.clone(), idm.classes[i]));
            let e = match clip {
                Some(c) => crate::dp::clipped(e, c),
                None => e,
            };
            let d = (m - e.mean_dim(0)).powf_scalar(2.0).sum();
            match ce {
                Some(ce) => d + ce * idm.ce,
                None => d,
            }
        })
        .reduce(|a, b| a + b)
        .expect("at least one class")
}

/// Mean cross-entropy of the classifier on embeddings `e` (the features first) against class `c`.
fn class_term<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    e: Tensor<B, 2>,
    c: usize,
) -> Tensor<B, 1> {
    let (w, b, f) = classifier(spec, params);
    let logits = e.narrow(1, 0, f).matmul(w) + b;
    burn::tensor::activation::log_softmax(logits, 1)
        .narrow(1, c, 1)
        .mean()
        .neg()
}
