//! A federated run's checkpoint, written after every round: the strategies finished (each as
//! its run kind keeps it), the round counter, the strategy in progress (its task and next round,
//! its rounds so far, the global model and what its family keeps), and the privacy audit so far.
//! Every random draw comes from (seed, round), so the round is the RNG position.

use crate::cl::memory::Memory;
use crate::data::Dataset;
use crate::error::Result;
use crate::experiment::audit::federated::AuditKept;
use crate::experiment::RunContext;
use crate::fed::engine::Round;
use crate::fed::strategy::recording::Sent;
use crate::fed::strategy::Kept;
use crate::model::Weights;
use crate::scenario::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a federated run stands, as its checkpoints record it; `D` is what the run kind keeps of
/// a finished strategy.
pub struct Journal<D> {
    /// The run kind its checkpoints are of.
    pub kind: Kind,
    /// The finished strategies, in order.
    pub done: Vec<D>,
    /// Rounds counted over all strategies (each task carries it).
    pub seq: u32,
    /// The index of the strategy in progress among the scenario's.
    pub current: usize,
    /// The checkpoint's strategy in progress, until it is started again.
    pub resumed: Option<Ongoing>,
    /// The privacy audit of the strategies finished.
    pub audit: Option<AuditKept>,
    /// The sets the strategy in progress has accepted, when they are audited.
    pub sent: Option<Sent>,
}

impl<D: Clone + Serialize> Journal<D> {
    /// The journal of a run of kind `kind`, continuing checkpoint `resumed` when there is one.
    pub fn new(kind: Kind, resumed: Option<FedState<D>>) -> Self {
        let st = resumed.unwrap_or(FedState {
            done: Vec::new(),
            seq: 0,
            ongoing: None,
            audit: None,
        });
        Journal {
            kind,
            done: st.done,
            seq: st.seq,
            current: 0,
            resumed: st.ongoing,
            audit: st.audit,
            sent: None,
        }
    }

    /// Writes the run's checkpoint with `ongoing` the strategy in progress (and stops the run
    /// there when Ctrl-C asked for it).
    pub fn save(&self, ctx: &RunContext<'_>, ongoing: Option<Ongoing>) -> Result<()> {
        let state = FedState {
            done: self.done.clone(),
            seq: self.seq,
            ongoing,
            audit: self.audit.clone(),
        };
        ctx.checkpoint(self.kind, &state)
    }
}

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
