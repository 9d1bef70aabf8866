//! Clients as tokio tasks in this process: each holds its state and answers the tasks it is
//! sent; its compute runs on a bounded pool of worker threads fed through a crossbeam channel, so
//! thousands of clients simulate on a few cores. Drop-outs and injected faults happen here.

use super::{Delivery, Faults, Transport};
use crate::error::{Error, Result};
use crate::fed::message::{Payload, Update};
use crate::fed::pb;
use crate::fed::protocol::{task_from, update_message, Expect, Quantization};
use crate::fed::strategy::{answer, ClientApp, ClientState};
use crate::rng::step_seed;
use burn::tensor::backend::AutodiffBackend;
use prost::Message;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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

type Inbox = (Vec<u8>, oneshot::Sender<Vec<u8>>);

/// Clients as tokio tasks in this process, their compute on a [`WorkerPool`].
pub struct InProcess {
    rt: tokio::runtime::Runtime,
    inboxes: Vec<mpsc::Sender<Inbox>>,
    /// Each client's state between tasks (None while it works, or once it crashed).
    states: Vec<Slot>,
}

/// A client's state, shared so a checkpoint can read it between rounds.
type Slot = Arc<std::sync::Mutex<Option<ClientState>>>;

/// How the simulated clients behave besides their work: what tasks look like, how they encode
/// updates, and which of them drop out or misbehave.
#[derive(Clone, Debug)]
pub struct ClientSide {
    /// What a task's global model must look like.
    pub expect: Expect,
    /// How updates encode tensors.
    pub quantization: Quantization,
    /// Injected faults.
    pub faults: Faults,
    /// Probability that a selected client drops out of a round.
    pub dropout: f64,
    /// Seed of drop-outs.
    pub seed: u64,
}

impl InProcess {
    /// Starts one task per client state, running `app` on `pool` with `device`.
    pub fn start<B: AutodiffBackend>(
        states: Vec<ClientState>,
        app: Arc<dyn ClientApp<B>>,
        pool: Arc<WorkerPool>,
        side: ClientSide,
        device: B::Device,
    ) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the tokio runtime: {e}")))?;
        let mut inboxes = Vec::with_capacity(states.len());
        let mut slots = Vec::with_capacity(states.len());
        for state in states {
            let (tx, rx) = mpsc::channel::<Inbox>(1);
            inboxes.push(tx);
            let slot: Slot = Arc::new(std::sync::Mutex::new(Some(state)));
            slots.push(slot.clone());
            let client = Client {
                app: app.clone(),
                pool: pool.clone(),
                side: side.clone(),
                device: device.clone(),
            };
            rt.spawn(client.serve(slot, rx));
        }
        Ok(InProcess {
            rt,
            inboxes,
            states: slots,
        })
    }
}

/// One simulated client's task.
struct Client<B: AutodiffBackend> {
    app: Arc<dyn ClientApp<B>>,
    pool: Arc<WorkerPool>,
    side: ClientSide,
    device: B::Device,
}

impl<B: AutodiffBackend> Client<B> {
    /// Answers tasks until its inbox closes or it crashes.
    async fn serve(self, slot: Slot, mut rx: mpsc::Receiver<Inbox>) {
        let take = || slot.lock().ok().and_then(|mut s| s.take());
        let Some(first) = take() else { return };
        let id = first.id;
        *slot.lock().expect("a client's slot") = Some(first);
        let side = &self.side;
        while let Some((bytes, reply)) = rx.recv().await {
            let Ok(m) = pb::RoundTask::decode(bytes.as_slice()) else {
                continue;
            };
            let round = m.round as usize;
            let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(
                side.seed ^ 0xd20b,
                (id as u64) << 20 | round as u64,
            ));
            if side.dropout > 0.0 && rng.random::<f64>() < side.dropout {
                drop(reply);
                continue;
            }
            let Some(st) = take() else { break };
            let (app, device) = (self.app.clone(), self.device.clone());
            let crash = side.faults.crash.contains(&id);
            let expect = side.expect.clone();
            let done = self.pool.run(move || {
                let mut st = st;
                if crash {
                    panic!("client {id}: injected crash");
                }
                let update = match task_from(&m, &expect) {
                    Ok(task) => answer(&*app, &task, &mut st, &device),
                    Err(e) => failed_update(id, round, &e),
                };
                (st, update)
            });
            // A panic closes the channel: the client is dead, as a crashed process is.
            let Ok((st, update)) = done.await else { break };
            if let Ok(mut s) = slot.lock() {
                *s = Some(st);
            }
            let mut message = update_message(&update, side.quantization);
            if side.faults.nan.contains(&id) {
                poison(&mut message);
            }
            if side.faults.slow.contains(&id) {
                tokio::time::sleep(Duration::from_secs_f64(side.faults.slow_seconds)).await;
            }
            let _ = reply.send(message.encode_to_vec());
        }
    }
}

/// The update a client sends when its work failed: why, in place of a payload.
pub fn failed_update(id: usize, round: usize, why: &str) -> Update {
    Update {
        client: id,
        round,
        num_samples: 0,
        compute_seconds: 0.0,
        payload: Payload::Failed(why.to_string()),
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
    fn client_states(&self) -> Vec<Option<ClientState>> {
        self.states
            .iter()
            .map(|s| s.lock().ok().and_then(|s| s.clone()))
            .collect()
    }

    fn round(
        &mut self,
        _round: usize,
        selected: &[usize],
        task: &[u8],
        deadline: Option<Duration>,
    ) -> Vec<(usize, Delivery)> {
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
                    None => Delivery::Unreachable,
                    Some(rx) => match until {
                        Some(t) => match tokio::time::timeout_at(t, rx).await {
                            Ok(Ok(b)) => Delivery::Reply(b),
                            Ok(Err(_)) => Delivery::NoAnswer,
                            Err(_) => Delivery::Late,
                        },
                        None => match rx.await {
                            Ok(b) => Delivery::Reply(b),
                            Err(_) => Delivery::NoAnswer,
                        },
                    },
                };
                out.push((c, outcome));
            }
            out
        })
    }
}
