//! DM's settings (`[distill] method = "dm"`), and DM as it runs: the settings with the embedding
//! network, the augmentation and FedDM's centre.

use crate::data::augment::Dsa;
use crate::distill::init::InitKind;
use crate::distill::soft::SoftLabelSettings;
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
            labels: SoftLabelSettings::default(),
        }
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
