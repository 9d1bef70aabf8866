//! MTT, matching training trajectories (Cazenavette et al., CVPR 2022), as the reference
//! `distill.py` runs it (REFERENCE.md §1.7). Each iteration picks an expert and a start epoch
//! `t < max_start_epoch`, takes `syn_steps` differentiable SGD steps on the synthetic set (with
//! DSA) from the expert's parameters at `t` with the learnable step size `syn_lr`, and matches the
//! expert's parameters at `t + expert_epochs`:
//! `||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2`. The images (SGD, `lr_img`,
//! momentum 0.5) and `syn_lr` (SGD, `lr_lr`, momentum 0.5) descend its gradient, which flows back
//! through the unrolled steps (second order, [`unroll`]). This file holds the settings and one
//! iteration's numerics; [`distiller`] the loop.

pub mod check;
pub mod distiller;
pub mod experts;
pub mod labels;
pub mod unroll;

use crate::data::augment::Dsa;
use crate::distill::init::InitKind;
use crate::distill::soft::SoftLabelSettings;
use crate::error::{Problem, Problems};
use crate::model::backward::ConvGrads;
use crate::model::layers::one_hot;
use crate::model::ModelSpec;
use crate::rng::step_seed;
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use unroll::{matching_loss, unroll, unroll_manual, InnerBatch};

pub use distiller::Mtt;

/// MTT's settings, as a `[distill]` table with `method = "mtt"` gives them; the defaults are the
/// reference's (`distill.py`, REFERENCE.md §1.7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MttSettings {
    /// Optimisation iterations.
    pub iterations: usize,
    /// Inner SGD steps on the synthetic set (N).
    pub syn_steps: usize,
    /// Expert epochs matched (M).
    pub expert_epochs: usize,
    /// Start epochs are drawn from `0..max_start_epoch`.
    pub max_start_epoch: usize,
    /// Learning rate of the images.
    pub lr_img: f64,
    /// Learning rate of the learnable step size.
    pub lr_lr: f64,
    /// Initial step size (the experts' learning rate).
    pub lr_teacher: f64,
    /// Momentum of both optimisers.
    pub momentum: f64,
    /// Synthetic images per inner step (all of them when absent).
    pub batch_syn: Option<usize>,
    /// How the set starts: `real`, `noise`, `herding` or `kcenter`.
    pub init: InitKind,
    /// DSA on every inner step (per-sample draws).
    pub dsa: bool,
    /// Unroll with the hand-written ConvNet backward (one autodiff level) where the network
    /// allows it; false: nested autodiff. Same gradient either way (tested).
    pub hand_written_backward: bool,
    /// How the hand-written backward forms convolution gradients: `conv` (conv2d on swapped dims
    /// and conv_transpose2d, as burn's own backward) or `matmul` (shifted-window matmuls and a
    /// flipped-kernel 3x3 conv2d). Same numbers; `matmul` avoids image-sized kernels.
    pub conv_grads: ConvGrads,
    /// On a GPU: check the first iteration's step against the CPU's from the same inputs and go
    /// on with a gradient form that agrees (or stop with an error). Ignored on the CPU.
    pub check_device: bool,
    /// Learned soft labels (DATM, Guo et al., ICLR 2024): each image's label logits start as
    /// an expert's logits on it (the first expert at `max_start_epoch`), the inner steps train
    /// on their softmax, and they descend the matching loss by SGD at this rate with the images'
    /// momentum; the set keeps their softmax as its soft labels. None: fixed one-hot labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_labels: Option<f64>,
    /// Soft labels (`soft_labels`, `teacher_temperature`, `teacher_epochs`): the keys every
    /// method takes ([`crate::distill::soft`]).
    #[serde(flatten, skip_serializing_if = "SoftLabelSettings::is_default")]
    pub labels: SoftLabelSettings,
}

impl Default for MttSettings {
    fn default() -> Self {
        MttSettings {
            iterations: 5000,
            syn_steps: 20,
            expert_epochs: 3,
            max_start_epoch: 25,
            lr_img: 1000.0,
            lr_lr: 1e-5,
            lr_teacher: 0.01,
            momentum: 0.5,
            batch_syn: None,
            init: InitKind::Real,
            dsa: true,
            hand_written_backward: true,
            conv_grads: ConvGrads::Conv,
            check_device: true,
            lr_labels: None,
            labels: SoftLabelSettings::default(),
        }
    }
}

impl MttSettings {
    /// Expert epochs these settings need: `max_start_epoch - 1 + expert_epochs`.
    pub fn epochs_needed(&self) -> usize {
        self.max_start_epoch.max(1) - 1 + self.expert_epochs
    }

    /// The settings' values that cannot work (`expert_epochs_available`: the experts' epochs).
    pub fn problems(&self, expert_epochs_available: usize) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("iterations", self.iterations);
        p.positive("syn_steps", self.syn_steps);
        p.positive("expert_epochs", self.expert_epochs);
        p.positive("max_start_epoch", self.max_start_epoch);
        p.rate("lr_img", self.lr_img);
        p.rate("lr_lr", self.lr_lr);
        p.rate("lr_teacher", self.lr_teacher);
        p.momentum("momentum", self.momentum);
        if let Some(b) = self.batch_syn {
            p.positive("batch_syn", b);
        }
        if let Some(r) = self.lr_labels {
            p.rate("lr_labels", r);
        }
        if self.epochs_needed() > expert_epochs_available {
            p.fail(
                "max_start_epoch",
                self.max_start_epoch,
                &format!(
                    "max_start_epoch - 1 + expert_epochs ({}) within the experts' epochs ({expert_epochs_available})",
                    self.epochs_needed()
                ),
            );
        }
        p.into_vec()
    }
}

/// MTT as it runs: its settings, the network the experts trained and the augmentation.
#[derive(Clone, Debug)]
pub struct MttConfig {
    /// The settings.
    pub settings: MttSettings,
    /// The network the experts trained.
    pub spec: ModelSpec,
    /// DSA on every inner step (None: no augmentation).
    pub dsa: Option<Dsa>,
}

impl MttConfig {
    /// MTT by `settings` on network `spec`; `dsa` applies when the settings ask for it.
    pub fn new(settings: MttSettings, spec: ModelSpec, dsa: &Dsa) -> Self {
        let dsa = settings.dsa.then(|| dsa.clone());
        MttConfig {
            settings,
            spec,
            dsa,
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
    let start = rng.random_range(0..cfg.settings.max_start_epoch.max(1));
    let bs = cfg.settings.batch_syn.unwrap_or(n).clamp(1, n);
    let mut order: Vec<usize> = Vec::new();
    let batches = (0..cfg.settings.syn_steps)
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
    let targets = Targets::Hard(labels);
    let s = step_with::<B>(cfg, (start, target), draw, images, targets, syn_lr);
    (s.loss, s.images, s.syn_lr)
}

/// What the inner steps train on: one-hot labels, or the softmax of learnable label logits
/// `[n, classes]` (DATM).
pub enum Targets<'a, B: Backend> {
    /// Fixed hard labels.
    Hard(&'a [usize]),
    /// Label logits, learned.
    Logits(Tensor<B, 2>),
}

/// One iteration's loss and gradients.
pub struct StepGrads<B: Backend> {
    /// The matching loss.
    pub loss: f64,
    /// Its gradient with respect to the images.
    pub images: Tensor<B, 4>,
    /// ... to `syn_lr`.
    pub syn_lr: f32,
    /// ... to the label logits, when they are learned.
    pub labels: Option<Tensor<B, 2>>,
}

/// [`step`] with learnable label logits as well ([`Targets`]).
pub fn step_with<B: AutodiffBackend>(
    cfg: &MttConfig,
    (start, target): (&[Vec<f32>], &[Vec<f32>]),
    draw: &MttDraw,
    images: Tensor<B::InnerBackend, 4>,
    targets: Targets<'_, B::InnerBackend>,
    syn_lr: f32,
) -> StepGrads<B::InnerBackend> {
    let device = images.device();
    let k = cfg.spec.num_classes();
    let start: Vec<Tensor<B, 1>> = start.iter().map(|v| vec1(v, &device)).collect();
    let target: Vec<Tensor<B, 1>> = target.iter().map(|v| vec1(v, &device)).collect();
    let x = Tensor::<B, 4>::from_inner(images).require_grad();
    let lr = vec1::<B>(&[syn_lr], &device).require_grad();
    let (y, leaf) = match targets {
        Targets::Hard(labels) => (one_hot::<B>(labels, k, &device), None),
        Targets::Logits(z) => {
            let z = Tensor::<B, 2>::from_inner(z).require_grad();
            (burn::tensor::activation::softmax(z.clone(), 1), Some(z))
        }
    };
    let manual = if cfg.settings.hand_written_backward {
        unroll_manual(
            &cfg.spec,
            start.clone(),
            x.clone(),
            y.clone(),
            lr.clone(),
            &draw.batches,
            cfg.settings.conv_grads,
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
    let gy = leaf.map(|z| z.grad(&grads).unwrap_or_else(|| z.inner().zeros_like()));
    StepGrads {
        loss: value,
        images: gx,
        syn_lr: glr,
        labels: gy,
    }
}
