//! Plain training and evaluation loops over a [`Dataset`]: minibatch SGD with momentum and weight
//! decay (PyTorch semantics), step or cosine learning-rate schedules, test accuracy; and the
//! events loops report ([`events`]).

pub mod events;
pub mod kd;

use crate::data::augment::{BatchAug, Dsa};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::layers::{cross_entropy, one_hot};
use crate::model::{Mode, Model};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use events::Progress;
pub use kd::{train_step_kd, SoftTargets};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the learning rate changes over epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// Multiply by `gamma` at each milestone epoch (0-based: epochs >= m use the lower rate);
    /// momentum is reset there, as the reference re-creates its optimiser.
    Step {
        /// Epoch indices at which the rate drops.
        milestones: Vec<usize>,
        /// The factor applied at each milestone.
        gamma: f64,
    },
    /// Cosine decay from `lr` to `lr * min_factor` over the run.
    Cosine {
        /// The final rate as a fraction of the initial one.
        min_factor: f64,
    },
    /// A fixed rate.
    Constant,
}

/// Everything a training run needs besides data and model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Number of passes over the data.
    pub epochs: usize,
    /// Minibatch size (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum (0 for none).
    pub momentum: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
}

impl TrainConfig {
    /// The literature's evaluation protocol (REFERENCE.md §1.6): SGD lr 0.01, momentum 0.9,
    /// weight decay 5e-4, batch 256, lr x0.1 at epoch E/2 + 1.
    pub fn reference(epochs: usize) -> Self {
        TrainConfig {
            epochs,
            batch_size: 256,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: LrSchedule::Step {
                milestones: vec![epochs / 2 + 1],
                gamma: 0.1,
            },
        }
    }

    /// The learning rate used during `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        match &self.schedule {
            LrSchedule::Step { milestones, gamma } => {
                let k = milestones.iter().filter(|&&m| epoch >= m).count();
                self.lr * gamma.powi(k as i32)
            }
            LrSchedule::Cosine { min_factor } => {
                let t = epoch as f64 / self.epochs.max(1) as f64;
                let f = min_factor
                    + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
                self.lr * f
            }
            LrSchedule::Constant => self.lr,
        }
    }

    /// True when momentum should be reset at the start of `epoch`.
    pub fn resets_at(&self, epoch: usize) -> bool {
        matches!(&self.schedule, LrSchedule::Step { milestones, .. } if milestones.contains(&epoch))
    }
}

/// SGD with momentum and weight decay over a flat parameter list (PyTorch's update rule:
/// `g += wd * p; buf = m * buf + g; p -= lr * buf`, the first buffer being `g`).
pub struct Sgd<B: Backend> {
    momentum: f64,
    weight_decay: f64,
    bufs: Option<Vec<Tensor<B, 1>>>,
}

impl<B: Backend> Sgd<B> {
    /// A fresh optimiser.
    pub fn new(momentum: f64, weight_decay: f64) -> Self {
        Sgd {
            momentum,
            weight_decay,
            bufs: None,
        }
    }

    /// Forgets the momentum buffers.
    pub fn reset(&mut self) {
        self.bufs = None;
    }

    /// The momentum buffers on the host (None before the first step or after a reset).
    pub fn buffers_to_host(&self) -> Option<Vec<Vec<f32>>> {
        self.bufs.as_ref().map(|b| {
            b.iter()
                .map(|t| t.to_data().convert::<f32>().to_vec().unwrap_or_default())
                .collect()
        })
    }

    /// Continues with momentum buffers `bufs` (from [`Sgd::buffers_to_host`]).
    pub fn set_buffers(&mut self, bufs: Option<&[Vec<f32>]>, device: &B::Device) {
        self.bufs = bufs.map(|b| {
            b.iter()
                .map(|v| Tensor::from_data(TensorData::new(v.clone(), [v.len()]), device))
                .collect()
        });
    }

    /// Applies one update with rate `lr`.
    pub fn step(&mut self, params: &mut [Tensor<B, 1>], grads: Vec<Tensor<B, 1>>, lr: f64) {
        let grads: Vec<Tensor<B, 1>> = grads
            .into_iter()
            .zip(params.iter())
            .map(|(g, p)| {
                if self.weight_decay != 0.0 {
                    g + p.clone() * self.weight_decay
                } else {
                    g
                }
            })
            .collect();
        let dirs = if self.momentum != 0.0 {
            let new: Vec<Tensor<B, 1>> = match self.bufs.take() {
                Some(bufs) => bufs
                    .into_iter()
                    .zip(grads)
                    .map(|(b, g)| b * self.momentum + g)
                    .collect(),
                None => grads,
            };
            self.bufs = Some(new.clone());
            new
        } else {
            grads
        };
        for (p, d) in params.iter_mut().zip(dirs) {
            *p = p.clone() - d * lr;
        }
    }
}

/// Where a training loop stands between epochs, as a checkpoint keeps it (the model's weights and
/// the random stream are the caller's to keep).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    /// The next epoch (0-based).
    pub next_epoch: usize,
    /// The sample order the last shuffle left (each epoch shuffles the previous order).
    pub order: Vec<usize>,
    /// The optimiser's momentum buffers.
    pub momentum: Option<Vec<Vec<f32>>>,
}

/// The loop after an epoch: [`At::point`] says where it stands, [`At::rng`] where its random
/// stream is.
pub struct At<'a, B: Backend, R> {
    next_epoch: usize,
    order: &'a [usize],
    opt: &'a Sgd<B>,
    rng: &'a R,
}

impl<B: Backend, R> At<'_, B, R> {
    /// The loop's random stream.
    pub fn rng(&self) -> &R {
        self.rng
    }

    /// Where the loop stands (copies the momentum to the host).
    pub fn point(&self) -> EpochPoint {
        EpochPoint {
            next_epoch: self.next_epoch,
            order: self.order.to_vec(),
            momentum: self.opt.buffers_to_host(),
        }
    }
}

/// Stacks the images at `idx` into an NCHW tensor.
pub fn batch_images<B: Backend>(data: &Dataset, idx: &[usize], device: &B::Device) -> Tensor<B, 4> {
    let l = data.image_len();
    let mut v = Vec::with_capacity(idx.len() * l);
    for &i in idx {
        v.extend_from_slice(data.image(i));
    }
    let [c, h, w] = data.shape;
    Tensor::from_data(TensorData::new(v, [idx.len(), c, h, w]), device)
}

/// Takes one SGD step on a batch; returns the batch loss (a tensor, so no device sync).
pub fn train_step<AD: AutodiffBackend>(
    model: &mut Model<AD::InnerBackend>,
    opt: &mut Sgd<AD::InnerBackend>,
    x: Tensor<AD, 4>,
    onehot: Tensor<AD, 2>,
    lr: f64,
) -> Tensor<AD::InnerBackend, 1> {
    train_step_masked::<AD>(model, opt, x, onehot, None, lr)
}

/// [`train_step`] with an additive logit mask (`[batch, classes]`, 0 for allowed classes and a
/// large negative value for the others), as a task-incremental learner uses to pick its head.
pub fn train_step_masked<AD: AutodiffBackend>(
    model: &mut Model<AD::InnerBackend>,
    opt: &mut Sgd<AD::InnerBackend>,
    x: Tensor<AD, 4>,
    onehot: Tensor<AD, 2>,
    mask: Option<Tensor<AD, 2>>,
    lr: f64,
) -> Tensor<AD::InnerBackend, 1> {
    train_step_kd::<AD>(model, opt, x, onehot, mask, 1.0, lr)
}

/// How networks train: the optimiser and schedule, the minibatch augmentation (none, DSA with one
/// draw per sample, or any [`BatchAug`] such as SelMatch's combined augmentation), the device,
/// and the step counter.
pub struct Training<'a, AD: AutodiffBackend, A: BatchAug = Dsa> {
    /// Epochs, batch size, optimiser and schedule.
    pub cfg: &'a TrainConfig,
    /// How each minibatch is augmented (None: not at all).
    pub aug: Option<&'a A>,
    /// Where tensors live.
    pub device: &'a AD::Device,
    /// Ticked after every step.
    pub progress: &'a Progress,
    /// Soft targets to train on instead of the data's hard labels (None: hard labels).
    pub soft: Option<SoftTargets<'a>>,
}

static HIDDEN: Progress = Progress::HIDDEN;

impl<'a, AD: AutodiffBackend> Training<'a, AD> {
    /// Training by `cfg` on `device`, without augmentation or progress output.
    pub fn new(cfg: &'a TrainConfig, device: &'a AD::Device) -> Self {
        Training {
            cfg,
            aug: None,
            device,
            progress: &HIDDEN,
            soft: None,
        }
    }
}

impl<'a, AD: AutodiffBackend, A: BatchAug> Training<'a, AD, A> {
    /// The same training with augmentation `aug`.
    pub fn augmented<A2: BatchAug>(&self, aug: Option<&'a A2>) -> Training<'a, AD, A2> {
        Training {
            cfg: self.cfg,
            aug,
            device: self.device,
            progress: self.progress,
            soft: self.soft,
        }
    }

    /// The same training against soft targets (one row per sample of the data it runs on).
    pub fn soft(self, soft: Option<SoftTargets<'a>>) -> Self {
        Training { soft, ..self }
    }

    /// The same training, ticking `progress` after every step.
    pub fn counted(self, progress: &'a Progress) -> Self {
        Training { progress, ..self }
    }

    /// Trains `model` on `data` for `cfg.epochs` epochs. A non-finite loss is an error.
    pub fn run<R: Rng>(
        &self,
        model: &mut Model<AD::InnerBackend>,
        data: &Dataset,
        rng: &mut R,
    ) -> Result<()> {
        self.run_observed(model, data, rng, |_, _, _| Ok(()))
    }

    /// [`Training::run`], calling `on_epoch(epoch, mean_loss, model)` after each epoch.
    pub fn run_observed<R: Rng>(
        &self,
        model: &mut Model<AD::InnerBackend>,
        data: &Dataset,
        rng: &mut R,
        mut on_epoch: impl FnMut(usize, f64, &mut Model<AD::InnerBackend>) -> Result<()>,
    ) -> Result<()> {
        self.run_from(model, data, rng, None, |e, l, m, _| on_epoch(e, l, m))
    }

    /// [`Training::run_observed`] continued from `from` (None: from the first epoch), telling
    /// `on_epoch` where the loop stands after each epoch.
    pub fn run_from<R: Rng>(
        &self,
        model: &mut Model<AD::InnerBackend>,
        data: &Dataset,
        rng: &mut R,
        from: Option<EpochPoint>,
        mut on_epoch: impl FnMut(
            usize,
            f64,
            &mut Model<AD::InnerBackend>,
            &At<'_, AD::InnerBackend, R>,
        ) -> Result<()>,
    ) -> Result<()> {
        let (cfg, device) = (self.cfg, self.device);
        let k = model.spec.num_classes();
        if let Some(s) = &self.soft {
            if s.probs.len() != data.len() * k {
                return Err(Error::Other(format!(
                    "{} soft-label values for {} samples of {k} classes",
                    s.probs.len(),
                    data.len()
                )));
            }
        }
        let mut opt = Sgd::new(cfg.momentum, cfg.weight_decay);
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut first = 0;
        if let Some(p) = from {
            let mut sorted = p.order.clone();
            sorted.sort_unstable();
            let fits = |m: &Vec<Vec<f32>>| {
                m.len() == model.params.len()
                    && m.iter()
                        .zip(&model.params)
                        .all(|(b, t)| b.len() == t.dims()[0])
            };
            if sorted != order || !p.momentum.as_ref().is_none_or(fits) {
                return Err(Error::Checkpoint(
                    "the checkpoint's training state does not fit this data and network".into(),
                ));
            }
            opt.set_buffers(p.momentum.as_deref(), device);
            (order, first) = (p.order, p.next_epoch);
        }
        for epoch in first..cfg.epochs {
            if cfg.resets_at(epoch) {
                opt.reset();
            }
            let lr = cfg.lr_at(epoch);
            order.shuffle(rng);
            let mut total: Option<Tensor<AD::InnerBackend, 1>> = None;
            let mut batches = 0usize;
            for idx in order.chunks(cfg.batch_size.max(1)) {
                let x = match self.aug {
                    Some(a) => Tensor::from_inner(a.apply(
                        batch_images::<AD::InnerBackend>(data, idx, device),
                        idx,
                        rng,
                    )),
                    None => batch_images::<AD>(data, idx, device),
                };
                let l = match &self.soft {
                    Some(s) => {
                        let y = s.batch::<AD>(idx, k, device);
                        train_step_kd::<AD>(model, &mut opt, x, y, None, s.temperature, lr)
                    }
                    None => {
                        let labels: Vec<usize> = idx.iter().map(|&i| data.labels[i]).collect();
                        let y = one_hot::<AD>(&labels, k, device);
                        train_step::<AD>(model, &mut opt, x, y, lr)
                    }
                };
                total = Some(match total {
                    Some(t) => t + l,
                    None => l,
                });
                batches += 1;
                self.progress.tick();
            }
            let mean = match total {
                Some(t) => t.into_scalar().elem::<f64>() / batches as f64,
                None => 0.0,
            };
            if !mean.is_finite() {
                return Err(Error::Numerics(format!(
                    "training loss became {mean} in epoch {} (lr {lr}): lower the learning rate",
                    epoch + 1
                )));
            }
            let at = At {
                next_epoch: epoch + 1,
                order: &order,
                opt: &opt,
                rng,
            };
            on_epoch(epoch, mean, model, &at)?;
        }
        Ok(())
    }
}

/// Accuracy and mean cross-entropy of `model` on `data` (evaluation mode, batches of `batch`).
pub fn evaluate<B: Backend>(
    model: &mut Model<B>,
    data: &Dataset,
    batch: usize,
    device: &B::Device,
) -> (f64, f64) {
    evaluate_among(model, data, batch, None, device)
}

/// [`evaluate`] with the prediction restricted to the classes in `among` (a task-incremental
/// head); all classes when `None`.
pub fn evaluate_among<B: Backend>(
    model: &mut Model<B>,
    data: &Dataset,
    batch: usize,
    among: Option<&[usize]>,
    device: &B::Device,
) -> (f64, f64) {
    if data.is_empty() {
        return (0.0, 0.0);
    }
    let k = model.spec.num_classes();
    let mut correct = 0usize;
    let mut loss = 0f64;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_images::<B>(data, chunk, device);
        let labels: Vec<usize> = chunk.iter().map(|&i| data.labels[i]).collect();
        let mut logits = model.forward(x, Mode::Eval);
        if let Some(allowed) = among {
            let row = logit_mask_row(allowed, k);
            let rows: Vec<f32> = (0..chunk.len()).flat_map(|_| row.iter().copied()).collect();
            logits = logits + Tensor::from_data(TensorData::new(rows, [chunk.len(), k]), device);
        }
        let onehot = one_hot::<B>(&labels, k, device);
        loss += cross_entropy(logits.clone(), onehot)
            .into_scalar()
            .elem::<f64>()
            * chunk.len() as f64;
        let pred = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .unwrap();
        correct += pred
            .iter()
            .zip(&labels)
            .filter(|(p, y)| **p as usize == **y)
            .count();
    }
    (correct as f64 / data.len() as f64, loss / data.len() as f64)
}

/// The additive logit mask of a head over `allowed` classes: 0 there, -1e9 elsewhere.
pub fn logit_mask_row(allowed: &[usize], classes: usize) -> Vec<f32> {
    (0..classes)
        .map(|c| if allowed.contains(&c) { 0.0 } else { -1e9 })
        .collect()
}
