//! The round engine: the server loop (select clients, send the round's task, wait for answers
//! until the deadline, check them, aggregate, evaluate), the byte ledger, and the in-process
//! transport, where every client is a tokio task whose compute runs on a bounded pool of worker
//! threads fed through a crossbeam channel, so thousands of clients simulate on a few cores.

use super::pb;
use super::strategy::{ClientApp, ClientState, Strategy};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::report::CsvLog;
use crate::rng::step_seed;
use burn::tensor::backend::AutodiffBackend;
use prost::Message;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Faults injected into chosen clients (to test that rounds survive them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Clients whose work panics (the client dies; it never answers again).
    pub crash: Vec<usize>,
    /// Clients that send NaN in their payload.
    pub nan: Vec<usize>,
    /// Clients that answer `slow_seconds` late.
    pub slow: Vec<usize>,
    /// How late slow clients are.
    pub slow_seconds: f64,
}

/// How rounds are run.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Share of the clients selected each round (at least `min_clients`).
    pub fraction: f64,
    /// Fewest accepted updates a round needs to be aggregated.
    pub min_clients: usize,
    /// How long the server waits for answers (None: until every selected client answered or
    /// dropped out).
    pub deadline: Option<Duration>,
    /// Probability that a selected client drops out of a round (no answer).
    pub dropout: f64,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Injected faults.
    pub faults: Faults,
    /// Seed of client selection and drop-outs.
    pub seed: u64,
    /// Stop once the global test accuracy reaches this.
    pub stop_at_accuracy: Option<f64>,
}

/// What became of one selected client in one round.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It answered with these bytes.
    Reply(Vec<u8>),
    /// It did not answer (dropped out, or its connection ended).
    NoAnswer,
    /// It answered after the deadline (or not before it).
    Late,
    /// The task could not be delivered (the client is gone).
    Unreachable,
}

/// How the server reaches its clients.
pub trait Transport {
    /// Sends `task` (encoded) to each of `selected` and collects what each answered by `deadline`.
    fn round(
        &mut self,
        round: usize,
        selected: &[usize],
        task: &[u8],
        deadline: Option<Duration>,
    ) -> Vec<(usize, Outcome)>;
}

/// One row of the ledger: bytes of one message.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerRow {
    /// Round.
    pub round: usize,
    /// Client id.
    pub client: usize,
    /// `down` (server to client) or `up`.
    pub direction: &'static str,
    /// Encoded message length.
    pub bytes: usize,
}

/// The result of one strategy's run.
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    /// (round, test accuracy, cumulative bytes up, cumulative bytes down) after each round.
    pub rounds: Vec<(usize, f64, u64, u64)>,
    /// Every message's bytes.
    pub ledger: Vec<LedgerRow>,
    /// (round, client, outcome, reason) of every selected client.
    pub clients: Vec<(usize, usize, String, String)>,
}

impl RunRecord {
    /// Total bytes (up, down).
    pub fn totals(&self) -> (u64, u64) {
        self.ledger.iter().fold((0, 0), |(u, d), r| {
            if r.direction == "up" {
                (u + r.bytes as u64, d)
            } else {
                (u, d + r.bytes as u64)
            }
        })
    }
}

/// Logs of a run: `comm.csv`, `clients.csv`, `metrics.csv` rows.
pub struct Logs<'a> {
    /// comm.csv: strategy,round,client,direction,bytes.
    pub comm: &'a mut CsvLog,
    /// clients.csv: strategy,round,client,outcome,reason.
    pub clients: &'a mut CsvLog,
    /// metrics.csv: strategy,round,test_acc,bytes_up,bytes_down,cumulative_bytes,selected,accepted,elapsed_s.
    pub metrics: &'a mut CsvLog,
    /// Printed per round unless quiet.
    pub print: &'a dyn Fn(String),
}

/// Runs `strategy` to the end over `transport`, testing the global model on `test` after every
/// round. A round with fewer than `min_clients` accepted updates changes nothing (it is logged).
/// `seq` counts rounds over consecutive runs (each task carries it).
#[allow(clippy::too_many_arguments)]
pub fn run_rounds<B: AutodiffBackend>(
    strategy: &mut dyn Strategy<B>,
    transport: &mut dyn Transport,
    clients: usize,
    cfg: &EngineConfig,
    test: &Dataset,
    logs: &mut Logs<'_>,
    seq: &mut u32,
    device: &B::Device,
) -> Result<RunRecord> {
    let name = strategy.name();
    let started = Instant::now();
    let mut rec = RunRecord::default();
    let (mut up, mut down) = (0u64, 0u64);
    let per_round = ((clients as f64 * cfg.fraction).ceil() as usize)
        .max(cfg.min_clients)
        .clamp(1, clients);
    for round in 0..strategy.rounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(cfg.seed ^ 0x5e1, round as u64));
        let mut selected: Vec<usize> = (0..clients).collect();
        if per_round < clients {
            selected.shuffle(&mut rng);
            selected.truncate(per_round);
            selected.sort_unstable();
        }
        let mut task = strategy.configure_round(round);
        task.seq = *seq;
        *seq += 1;
        let task = task.encode_to_vec();
        if task.len() > cfg.max_message_bytes {
            return Err(Error::Other(format!(
                "{name}: the round task is {} bytes, above max_message_bytes = {}",
                task.len(),
                cfg.max_message_bytes
            )));
        }
        let outcomes = transport.round(round, &selected, &task, cfg.deadline);
        let mut accepted = Vec::new();
        let (mut r_up, mut r_down) = (0u64, 0u64);
        for (client, outcome) in outcomes {
            let mut book = |direction: &'static str, bytes: usize| -> Result<()> {
                rec.ledger.push(LedgerRow {
                    round,
                    client,
                    direction,
                    bytes,
                });
                logs.comm.row(&[
                    name.to_string(),
                    round.to_string(),
                    client.to_string(),
                    direction.into(),
                    bytes.to_string(),
                ])
            };
            if outcome != Outcome::Unreachable {
                r_down += task.len() as u64;
                book("down", task.len())?;
            }
            let (what, why) = match outcome {
                Outcome::Reply(bytes) => {
                    r_up += bytes.len() as u64;
                    book("up", bytes.len())?;
                    let verdict = if bytes.len() > cfg.max_message_bytes {
                        Err(format!(
                            "oversize: {} bytes, above max_message_bytes = {}",
                            bytes.len(),
                            cfg.max_message_bytes
                        ))
                    } else {
                        pb::ClientUpdate::decode(bytes.as_slice())
                            .map_err(|e| format!("undecodable update: {e}"))
                            .and_then(|u| {
                                if u.client_id as usize != client || u.round as usize != round {
                                    Err(format!(
                                        "update labelled client {} round {}",
                                        u.client_id, u.round
                                    ))
                                } else {
                                    strategy.accept(&u)
                                }
                            })
                    };
                    match verdict {
                        Ok(a) => {
                            accepted.push(a);
                            ("accepted", String::new())
                        }
                        Err(e) => ("rejected", e),
                    }
                }
                Outcome::NoAnswer => ("no_answer", String::new()),
                Outcome::Late => ("late", "missed the round deadline".to_string()),
                Outcome::Unreachable => ("unreachable", "the client is gone".to_string()),
            };
            if what != "accepted" {
                (logs.print)(format!(
                    "{name} round {round}: client {client} {what} {why}"
                ));
            }
            logs.clients.row(&[
                name.to_string(),
                round.to_string(),
                client.to_string(),
                what.to_string(),
                why.clone(),
            ])?;
            rec.clients.push((round, client, what.to_string(), why));
        }
        up += r_up;
        down += r_down;
        let n_ok = accepted.len();
        if n_ok >= cfg.min_clients.max(1) {
            strategy.aggregate(round, accepted, device)?;
        } else {
            (logs.print)(format!(
                "{name} round {round}: {n_ok} accepted updates, fewer than min_clients = {}; the global model is unchanged",
                cfg.min_clients
            ));
        }
        let acc = strategy.evaluate(test, device);
        rec.rounds.push((round, acc, up, down));
        logs.metrics.row(&[
            name.to_string(),
            round.to_string(),
            format!("{acc:.6}"),
            r_up.to_string(),
            r_down.to_string(),
            (up + down).to_string(),
            selected.len().to_string(),
            n_ok.to_string(),
            format!("{:.3}", started.elapsed().as_secs_f64()),
        ])?;
        (logs.print)(format!(
            "{name} round {round}: test accuracy {acc:.4}, {n_ok}/{} updates accepted, {:.3} MB so far",
            selected.len(),
            (up + down) as f64 / 1e6
        ));
        if cfg.stop_at_accuracy.is_some_and(|t| acc >= t) {
            break;
        }
    }
    Ok(rec)
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of worker threads taking jobs from a crossbeam channel.
pub struct WorkerPool {
    tx: Option<crossbeam_channel::Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `n` workers.
    pub fn new(n: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let threads = (0..n.max(1))
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
            })
            .collect();
        WorkerPool {
            tx: Some(tx),
            threads,
        }
    }

    /// Runs `f` on a worker; the answer arrives on the returned channel (closed if `f` panics).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (otx, orx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if let Ok(v) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                let _ = otx.send(v);
            }
        });
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
        }
        orx
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

type Delivery = (Vec<u8>, oneshot::Sender<Vec<u8>>);

/// Clients as tokio tasks in this process, their compute on a [`WorkerPool`].
pub struct InProcess {
    rt: tokio::runtime::Runtime,
    inboxes: Vec<mpsc::Sender<Delivery>>,
}

impl InProcess {
    /// Starts one task per client state, running `app` on `pool` with `device`. Drop-outs and
    /// faults follow `cfg`.
    pub fn start<B: AutodiffBackend>(
        states: Vec<ClientState>,
        app: Arc<dyn ClientApp<B>>,
        pool: Arc<WorkerPool>,
        cfg: &EngineConfig,
        device: B::Device,
    ) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the tokio runtime: {e}")))?;
        let mut inboxes = Vec::with_capacity(states.len());
        for state in states {
            let (tx, mut rx) = mpsc::channel::<Delivery>(1);
            inboxes.push(tx);
            let (app, pool, device) = (app.clone(), pool.clone(), device.clone());
            let id = state.id;
            let faults = cfg.faults.clone();
            let (dropout, seed) = (cfg.dropout, cfg.seed);
            rt.spawn(async move {
                let mut state = Some(state);
                while let Some((bytes, reply)) = rx.recv().await {
                    let Ok(task) = pb::RoundTask::decode(bytes.as_slice()) else {
                        continue;
                    };
                    let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(
                        seed ^ 0xd20b,
                        (id as u64) << 20 | task.round as u64,
                    ));
                    if dropout > 0.0 && rng.random::<f64>() < dropout {
                        drop(reply);
                        continue;
                    }
                    let round = task.round;
                    let Some(st) = state.take() else { break };
                    let (app, device) = (app.clone(), device.clone());
                    let crash = faults.crash.contains(&id);
                    let done = pool.run(move || {
                        let mut st = st;
                        if crash {
                            panic!("client {id}: injected crash");
                        }
                        let r = app.work(&task, &mut st, &device);
                        (st, r)
                    });
                    // A panic closes the channel: the client is dead, as a crashed process is.
                    let Ok((st, result)) = done.await else { break };
                    state = Some(st);
                    let mut update =
                        result.unwrap_or_else(|e| failed_update(id, round, &e.to_string()));
                    if faults.nan.contains(&id) {
                        poison(&mut update);
                    }
                    if faults.slow.contains(&id) {
                        tokio::time::sleep(Duration::from_secs_f64(faults.slow_seconds)).await;
                    }
                    let _ = reply.send(update.encode_to_vec());
                }
            });
        }
        Ok(InProcess { rt, inboxes })
    }
}

/// The update a client sends when its work failed: why, in place of a payload.
pub fn failed_update(id: usize, round: u32, why: &str) -> pb::ClientUpdate {
    pb::ClientUpdate {
        client_id: id as u32,
        round,
        num_samples: 0,
        payload: Some(pb::client_update::Payload::Error(why.to_string())),
    }
}

/// Writes NaN into the first value of an update's payload (a faulty client).
pub fn poison(u: &mut pb::ClientUpdate) {
    let nan = f32::NAN.to_le_bytes();
    let t = match &mut u.payload {
        Some(pb::client_update::Payload::Weights(w)) => w.params.first_mut(),
        Some(pb::client_update::Payload::Synthetic(s)) => s.images.as_mut(),
        _ => None,
    };
    if let Some(t) = t {
        if t.encoding == pb::Encoding::F32 as i32 && t.data.len() >= 4 {
            t.data[..4].copy_from_slice(&nan);
        } else if t.encoding == pb::Encoding::F16 as i32 && t.data.len() >= 2 {
            t.data[..2].copy_from_slice(&half::f16::NAN.to_le_bytes());
        } else {
            t.scale = f32::NAN;
        }
    }
}

impl Transport for InProcess {
    fn round(
        &mut self,
        _round: usize,
        selected: &[usize],
        task: &[u8],
        deadline: Option<Duration>,
    ) -> Vec<(usize, Outcome)> {
        let inboxes = &self.inboxes;
        self.rt.block_on(async {
            let until = deadline.map(|d| tokio::time::Instant::now() + d);
            let mut waiting = Vec::with_capacity(selected.len());
            for &c in selected {
                let (tx, rx) = oneshot::channel();
                let sent = inboxes[c].send((task.to_vec(), tx)).await.is_ok();
                waiting.push((c, sent.then_some(rx)));
            }
            let mut out = Vec::with_capacity(waiting.len());
            for (c, rx) in waiting {
                let outcome = match rx {
                    None => Outcome::Unreachable,
                    Some(rx) => match until {
                        Some(t) => match tokio::time::timeout_at(t, rx).await {
                            Ok(Ok(b)) => Outcome::Reply(b),
                            Ok(Err(_)) => Outcome::NoAnswer,
                            Err(_) => Outcome::Late,
                        },
                        None => match rx.await {
                            Ok(b) => Outcome::Reply(b),
                            Err(_) => Outcome::NoAnswer,
                        },
                    },
                };
                out.push((c, outcome));
            }
            out
        })
    }
}
