//! DC/DSA's settings (`[distill] method = "dc"`), with the reference's defaults (`main.py` of
//! VICO-UoE/DatasetCondensation, REFERENCE.md §1.4), and the per-IPC loop counts of its
//! `get_loops`.

use crate::data::augment::Dsa;
use crate::distill::init::InitKind;
use crate::distill::soft::SoftLabelSettings;
use crate::error::{Problem, Problems};
use crate::model::ModelSpec;
use serde::{Deserialize, Serialize};

/// DC's settings, as a `[distill]` table with `method = "dc"` gives them. `dsa = true` (the
/// default) is DSA, Siamese augmentation while matching; `dsa = false` is plain DC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DcSettings {
    /// Iterations: each draws a fresh network (the reference's `Iteration`).
    pub iterations: usize,
    /// Matching steps per network (None: the reference's count for the IPC, [`loops`]).
    pub outer_loop: Option<usize>,
    /// Epochs of network training on the synthetic set between matching steps (None: as
    /// `outer_loop`).
    pub inner_loop: Option<usize>,
    /// Learning rate of the synthetic images (SGD).
    pub lr_img: f64,
    /// Momentum of the image optimiser.
    pub momentum: f64,
    /// Learning rate of the network trained on the synthetic set (SGD, no momentum).
    pub lr_net: f64,
    /// Real images per class per matching step.
    pub batch_real: usize,
    /// Minibatch of the network training on the synthetic set.
    pub batch_train: usize,
    /// How the set starts: `real`, `noise`, `herding` or `kcenter`. The reference's default is
    /// `noise`; its published DSA figures use `--init real`, which is this default.
    pub init: InitKind,
    /// Siamese augmentation (DSA) while matching and while training the network.
    pub dsa: bool,
    /// Candidates per class embedded for a herding / k-center start (all when absent).
    pub pool: Option<usize>,
    /// Differentiate the synthetic gradient through the hand-written ConvNet backward (one
    /// autodiff level) where the network allows it; false: nested autodiff. Same gradient
    /// either way (tested).
    pub hand_written_backward: bool,
    /// Soft labels (`soft_labels`, `teacher_temperature`, `teacher_epochs`): the keys every
    /// method takes ([`crate::distill::soft`]).
    #[serde(flatten, skip_serializing_if = "SoftLabelSettings::is_default")]
    pub labels: SoftLabelSettings,
}

impl Default for DcSettings {
    fn default() -> Self {
        DcSettings {
            iterations: 1000,
            outer_loop: None,
            inner_loop: None,
            lr_img: 0.1,
            momentum: 0.5,
            lr_net: 0.01,
            batch_real: 256,
            batch_train: 256,
            init: InitKind::Real,
            dsa: true,
            pool: None,
            hand_written_backward: true,
            labels: SoftLabelSettings::default(),
        }
    }
}

/// The reference's `(outer_loop, inner_loop)` for `ipc` (`utils.get_loops`): defined there for
/// IPC 1, 10, 20, 30, 40 and 50 only. Here any other IPC takes the entry of the nearest defined
/// IPC (ties to the smaller), and IPC above 50 takes IPC 50's, as the author advises for larger
/// sets (DatasetCondensation issue #2).
pub fn loops(ipc: usize) -> (usize, usize) {
    const TABLE: [(usize, usize, usize); 6] = [
        (1, 1, 1),
        (10, 10, 50),
        (20, 20, 25),
        (30, 30, 20),
        (40, 40, 15),
        (50, 50, 10),
    ];
    let (_, o, i) = TABLE
        .iter()
        .min_by_key(|(n, _, _)| (n.abs_diff(ipc), *n))
        .copied()
        .expect("a table");
    (o, i)
}

impl DcSettings {
    /// `(outer_loop, inner_loop)` at `ipc`: the settings' where given, else [`loops`].
    pub fn loops_at(&self, ipc: usize) -> (usize, usize) {
        let (o, i) = loops(ipc);
        (self.outer_loop.unwrap_or(o), self.inner_loop.unwrap_or(i))
    }

    /// The settings' values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("iterations", self.iterations);
        if let Some(o) = self.outer_loop {
            p.positive("outer_loop", o);
        }
        p.rate("lr_img", self.lr_img);
        p.momentum("momentum", self.momentum);
        p.rate("lr_net", self.lr_net);
        p.positive("batch_real", self.batch_real);
        p.positive("batch_train", self.batch_train);
        if let Some(n) = self.pool {
            p.positive("pool", n);
        }
        p.into_vec()
    }
}

/// DC as it runs: its settings, the network and the augmentation.
#[derive(Clone, Debug)]
pub struct DcConfig {
    /// The settings.
    pub settings: DcSettings,
    /// The network whose gradients are matched (re-initialised every iteration).
    pub spec: ModelSpec,
    /// Siamese augmentation (None: no augmentation).
    pub dsa: Option<Dsa>,
}

impl DcConfig {
    /// DC by `settings` on network `spec`; `dsa` applies when the settings ask for it.
    pub fn new(settings: DcSettings, spec: ModelSpec, dsa: &Dsa) -> Self {
        let dsa = settings.dsa.then(|| dsa.clone());
        DcConfig {
            settings,
            spec,
            dsa,
        }
    }
}
