//! A federated run's checkpoint, written after every round: the strategies finished (each as
//! its run kind keeps it), the round counter, the strategy in progress (its task and next round,
//! its rounds so far, the global model and what its family keeps), and the privacy audit so far.
//! Every random draw comes from (seed, round), so the round is the RNG position.

use crate::cl::memory::Memory;
use crate::data::Dataset;
use crate::experiment::audit::federated::AuditKept;
use crate::fed::engine::Round;
use crate::fed::strategy::Kept;
use crate::model::Weights;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A run's checkpoint; `D` is what the run kind keeps of a finished strategy.
#[derive(Clone, Serialize, Deserialize)]
pub struct FedState<D> {
    /// The finished strategies, in order.
    pub done: Vec<D>,
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
    /// Its rounds, bytes and (task streams) accuracy rows so far.
    pub past: Past,
    /// The global model.
    pub global: Weights,
    /// What its family keeps besides.
    pub progress: Progress,
}

/// What a strategy in progress keeps besides its rounds and global model, by family.
#[derive(Clone, Serialize, Deserialize)]
pub enum Progress {
    /// A strategy over the federation.
    Federated {
        /// The server's memory (distilled_memory).
        memory: Option<Memory>,
        /// What each client keeps (in-process clients; empty otherwise).
        clients: Vec<Option<Kept>>,
        /// Each client's last accepted set so far (client -> (round, set)), when audited.
        sent: BTreeMap<usize, (usize, Dataset)>,
    },
    /// A strategy trained centrally (joint): where its training stream is.
    Central {
        /// The stream of its minibatch draws.
        rng: rand_chacha::ChaCha12Rng,
    },
}

/// What a strategy's rounds have come to so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Past {
    /// Every round (all tasks).
    pub rounds: Vec<Round>,
    /// Bytes exchanged.
    pub total: u64,
    /// Accuracy on every task after each task done (task streams).
    pub rows: Vec<Vec<f64>>,
    /// Bytes exchanged by the end of each task done (task streams).
    pub bytes_after: Vec<u64>,
}
