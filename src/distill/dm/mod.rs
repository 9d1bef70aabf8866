//! DM, distribution matching (Zhao & Bilen, WACV 2023), as the reference `main_DM.py` runs it
//! (REFERENCE.md §1.5). Each iteration draws a freshly initialised ConvNet; for every class it
//! embeds `batch_real` real images and the class's synthetic images under one shared DSA draw and
//! adds the squared distance between the two mean embeddings; one SGD step (momentum 0.5) then
//! moves the synthetic images. With `dp` the real means are private ([`crate::dp`]): Poisson
//! batches, clipped embeddings, Gaussian noise on the sums.

pub mod loss;
pub mod pool;
pub mod settings;

pub use loss::{dm_loss, idm_loss, real_means, Idm};
pub use settings::{Around, DmConfig, DmSettings, ModelPoolSettings};

use super::{
    finished, initial_checkpoint, starting_checkpoint, Checkpoint, Ctx, Distiller, Event, InitKind,
    SyntheticSet,
};
use crate::data::augment::Draw;
use crate::data::Dataset;
use crate::device::par_map;
use crate::error::{Error, Result};
use crate::rng::step_seed;
use crate::train::batch_images;
use crate::train::events::Flow;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use loss::{dm_loss_clipped, private_means, uses_batch_norm};
use pool::Pool;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

/// The DM distiller.
#[derive(Clone, Debug)]
pub struct Dm {
    /// Its settings.
    pub cfg: DmConfig,
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
    ce: f64,
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
        let idm = Idm {
            expand: cfg.settings.expand,
            ce,
            classes,
        };
        let loss = dm_loss_clipped(&cfg.spec, &params, means, inputs, &draws, logits, clip, idm);
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

/// The seed stream of the model pool's draws, apart from the iteration's own (so DM without a
/// pool draws exactly what it drew before pools existed).
const POOL_STREAM: u64 = 0x1d3_9e37_79b9_7f4a;

impl Dm {
    /// The starting checkpoint (a partitioned one packs `expand²` real images into each) and the
    /// model pool, fresh or as the checkpoint left it.
    fn start<B: AutodiffBackend>(
        &self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<(Checkpoint, Option<Pool<B::InnerBackend>>)> {
        let st = &self.cfg.settings;
        let f = st.expand;
        let [_, h, w] = data.shape;
        if h % f != 0 || w % f != 0 {
            return Err(Error::Setting(format!(
                "expand = {f} does not divide the {h}x{w} images into equal parts"
            )));
        }
        let start = starting_checkpoint(data, ipc, ctx, |ctx| {
            let n = if st.init == InitKind::Noise {
                ipc
            } else {
                ipc * f * f
            };
            let ck = initial_checkpoint(data, n, st.init, &self.cfg.spec, st.pool, "dm", ctx)?;
            Ok(partitioned(ck, ipc, f))
        })?;
        if start.set.provenance.expand != f {
            return Err(Error::Setting(format!(
                "the checkpoint's images are partitioned by {}; this run asks for expand = {f}",
                start.set.provenance.expand
            )));
        }
        let device = ctx.device.clone();
        let pool = match &st.model_pool {
            None => None,
            Some(ps) if start.set.provenance.iterations > 0 => Some(Pool::from_extras(
                &start.extras,
                ps,
                &self.cfg.spec,
                &device,
            )?),
            Some(ps) => {
                let seed = step_seed(ctx.seed ^ POOL_STREAM, u64::MAX);
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                Some(Pool::new(ps, &self.cfg.spec, &mut rng, &device))
            }
        };
        Ok((start, pool))
    }
}

/// `ck` (`f² ipc` images per class, or `ipc` noise images) as `ipc` images per class that each
/// hold `f x f` of them shrunk ([`crate::distill::expand::pack`]), marked partitioned.
fn partitioned(mut ck: Checkpoint, ipc: usize, f: usize) -> Checkpoint {
    ck.set.provenance.expand = f;
    let per = ck.set.labels.len() / ck.set.num_classes().max(1);
    if f == 1 || per == ipc {
        return ck;
    }
    let l = ck.set.images.len() / ck.set.labels.len().max(1);
    let k = ck.set.num_classes();
    ck.set.images = ck
        .set
        .images
        .chunks(per * l)
        .flat_map(|class| crate::distill::expand::pack(class, ck.set.shape, f))
        .collect();
    ck.set.labels = (0..k).flat_map(|c| std::iter::repeat_n(c, ipc)).collect();
    ck.set.provenance.ipc = ipc;
    ck.momentum = vec![0.0; ck.set.images.len()];
    ck
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
        let (start, mut pool) = self.start(data, ipc, ctx)?;
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
            let mut d =
                draw_iteration::<B::InnerBackend>(cfg, &classes, shape, ctx.seed, it, &device);
            let mut prng =
                rand::rngs::StdRng::seed_from_u64(step_seed(ctx.seed ^ POOL_STREAM, it as u64));
            let mut ce = 0.0;
            if let Some(p) = pool.as_mut() {
                let i = p.choose(it, &mut prng, &device);
                d.params = p.nets[i].model.params.clone();
                ce = st.ce_weight * p.nets[i].accuracy;
            }
            let (values, grads) = step::<B>(cfg, (data, &sizes), &d, &syn, ce, &device);
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
            if let Some(p) = pool.as_mut() {
                p.train::<B, _>(data, &mut prng, &device)?;
            }
            let snapshot = || {
                let mut set = start.set.clone();
                set.images = to_host(&syn);
                set.provenance.iterations = it + 1;
                Checkpoint {
                    set,
                    momentum: to_host(&mom),
                    lr_momentum: 0.0,
                    extras: pool.as_ref().map(Pool::to_extras).unwrap_or_default(),
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
