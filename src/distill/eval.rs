//! The literature's evaluation protocol (REFERENCE.md §1.6): train freshly initialised networks
//! on a synthetic set (SGD lr 0.01, momentum 0.9, weight decay 5e-4, lr x0.1 at half, batch 256,
//! DSA with one draw per sample), test each on the real test set, report mean and std.

use super::SyntheticSet;
use crate::data::augment::{Combined, Dsa, Plain};
use crate::data::Dataset;
use crate::device::par_map;
use crate::error::{Problem, Problems, Result};
use crate::model::{ConvNetSpec, MlpSpec, ModelSpec, Norm, Pooling, ResNetSpec};
use crate::rng::step_seed;
use crate::train::events::Progress;
use crate::train::{evaluate, LrSchedule, SoftTargets, TrainConfig, Training};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The `[eval]` section: how sets are evaluated (defaults: the protocol of REFERENCE.md §1.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    /// Epochs each fresh network trains on the set.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Learning rate (divided by 10 at epochs / 2 + 1).
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Fresh networks per architecture.
    pub repeats: usize,
    /// DSA (one draw per sample) while training them.
    pub dsa: bool,
    /// Architectures: `convnet` (the `[model]` net), `convnet_bn`, `convnet_nonorm`,
    /// `convnet_maxpool`, `convnet_wide`, `mlp`, `resnet18_bn`.
    pub models: Vec<Architecture>,
    /// Learning-rate schedule: `step` (x0.1 at epochs / 2 + 1, the reference) or `cosine`
    /// (to zero, SelMatch's evaluation).
    pub schedule: EvalSchedule,
    /// Train with a set's learned step size when it has one (MTT's evaluation); false: `lr`.
    pub learned_lr: bool,
    /// Plain augmentation of selected real images (SelMatch's combined augmentation): largest
    /// shift in pixels.
    pub plain_pad: usize,
    /// Plain augmentation: mirror half of the images (default: yes, except for digits).
    pub plain_flip: Option<bool>,
    /// Report every set's coverage (SelMatch's diagnostic) in the summary.
    pub coverage: bool,
    /// Epochs the coverage network trains on the real data.
    pub coverage_epochs: usize,
    /// Real training samples (a seeded random subset) that set the coverage radius.
    pub coverage_sample: usize,
    /// What the networks train on: `hard` labels (the reference), or `soft`: a set's soft labels
    /// with the KD loss where it has them (a set without them trains on its hard labels).
    #[serde(skip_serializing_if = "EvalLabels::is_hard")]
    pub labels: EvalLabels,
    /// The student's temperature in the KD loss of `labels = "soft"` (1: plain soft
    /// cross-entropy against the stored distribution).
    #[serde(skip_serializing_if = "is_one")]
    pub kd_temperature: f64,
    /// Tune without the test set: hold out this fraction of each class's training images
    /// (seeded by the run's seed), distil from the rest and report accuracy on the held-out
    /// images in the test set's place. None: the test set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<f64>,
}

/// What evaluation networks train on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalLabels {
    /// The hard labels.
    #[default]
    Hard,
    /// The set's soft labels (KD loss), where it has them.
    Soft,
}

impl EvalLabels {
    /// True for the reference's hard labels (left out of summaries).
    pub fn is_hard(&self) -> bool {
        *self == EvalLabels::Hard
    }
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// The evaluation's learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSchedule {
    /// x0.1 at epochs / 2 + 1.
    #[default]
    Step,
    /// Cosine decay to zero.
    Cosine,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            epochs: 1000,
            batch_size: 256,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            repeats: 5,
            dsa: true,
            models: vec![Architecture::Convnet],
            schedule: EvalSchedule::Step,
            learned_lr: true,
            plain_pad: 4,
            plain_flip: None,
            coverage: true,
            coverage_epochs: 1,
            coverage_sample: 2000,
            labels: EvalLabels::Hard,
            kd_temperature: 1.0,
            validation: None,
        }
    }
}

impl EvalSettings {
    /// The values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("epochs", self.epochs);
        p.positive("batch_size", self.batch_size);
        p.positive("repeats", self.repeats);
        p.sgd(self.lr, self.momentum, self.weight_decay);
        let t = self.kd_temperature;
        p.require(
            t > 0.0 && t.is_finite(),
            "kd_temperature",
            t,
            "a positive temperature",
        );
        if let Some(v) = self.validation {
            p.require(
                v > 0.0 && v < 1.0,
                "validation",
                v,
                "a fraction of the training images, between 0 and 1",
            );
        }
        p.require(
            !self.models.is_empty(),
            "models",
            "[]",
            "at least one architecture",
        );
        p.into_vec()
    }

    /// The training each evaluation network gets, for `epochs` epochs (lr / 10 at epochs / 2 + 1,
    /// or cosine to zero).
    pub fn train_config(&self, epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: match self.schedule {
                EvalSchedule::Step => LrSchedule::Step {
                    milestones: vec![epochs / 2 + 1],
                    gamma: 0.1,
                },
                EvalSchedule::Cosine => LrSchedule::Cosine { min_factor: 0.0 },
            },
        }
    }

    /// The protocol as it runs: this training, `dsa` when asked for, `repeats` networks.
    pub fn config(&self, dsa: &Dsa) -> EvalConfig {
        EvalConfig {
            train: self.train_config(self.epochs),
            dsa: self.dsa.then(|| dsa.clone()),
            repeats: self.repeats,
            combined: None,
        }
    }

    /// The soft targets `set` trains on: its soft labels at `kd_temperature` when `labels =
    /// "soft"` and it has them; None (hard labels) otherwise.
    pub fn soft_targets<'a>(&self, set: &'a SyntheticSet) -> Option<SoftTargets<'a>> {
        match (self.labels, &set.soft_labels) {
            (EvalLabels::Soft, Some(p)) => Some(SoftTargets {
                probs: p,
                temperature: self.kd_temperature,
            }),
            _ => None,
        }
    }

    /// Plain augmentation for selected real images (no flip on digit datasets unless asked).
    pub fn plain(&self, digits: bool) -> Plain {
        Plain {
            pad: self.plain_pad,
            flip: self.plain_flip.unwrap_or(!digits),
        }
    }
}

/// How synthetic sets are evaluated.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Training of each fresh network.
    pub train: TrainConfig,
    /// DSA during training (per-sample draws); None for no augmentation.
    pub dsa: Option<Dsa>,
    /// Number of fresh networks per architecture.
    pub repeats: usize,
    /// SelMatch's combined augmentation: plain augmentation for the rows flagged in `fixed`
    /// (selected real images), DSA for the others. None: DSA (or nothing) for every row.
    pub combined: Option<(Plain, Vec<bool>)>,
}

/// An architecture of the cross-architecture table, as `[eval] models` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// The `[model]` network as it is.
    Convnet,
    /// The ConvNet with batch norm.
    ConvnetBn,
    /// The ConvNet without norm.
    ConvnetNonorm,
    /// The ConvNet with max pooling.
    ConvnetMaxpool,
    /// The ConvNet at twice the width.
    ConvnetWide,
    /// A one-hidden-layer MLP (128 units).
    Mlp,
    /// ResNet-18 with batch norm, CIFAR stem, width 64.
    #[serde(rename = "resnet18_bn")]
    Resnet18Bn,
}

impl Architecture {
    /// Every architecture.
    pub const ALL: [Architecture; 7] = [
        Architecture::Convnet,
        Architecture::ConvnetBn,
        Architecture::ConvnetNonorm,
        Architecture::ConvnetMaxpool,
        Architecture::ConvnetWide,
        Architecture::Mlp,
        Architecture::Resnet18Bn,
    ];

    /// Its name in scenarios and results.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Convnet => "convnet",
            Architecture::ConvnetBn => "convnet_bn",
            Architecture::ConvnetNonorm => "convnet_nonorm",
            Architecture::ConvnetMaxpool => "convnet_maxpool",
            Architecture::ConvnetWide => "convnet_wide",
            Architecture::Mlp => "mlp",
            Architecture::Resnet18Bn => "resnet18_bn",
        }
    }

    /// The network it makes of the run's ConvNet `base` (`convnet` is `base` itself).
    pub fn spec(self, base: &ConvNetSpec) -> ModelSpec {
        let c = |f: &dyn Fn(&mut ConvNetSpec)| {
            let mut s = base.clone();
            f(&mut s);
            ModelSpec::ConvNet(s)
        };
        match self {
            Architecture::Convnet => c(&|_| {}),
            Architecture::ConvnetBn => c(&|s| s.norm = Norm::Batch),
            Architecture::ConvnetNonorm => c(&|s| s.norm = Norm::None),
            Architecture::ConvnetMaxpool => c(&|s| s.pooling = Pooling::Max),
            Architecture::ConvnetWide => c(&|s| s.width *= 2),
            Architecture::Resnet18Bn => {
                ModelSpec::ResNet18(ResNetSpec::reference(base.input, base.num_classes))
            }
            Architecture::Mlp => ModelSpec::Mlp(MlpSpec {
                input: base.input,
                hidden: 128,
                num_classes: base.num_classes,
            }),
        }
    }
}

/// Trains `cfg.repeats` fresh `spec` networks on `set` and returns each one's test accuracy.
/// Network `r` is seeded from `(seed, r)`; networks train in parallel on the worker threads;
/// `progress` ticks after every training step.
pub fn evaluate_set<B: AutodiffBackend>(
    set: &Dataset,
    test: &Dataset,
    spec: &ModelSpec,
    cfg: &EvalConfig,
    seed: u64,
    device: &B::Device,
    progress: &Progress,
) -> Result<Vec<f64>> {
    evaluate_set_soft::<B>(set, None, test, spec, cfg, seed, device, progress)
}

/// [`evaluate_set`] training on `soft` targets (the KD loss) instead of the hard labels when
/// given ([`EvalSettings::soft_targets`]).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_set_soft<B: AutodiffBackend>(
    set: &Dataset,
    soft: Option<SoftTargets<'_>>,
    test: &Dataset,
    spec: &ModelSpec,
    cfg: &EvalConfig,
    seed: u64,
    device: &B::Device,
    progress: &Progress,
) -> Result<Vec<f64>> {
    let run = |r: usize| -> Result<f64> {
        let net_seed = step_seed(seed ^ 0xe7a1, r as u64);
        let mut model = train_net_soft::<B>(set, soft, spec, cfg, net_seed, device, progress)?;
        Ok(evaluate(&mut model, test, 500, device).0)
    };
    par_map(cfg.repeats, run).into_iter().collect()
}

/// One fresh `spec` network trained on `set` by `cfg`'s protocol (its training, DSA or combined
/// augmentation; `repeats` is not read), initialised and shuffled from `net_seed`.
pub fn train_net<B: AutodiffBackend>(
    set: &Dataset,
    spec: &ModelSpec,
    cfg: &EvalConfig,
    net_seed: u64,
    device: &B::Device,
    progress: &Progress,
) -> Result<crate::model::Model<B::InnerBackend>> {
    train_net_soft::<B>(set, None, spec, cfg, net_seed, device, progress)
}

/// [`train_net`] on `soft` targets (the KD loss) when given.
pub fn train_net_soft<B: AutodiffBackend>(
    set: &Dataset,
    soft: Option<SoftTargets<'_>>,
    spec: &ModelSpec,
    cfg: &EvalConfig,
    net_seed: u64,
    device: &B::Device,
    progress: &Progress,
) -> Result<crate::model::Model<B::InnerBackend>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(net_seed);
    let mut model = spec.init::<B::InnerBackend, _>(&mut rng, device);
    let t = Training::<B>::new(&cfg.train, device)
        .counted(progress)
        .soft(soft);
    match &cfg.combined {
        Some((plain, fixed)) => {
            let aug = Combined {
                dsa: cfg.dsa.clone(),
                plain: plain.clone(),
                fixed: fixed.clone(),
            };
            t.augmented(Some(&aug)).run(&mut model, set, &mut rng)?
        }
        None => t
            .augmented(cfg.dsa.as_ref())
            .run(&mut model, set, &mut rng)?,
    }
    Ok(model)
}
