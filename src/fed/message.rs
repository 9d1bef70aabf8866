//! The messages of a federated round as the strategies see them, typed: the task the server
//! sends, the update a client answers with, and why the server may refuse one. How they travel
//! (protobuf, quantised tensors) is [`super::protocol`]'s business.

use crate::data::Dataset;
pub use crate::model::Weights;
use serde::{Deserialize, Serialize};

/// The strategies, by name: three federated ones, four federated continual ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Weights every round, averaged by sample count (McMahan et al.).
    Fedavg,
    /// Each client distils its data once; the server trains on the union.
    DistilledOneshot,
    /// FedDM: every round clients distil around the global model; the server trains on the union.
    DistilledIterative,
    /// Federated continual: FedAvg rounds on the current task only (the lower bound).
    FedavgFinetune,
    /// Federated continual: FedAvg where each client also replays a memory of its past tasks.
    FedavgReplay,
    /// Federated continual: after each task every client distils its slice once; the server
    /// keeps a memory of the sets and trains the global model on it.
    DistilledMemory,
    /// Federated continual: centralised training on all data so far (the upper bound).
    Joint,
}

impl StrategyKind {
    /// Every strategy.
    pub const ALL: [StrategyKind; 7] = [
        StrategyKind::Fedavg,
        StrategyKind::DistilledOneshot,
        StrategyKind::DistilledIterative,
        StrategyKind::FedavgFinetune,
        StrategyKind::FedavgReplay,
        StrategyKind::DistilledMemory,
        StrategyKind::Joint,
    ];

    /// The name used in scenarios, files and messages.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Fedavg => "fedavg",
            StrategyKind::DistilledOneshot => "distilled_oneshot",
            StrategyKind::DistilledIterative => "distilled_iterative",
            StrategyKind::FedavgFinetune => "fedavg_finetune",
            StrategyKind::FedavgReplay => "fedavg_replay",
            StrategyKind::DistilledMemory => "distilled_memory",
            StrategyKind::Joint => "joint",
        }
    }

    /// The strategy called `name`.
    pub fn from_name(name: &str) -> Option<StrategyKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// True for the strategies of a federated continual run (a task stream).
    pub fn is_continual(self) -> bool {
        matches!(
            self,
            StrategyKind::FedavgFinetune
                | StrategyKind::FedavgReplay
                | StrategyKind::DistilledMemory
                | StrategyKind::Joint
        )
    }

    /// True for the strategies whose clients make synthetic sets with `[distill]`'s method.
    pub fn distils(self) -> bool {
        matches!(
            self,
            StrategyKind::DistilledOneshot
                | StrategyKind::DistilledIterative
                | StrategyKind::DistilledMemory
        )
    }
}

/// What every client selected for a round receives.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// The round (0-based, per strategy and task of the stream).
    pub round: usize,
    /// Rounds counted over all strategies of the run, so a client can tell tasks apart.
    pub seq: u32,
    /// The label of the strategy whose round it is (its name, or `name-method` when the scenario
    /// gives it a method of its own).
    pub strategy: String,
    /// The task of the stream (federated continual runs; 0 otherwise).
    pub task: usize,
    /// The global model, when the strategy sends it.
    pub global: Option<Weights>,
}

/// A synthetic set as it travels: images and hard labels (global), and soft labels
/// (`len x classes`, row-major) when the client's method made them.
#[derive(Clone, Debug, PartialEq)]
pub struct SentSet {
    /// Images and hard labels.
    pub data: Dataset,
    /// The soft labels, when there are any.
    pub soft_labels: Option<Vec<f32>>,
}

impl SentSet {
    /// A set with hard labels only.
    pub fn hard(data: Dataset) -> Self {
        SentSet {
            data,
            soft_labels: None,
        }
    }
}

/// What a client sends back.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// Its locally trained weights.
    Weights(Weights),
    /// Its synthetic set (labels global).
    Set(SentSet),
    /// Why its work failed.
    Failed(String),
}

/// A client's answer to a task.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The client's id.
    pub client: usize,
    /// The round it answers.
    pub round: usize,
    /// Its training samples (FedAvg's weight).
    pub num_samples: u64,
    /// Seconds of compute the work took on the client (as the client reports it).
    pub compute_seconds: f64,
    /// What it sends.
    pub payload: Payload,
}

/// Why the server did not accept an update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Rejection {
    /// The message is larger than `max_message_bytes`.
    Oversize {
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a protobuf update.
    Undecodable(String),
    /// The update says it is from another client or round.
    Mislabelled {
        /// The client it names.
        client: u32,
        /// The round it names.
        round: u32,
    },
    /// The client reports that its work failed.
    ClientFailed(String),
    /// No payload at all.
    NoPayload,
    /// A payload the strategy does not take.
    WrongPayload {
        /// The strategy.
        strategy: String,
    },
    /// Weights from a client that says it has no samples.
    NoSamples,
    /// The payload does not fit the run (shape, counts, labels, non-finite values).
    Invalid(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Oversize { bytes, limit } => {
                write!(
                    f,
                    "oversize: {bytes} bytes, above max_message_bytes = {limit}"
                )
            }
            Rejection::Undecodable(e) => write!(f, "undecodable update: {e}"),
            Rejection::Mislabelled { client, round } => {
                write!(f, "update labelled client {client} round {round}")
            }
            Rejection::ClientFailed(e) => write!(f, "client error: {e}"),
            Rejection::NoPayload => write!(f, "an update without payload"),
            Rejection::WrongPayload { strategy } => {
                write!(f, "the wrong kind of payload for {strategy}")
            }
            Rejection::NoSamples => write!(f, "weights from a client with no samples"),
            Rejection::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// What became of one selected client in one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientOutcome {
    /// Its update was accepted.
    Accepted,
    /// It answered, and the server refused the answer.
    Rejected(Rejection),
    /// It did not answer (dropped out, or its connection ended).
    NoAnswer,
    /// It answered after the deadline (or not before it).
    Late,
    /// The task could not be delivered (the client is gone).
    Unreachable,
}

impl ClientOutcome {
    /// `accepted`, `rejected`, `no_answer`, `late` or `unreachable`.
    pub fn name(&self) -> &'static str {
        match self {
            ClientOutcome::Accepted => "accepted",
            ClientOutcome::Rejected(_) => "rejected",
            ClientOutcome::NoAnswer => "no_answer",
            ClientOutcome::Late => "late",
            ClientOutcome::Unreachable => "unreachable",
        }
    }

    /// Why, for all but an accepted update.
    pub fn reason(&self) -> String {
        match self {
            ClientOutcome::Accepted | ClientOutcome::NoAnswer => String::new(),
            ClientOutcome::Rejected(r) => r.to_string(),
            ClientOutcome::Late => "missed the round deadline".into(),
            ClientOutcome::Unreachable => "the client is gone".into(),
        }
    }
}
