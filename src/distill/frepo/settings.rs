//! FRePo's settings (`[distill] method = "frepo"`), with the reference's defaults
//! (yongchao97/FRePo `script/distill.py` and `lib/datadistillation/frepo.py`).

use crate::data::augment::Dsa;
use crate::distill::init::InitKind;
use crate::distill::soft::SoftLabelSettings;
use crate::error::{Problem, Problems};
use crate::model::ModelSpec;
use serde::{Deserialize, Serialize};

/// FRePo's settings, as a `[distill]` table with `method = "frepo"` gives them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrepoSettings {
    /// Optimisation iterations (the reference's `num_train_steps`, 500K in its commands).
    pub iterations: usize,
    /// Peak learning rate of the images and labels (LAMB, cosine decay to a tenth).
    pub lr_img: f64,
    /// Real images per iteration (drawn from the whole training set).
    pub batch_real: usize,
    /// Networks in the model pool (the reference's `num_nn_state`).
    pub models: usize,
    /// Online updates after which a pool member is replaced by a fresh network.
    pub max_online_updates: usize,
    /// Adam's learning rate for the pool's networks.
    pub online_lr: f64,
    /// Synthetic images per online update (all when fewer).
    pub online_batch: usize,
    /// Ridge: `reg · tr(K) / n` is added to the kernel's diagonal.
    pub reg: f64,
    /// Learn the labels (centred one-hot at the start) beside the images.
    pub learn_label: bool,
    /// How the set starts: `real`, `noise`, `herding` or `kcenter`.
    pub init: InitKind,
    /// DSA (per sample) when the pool's networks train on the synthetic set.
    pub dsa: bool,
    /// Soft labels (`soft_labels`, `teacher_temperature`, `teacher_epochs`): the keys every
    /// method takes ([`crate::distill::soft`]).
    #[serde(flatten, skip_serializing_if = "SoftLabelSettings::is_default")]
    pub labels: SoftLabelSettings,
}

impl Default for FrepoSettings {
    fn default() -> Self {
        FrepoSettings {
            iterations: 500_000,
            lr_img: 3e-4,
            batch_real: 1024,
            models: 10,
            max_online_updates: 100,
            online_lr: 3e-4,
            online_batch: 1000,
            reg: 1e-6,
            learn_label: true,
            init: InitKind::Real,
            dsa: true,
            labels: SoftLabelSettings::default(),
        }
    }
}

impl FrepoSettings {
    /// The settings' values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("iterations", self.iterations);
        p.rate("lr_img", self.lr_img);
        p.positive("batch_real", self.batch_real);
        p.positive("models", self.models);
        p.positive("max_online_updates", self.max_online_updates);
        p.rate("online_lr", self.online_lr);
        p.positive("online_batch", self.online_batch);
        p.require(
            self.reg > 0.0 && self.reg.is_finite(),
            "reg",
            self.reg,
            "a positive ridge (the kernel of a few images is singular without it)",
        );
        p.into_vec()
    }
}

/// FRePo as it runs: its settings, the network and the augmentation.
#[derive(Clone, Debug)]
pub struct FrepoConfig {
    /// The settings.
    pub settings: FrepoSettings,
    /// The pool's network; its embedding gives the features.
    pub spec: ModelSpec,
    /// Augmentation of the online updates (None: none).
    pub dsa: Option<Dsa>,
}

impl FrepoConfig {
    /// FRePo by `settings` on network `spec`; `dsa` applies when the settings ask for it.
    pub fn new(settings: FrepoSettings, spec: ModelSpec, dsa: &Dsa) -> Self {
        let dsa = settings.dsa.then(|| dsa.clone());
        FrepoConfig {
            settings,
            spec,
            dsa,
        }
    }
}
