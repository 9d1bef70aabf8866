//! `summary.json`, typed: one [`Summary`] for every run kind, its common fields (name, seed,
//! device, dataset, network, time, report lines) the same everywhere and the kind's own results
//! under [`Outcome`]. Written atomically at the end of a run; read back typed by `compare`, the
//! CLI and the tests.

use crate::audit::records::PrivacyAudit;
use crate::cl::metrics::ClMetrics;
use crate::data::partition::Partitioning;
use crate::data::{Normalization, Split};
use crate::distill::coverage::Coverage;
use crate::distill::eval::EvalSettings;
use crate::distill::mtt::check::StepCheck;
use crate::distill::Provenance;
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::scenario::{DistillSection, Protocol, StreamKind};
use crate::train::TrainConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The scenario's name.
    pub name: String,
    /// The run's seed.
    pub seed: u64,
    /// The backend it ran on (`cpu (flex)`, `cuda`, `cuda-unfused`).
    pub device: String,
    /// The data.
    pub dataset: DatasetInfo,
    /// The network.
    pub model: ModelInfo,
    /// Seconds from start to end.
    pub wall_seconds: f64,
    /// The lines printed at the end of the run.
    pub report: Vec<String>,
    /// The kind's results.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The privacy audit of the run's sets (None: nothing audited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyAudit>,
}

impl Summary {
    /// Reads `dir/summary.json`; a missing file means the run has not finished.
    pub fn load(dir: &Path) -> Result<Summary> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::data(
                    &path,
                    "no summary: the run has not finished (resume it with `distillery run --resume`)",
                )
            } else {
                Error::io(&path, e)
            }
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::data(&path, format!("not a distillery summary ({e})")))
    }

    /// The distill results, if this is a distill run.
    pub fn distill(&self) -> Option<&DistillOutcome> {
        match &self.outcome {
            Outcome::Distill(d) => Some(d),
            _ => None,
        }
    }

    /// The train results, if this is a train run.
    pub fn train(&self) -> Option<&TrainOutcome> {
        match &self.outcome {
            Outcome::Train(t) => Some(t),
            _ => None,
        }
    }

    /// The continual results, if this is a continual run.
    pub fn continual(&self) -> Option<&ContinualOutcome> {
        match &self.outcome {
            Outcome::Continual(c) => Some(c),
            _ => None,
        }
    }

    /// The federated continual results, if this is such a run.
    pub fn federated_continual(&self) -> Option<&StreamOutcome> {
        match &self.outcome {
            Outcome::FederatedContinual(f) => Some(f),
            _ => None,
        }
    }

    /// The federated results, if this is a federated run.
    pub fn federated(&self) -> Option<&FederatedOutcome> {
        match &self.outcome {
            Outcome::Federated(f) => Some(f),
            _ => None,
        }
    }
}

/// The data a run used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Its short name.
    pub name: String,
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
    /// Channels, height, width.
    pub shape: [usize; 3],
    /// Classes.
    pub classes: usize,
    /// The normalisation applied to both sets.
    pub normalization: Normalization,
    /// The ZCA regulariser, when whitened.
    pub zca_eps: Option<f64>,
}

impl DatasetInfo {
    /// The facts of `split`.
    pub fn of(split: &Split) -> Self {
        DatasetInfo {
            name: split.name.clone(),
            train: split.train.len(),
            test: split.test.len(),
            shape: split.train.shape,
            classes: split.train.num_classes(),
            normalization: split.norm.clone(),
            zca_eps: split.zca,
        }
    }
}

/// The network a run used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its architecture.
    pub spec: ModelSpec,
    /// Its parameter count.
    pub params: usize,
}

impl ModelInfo {
    /// The facts of `spec`.
    pub fn of(spec: &ModelSpec) -> Self {
        ModelInfo {
            spec: spec.clone(),
            params: spec.num_params(),
        }
    }
}

/// Each run kind's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// `kind = "train"`.
    Train(TrainOutcome),
    /// `kind = "distill"`.
    Distill(Box<DistillOutcome>),
    /// `kind = "experts"`.
    Experts(ExpertsOutcome),
    /// `kind = "continual"`.
    Continual(Box<ContinualOutcome>),
    /// `kind = "federated"`.
    Federated(FederatedOutcome),
    /// `kind = "federated_continual"`.
    FederatedContinual(Box<StreamOutcome>),
    /// `kind = "audit"`.
    Audit(AuditOutcome),
}

/// An audit run's subject: a set made elsewhere (its figures are in the summary's `privacy`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditOutcome {
    /// The set file.
    pub set: PathBuf,
    /// Where the set says it came from.
    pub provenance: Provenance,
}

/// A train run's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// The training.
    pub train: TrainConfig,
    /// Images per class trained on (all when absent).
    pub ipc: Option<usize>,
    /// Each network's final test accuracy.
    pub test_acc: Vec<f64>,
    /// Their mean.
    pub test_acc_mean: f64,
    /// Their (population) standard deviation.
    pub test_acc_std: f64,
    /// Mean seconds per epoch, evaluations excluded.
    pub seconds_per_epoch: f64,
}

/// Test accuracies of the networks trained on one set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Each network's.
    pub test_acc: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Their (population) standard deviation.
    pub std: f64,
}

/// Where a run's expert trajectories are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpertsInfo {
    /// Their folder.
    pub dir: PathBuf,
    /// How many.
    pub count: usize,
    /// Epochs each.
    pub epochs: usize,
}

/// What an optimising method did in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distilled {
    /// Iterations its set has.
    pub iterations: usize,
    /// Of those, done in this run (a resumed run continues a checkpoint).
    pub iterations_this_run: usize,
    /// Seconds of distillation (evaluations, coverage and SelMatch's selection excluded).
    pub seconds: f64,
    /// Seconds getting ready (experts, difficulty scores) and choosing SelMatch's window.
    pub preparation_seconds: f64,
    /// True when `max_seconds` stopped it before its iterations.
    pub stopped_by_budget: bool,
    /// The privacy a private DM set spent (`[distill] dp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::dp::DpSpent>,
}

/// A distill run's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillOutcome {
    /// The `[distill]` table as run.
    pub distill: DistillSection,
    /// The DSA strategy.
    pub dsa_strategy: String,
    /// The evaluation protocol.
    pub eval: EvalSettings,
    /// Per method, per architecture: the evaluation networks' test accuracies.
    pub results: BTreeMap<String, BTreeMap<String, Accuracy>>,
    /// The learned step size each trajectory-matching set was evaluated with.
    pub syn_lr: BTreeMap<String, f32>,
    /// Every set's coverage.
    pub coverage: BTreeMap<String, Coverage>,
    /// The method's mean accuracy on the first architecture.
    pub test_acc_mean: Option<f64>,
    /// Its standard deviation.
    pub test_acc_std: Option<f64>,
    /// The experts the trajectory-matching methods used.
    pub experts: Option<ExpertsInfo>,
    /// Per optimising method: iterations and seconds.
    pub distilled: BTreeMap<String, Distilled>,
    /// Per trajectory-matching method on a GPU: its first step checked against the CPU.
    pub device_check: BTreeMap<String, StepCheck>,
    /// Seconds of mid-run evaluations and coverage measurements.
    pub eval_during_distill_seconds: f64,
    /// The method's distillation seconds per iteration done in this run.
    pub seconds_per_iteration: f64,
}

/// An experts run's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpertsOutcome {
    /// Where they are.
    pub experts: ExpertsInfo,
    /// Seconds training the missing ones.
    pub experts_seconds: f64,
}

/// One task of a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Its position.
    pub id: usize,
    /// Its classes.
    pub classes: Vec<usize>,
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
}

impl From<&crate::data::stream::Task> for TaskInfo {
    fn from(t: &crate::data::stream::Task) -> Self {
        TaskInfo {
            id: t.id,
            classes: t.classes.clone(),
            train: t.train.len(),
            test: t.test.len(),
        }
    }
}

/// A memory budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetInfo {
    /// Images per slot (class of a task).
    pub per_class: Option<usize>,
    /// Images in all.
    pub total: Option<usize>,
}

impl From<crate::cl::memory::Budget> for BudgetInfo {
    fn from(b: crate::cl::memory::Budget) -> Self {
        use crate::cl::memory::Budget;
        let (per_class, total) = match b {
            Budget::PerClass(n) => (Some(n), None),
            Budget::Total(n) => (None, Some(n)),
        };
        BudgetInfo { per_class, total }
    }
}

/// What one memory slot holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotInfo {
    /// The slot's task.
    pub task: usize,
    /// The slot's class.
    pub class: usize,
    /// Images held.
    pub images: usize,
}

/// One continual strategy's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyOutcome {
    /// ACC, forgetting, BWT, FWT, AIA with their conventions.
    #[serde(flatten)]
    pub metrics: ClMetrics,
    /// Images in the memory at the end.
    pub memory_images: usize,
    /// What each slot holds at the end.
    pub memory_per_slot: Vec<SlotInfo>,
    /// Seconds for the whole stream.
    pub seconds: f64,
    /// Of those, filling the memory (selection or distillation).
    pub memory_fill_seconds: f64,
    /// Row i: accuracy on every task after training on task i.
    pub accuracy_matrix: Vec<Vec<f64>>,
}

/// A continual run's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContinualOutcome {
    /// How tasks were made.
    pub stream: StreamKind,
    /// The tasks.
    pub tasks: Vec<TaskInfo>,
    /// Task-incremental heads.
    pub task_incremental: bool,
    /// Streaming or GDumb.
    pub protocol: Protocol,
    /// The memory budget.
    pub memory_budget: BudgetInfo,
    /// How the budget is shared by slots.
    pub memory_shares: String,
    /// Share of each batch replayed (streaming).
    pub replay_fraction: f64,
    /// The learner's training per task.
    pub train: TrainConfig,
    /// The untrained network's accuracy on each task (forward transfer's baseline).
    pub random_init_accuracy: Vec<f64>,
    /// Per strategy.
    pub strategies: BTreeMap<String, StrategyOutcome>,
}

/// An update the server did not accept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// The round.
    pub round: usize,
    /// The client.
    pub client: usize,
    /// `rejected`, `no_answer`, `late` or `unreachable`.
    pub outcome: String,
    /// Why.
    pub reason: String,
}

/// One federated strategy's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyRecord {
    /// Test accuracy after the last round.
    pub final_accuracy: Option<f64>,
    /// After each round.
    pub accuracy_per_round: Vec<f64>,
    /// Rounds run.
    pub rounds: usize,
    /// Bytes clients sent.
    pub bytes_up: u64,
    /// Bytes the server sent.
    pub bytes_down: u64,
    /// Both.
    pub bytes_total: u64,
    /// Updates accepted.
    pub accepted_updates: usize,
    /// Updates not accepted, and why.
    pub not_accepted: Vec<Refusal>,
    /// FedAvg stopped once it reached this accuracy (the one-shot strategy's).
    pub stopped_at_accuracy: Option<f64>,
    /// Seconds of compute the clients reported, all rounds and clients together.
    pub client_compute_seconds: f64,
    /// Seconds it took.
    pub seconds: f64,
    /// What the clients' private DM spent (`[distill] dp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::dp::ClientsSpent>,
}

/// A federated run's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FederatedOutcome {
    /// Clients.
    pub clients: usize,
    /// How the training set was spread over them.
    pub partition: Partitioning,
    /// Each client's sample count.
    pub client_sizes: Vec<usize>,
    /// How tensors travelled.
    pub quantization: String,
    /// `in_process` or `grpc`.
    pub transport: String,
    /// Per strategy.
    pub strategies: BTreeMap<String, StrategyRecord>,
}

/// One strategy's results on a federated task stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamStrategy {
    /// ACC, forgetting, BWT, FWT, AIA with their conventions.
    #[serde(flatten)]
    pub metrics: ClMetrics,
    /// Row i: the global model's accuracy on every task after task i.
    pub accuracy_matrix: Vec<Vec<f64>>,
    /// Rounds over all tasks.
    pub rounds: usize,
    /// Bytes clients sent.
    pub bytes_up: u64,
    /// Bytes the server sent.
    pub bytes_down: u64,
    /// Both.
    pub bytes_total: u64,
    /// Bytes exchanged by the end of each task.
    pub bytes_after_task: Vec<u64>,
    /// Seconds of compute the clients reported.
    pub client_compute_seconds: f64,
    /// Images in the server's memory at the end (distilled_memory; 0 otherwise).
    pub memory_images: usize,
    /// Updates not accepted, and why.
    pub not_accepted: Vec<Refusal>,
    /// Seconds it took.
    pub seconds: f64,
}

/// A federated continual run's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamOutcome {
    /// How tasks were made.
    pub stream: StreamKind,
    /// The tasks.
    pub tasks: Vec<TaskInfo>,
    /// Clients.
    pub clients: usize,
    /// How each task's training data was spread over them.
    pub partition: Partitioning,
    /// Each client's sample count per task (`client_sizes[client][task]`).
    pub client_sizes: Vec<Vec<usize>>,
    /// How the server's memory trains the global model (distilled_memory, joint).
    pub protocol: Protocol,
    /// The server's memory budget.
    pub memory_budget: BudgetInfo,
    /// Images in each client's memory (fedavg_replay).
    pub replay_memory_total: usize,
    /// How tensors travelled.
    pub quantization: String,
    /// `in_process` or `grpc`.
    pub transport: String,
    /// The initial network's accuracy on each task (forward transfer's baseline).
    pub random_init_accuracy: Vec<f64>,
    /// Per strategy.
    pub strategies: BTreeMap<String, StreamStrategy>,
}
