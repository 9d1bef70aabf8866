//! A federated run's checkpoint, written after every round: the strategies finished (what the
//! job made of each), the round counter, and the strategy in progress (its task and next round,
//! every round so far, the bytes so far, the global model, the server's memory, what each
//! in-process client keeps, each client's last audited set), and the privacy audit so far.
//! Every random draw comes from (seed, round), so the round is the RNG position.

use crate::cl::memory::Memory;
use crate::data::Dataset;
use crate::experiment::audit::federated::AuditKept;
use crate::fed::engine::{ClientRecord, Round};
use crate::fed::message::{ClientOutcome, Rejection};
use crate::fed::strategy::Kept;
pub use crate::model::Weights;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A run's checkpoint.
#[derive(Clone, Serialize, Deserialize)]
pub struct FedState {
    /// What the job made of each finished strategy, in order (its own record type).
    pub done: Vec<serde_json::Value>,
    /// Rounds counted over all strategies so far.
    pub seq: u32,
    /// The strategy in progress.
    pub ongoing: Option<Ongoing>,
    /// The privacy audit of the strategies finished (None when the run is not audited).
    #[serde(default)]
    pub audit: Option<AuditKept>,
}

/// The strategy in progress.
#[derive(Clone, Serialize, Deserialize)]
pub struct Ongoing {
    /// Its index among the scenario's strategies.
    pub strategy: usize,
    /// The task of the stream it is in.
    pub task: usize,
    /// The next round of that task.
    pub next_round: usize,
    /// Every round so far (all tasks).
    pub rounds: Vec<RoundRec>,
    /// Bytes exchanged so far.
    pub total: u64,
    /// Accuracy on every task after each task done (task streams).
    pub rows: Vec<Vec<f64>>,
    /// Bytes exchanged by the end of each task done (task streams).
    pub bytes_after: Vec<u64>,
    /// The global model.
    pub global: Weights,
    /// The server's memory (distilled_memory).
    pub memory: Option<Memory>,
    /// What each client keeps (in-process clients; empty otherwise).
    pub clients: Vec<Option<Kept>>,
    /// The training stream of a strategy trained centrally (joint), where it is.
    pub rng: Option<rand_chacha::ChaCha12Rng>,
    /// Each client's last accepted set so far (client -> (round, set)), when they are audited.
    #[serde(default)]
    pub sent: BTreeMap<usize, (usize, Dataset)>,
}

/// One selected client in one round, as a checkpoint keeps it.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClientRec {
    client: usize,
    down: usize,
    up: Option<usize>,
    outcome: String,
    reason: String,
    compute_seconds: f64,
}

/// One round, as a checkpoint keeps it.
#[derive(Clone, Serialize, Deserialize)]
pub struct RoundRec {
    round: usize,
    clients: Vec<ClientRec>,
    accuracy: f64,
    accepted: usize,
    aggregated: bool,
    elapsed: f64,
}

impl From<&Round> for RoundRec {
    fn from(r: &Round) -> Self {
        RoundRec {
            round: r.round,
            clients: r
                .clients
                .iter()
                .map(|c| ClientRec {
                    client: c.client,
                    down: c.down,
                    up: c.up,
                    outcome: c.outcome.name().into(),
                    reason: c.outcome.reason(),
                    compute_seconds: c.compute_seconds,
                })
                .collect(),
            accuracy: r.accuracy,
            accepted: r.accepted,
            aggregated: r.aggregated,
            elapsed: r.elapsed,
        }
    }
}

impl RoundRec {
    /// The round (a refusal's reason kept as its words).
    pub fn round(&self) -> Result<Round, String> {
        let clients = self
            .clients
            .iter()
            .map(|c| {
                let outcome = match c.outcome.as_str() {
                    "accepted" => ClientOutcome::Accepted,
                    "rejected" => ClientOutcome::Rejected(Rejection::Invalid(c.reason.clone())),
                    "no_answer" => ClientOutcome::NoAnswer,
                    "late" => ClientOutcome::Late,
                    "unreachable" => ClientOutcome::Unreachable,
                    other => return Err(format!("a client outcome {other:?}")),
                };
                Ok(ClientRecord {
                    client: c.client,
                    down: c.down,
                    up: c.up,
                    outcome,
                    compute_seconds: c.compute_seconds,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Round {
            round: self.round,
            clients,
            accuracy: self.accuracy,
            accepted: self.accepted,
            aggregated: self.aggregated,
            elapsed: self.elapsed,
        })
    }
}
