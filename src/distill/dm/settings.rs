//! DM's settings (`[distill] method = "dm"`), and DM as it runs: the settings with the embedding
//! network, the augmentation and FedDM's centre.

use crate::data::augment::Dsa;
use crate::distill::init::InitKind;
use crate::distill::soft::{SoftLabelSettings, SoftLabelSource};
use crate::dp::DpSettings;
use crate::error::{Problem, Problems};
use crate::model::ModelSpec;
use serde::{Deserialize, Serialize};

/// DM's settings, as a `[distill]` table with `method = "dm"` gives them; the defaults are the
/// reference's (REFERENCE.md §1.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DmSettings {
    /// Optimisation iterations.
    pub iterations: usize,
    /// Learning rate of the synthetic images.
    pub lr_img: f64,
    /// Momentum of the image optimiser.
    pub momentum: f64,
    /// Real images per class per iteration.
    pub batch_real: usize,
    /// How the set starts: `real`, `noise`, `herding` or `kcenter`.
    pub init: InitKind,
    /// Siamese augmentation (DSA) while matching.
    pub dsa: bool,
    /// Candidates per class embedded for a herding / k-center start (all when absent).
    pub pool: Option<usize>,
    /// Differential privacy: noisy, clipped real means ([`crate::dp`]); None: plain DM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpSettings>,
    /// IDM's pool of partially trained embedding networks (`[distill.model_pool]`); None: a
    /// fresh network every iteration, as DM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_pool: Option<Box<ModelPoolSettings>>,
    /// IDM's class-aware term: the synthetic images' cross-entropy under the pool network,
    /// weighted by this times the network's training accuracy in percent (the reference's
    /// weighting; its CIFAR-10 IPC 1/10 value is 0.5). 0: off. Needs `model_pool`.
    #[serde(skip_serializing_if = "is_zero")]
    pub ce_weight: f64,
    /// IDM's partition and expansion: each stored image holds `expand x expand` smaller images,
    /// enlarged back to full size to match and to train on ([`crate::distill::expand`]; the
    /// reference's value is 2). 1: off.
    #[serde(skip_serializing_if = "is_one")]
    pub expand: usize,
    /// Soft labels (`soft_labels`, `teacher_temperature`, `teacher_epochs`): the keys every
    /// method takes ([`crate::distill::soft`]).
    #[serde(flatten, skip_serializing_if = "SoftLabelSettings::is_default")]
    pub labels: SoftLabelSettings,
}

impl Default for DmSettings {
    fn default() -> Self {
        DmSettings {
            iterations: 20000,
            lr_img: 1.0,
            momentum: 0.5,
            batch_real: 256,
            init: InitKind::Real,
            dsa: true,
            pool: None,
            dp: None,
            model_pool: None,
            ce_weight: 0.0,
            expand: 1,
            labels: SoftLabelSettings::default(),
        }
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

/// IDM's model pool (Zhao et al., CVPR 2023 §3.2), with the reference's defaults
/// (`IDM_cifar10.py`): it starts with 3 fresh networks, gains one every `add_every` iterations up
/// to `size` (the oldest leaves), matches with one of them at random each iteration, and then
/// trains `train_nets` of them for `train_steps` SGD steps on real batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelPoolSettings {
    /// Networks kept at most (`net_num`).
    pub size: usize,
    /// A fresh network joins every this many iterations (`net_generate_interval`).
    pub add_every: usize,
    /// Networks trained after each iteration (`fetch_net_num`).
    pub train_nets: usize,
    /// SGD steps each takes (`model_train_steps`).
    pub train_steps: usize,
    /// Real images per step, from all classes (`trained_bs`).
    pub batch: usize,
    /// Their learning rate (`lr_net`).
    pub lr: f64,
    /// Their momentum (0.9 with `net_decay`).
    pub momentum: f64,
    /// Their weight decay (5e-4 with `net_decay`).
    pub weight_decay: f64,
}

impl Default for ModelPoolSettings {
    fn default() -> Self {
        ModelPoolSettings {
            size: 100,
            add_every: 30,
            train_nets: 2,
            train_steps: 10,
            batch: 256,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
        }
    }
}

impl ModelPoolSettings {
    /// The settings' values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("model_pool.size", self.size);
        p.positive("model_pool.add_every", self.add_every);
        p.positive("model_pool.batch", self.batch);
        p.rate("model_pool.lr", self.lr);
        p.momentum("model_pool.momentum", self.momentum);
        p.require(
            self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
            "model_pool.weight_decay",
            self.weight_decay.to_string(),
            "a number >= 0",
        );
        p.into_vec()
    }
}

impl DmSettings {
    /// The settings' values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("iterations", self.iterations);
        p.rate("lr_img", self.lr_img);
        p.momentum("momentum", self.momentum);
        p.positive("batch_real", self.batch_real);
        if let Some(n) = self.pool {
            p.positive("pool", n);
        }
        if let Some(m) = &self.model_pool {
            p.extend(m.problems());
        }
        p.require(
            self.ce_weight >= 0.0 && self.ce_weight.is_finite(),
            "ce_weight",
            self.ce_weight.to_string(),
            "a number >= 0",
        );
        p.require(
            self.ce_weight == 0.0 || self.model_pool.is_some(),
            "ce_weight",
            self.ce_weight.to_string(),
            "0 without [distill.model_pool] (the term is weighted by a pool network's accuracy)",
        );
        p.require(
            (1..=8).contains(&self.expand),
            "expand",
            self.expand.to_string(),
            "1 (off) to 8",
        );
        p.require(
            self.expand == 1 || self.labels.soft_labels != SoftLabelSource::Teacher,
            "expand",
            self.expand.to_string(),
            "1 with soft_labels = \"teacher\" (a teacher labels whole images, and each partitioned image holds several)",
        );
        p.require(
            self.expand == 1 || self.dp.is_none(),
            "expand",
            self.expand.to_string(),
            "1 with dp",
        );
        if let Some(dp) = &self.dp {
            p.extend(dp.problems());
            p.require(
                self.init == InitKind::Noise,
                "init",
                format!("{:?}", self.init).to_lowercase(),
                "\"noise\" with dp (a real, herding or k-center start copies training images)",
            );
        }
        p.into_vec()
    }
}

/// DM as it runs: its settings, the embedding network (re-initialised every iteration), the
/// augmentation, and FedDM's centre when it embeds around a global model.
#[derive(Clone, Debug)]
pub struct DmConfig {
    /// The settings.
    pub settings: DmSettings,
    /// The embedding network.
    pub spec: ModelSpec,
    /// Siamese augmentation (None: no augmentation).
    pub dsa: Option<Dsa>,
    /// FedDM: embed with random perturbations of these weights instead of fresh networks.
    pub around: Option<Around>,
}

/// FedDM's embedding networks (REFERENCE.md §3.2): a given model's parameters moved by a random
/// direction of norm `rho`, with the loss matching mean logits as well as mean features.
#[derive(Clone, Debug)]
pub struct Around {
    /// The centre (the global model's parameters, host copies in the model's order).
    pub params: Vec<Vec<f32>>,
    /// Norm of the random perturbation of all parameters together.
    pub rho: f32,
}

impl DmConfig {
    /// DM by `settings` with embedding network `spec`; `dsa` applies when the settings ask for it.
    pub fn new(settings: DmSettings, spec: ModelSpec, dsa: &Dsa) -> Self {
        let dsa = settings.dsa.then(|| dsa.clone());
        DmConfig {
            settings,
            spec,
            dsa,
            around: None,
        }
    }
}
