//! MTT, matching training trajectories (Cazenavette et al., CVPR 2022), as the reference
//! `distill.py` runs it (REFERENCE.md §1.7). Each iteration picks an expert and a start epoch
//! `t < max_start_epoch`, takes `syn_steps` differentiable SGD steps on the synthetic set (with
//! DSA) from the expert's parameters at `t` with the learnable step size `syn_lr`, and matches the
//! expert's parameters at `t + expert_epochs`:
//! `||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2`. The images (SGD, `lr_img`,
//! momentum 0.5) and `syn_lr` (SGD, `lr_lr`, momentum 0.5) descend its gradient, which flows back
//! through the unrolled steps (second order, [`unroll`]).

pub mod check;
pub mod experts;
pub mod unroll;

use crate::data::augment::Dsa;
use crate::data::Dataset;
use crate::distill::init::InitKind;
use crate::distill::{
    finished, initial_checkpoint, starting_checkpoint, Checkpoint, Ctx, Distiller, Flow,
    SyntheticSet,
};
use crate::error::{Error, Result};
use crate::model::backward::ConvGrads;
use crate::model::layers::one_hot;
use crate::model::ModelSpec;
use crate::rng::step_seed;
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use check::{check_step, StepCheck};
use experts::Experts;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use unroll::{matching_loss, unroll, unroll_manual, InnerBatch};

/// MTT's settings (reference defaults from [`MttConfig::reference`]).
#[derive(Clone, Debug)]
pub struct MttConfig {
    /// Optimisation iterations (5000).
    pub iterations: usize,
    /// Inner SGD steps on the synthetic set, N (20).
    pub syn_steps: usize,
    /// Expert epochs matched, M (3).
    pub expert_epochs: usize,
    /// Start epochs are drawn from `0..max_start_epoch` (25).
    pub max_start_epoch: usize,
    /// Learning rate of the images (1000).
    pub lr_img: f64,
    /// Learning rate of the step size (1e-5).
    pub lr_lr: f64,
    /// Initial step size, the experts' learning rate (0.01).
    pub lr_init: f64,
    /// Momentum of both optimisers (0.5).
    pub momentum: f64,
    /// Synthetic images per inner step (None: all of them, the reference default).
    pub batch_syn: Option<usize>,
    /// How the set starts (real).
    pub init: InitKind,
    /// DSA on every inner step (per-sample draws).
    pub dsa: Option<Dsa>,
    /// The network the experts trained.
    pub spec: ModelSpec,
    /// Unroll with the hand-written ConvNet backward (one autodiff level) where the network
    /// allows it, instead of nested autodiff; both give the same gradient (tested).
    pub hand_written: bool,
    /// The ops the hand-written backward forms convolution gradients with.
    pub conv_grads: ConvGrads,
}

impl MttConfig {
    /// The reference defaults for network `spec` and DSA `dsa`.
    pub fn reference(spec: ModelSpec, dsa: Option<Dsa>) -> Self {
        MttConfig {
            iterations: 5000,
            syn_steps: 20,
            expert_epochs: 3,
            max_start_epoch: 25,
            lr_img: 1000.0,
            lr_lr: 1e-5,
            lr_init: 0.01,
            momentum: 0.5,
            batch_syn: None,
            init: InitKind::Real,
            dsa,
            spec,
            hand_written: true,
            conv_grads: ConvGrads::Conv,
        }
    }
}

/// The MTT distiller over a set of expert trajectories.
#[derive(Clone, Debug)]
pub struct Mtt {
    /// Its settings.
    pub cfg: MttConfig,
    /// The experts (each with at least `max_start_epoch - 1 + expert_epochs` epochs).
    pub experts: Experts,
    /// Training-set indices of the starting images (grouped by class, `ipc` each), instead of
    /// `cfg.init` (SelMatch's selection-based initialisation).
    pub start: Option<Vec<usize>>,
    /// Which images the matching updates (SelMatch's partial update); None: all of them. The
    /// loss is always computed on the whole set.
    pub trainable: Option<Vec<bool>>,
    /// A device name: check the first iteration's step there against the CPU's (GPU runs), and
    /// go on with a gradient form that agrees ([`device_check`]). None: no check.
    pub check_device: Option<String>,
    /// What that check found, once `distill` has run it.
    pub checked: Option<StepCheck>,
}

impl Mtt {
    /// Plain MTT over `experts`: `cfg.init` start, every image updated.
    pub fn new(cfg: MttConfig, experts: Experts) -> Self {
        Mtt {
            cfg,
            experts,
            start: None,
            trainable: None,
            check_device: None,
            checked: None,
        }
    }
}

/// What one iteration draws: the expert, the start epoch and the inner minibatches.
pub struct MttDraw {
    /// Which expert.
    pub expert: usize,
    /// The start epoch t.
    pub start: usize,
    /// The inner steps' rows and augmentations.
    pub batches: Vec<InnerBatch>,
}

/// Draws iteration `it`'s randomness from `(seed, it)` alone (so resuming is exact).
pub fn draw_iteration(
    cfg: &MttConfig,
    experts: usize,
    n: usize,
    hw: (usize, usize),
    seed: u64,
    it: usize,
) -> MttDraw {
    let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(seed ^ 0x3777, it as u64));
    let expert = rng.random_range(0..experts);
    let start = rng.random_range(0..cfg.max_start_epoch.max(1));
    let bs = cfg.batch_syn.unwrap_or(n).clamp(1, n);
    let mut order: Vec<usize> = Vec::new();
    let batches = (0..cfg.syn_steps)
        .map(|_| {
            // Like the reference: walk a random permutation in chunks, reshuffling when spent.
            if order.len() < bs {
                let mut p: Vec<usize> = (0..n).collect();
                p.shuffle(&mut rng);
                order.extend(p);
            }
            let rows: Vec<usize> = order.drain(..bs).collect();
            let draw = cfg
                .dsa
                .as_ref()
                .map(|d| d.draw(Some(rows.len()), hw.0, hw.1, &mut rng));
            InnerBatch { rows, draw }
        })
        .collect();
    MttDraw {
        expert,
        start,
        batches,
    }
}

fn vec1<B: Backend>(v: &[f32], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

/// One MTT iteration from the expert's parameters `start` (epoch t) towards `target` (epoch
/// t + M): the matching loss and its gradients with respect to the images and `syn_lr`.
pub fn step<B: AutodiffBackend>(
    cfg: &MttConfig,
    start: &[Vec<f32>],
    target: &[Vec<f32>],
    draw: &MttDraw,
    images: Tensor<B::InnerBackend, 4>,
    labels: &[usize],
    syn_lr: f32,
) -> (f64, Tensor<B::InnerBackend, 4>, f32) {
    let device = images.device();
    let k = cfg.spec.num_classes();
    let start: Vec<Tensor<B, 1>> = start.iter().map(|v| vec1(v, &device)).collect();
    let target: Vec<Tensor<B, 1>> = target.iter().map(|v| vec1(v, &device)).collect();
    let x = Tensor::<B, 4>::from_inner(images).require_grad();
    let lr = vec1::<B>(&[syn_lr], &device).require_grad();
    let y = one_hot::<B>(labels, k, &device);
    let manual = if cfg.hand_written {
        unroll_manual(
            &cfg.spec,
            start.clone(),
            x.clone(),
            y.clone(),
            lr.clone(),
            &draw.batches,
            cfg.conv_grads,
        )
    } else {
        None
    };
    let theta = match manual {
        Some(t) => t,
        None => unroll::<Autodiff<B>>(
            &cfg.spec,
            start.clone(),
            x.clone(),
            y,
            lr.clone(),
            &draw.batches,
        ),
    };
    let loss = matching_loss(&theta, &start, &target);
    let grads = loss.backward();
    let value = loss.inner().into_scalar().elem::<f64>();
    let gx = x.grad(&grads).unwrap_or_else(|| x.inner().zeros_like());
    let glr = lr
        .grad(&grads)
        .map(|g| g.into_scalar().elem::<f32>())
        .unwrap_or(0.0);
    (value, gx, glr)
}

impl Mtt {
    fn check_experts(&self) -> Result<()> {
        let need = self.cfg.max_start_epoch.max(1) - 1 + self.cfg.expert_epochs;
        if self.experts.is_empty() {
            return Err(Error::Other(
                "MTT needs at least one expert trajectory".into(),
            ));
        }
        if self.experts.epochs() < need {
            return Err(Error::Other(format!(
                "the experts have {} epochs; max_start_epoch {} and expert_epochs {} need {need}",
                self.experts.epochs(),
                self.cfg.max_start_epoch,
                self.cfg.expert_epochs
            )));
        }
        Ok(())
    }
}

impl Distiller for Mtt {
    fn name(&self) -> String {
        "mtt".into()
    }

    fn distill<B: AutodiffBackend>(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        self.check_experts()?;
        let start = starting_checkpoint(data, ipc, ctx, |ctx| {
            let mut ck = match &self.start {
                Some(idx) => {
                    let set = SyntheticSet::from_dataset(
                        &data.subset(idx),
                        ctx.provenance(data, "mtt", ipc, 0),
                    );
                    let momentum = vec![0.0; set.images.len()];
                    Checkpoint {
                        set,
                        momentum,
                        lr_momentum: 0.0,
                    }
                }
                None => {
                    initial_checkpoint(data, ipc, self.cfg.init, &self.cfg.spec, None, "mtt", ctx)?
                }
            };
            ck.set.syn_lr = Some(self.cfg.lr_init as f32);
            Ok(ck)
        })?;
        let done = start.set.provenance.iterations;
        let device = ctx.device.clone();
        let [c, h, w] = data.shape;
        let n = start.set.len();
        let labels = start.set.labels.clone();
        let shape = [n, c, h, w];
        let mut images = Tensor::<B::InnerBackend, 4>::from_data(
            TensorData::new(start.set.images.clone(), shape),
            &device,
        );
        let mut mom = Tensor::<B::InnerBackend, 4>::from_data(
            TensorData::new(start.momentum.clone(), shape),
            &device,
        );
        let mask = match &self.trainable {
            Some(t) if t.len() != n => {
                return Err(Error::Other(format!(
                    "{} update flags for {n} synthetic images",
                    t.len()
                )))
            }
            Some(t) => {
                let v: Vec<f32> = t.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
                Some(Tensor::<B::InnerBackend, 4>::from_data(
                    TensorData::new(v, [n, 1, 1, 1]),
                    &device,
                ))
            }
            None => None,
        };
        let mut syn_lr = start.set.syn_lr.unwrap_or(self.cfg.lr_init as f32);
        let mut lr_mom = start.lr_momentum;
        let mut cfg = self.cfg.clone();
        let mut reached = cfg.iterations.max(done);
        for it in done..cfg.iterations {
            let d = draw_iteration(&cfg, self.experts.len(), n, (h, w), ctx.seed, it);
            let (from, to) = self
                .experts
                .pair(d.expert, d.start, d.start + cfg.expert_epochs)?;
            if let (Some(dev), true) = (&self.check_device, it == done) {
                let (found, form) =
                    check_step::<B>(&cfg, dev, &from, &to, &d, &images, &labels, syn_lr)?;
                cfg = form;
                self.checked = Some(found);
            }
            let (value, gx, glr) = step::<B>(&cfg, &from, &to, &d, images.clone(), &labels, syn_lr);
            if !value.is_finite() || !glr.is_finite() {
                return Err(Error::Numerics(format!(
                    "the MTT loss became {value} (syn_lr gradient {glr}) at iteration {}: lower lr_img or lr_lr",
                    it + 1
                )));
            }
            // Partial update: fixed images get no gradient, so they never move.
            let gx = match &mask {
                Some(m) => gx * m.clone(),
                None => gx,
            };
            mom = mom * cfg.momentum + gx;
            images = images - mom.clone() * cfg.lr_img;
            lr_mom = lr_mom * cfg.momentum as f32 + glr;
            syn_lr -= cfg.lr_lr as f32 * lr_mom;
            let snapshot = || {
                let mut set = start.set.clone();
                set.images = images.to_data().convert::<f32>().into_vec::<f32>().unwrap();
                set.syn_lr = Some(syn_lr);
                set.provenance.iterations = it + 1;
                Checkpoint {
                    set,
                    momentum: mom.to_data().convert::<f32>().into_vec::<f32>().unwrap(),
                    lr_momentum: lr_mom,
                }
            };
            if (ctx.on_iteration)(it + 1, value, &snapshot)? == Flow::Stop {
                reached = it + 1;
                break;
            }
        }
        let mut set = start.set;
        set.images = images
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .unwrap();
        set.syn_lr = Some(syn_lr);
        finished(set, reached)
    }
}
