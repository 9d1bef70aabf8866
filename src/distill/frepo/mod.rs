//! FRePo, dataset distillation by neural feature regression with a model pool (Zhou, Nezhadarya
//! & Ba, NeurIPS 2022), as the reference (yongchao97/FRePo) runs it. Each iteration samples a
//! network from the pool, takes its last-layer features of `batch_real` real images (fixed) and
//! of the synthetic images (differentiable), and moves the images and the learned labels one
//! LAMB step down the kernel ridge regression loss of predicting the real labels from the
//! synthetic set ([`krr`]); the sampled network then takes one online training step on the
//! synthetic set, or is replaced by a fresh one ([`pool`]).

pub mod krr;
pub mod optim;
pub mod pool;
pub mod settings;

pub use settings::{FrepoConfig, FrepoSettings};

use super::set::Extras;
use super::{finished, initial_checkpoint, starting_checkpoint, Checkpoint, Ctx, Distiller};
use super::{Event, SyntheticSet};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{embed, host, Mode};
use crate::rng::step_seed;
use crate::train::batch_images;
use crate::train::events::Flow;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use optim::Moments;
use pool::{OnlineBatch, Pool};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

/// The FRePo distiller.
#[derive(Clone, Debug)]
pub struct Frepo {
    /// Its settings, network and augmentation.
    pub cfg: FrepoConfig,
}

/// Centred one-hot rows (`1 - 1/k` at the label, `-1/k` elsewhere) divided by `scale`.
pub fn centred_one_hot(labels: &[usize], k: usize, scale: f64) -> Vec<f32> {
    let mut v = vec![(-1.0 / k as f64 / scale) as f32; labels.len() * k];
    for (i, &y) in labels.iter().enumerate() {
        v[i * k + y] = ((1.0 - 1.0 / k as f64) / scale) as f32;
    }
    v
}

/// FRePo's regression targets as the soft labels a set carries (distributions, as the KD loss
/// and the wire expect): each row's positive part, normalised; a row with none is its hard
/// label's one-hot. The centred one-hot rows FRePo starts from become exactly one-hot, so an
/// unlearned set's soft labels say no more than its hard labels.
pub fn as_distributions(targets: &[f32], labels: &[usize], k: usize) -> Vec<f32> {
    let mut out = vec![0.0; targets.len()];
    for (i, row) in targets.chunks(k).enumerate() {
        let mass: f32 = row.iter().map(|&y| y.max(0.0)).sum();
        let dst = &mut out[i * k..(i + 1) * k];
        match mass > 0.0 {
            true => dst
                .iter_mut()
                .zip(row)
                .for_each(|(p, &y)| *p = y.max(0.0) / mass),
            false => dst[labels[i]] = 1.0,
        }
    }
    out
}

/// Everything a FRePo run carries from one iteration to the next.
struct State {
    images: Vec<f32>,
    labels: Vec<f32>,
    opt: Moments,
    pool: Pool,
}

fn extra<'a>(extras: &'a Extras, name: &str) -> Result<&'a [f32]> {
    crate::distill::set::find_extra(extras, name)
        .map(|(_, v)| v)
        .ok_or_else(|| Error::Checkpoint(format!("the FRePo checkpoint lacks `{name}`")))
}

impl State {
    /// The state a starting checkpoint holds: a fresh one at iteration 0, else its extras.
    fn from_checkpoint(cfg: &FrepoConfig, ck: &Checkpoint, seed: u64) -> Result<Self> {
        let k = cfg.spec.num_classes();
        let n = ck.set.len();
        let labels = match &ck.set.soft_labels {
            Some(l) => l.clone(),
            None => centred_one_hot(&ck.set.labels, k, (k as f64 / 10.0).sqrt()),
        };
        if ck.set.provenance.iterations == 0 {
            let st = &cfg.settings;
            let mut rng = StdRng::seed_from_u64(seed ^ 0xf2e90);
            let pool = Pool::new(&cfg.spec, st.models, st.max_online_updates, &mut rng);
            let opt = Moments::zeros(&[ck.set.images.len(), n * k]);
            return Ok(State {
                images: ck.set.images.clone(),
                labels,
                opt,
                pool,
            });
        }
        let e = &ck.extras;
        let opt = Moments {
            m: vec![ck.momentum.clone(), extra(e, "frepo.label_m")?.to_vec()],
            v: vec![
                extra(e, "frepo.image_v")?.to_vec(),
                extra(e, "frepo.label_v")?.to_vec(),
            ],
            t: ck.set.provenance.iterations as u64,
        };
        if opt.v[0].len() != ck.set.images.len() || opt.m[1].len() != n * k {
            return Err(Error::Checkpoint(
                "the FRePo optimiser state does not match the set".into(),
            ));
        }
        Ok(State {
            images: ck.set.images.clone(),
            labels,
            opt,
            pool: Pool::from_extras(e, &cfg.spec)?,
        })
    }

    fn checkpoint(&self, start: &SyntheticSet, iterations: usize) -> Checkpoint {
        let mut set = start.clone();
        set.images = self.images.clone();
        set.soft_labels = Some(self.labels.clone());
        set.provenance.iterations = iterations;
        let k = start.num_classes();
        let n = start.len();
        let mut extras: Extras = vec![
            (
                "frepo.image_v".into(),
                vec![self.images.len()],
                self.opt.v[0].clone(),
            ),
            ("frepo.label_m".into(), vec![n, k], self.opt.m[1].clone()),
            ("frepo.label_v".into(), vec![n, k], self.opt.v[1].clone()),
        ];
        extras.extend(self.pool.to_extras());
        Checkpoint {
            set,
            momentum: self.opt.m[0].clone(),
            lr_momentum: 0.0,
            extras,
        }
    }
}

/// Host f64 copy of a `[rows, cols]` tensor.
fn f64s<B: Backend>(t: Tensor<B, 2>) -> Vec<f64> {
    host(t).into_iter().map(f64::from).collect()
}

/// One kernel step: the loss (KRR plus, with learned labels, the label margin term) and its
/// gradients with respect to the images and the labels.
fn kernel_step<B: AutodiffBackend>(
    cfg: &FrepoConfig,
    data: &Dataset,
    params: &[Tensor<B::InnerBackend, 1>],
    st: &State,
    real: &[usize],
) -> (f64, Vec<f32>, Vec<f32>) {
    let device = params[0].device();
    let spec = &cfg.spec;
    let k = spec.num_classes();
    let [c, h, w] = data.shape;
    let n = st.images.len() / (c * h * w);
    let x_real = batch_images::<B::InnerBackend>(data, real, &device);
    let mut bufs = spec.buffer_tensors::<B::InnerBackend>(&device);
    let ft = embed(spec, params, &mut bufs, x_real, Mode::Train);
    let f = ft.dims()[1];
    let ft = krr::mat(&f64s(ft), real.len(), f);
    let ys_real: Vec<usize> = real.iter().map(|&i| data.labels[i]).collect();
    let yt = centred_one_hot(&ys_real, k, 1.0);
    let yt = krr::mat(
        &yt.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        real.len(),
        k,
    );
    let x = Tensor::<B, 4>::from_data(TensorData::new(st.images.clone(), [n, c, h, w]), &device)
        .require_grad();
    let p: Vec<Tensor<B, 1>> = params.iter().cloned().map(Tensor::from_inner).collect();
    let mut bufs = spec.buffer_tensors::<B>(&device);
    let fs_t = embed(spec, &p, &mut bufs, x.clone(), Mode::Train);
    let fs = krr::mat(&f64s(fs_t.clone().inner()), n, f);
    let ys64: Vec<f64> = st.labels.iter().map(|&v| v as f64).collect();
    let ys = krr::mat(&ys64, n, k);
    let g = krr::loss_and_grads(
        fs.as_ref(),
        ys.as_ref(),
        ft.as_ref(),
        yt.as_ref(),
        cfg.settings.reg,
    );
    // The image gradient: backpropagate dL/dF_s through the embedding (a surrogate whose
    // gradient in F_s is that constant).
    let df: Vec<f32> = krr::values(g.features.as_ref())
        .iter()
        .map(|&v| v as f32)
        .collect();
    let df = Tensor::<B, 2>::from_data(TensorData::new(df, [n, f]), &device);
    let grads = (fs_t * df).sum().backward();
    let gx = x
        .grad(&grads)
        .map(host)
        .unwrap_or_else(|| vec![0.0; st.images.len()]);
    let mut loss = g.loss;
    let gy = if cfg.settings.learn_label {
        let (margin, gm) = krr::margin_loss(&ys64, k);
        loss += margin;
        krr::values(g.labels.as_ref())
            .iter()
            .zip(&gm)
            .map(|(a, b)| (a + b) as f32)
            .collect()
    } else {
        vec![0.0; st.labels.len()]
    };
    (loss, gx, gy)
}

/// Iteration `it`: the kernel step on a sampled pool member, then its online update.
fn iteration<B: AutodiffBackend>(
    cfg: &FrepoConfig,
    data: &Dataset,
    st: &mut State,
    (seed, it): (u64, usize),
    device: &B::Device,
) -> f64 {
    let s = &cfg.settings;
    let mut rng = StdRng::seed_from_u64(step_seed(seed ^ 0xf2e90, it as u64));
    let idx = rng.random_range(0..st.pool.members.len());
    let real = sample(&mut rng, data.len(), s.batch_real.min(data.len())).into_vec();
    let params = st.pool.members[idx].tensors::<B::InnerBackend>(device);
    let (loss, gx, gy) = kernel_step::<B>(cfg, data, &params, st, &real);
    let lr = optim::cosine(s.lr_img, it, s.iterations);
    let mut leaves = [
        std::mem::take(&mut st.images),
        std::mem::take(&mut st.labels),
    ];
    st.opt.step(&mut leaves, &[gx, gy], lr, true);
    let [images, labels] = leaves;
    st.images = images;
    st.labels = labels;
    let batch = OnlineBatch {
        images: &st.images,
        shape: data.shape,
        labels: &st.labels,
        batch: s.online_batch,
        lr: s.online_lr,
        dsa: cfg.dsa.as_ref(),
    };
    let at = (&cfg.spec, idx, s.max_online_updates);
    st.pool.update::<B, _>(at, &batch, &mut rng, device);
    loss
}

impl<B: AutodiffBackend> Distiller<B> for Frepo {
    fn name(&self) -> &'static str {
        "frepo"
    }

    fn distill(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        let s = self.cfg.settings.clone();
        let spec = &self.cfg.spec;
        let start = starting_checkpoint(data, ipc, ctx, |ctx| {
            initial_checkpoint(data, ipc, s.init, spec, None, "frepo", ctx)
        })?;
        let mut st = State::from_checkpoint(&self.cfg, &start, ctx.seed)?;
        let done = start.set.provenance.iterations;
        let device = ctx.device.clone();
        let mut reached = s.iterations.max(done);
        for it in done..s.iterations {
            let value = iteration::<B>(&self.cfg, data, &mut st, (ctx.seed, it), &device);
            if !value.is_finite() {
                return Err(Error::Numerics(format!(
                    "the FRePo loss became {value} at iteration {}: lower lr_img",
                    it + 1
                )));
            }
            let snapshot = || st.checkpoint(&start.set, it + 1);
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
        let mut set = st.checkpoint(&start.set, reached).set;
        set.provenance.iterations = reached;
        // The checkpoints keep the raw targets (to resume from); the set, distributions.
        let k = set.num_classes();
        set.soft_labels = (set.soft_labels.as_ref()).map(|y| as_distributions(y, &set.labels, k));
        finished(set, reached)
    }
}
