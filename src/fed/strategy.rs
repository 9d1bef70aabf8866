//! What a federated algorithm does, apart from how its clients are run (Flower's split): the
//! server half ([`Strategy`]: configure a round, accept and aggregate updates, evaluate) and the
//! client half ([`ClientApp`]: the local work, run wherever the client runs). Three strategies:
//! `fedavg`, `distilled_oneshot` and `distilled_iterative` (FedDM-style).

use super::pb;
use super::wire::{
    decode_set, decode_weights, encode_set, encode_weights, HostWeights, Quantization,
};
use crate::data::augment::Dsa;
use crate::data::Dataset;
use crate::distill::dm::Around;
use crate::distill::{
    Checkpoint, Ctx, Distiller, Dm, DmConfig, Flow, InitKind, Provenance, Selection, SyntheticSet,
};
use crate::error::{Error, Result};
use crate::model::{Model, ModelSpec};
use crate::rng::step_seed;
use crate::train::{evaluate, train, TrainConfig};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The strategies, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Weights every round, averaged by sample count (McMahan et al.).
    Fedavg,
    /// Each client distils its data once; the server trains on the union.
    DistilledOneshot,
    /// FedDM: every round clients distil around the global model; the server trains on the union.
    DistilledIterative,
}

impl StrategyKind {
    /// The name used in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Fedavg => "fedavg",
            StrategyKind::DistilledOneshot => "distilled_oneshot",
            StrategyKind::DistilledIterative => "distilled_iterative",
        }
    }
}

/// How a client makes its synthetic set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientDistiller {
    /// Distribution matching.
    Dm,
    /// Random real images.
    Random,
    /// Herding-selected real images.
    Herding,
    /// K-center-selected real images.
    Kcenter,
}

/// Everything the strategies need besides data (the same on server and clients).
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
    /// FedAvg's local training (epochs per round, batch, optimiser).
    pub local: TrainConfig,
    /// The server's training on the union of synthetic sets.
    pub server: TrainConfig,
    /// DSA for the server's training on synthetic sets (and DM).
    pub dsa: Option<Dsa>,
    /// Images per class each client sends.
    pub ipc: usize,
    /// How clients make their sets.
    pub distiller: ClientDistiller,
    /// DM settings (iterations per round for distilled_iterative).
    pub dm: DmConfig,
    /// FedDM's perturbation radius.
    pub rho: f32,
    /// Herding / k-center: embedding-net training epochs.
    pub embed_epochs: usize,
    /// The dataset's name and class names (provenance, label range).
    pub dataset: String,
    /// Class names.
    pub classes: Vec<String>,
    /// Image shape.
    pub shape: [usize; 3],
}

impl Settings {
    /// Zero weights of the network's shape (the template decoded weights are checked against).
    pub fn weights_template(&self) -> HostWeights {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        HostWeights {
            params: self.spec.init_host(&mut rng),
            buffers: self.spec.buffers(),
        }
    }
}

/// A client's data and what it keeps between rounds.
#[derive(Clone, Debug)]
pub struct ClientState {
    /// Its id (0-based).
    pub id: usize,
    /// Its training partition (global labels).
    pub data: Dataset,
    /// Its synthetic set so far (distilled_iterative).
    pub syn: Option<Dataset>,
}

/// An update the server accepted, decoded.
#[derive(Clone, Debug)]
pub enum Accepted {
    /// Model weights and the client's sample count.
    Weights(HostWeights, u64),
    /// A synthetic set.
    Set(Dataset),
}

/// The client half of a strategy.
pub trait ClientApp<B: AutodiffBackend>: Send + Sync {
    /// Does round `task`'s work on the client's data.
    fn work(
        &self,
        task: &pb::RoundTask,
        state: &mut ClientState,
        device: &B::Device,
    ) -> Result<pb::ClientUpdate>;
}

/// The server half of a strategy.
pub trait Strategy<B: AutodiffBackend>: Send {
    /// Its name.
    fn name(&self) -> &'static str;
    /// Rounds it runs.
    fn rounds(&self) -> usize;
    /// The message every client selected for `round` receives.
    fn configure_round(&mut self, round: usize) -> pb::RoundTask;
    /// Decodes and checks a client's update (nothing of the server's state changes).
    fn accept(&self, update: &pb::ClientUpdate) -> std::result::Result<Accepted, String>;
    /// Folds a round's accepted updates into the global state.
    fn aggregate(&mut self, round: usize, updates: Vec<Accepted>, device: &B::Device)
        -> Result<()>;
    /// Test accuracy of the global model.
    fn evaluate(&mut self, test: &Dataset, device: &B::Device) -> f64;
    /// The client half, to run on the clients.
    fn client(&self) -> Arc<dyn ClientApp<B>>;
}

/// Builds the strategy `kind` with its initial global model.
pub fn build<B: AutodiffBackend>(
    kind: StrategyKind,
    s: Arc<Settings>,
    device: &B::Device,
) -> Box<dyn Strategy<B>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(s.seed, 0x910b));
    let global = s.spec.init::<B::InnerBackend, _>(&mut rng, device);
    Box::new(Server {
        kind,
        s,
        global,
        union: None,
    })
}

/// The client half of strategy `kind` (what a `distillery client` process runs).
pub fn client_app<B: AutodiffBackend>(
    kind: StrategyKind,
    s: Arc<Settings>,
) -> Arc<dyn ClientApp<B>> {
    Arc::new(Client { kind, s })
}

struct Server<B: AutodiffBackend> {
    kind: StrategyKind,
    s: Arc<Settings>,
    global: Model<B::InnerBackend>,
    /// The union of the sets received in the last aggregation (distilled strategies).
    union: Option<Dataset>,
}

fn host_weights<B: burn::prelude::Backend>(m: &Model<B>) -> HostWeights {
    let (params, buffers) = m.to_host();
    HostWeights { params, buffers }
}

impl<B: AutodiffBackend> Strategy<B> for Server<B> {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn rounds(&self) -> usize {
        match self.kind {
            StrategyKind::DistilledOneshot => 1,
            _ => self.s.rounds,
        }
    }

    fn configure_round(&mut self, round: usize) -> pb::RoundTask {
        let global = match self.kind {
            StrategyKind::DistilledOneshot => None,
            _ => Some(encode_weights(
                &host_weights(&self.global),
                self.s.quantization,
            )),
        };
        pb::RoundTask {
            round: round as u32,
            strategy: self.kind.name().into(),
            global,
            done: false,
            seq: 0,
        }
    }

    fn accept(&self, u: &pb::ClientUpdate) -> std::result::Result<Accepted, String> {
        match (&u.payload, self.kind) {
            (Some(pb::client_update::Payload::Error(e)), _) => Err(format!("client error: {e}")),
            (Some(pb::client_update::Payload::Weights(w)), StrategyKind::Fedavg) => {
                if u.num_samples == 0 {
                    return Err("weights from a client with no samples".into());
                }
                decode_weights(w, &self.s.weights_template())
                    .map(|h| Accepted::Weights(h, u.num_samples))
            }
            (Some(pb::client_update::Payload::Synthetic(set)), k) if k != StrategyKind::Fedavg => {
                decode_set(set, self.s.shape, &self.s.classes).map(Accepted::Set)
            }
            (None, _) => Err("an update without payload".into()),
            (Some(_), k) => Err(format!("the wrong kind of payload for {}", k.name())),
        }
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: Vec<Accepted>,
        device: &B::Device,
    ) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        match self.kind {
            StrategyKind::Fedavg => {
                let total: f64 = updates
                    .iter()
                    .map(|u| match u {
                        Accepted::Weights(_, n) => *n as f64,
                        Accepted::Set(_) => 0.0,
                    })
                    .sum();
                let mut acc = self.s.weights_template();
                for v in acc.params.iter_mut().chain(acc.buffers.iter_mut()) {
                    v.iter_mut().for_each(|x| *x = 0.0);
                }
                for u in &updates {
                    if let Accepted::Weights(w, n) = u {
                        let f = (*n as f64 / total) as f32;
                        for (a, b) in acc
                            .params
                            .iter_mut()
                            .chain(acc.buffers.iter_mut())
                            .zip(w.params.iter().chain(&w.buffers))
                        {
                            a.iter_mut().zip(b).for_each(|(x, y)| *x += f * y);
                        }
                    }
                }
                self.global =
                    Model::from_host(self.s.spec.clone(), &acc.params, &acc.buffers, device);
            }
            _ => {
                let mut union: Option<Dataset> = None;
                for u in updates {
                    if let Accepted::Set(d) = u {
                        match &mut union {
                            Some(all) => {
                                all.images.extend_from_slice(&d.images);
                                all.labels.extend_from_slice(&d.labels);
                            }
                            None => union = Some(d),
                        }
                    }
                }
                let Some(union) = union else { return Ok(()) };
                let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(
                    self.s.seed ^ 0x5e7e,
                    round as u64,
                ));
                if self.kind == StrategyKind::DistilledOneshot {
                    self.global = self.s.spec.init::<B::InnerBackend, _>(&mut rng, device);
                }
                train::<B, _>(
                    &mut self.global,
                    &union,
                    &self.s.server,
                    self.s.dsa.as_ref(),
                    &mut rng,
                    device,
                    || {},
                    |_, _, _| Ok(()),
                )?;
                self.union = Some(union);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, test: &Dataset, device: &B::Device) -> f64 {
        evaluate(&mut self.global, test, 500, device).0
    }

    fn client(&self) -> Arc<dyn ClientApp<B>> {
        client_app::<B>(self.kind, self.s.clone())
    }
}

struct Client {
    kind: StrategyKind,
    s: Arc<Settings>,
}

/// The images of the classes with at least `ipc` samples ("rich"), relabelled 0..k, their global
/// labels, and the real images of the classes with fewer ("poor"), which are sent as they are.
fn rich_and_poor(data: &Dataset, ipc: usize) -> (Dataset, Vec<usize>, Dataset) {
    let by = data.class_indices();
    let rich: Vec<usize> = (0..by.len()).filter(|&c| by[c].len() >= ipc).collect();
    let poor_idx: Vec<usize> = by
        .iter()
        .filter(|v| !v.is_empty() && v.len() < ipc)
        .flatten()
        .copied()
        .collect();
    (
        crate::data::localise(data, &rich),
        rich,
        data.subset(&poor_idx),
    )
}

impl Client {
    fn distil<B: AutodiffBackend>(
        &self,
        round: usize,
        state: &mut ClientState,
        around: Option<Around>,
        device: &B::Device,
    ) -> Result<Dataset> {
        let s = &self.s;
        let (local, rich, poor) = rich_and_poor(&state.data, s.ipc);
        let seed = step_seed(s.seed, (state.id as u64) << 20 | round as u64);
        let mut set = if rich.is_empty() {
            None
        } else {
            // FedDM embeds with the global model (all classes' logits); fresh nets need only
            // the local classes.
            let spec = if around.is_some() {
                s.spec.clone()
            } else {
                s.spec.with_classes(rich.len())
            };
            let resume = match (&state.syn, &around) {
                (Some(prev), Some(_)) => {
                    // Continue from the set sent last round (its rich classes, in order).
                    let prev_local = crate::data::localise(prev, &rich);
                    (prev_local.len() == rich.len() * s.ipc).then(|| Checkpoint {
                        momentum: vec![0.0; prev_local.images.len()],
                        set: SyntheticSet::from_dataset(
                            &prev_local,
                            Provenance {
                                method: "dm".into(),
                                ipc: s.ipc,
                                dataset: s.dataset.clone(),
                                seed,
                                iterations: 0,
                                classes: prev_local.classes.clone(),
                                normalization: None,
                            },
                        ),
                        lr_momentum: 0.0,
                    })
                }
                _ => None,
            };
            let mut noop = |_: usize, _: f64, _: &dyn Fn() -> Checkpoint| Ok(Flow::Continue);
            let mut ctx = Ctx::<B> {
                device: device.clone(),
                seed,
                dataset: s.dataset.clone(),
                normalization: None,
                on_iteration: &mut noop,
                resume,
            };
            let out = match s.distiller {
                ClientDistiller::Dm => Dm {
                    cfg: DmConfig {
                        spec: spec.clone(),
                        around: around.clone(),
                        ..s.dm.clone()
                    },
                }
                .distill(&local, s.ipc, &mut ctx)?,
                sel => Selection {
                    kind: match sel {
                        ClientDistiller::Herding => InitKind::Herding,
                        ClientDistiller::Kcenter => InitKind::Kcenter,
                        _ => InitKind::Real,
                    },
                    spec,
                    embed_epochs: s.embed_epochs,
                    pool: s.dm.pool,
                }
                .distill(&local, s.ipc, &mut ctx)?,
            };
            Some(crate::data::globalise(&out.to_dataset(), &rich, &s.classes))
        };
        let out = match set.take() {
            Some(mut d) => {
                d.images.extend_from_slice(&poor.images);
                d.labels.extend_from_slice(&poor.labels);
                d
            }
            None => poor,
        };
        state.syn = Some(out.clone());
        Ok(out)
    }
}

impl<B: AutodiffBackend> ClientApp<B> for Client {
    fn work(
        &self,
        task: &pb::RoundTask,
        state: &mut ClientState,
        device: &B::Device,
    ) -> Result<pb::ClientUpdate> {
        let s = &self.s;
        let round = task.round as usize;
        let global = || -> Result<HostWeights> {
            let w = task
                .global
                .as_ref()
                .ok_or_else(|| Error::Other("the round task carries no global model".into()))?;
            decode_weights(w, &s.weights_template()).map_err(Error::Other)
        };
        let payload = match self.kind {
            StrategyKind::Fedavg => {
                let w = global()?;
                let mut model = Model::<B::InnerBackend>::from_host(
                    s.spec.clone(),
                    &w.params,
                    &w.buffers,
                    device,
                );
                let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(
                    s.seed,
                    (state.id as u64) << 20 | round as u64,
                ));
                train::<B, _>(
                    &mut model,
                    &state.data,
                    &s.local,
                    None,
                    &mut rng,
                    device,
                    || {},
                    |_, _, _| Ok(()),
                )?;
                pb::client_update::Payload::Weights(encode_weights(
                    &host_weights(&model),
                    s.quantization,
                ))
            }
            StrategyKind::DistilledOneshot => {
                let d = self.distil::<B>(round, state, None, device)?;
                pb::client_update::Payload::Synthetic(encode_set(&d, None, s.quantization))
            }
            StrategyKind::DistilledIterative => {
                let w = global()?;
                let around = Around {
                    params: w.params,
                    rho: s.rho,
                };
                let d = self.distil::<B>(round, state, Some(around), device)?;
                pb::client_update::Payload::Synthetic(encode_set(&d, None, s.quantization))
            }
        };
        Ok(pb::ClientUpdate {
            client_id: state.id as u32,
            round: task.round,
            num_samples: state.data.len() as u64,
            payload: Some(payload),
        })
    }
}
