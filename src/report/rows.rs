//! The rows of every CSV file a run writes, one struct per file; the fields are the columns.
//! Empty cells are `None`; figures carry their number of decimals in their type.

use crate::files::{Fixed, Plain};
use serde::{Deserialize, Serialize};

/// `metrics.csv` of a train run: one row per evaluation of each network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainRow {
    /// Which network (0-based).
    pub repeat: usize,
    /// Epochs done.
    pub epoch: usize,
    /// The learning rate of the last epoch.
    pub lr: Plain,
    /// Mean training loss of the last epoch.
    pub train_loss: Fixed<6>,
    /// Test loss.
    pub test_loss: Fixed<6>,
    /// Test accuracy.
    pub test_acc: Fixed<6>,
    /// Seconds since the run started.
    pub elapsed_s: Fixed<3>,
}

/// `metrics.csv` of a distill run: `experts` (one per expert trained), `window` (SelMatch's
/// candidate windows), `distill` (the loss every `log_every` iterations) and `eval` (one per
/// trained evaluation network) rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DistillRow {
    /// `experts`, `window`, `distill` or `eval`.
    pub phase: String,
    /// The method.
    pub method: String,
    /// The evaluation architecture (eval and window rows).
    pub model: String,
    /// The iteration (eval: of the set evaluated; experts: the expert; window: the beta).
    pub iteration: String,
    /// Which network (eval and window rows).
    pub repeat: Option<usize>,
    /// The matching loss (distill rows).
    pub loss: Option<Fixed<6>>,
    /// Test accuracy (eval and window rows).
    pub test_acc: Option<Fixed<6>>,
    /// Seconds since the run started.
    pub elapsed_s: Fixed<3>,
}

/// `coverage.csv`: a set's coverage at an iteration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoverageRow {
    /// The method.
    pub method: String,
    /// Iterations the set had.
    pub iteration: usize,
    /// Share of all test samples covered.
    pub overall: Fixed<6>,
    /// Share of the easier half covered.
    pub easy: Fixed<6>,
    /// Share of the harder half covered.
    pub hard: Fixed<6>,
    /// The radius.
    pub radius: Fixed<6>,
}

/// `windows.csv`: one network trained on one of SelMatch's candidate windows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    /// The window start.
    pub beta: Plain,
    /// Which network.
    pub repeat: usize,
    /// Its test accuracy.
    pub test_acc: Fixed<6>,
}

/// `metrics.csv` of a continual run: one row per (strategy, task trained, task tested).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContinualRow {
    /// The strategy.
    pub strategy: String,
    /// The task just trained on.
    pub after_task: usize,
    /// The task tested.
    pub task: usize,
    /// Its test accuracy.
    pub test_acc: Fixed<6>,
    /// Images in the memory.
    pub memory_images: usize,
    /// The learner's last training loss.
    pub train_loss: Fixed<6>,
    /// Seconds since the run started.
    pub elapsed_s: Fixed<3>,
}

/// `memory.csv`: what each slot of the memory holds after each task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryRow {
    /// The strategy.
    pub strategy: String,
    /// The task just trained on.
    pub after_task: usize,
    /// The slot's task.
    pub task: usize,
    /// The slot's class.
    pub class: usize,
    /// Images it holds.
    pub images: usize,
}

/// `comm.csv`: one message's encoded length.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommRow {
    /// The strategy.
    pub strategy: String,
    /// The task of the stream (federated continual runs; 0 otherwise).
    pub task: usize,
    /// The round (within the task).
    pub round: usize,
    /// The client.
    pub client: usize,
    /// `down` (server to client) or `up`.
    pub direction: String,
    /// Bytes of the encoded message.
    pub bytes: usize,
}

/// `clients.csv`: what one selected client did in one round, what it cost to send and to make.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientRow {
    /// The strategy.
    pub strategy: String,
    /// The task of the stream (federated continual runs; 0 otherwise).
    pub task: usize,
    /// The round (within the task).
    pub round: usize,
    /// The client.
    pub client: usize,
    /// `accepted`, `rejected`, `no_answer`, `late` or `unreachable`.
    pub outcome: String,
    /// Why, when not accepted.
    pub reason: String,
    /// Bytes of the task it was sent.
    pub bytes_down: usize,
    /// Bytes of its answer (0 when none came).
    pub bytes_up: usize,
    /// Seconds its work took on the client (experts, distillation, training), as it reports.
    pub compute_seconds: Fixed<3>,
}

/// `metrics.csv` of a federated run: one row per strategy and round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    /// The strategy.
    pub strategy: String,
    /// The task of the stream (federated continual runs; 0 otherwise).
    pub task: usize,
    /// The round (within the task).
    pub round: usize,
    /// The global model's test accuracy after it.
    pub test_acc: Fixed<6>,
    /// Bytes clients sent this round.
    pub bytes_up: u64,
    /// Bytes the server sent this round.
    pub bytes_down: u64,
    /// Bytes up and down so far.
    pub cumulative_bytes: u64,
    /// Clients selected.
    pub selected: usize,
    /// Updates accepted.
    pub accepted: usize,
    /// Seconds since the strategy started.
    pub elapsed_s: Fixed<3>,
}

/// `metrics.csv` of a federated continual run: the global model on every task after each task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamRow {
    /// The strategy.
    pub strategy: String,
    /// The task just learnt.
    pub after_task: usize,
    /// The task tested.
    pub task: usize,
    /// Its test accuracy.
    pub test_acc: Fixed<6>,
    /// Bytes the strategy has exchanged so far.
    pub cumulative_bytes: u64,
    /// Seconds since the run started.
    pub elapsed_s: Fixed<3>,
}
