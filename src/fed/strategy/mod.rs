//! What a federated algorithm does, apart from how its clients are run (Flower's split): the
//! server half ([`Strategy`]: configure a round, accept and aggregate updates, evaluate) and the
//! client half ([`ClientApp`]: the local work, run wherever the client runs). One type per
//! algorithm: [`fedavg`] (also on a task stream, with or without client replay), [`oneshot`]
//! (each client distils once), [`feddm`] (FedDM: every round clients distil around the global
//! model), [`memory`] (federated continual: distilled sets kept in a server memory); the
//! weighted mean is the pure [`aggregate`].

pub mod aggregate;
pub mod build;
pub mod client;
pub mod fedavg;
pub mod feddm;
pub mod memory;
pub mod oneshot;
pub mod recording;

pub use super::message::StrategyKind;
use super::message::{Payload, Rejection, SentSet, Task, Update};
use super::protocol::{Expect, Quantization, Weights};
use crate::cl::harness::Protocol;
use crate::cl::memory::{Budget, Memory};
use crate::data::augment::Dsa;
use crate::data::Dataset;
use crate::distill::mtt::experts::ExpertSettings;
use crate::distill::registry::Env;
use crate::distill::MethodConfig;
use crate::error::Result;
use crate::model::{Model, ModelSpec};
use crate::rng::step_seed;
use crate::train::{evaluate, TrainConfig};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything the strategies need besides data (the same on server and clients): the run's
/// network, seed, rounds, encoding and data shape, then one group per part of a federation
/// (clients' local training, clients' distillation, the server's training on sets, the memories
/// of a task stream), each read only by the strategies that have that part.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The network.
    pub spec: ModelSpec,
    /// The run's seed.
    pub seed: u64,
    /// Rounds (fedavg, distilled_iterative).
    pub rounds: usize,
    /// How tensors travel.
    pub quantization: Quantization,
    /// The dataset's name (provenance, cache keys).
    pub dataset: String,
    /// Class names.
    pub classes: Vec<String>,
    /// Image shape.
    pub shape: [usize; 3],
    /// The strategy's label in files and messages.
    pub label: String,
    /// FedAvg's local training (epochs per round, batch, optimiser).
    pub local: TrainConfig,
    /// How clients make their sets (distilling strategies; fedavg_replay's memories).
    pub distil: DistilSettings,
    /// The server's training on the union of synthetic sets.
    pub server: ServerTraining,
    /// Federated continual runs: how memories work.
    pub continual: Option<ContinualSettings>,
}

/// How clients make their sets.
#[derive(Clone, Debug)]
pub struct DistilSettings {
    /// The method.
    pub method: MethodConfig,
    /// Images per class each client sends.
    pub ipc: usize,
    /// The DSA strategy the method uses.
    pub dsa: Dsa,
    /// Expert trajectories of trajectory-matching clients.
    pub experts: ExpertSettings,
    /// Where clients cache experts and difficulty scores.
    pub cache: PathBuf,
    /// FedDM's perturbation radius.
    pub rho: f32,
}

impl DistilSettings {
    /// The registry's environment for a client distilling with network `spec`.
    pub fn env<'a>(&self, spec: ModelSpec) -> Env<'a> {
        Env::new(
            spec,
            self.dsa.clone(),
            self.experts.clone(),
            self.cache.clone(),
        )
    }
}

/// The server's training on synthetic sets.
#[derive(Clone, Debug)]
pub struct ServerTraining {
    /// Epochs, batch and optimiser.
    pub train: TrainConfig,
    /// DSA while it trains, if any.
    pub dsa: Option<Dsa>,
}

/// How the memories of a federated continual run work.
#[derive(Clone, Debug)]
pub struct ContinualSettings {
    /// The server's memory of distilled sets (distilled_memory).
    pub budget: Budget,
    /// GDumb (a fresh network on the memory after each task) or streaming (the global model
    /// trains on the new sets with the memory replayed).
    pub protocol: Protocol,
    /// Share of each minibatch replayed from a memory.
    pub replay_fraction: f64,
    /// Each client's memory of its own past tasks (fedavg_replay).
    pub client_budget: Budget,
    /// The method that fills a client's memory.
    pub client_method: MethodConfig,
}

impl Settings {
    /// Zero weights of the network's shape (the template decoded weights are checked against).
    pub fn weights_template(&self) -> Weights {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        Weights {
            params: self.spec.init_host(&mut rng),
            buffers: self.spec.buffers(),
        }
    }

    /// What updates must look like.
    pub fn expect(&self) -> Expect {
        Expect {
            weights: self.weights_template(),
            shape: self.shape,
            classes: self.classes.clone(),
        }
    }

    /// The initial global model (the same for every strategy).
    pub fn initial<B: AutodiffBackend>(&self, device: &B::Device) -> Model<B::InnerBackend> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(self.seed, 0x910b));
        self.spec.init::<B::InnerBackend, _>(&mut rng, device)
    }
}

/// A client's data and what it keeps between rounds.
#[derive(Clone, Debug)]
pub struct ClientState {
    /// Its id (0-based).
    pub id: usize,
    /// Its training data (global labels): its partition, or its slice of the current task.
    pub data: Dataset,
    /// Its slice of each task of the stream (federated continual runs; empty otherwise).
    pub stream: Vec<Dataset>,
    /// The task `data` is the slice of.
    pub task: usize,
    /// Its synthetic set so far (distilled_iterative).
    pub syn: Option<Dataset>,
    /// Its memory of past tasks (fedavg_replay).
    pub memory: Option<Memory>,
}

/// What a client keeps between rounds (its checkpoint: the rest comes from its partition).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Kept {
    /// The task it is at.
    pub task: usize,
    /// Its synthetic set so far (FedDM).
    pub syn: Option<Dataset>,
    /// Its memory of past tasks (fedavg_replay).
    pub memory: Option<Memory>,
}

impl Kept {
    /// What `c` keeps.
    pub fn of(c: &ClientState) -> Self {
        Kept {
            task: c.task,
            syn: c.syn.clone(),
            memory: c.memory.clone(),
        }
    }

    /// Puts it back into `c` (its data and stream as the partition gave them).
    pub fn restore(self, c: &mut ClientState) {
        if let Some(d) = c.stream.get(self.task) {
            c.data = d.clone();
        }
        c.task = self.task;
        c.syn = self.syn;
        c.memory = self.memory;
    }
}

impl ClientState {
    /// A client holding `data`.
    pub fn new(id: usize, data: Dataset) -> Self {
        ClientState {
            id,
            data,
            stream: Vec::new(),
            task: 0,
            syn: None,
            memory: None,
        }
    }

    /// A client of a task stream, holding its slice of each task, at the first task.
    pub fn streaming(id: usize, stream: Vec<Dataset>) -> Self {
        let first = stream.first().cloned();
        let mut c = ClientState::new(id, first.unwrap_or_else(|| Dataset::empty([1, 1, 1])));
        c.stream = stream;
        c
    }

    /// Moves to task `task` of the stream (its data becomes that task's slice); returns the
    /// tasks passed on the way, with their slices, in order.
    pub fn enter(&mut self, task: usize) -> Vec<(usize, Dataset)> {
        if self.stream.is_empty() || task <= self.task {
            return Vec::new();
        }
        let passed = (self.task..task.min(self.stream.len()))
            .map(|t| (t, self.stream[t].clone()))
            .collect();
        self.task = task;
        if let Some(d) = self.stream.get(task) {
            self.data = d.clone();
        }
        passed
    }
}

/// An update the server accepted.
#[derive(Clone, Debug)]
pub enum Accepted {
    /// Model weights and the client's sample count.
    Weights(Weights, u64),
    /// A synthetic set (with its soft labels when it has them).
    Set(SentSet),
}

/// The client half of a strategy.
pub trait ClientApp<B: AutodiffBackend>: Send + Sync {
    /// Does `task`'s work on the client's data.
    fn work(&self, task: &Task, state: &mut ClientState, device: &B::Device) -> Result<Update>;
}

/// Runs `app` on `task` and returns the update with the seconds the work took (a failed work's
/// update says why in place of a payload).
pub fn answer<B: AutodiffBackend>(
    app: &dyn ClientApp<B>,
    task: &Task,
    state: &mut ClientState,
    device: &B::Device,
) -> Update {
    let t0 = std::time::Instant::now();
    let mut update = app.work(task, state, device).unwrap_or_else(|e| Update {
        client: state.id,
        round: task.round,
        num_samples: 0,
        compute_seconds: 0.0,
        payload: Payload::Failed(e.to_string()),
    });
    update.compute_seconds = t0.elapsed().as_secs_f64();
    update
}

/// The server half of a strategy.
pub trait Strategy<B: AutodiffBackend>: Send {
    /// Its kind.
    fn kind(&self) -> StrategyKind;
    /// Rounds it runs (per task of a stream).
    fn rounds(&self) -> usize;
    /// A new task of the stream begins (federated continual runs).
    fn begin_task(&mut self, _task: usize) {}
    /// The task every client selected for `round` receives (`seq` filled in by the engine).
    fn configure_round(&mut self, round: usize) -> Task;
    /// Checks a decoded update for this strategy (nothing of the server's state changes).
    fn accept(&self, update: Update) -> std::result::Result<Accepted, Rejection>;
    /// Folds a round's accepted updates into the global state.
    fn aggregate(&mut self, round: usize, updates: Vec<Accepted>, device: &B::Device)
        -> Result<()>;
    /// The global model.
    fn global(&mut self) -> &mut Model<B::InnerBackend>;
    /// Images the server keeps in a memory (distilled_memory; 0 otherwise).
    fn memory_images(&self) -> usize {
        0
    }
    /// The server's memory of sets (distilled_memory), which a checkpoint keeps.
    fn memory(&self) -> Option<&Memory> {
        None
    }
    /// Puts back the memory of a checkpoint.
    fn set_memory(&mut self, _memory: Memory) {}
    /// The client half, to run on the clients.
    fn client(&self) -> Arc<dyn ClientApp<B>>;

    /// Test accuracy of the global model.
    fn evaluate(&mut self, test: &Dataset, device: &B::Device) -> f64 {
        evaluate(self.global(), test, 500, device).0
    }
}

/// A set from an update, or why it cannot be one (the distilled strategies).
pub fn accept_set(update: Update, kind: StrategyKind) -> std::result::Result<Accepted, Rejection> {
    match update.payload {
        Payload::Set(d) => Ok(Accepted::Set(d)),
        Payload::Failed(e) => Err(Rejection::ClientFailed(e)),
        Payload::Weights(_) => Err(Rejection::WrongPayload {
            strategy: kind.name().into(),
        }),
    }
}
