//! DM, distribution matching (Zhao & Bilen, WACV 2023), as the reference `main_DM.py` runs it
//! (REFERENCE.md §1.5). Each iteration draws a freshly initialised ConvNet; for every class it
//! embeds `batch_real` real images and the class's synthetic images under one shared DSA draw and
//! adds the squared distance between the two mean embeddings; one SGD step (momentum 0.5) then
//! moves the synthetic images. With `dp` the real means are private ([`crate::dp`]): Poisson
//! batches, clipped embeddings, Gaussian noise on the sums.

pub mod settings;

pub use settings::{Around, DmConfig, DmSettings};

use super::{
    finished, initial_checkpoint, starting_checkpoint, Checkpoint, Ctx, Distiller, Event,
    SyntheticSet,
};
use crate::data::augment::Draw;
use crate::data::Dataset;
use crate::device::par_map;
use crate::dp::{noisy_mean, DpSettings};
use crate::error::{Error, Result};
use crate::model::{embed, Mode, ModelSpec, Norm};
use crate::rng::step_seed;
use crate::train::batch_images;
use crate::train::events::Flow;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

/// The DM distiller.
#[derive(Clone, Debug)]
pub struct Dm {
    /// Its settings.
    pub cfg: DmConfig,
}

fn uses_batch_norm(spec: &ModelSpec) -> bool {
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
    let k = spec.num_classes();
    let w = params[params.len() - 2].clone();
    let f = w.dims()[0] / k;
    let w = w.reshape([k, f]).transpose();
    let b = params[params.len() - 1].clone().reshape([1, k]);
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
fn private_means<B: Backend>(
    cfg: &DmConfig,
    (data, sizes): (&Dataset, &[usize]),
    d: &IterationDraw<B>,
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
    dm_loss_clipped(spec, params, means, syn, draws, logits, None)
}

/// [`dm_loss`] with each synthetic embedding scaled to norm at most `clip`, as private DM's real
/// means are, so both sides are matched in the same clipped space.
fn dm_loss_clipped<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    means: Vec<Tensor<B, 2>>,
    syn: Vec<Tensor<B, 4>>,
    draws: &[Option<Draw>],
    logits: bool,
    clip: Option<f64>,
) -> Tensor<B, 1> {
    let es = embed_classes(spec, params, augmented(syn, draws), logits);
    es.into_iter()
        .zip(means)
        .map(|(e, m)| {
            let e = match clip {
                Some(c) => crate::dp::clipped(e, c),
                None => e,
            };
            (m - e.mean_dim(0)).powf_scalar(2.0).sum()
        })
        .reduce(|a, b| a + b)
        .expect("at least one class")
}

/// What one iteration draws: the network, the real indices and DSA draw of each class.
pub struct IterationDraw<B: Backend> {
    /// The fresh network's parameters.
    pub params: Vec<Tensor<B, 1>>,
    /// Real image indices per class.
    pub real: Vec<Vec<usize>>,
    /// The Siamese DSA draw per class.
    pub draws: Vec<Option<Draw>>,
    /// The seed of each class's noise (private DM; empty otherwise).
    pub noise: Vec<u64>,
}

/// Draws iteration `it`'s randomness from `(seed, it)` alone (so resuming is exact).
pub fn draw_iteration<B: Backend>(
    cfg: &DmConfig,
    classes: &[Vec<usize>],
    shape: [usize; 3],
    seed: u64,
    it: usize,
    device: &B::Device,
) -> IterationDraw<B> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(seed, it as u64));
    let mut model = cfg.spec.init::<B, _>(&mut rng, device);
    if let Some(a) = &cfg.around {
        let normal = rand_distr::StandardNormal;
        let dirs: Vec<Vec<f32>> = a
            .params
            .iter()
            .map(|p| p.iter().map(|_| rng.sample::<f32, _>(normal)).collect())
            .collect();
        let norm = dirs
            .iter()
            .flatten()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
            .max(1e-12);
        model.params = a
            .params
            .iter()
            .zip(&dirs)
            .map(|(p, d)| {
                let v: Vec<f32> = p.iter().zip(d).map(|(x, e)| x + a.rho * e / norm).collect();
                let n = v.len();
                Tensor::from_data(TensorData::new(v, [n]), device)
            })
            .collect();
    }
    let mut real = Vec::with_capacity(classes.len());
    let mut draws = Vec::with_capacity(classes.len());
    let mut noise = Vec::new();
    let batch = cfg.settings.batch_real;
    for cls in classes {
        let idx = match &cfg.settings.dp {
            // The accountant assumes Poisson sampling: each image in with the same probability.
            Some(_) => {
                noise.push(rng.random::<u64>());
                crate::dp::poisson(cls, crate::dp::rate(batch, cls.len()), &mut rng)
            }
            None => {
                let mut idx: Vec<usize> = cls
                    .choose_multiple(&mut rng, batch.min(cls.len()))
                    .copied()
                    .collect();
                idx.shuffle(&mut rng);
                idx
            }
        };
        real.push(idx);
        draws.push(
            cfg.dsa
                .as_ref()
                .map(|d| d.draw(None, shape[1], shape[2], &mut rng)),
        );
    }
    IterationDraw {
        params: model.params,
        real,
        draws,
        noise,
    }
}

/// Splits a set's images into one tensor per class (the set is grouped by class, `ipc` each).
fn class_tensors<B: Backend>(
    v: &[f32],
    k: usize,
    ipc: usize,
    shape: [usize; 3],
    device: &B::Device,
) -> Vec<Tensor<B, 4>> {
    let l = shape.iter().product::<usize>() * ipc;
    (0..k)
        .map(|c| {
            Tensor::from_data(
                TensorData::new(
                    v[c * l..(c + 1) * l].to_vec(),
                    [ipc, shape[0], shape[1], shape[2]],
                ),
                device,
            )
        })
        .collect()
}

fn to_host<B: Backend>(ts: &[Tensor<B, 4>]) -> Vec<f32> {
    ts.iter()
        .flat_map(|t| t.to_data().convert::<f32>().into_vec::<f32>().unwrap())
        .collect()
}

/// One iteration's per-class losses and gradients with respect to each class's synthetic
/// images. Classes are independent (one backward pass each, spread over worker threads), except
/// with batch norm, where all classes share one forward pass as in the reference.
fn step<B: AutodiffBackend>(
    cfg: &DmConfig,
    (data, sizes): (&Dataset, &[usize]),
    d: &IterationDraw<B::InnerBackend>,
    syn: &[Tensor<B::InnerBackend, 4>],
    device: &B::Device,
) -> (Vec<f64>, Vec<Tensor<B::InnerBackend, 4>>) {
    let run = |classes: &[usize]| -> (f64, Vec<Tensor<B::InnerBackend, 4>>) {
        let draws: Vec<Option<Draw>> = classes.iter().map(|&c| d.draws[c].clone()).collect();
        let real: Vec<_> = match cfg.settings.dp {
            Some(_) => Vec::new(),
            None => classes
                .iter()
                .map(|&c| batch_images::<B::InnerBackend>(data, &d.real[c], device))
                .collect(),
        };
        let logits = cfg.around.is_some();
        let means = match &cfg.settings.dp {
            Some(dp) => private_means(cfg, (data, sizes), d, classes, dp, device),
            None => real_means(&cfg.spec, &d.params, real, &draws, logits),
        };
        let params: Vec<Tensor<B, 1>> = d.params.iter().cloned().map(Tensor::from_inner).collect();
        let leaves: Vec<Tensor<B, 4>> = classes
            .iter()
            .map(|&c| Tensor::from_inner(syn[c].clone()).require_grad())
            .collect();
        let means = means.into_iter().map(Tensor::from_inner).collect();
        let clip = cfg.settings.dp.as_ref().map(|dp| dp.clip);
        let inputs = leaves.clone();
        let loss = dm_loss_clipped(&cfg.spec, &params, means, inputs, &draws, logits, clip);
        let grads = loss.backward();
        let g = leaves
            .iter()
            .zip(classes)
            .map(|(l, &c)| l.grad(&grads).unwrap_or_else(|| syn[c].zeros_like()))
            .collect();
        (loss.inner().into_scalar().elem::<f64>(), g)
    };
    let k = syn.len();
    if uses_batch_norm(&cfg.spec) {
        let all: Vec<usize> = (0..k).collect();
        let (v, g) = run(&all);
        return (vec![v], g);
    }
    let per: Vec<(f64, Vec<Tensor<B::InnerBackend, 4>>)> = par_map(k, |c| run(&[c]));
    per.into_iter()
        .map(|(v, mut g)| (v, g.pop().expect("one class")))
        .unzip()
}

impl<B: AutodiffBackend> Distiller<B> for Dm {
    fn name(&self) -> &'static str {
        "dm"
    }

    fn distill(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        let start = starting_checkpoint(data, ipc, ctx, |ctx| {
            let st = &self.cfg.settings;
            initial_checkpoint(data, ipc, st.init, &self.cfg.spec, st.pool, "dm", ctx)
        })?;
        let classes = data.class_indices();
        let sizes: Vec<usize> = classes.iter().map(Vec::len).collect();
        if self.cfg.settings.dp.is_some() && uses_batch_norm(&self.cfg.spec) {
            return Err(Error::Setting(
                "dp: batch norm mixes the images of a batch, so one image's influence is not bounded by clip; use norm = \"instance\"".into(),
            ));
        }
        let k = classes.len();
        let done = start.set.provenance.iterations;
        let device = ctx.device.clone();
        let shape = data.shape;
        let mut syn = class_tensors::<B::InnerBackend>(&start.set.images, k, ipc, shape, &device);
        let mut mom = class_tensors::<B::InnerBackend>(&start.momentum, k, ipc, shape, &device);
        let cfg = &self.cfg;
        let st = &cfg.settings;
        let mut reached = st.iterations.max(done);
        for it in done..st.iterations {
            let d = draw_iteration::<B::InnerBackend>(cfg, &classes, shape, ctx.seed, it, &device);
            let (values, grads) = step::<B>(cfg, (data, &sizes), &d, &syn, &device);
            let value: f64 = values.iter().sum();
            if !value.is_finite() {
                return Err(Error::Numerics(format!(
                    "the DM loss became {value} at iteration {}: lower lr_img",
                    it + 1
                )));
            }
            for (c, g) in grads.into_iter().enumerate() {
                mom[c] = mom[c].clone() * st.momentum + g;
                syn[c] = syn[c].clone() - mom[c].clone() * st.lr_img;
            }
            let snapshot = || {
                let mut set = start.set.clone();
                set.images = to_host(&syn);
                set.provenance.iterations = it + 1;
                Checkpoint {
                    set,
                    momentum: to_host(&mom),
                    lr_momentum: 0.0,
                    extras: Vec::new(),
                }
            };
            let event = Event::Iteration {
                iteration: it + 1,
                loss: value,
                snapshot: &snapshot,
            };
            if ctx.report(event)? == Flow::Stop {
                reached = it + 1;
                break;
            }
        }
        let mut set = start.set;
        set.images = to_host(&syn);
        finished(set, reached)
    }
}
