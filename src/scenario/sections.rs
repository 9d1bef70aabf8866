//! The scenario's sections besides `[data]`, `[distill]`, `[eval]` and `[experts]` (whose types
//! live with the code that runs them): the network, training, the continual stream and the
//! federation.

use super::distill::MethodEntry;
pub use crate::cl::harness::Protocol;
use crate::error::{Problem, Problems};
use crate::fed::strategy::StrategyKind;
use crate::model::{Norm, Pooling};
use serde::{Deserialize, Serialize};

/// Network architecture families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The DD-literature ConvNet.
    Convnet,
    /// The 3-layer perceptron.
    Mlp,
}

/// The `[model]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `convnet` or `mlp`.
    pub arch: Arch,
    /// ConvNet channels per layer.
    pub width: usize,
    /// ConvNet blocks.
    pub depth: usize,
    /// ConvNet normalisation.
    pub norm: Norm,
    /// ConvNet pooling.
    pub pooling: Pooling,
    /// MLP hidden width.
    pub hidden: usize,
}

impl ModelSection {
    /// The values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("width", self.width);
        p.require(
            self.width <= 4096,
            "width",
            self.width,
            "at most 4096 channels",
        );
        p.require(
            (1..=8).contains(&self.depth),
            "depth",
            self.depth,
            "a depth from 1 to 8",
        );
        p.positive("hidden", self.hidden);
        p.into_vec()
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            arch: Arch::Convnet,
            width: 128,
            depth: 3,
            norm: Norm::Instance,
            pooling: Pooling::Avg,
            hidden: 128,
        }
    }
}

/// Learning-rate schedule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Drop by `gamma` at `milestones` (default: once, at epoch E/2 + 1, as the reference).
    Step,
    /// Cosine decay to `lr * min_lr_factor`.
    Cosine,
    /// Fixed rate.
    Constant,
}

/// The `[train]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Passes over the training data.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Step schedule milestones (0-based epochs); default `[epochs / 2 + 1]`.
    pub milestones: Option<Vec<usize>>,
    /// Step schedule factor.
    pub gamma: f64,
    /// Cosine schedule floor as a fraction of `lr`.
    pub min_lr_factor: f64,
    /// Train on a random selection of this many images per class instead of the full set.
    pub ipc: Option<usize>,
    /// Number of freshly initialised networks trained (results give mean and std).
    pub repeats: usize,
    /// Evaluate on the test set every this many epochs (and always after the last).
    pub eval_every: usize,
}

impl TrainSection {
    /// The values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("epochs", self.epochs);
        p.positive("batch_size", self.batch_size);
        p.positive("repeats", self.repeats);
        p.positive("eval_every", self.eval_every);
        p.sgd(self.lr, self.momentum, self.weight_decay);
        p.require(
            self.gamma > 0.0 && self.gamma <= 1.0,
            "gamma",
            self.gamma,
            "a decay factor in (0, 1]",
        );
        p.require(
            (0.0..=1.0).contains(&self.min_lr_factor),
            "min_lr_factor",
            self.min_lr_factor,
            "a fraction in [0, 1]",
        );
        if let Some(ipc) = self.ipc {
            p.positive("ipc", ipc);
        }
        if let Some(ms) = &self.milestones {
            p.require(
                self.schedule == Schedule::Step,
                "milestones",
                format!("{ms:?}"),
                "milestones only with schedule = \"step\"",
            );
            p.require(
                ms.windows(2).all(|w| w[0] < w[1]),
                "milestones",
                format!("{ms:?}"),
                "strictly increasing epochs",
            );
        }
        p.into_vec()
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: 10,
            batch_size: 256,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: Schedule::Step,
            milestones: None,
            gamma: 0.1,
            min_lr_factor: 0.01,
            ipc: None,
            repeats: 1,
            eval_every: 1,
        }
    }
}

/// How a continual stream is built from the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Disjoint groups of classes, one shared head (Split-MNIST: 5 tasks of 2 classes).
    ClassIncremental,
    /// Every class in every task, pixels permuted by a fixed per-task permutation.
    Permuted,
    /// Every class in every task, rotated by a fixed per-task angle.
    Rotated,
}

/// The `[continual]` section: task stream, memory and learner. The learner's per-task training
/// is the `[train]` section (epochs per task); a memory method named bare takes `[distill]`'s
/// settings when that table configures it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContinualSection {
    /// `class_incremental`, `permuted` or `rotated`.
    pub stream: StreamKind,
    /// Number of tasks (class-incremental: must divide the number of classes).
    pub tasks: usize,
    /// Class-incremental: shuffle the class order with the seed (else 0, 1, 2, ...).
    pub shuffle_classes: bool,
    /// Class-incremental: explicit groups of classes, one task each (instead of `tasks` equal
    /// groups), e.g. `[[0, 1, 2], [3, 4], [5, 6, 7, 8, 9]]`.
    pub class_groups: Option<Vec<Vec<usize>>>,
    /// Rotated: task t is rotated by t * max_degrees / (tasks - 1) degrees.
    pub max_degrees: f64,
    /// Task-incremental evaluation and training: a task's own classes form its head.
    pub task_incremental: bool,
    /// `streaming` or `gdumb`.
    pub protocol: Protocol,
    /// Strategies compared, each from the same initial network: `finetune` (no memory, the
    /// lower bound), `joint` (all data so far, the upper bound), or a method whose sets fill the
    /// memory (a name, or an inline table with `method` and its settings).
    pub strategies: Vec<ClEntry>,
    /// Memory images per class (per class and task on domain streams).
    pub memory_per_class: Option<usize>,
    /// Memory images in all, shared equally by the classes seen (instead of per class).
    pub memory_total: Option<usize>,
    /// Streaming: share of each minibatch replayed from the memory.
    pub replay_fraction: f64,
    /// Gdumb: epochs of the fresh network on the memory (its optimiser is `[train]`'s).
    pub memory_epochs: usize,
    /// Per-sample DSA while the learner trains.
    pub dsa: bool,
}

impl Default for ContinualSection {
    fn default() -> Self {
        ContinualSection {
            stream: StreamKind::ClassIncremental,
            tasks: 5,
            shuffle_classes: false,
            class_groups: None,
            max_degrees: 90.0,
            task_incremental: false,
            protocol: Protocol::Streaming,
            strategies: ["finetune", "random", "herding", "dm", "joint"]
                .map(ClEntry::named)
                .to_vec(),
            memory_per_class: None,
            memory_total: None,
            replay_fraction: 0.5,
            memory_epochs: 300,
            dsa: false,
        }
    }
}

impl ContinualSection {
    /// The memory budget (10 per class when neither field is given).
    pub fn budget(&self) -> crate::cl::memory::Budget {
        use crate::cl::memory::Budget;
        match (self.memory_total, self.memory_per_class) {
            (Some(t), _) => Budget::Total(t),
            (None, Some(n)) => Budget::PerClass(n),
            (None, None) => Budget::PerClass(10),
        }
    }
}

/// One strategy of a continual comparison.
// A memory's method settings make it the large variant; entries are few, so no box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ClEntry {
    /// No memory: train on each task in turn (the lower bound; streaming whatever the protocol).
    Finetune,
    /// All data seen so far (the upper bound; a fresh network per task under `gdumb`).
    Joint,
    /// A memory filled by a method's sets.
    Memory(MethodEntry),
}

impl ClEntry {
    /// `finetune`, `joint`, or the memory method `name` (a bare entry).
    pub fn named(name: &str) -> ClEntry {
        match name {
            "finetune" => ClEntry::Finetune,
            "joint" => ClEntry::Joint,
            m => ClEntry::Memory(MethodEntry::Named(m.to_string())),
        }
    }

    /// The name used in files and tables.
    pub fn name(&self) -> String {
        match self {
            ClEntry::Finetune => "finetune".into(),
            ClEntry::Joint => "joint".into(),
            ClEntry::Memory(m) => m.name(),
        }
    }
}

impl Serialize for ClEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ClEntry::Memory(m) => m.serialize(s),
            other => s.serialize_str(&other.name()),
        }
    }
}

impl<'de> Deserialize<'de> for ClEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match MethodEntry::deserialize(d)? {
            MethodEntry::Named(n) if n == "finetune" || n == "joint" => Ok(ClEntry::named(&n)),
            m => Ok(ClEntry::Memory(m)),
        }
    }
}

/// The `[federated]` section. FedAvg's local training is `[train]` (epochs per round); the
/// server's training on synthetic sets is `[eval]`'s protocol; the clients of the distilled
/// strategies make their sets with `[distill]`'s method, `ipc` images per class they hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederatedSection {
    /// Number of clients.
    pub clients: usize,
    /// How the training set is spread over them (`{ kind = "dirichlet", alpha = 0.1, min_size = 10 }`).
    pub partition: crate::data::partition::Partitioning,
    /// Strategies compared, in order: a name, or a table `{ strategy = "distilled_oneshot",
    /// method = "dm", ... }` whose clients use that method (labelled `distilled_oneshot-dm`).
    pub strategies: Vec<StrategyEntry>,
    /// Rounds of fedavg and distilled_iterative (per task of a federated continual stream).
    pub rounds: usize,
    /// Share of clients selected per round.
    pub fraction: f64,
    /// Fewest accepted updates for a round to count.
    pub min_clients: usize,
    /// Seconds the server waits for answers each round (none: until all answered).
    pub deadline_seconds: Option<f64>,
    /// Probability that a selected client drops out of a round.
    pub dropout: f64,
    /// How tensors travel: `f32`, `f16` or `u8`.
    pub quantization: crate::fed::protocol::Quantization,
    /// Largest message accepted (bytes).
    pub max_message_bytes: usize,
    /// distilled_iterative: norm of the random perturbation of the global model.
    pub rho: f64,
    /// Stop fedavg once it reaches distilled_oneshot's accuracy (when that ran before it).
    pub fedavg_until_oneshot: bool,
    /// Shared token clients present over gRPC (also `DISTILLERY_TOKEN`).
    pub token: Option<String>,
    /// Worker threads for client compute (default: all cores).
    pub workers: Option<usize>,
    /// Injected faults, for testing robustness.
    pub faults: crate::fed::transport::Faults,
    /// fedavg_replay: the method that fills each client's memory of its past tasks.
    pub replay_memory: MethodEntry,
    /// fedavg_replay: images in each client's memory (shared by the classes it has seen).
    pub replay_memory_total: usize,
}

impl Default for FederatedSection {
    fn default() -> Self {
        FederatedSection {
            clients: 10,
            partition: crate::data::partition::Partitioning::Iid,
            strategies: vec![
                StrategyEntry::of(StrategyKind::DistilledOneshot),
                StrategyEntry::of(StrategyKind::Fedavg),
            ],
            rounds: 20,
            fraction: 1.0,
            min_clients: 1,
            deadline_seconds: None,
            dropout: 0.0,
            quantization: crate::fed::protocol::Quantization::F32,
            max_message_bytes: 64 << 20,
            rho: 5.0,
            fedavg_until_oneshot: true,
            token: None,
            workers: None,
            faults: crate::fed::transport::Faults::default(),
            replay_memory: MethodEntry::Named("random".into()),
            replay_memory_total: 20,
        }
    }
}

/// One strategy of a federated comparison, with the method its clients use when it is not
/// `[distill]`'s.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyEntry {
    /// The algorithm.
    pub kind: StrategyKind,
    /// Its clients' method (None: `[distill]`'s).
    pub method: Option<MethodEntry>,
}

impl StrategyEntry {
    /// `kind` with `[distill]`'s method.
    pub fn of(kind: StrategyKind) -> Self {
        StrategyEntry { kind, method: None }
    }

    /// The name in files, tables and messages: the strategy's, with `-method` when it has its
    /// own method.
    pub fn label(&self) -> String {
        match &self.method {
            None => self.kind.name().to_string(),
            Some(m) => format!("{}-{}", self.kind.name(), m.name()),
        }
    }
}

impl Serialize for StrategyEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let Some(m) = &self.method else {
            return s.serialize_str(self.kind.name());
        };
        let mut v = serde_json::to_value(m).map_err(S::Error::custom)?;
        let table = match &mut v {
            serde_json::Value::Object(t) => t,
            other => {
                let name = other.clone();
                *other = serde_json::json!({ "method": name });
                other.as_object_mut().expect("just made")
            }
        };
        table.insert("strategy".into(), self.kind.name().into());
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for StrategyEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let kind = |n: &str| {
            StrategyKind::from_name(n).ok_or_else(|| {
                let all: Vec<&str> = StrategyKind::ALL.iter().map(|k| k.name()).collect();
                D::Error::custom(format!(
                    "unknown strategy {n:?}: expected one of {}",
                    all.join(", ")
                ))
            })
        };
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(n) => Ok(StrategyEntry::of(kind(&n)?)),
            serde_json::Value::Object(mut t) => {
                let name = match t.remove("strategy") {
                    Some(serde_json::Value::String(n)) => n,
                    _ => return Err(D::Error::custom("a strategy table needs `strategy = \"name\"`")),
                };
                let method = match t.is_empty() {
                    true => None,
                    false => Some(MethodEntry::Inline(Box::new(
                        crate::distill::MethodConfig::from_map(&t).map_err(D::Error::custom)?,
                    ))),
                };
                Ok(StrategyEntry {
                    kind: kind(&name)?,
                    method,
                })
            }
            other => Err(D::Error::custom(format!(
                "{other}: expected a strategy name or a table with `strategy` and a method's settings"
            ))),
        }
    }
}

/// A published figure to set a run's result beside (`[published]`; the fidelity table reads it,
/// runs ignore it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// Test accuracy in percent.
    pub accuracy: f64,
    /// Its spread in percent, as published.
    #[serde(default)]
    pub std: Option<f64>,
    /// Where it is published (paper and table).
    pub source: String,
    /// What differs between the published setting and this scenario's, in words.
    #[serde(default)]
    pub note: String,
}
