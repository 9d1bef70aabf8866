//! The round loop: select clients, send the round's task, wait for answers until the deadline,
//! decode and check them, aggregate, evaluate. Every message's encoded length goes to the
//! ledger; each round ends as a typed [`Round`] handed to the caller (who writes the files).

use super::message::{ClientOutcome, Update};
use super::protocol::{decode_update, encode_task, Expect, Quantization};
use super::strategy::Strategy;
use super::transport::{Delivery, Faults, Transport};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::rng::step_seed;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::time::{Duration, Instant};

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
    /// How tensors travel.
    pub quantization: Quantization,
    /// Injected faults.
    pub faults: Faults,
    /// Seed of client selection and drop-outs.
    pub seed: u64,
    /// Stop once the global test accuracy reaches this.
    pub stop_at_accuracy: Option<f64>,
}

/// One selected client in one round: the bytes each way and what became of its update.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClientRecord {
    /// The client.
    pub client: usize,
    /// Bytes of the task it was sent (0 when it could not be reached).
    pub down: usize,
    /// Bytes of its answer (None when it did not answer).
    pub up: Option<usize>,
    /// What became of it.
    pub outcome: ClientOutcome,
    /// Seconds of compute it reported.
    pub compute_seconds: f64,
}

/// One round as it ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Round {
    /// The round (0-based).
    pub round: usize,
    /// Every selected client.
    pub clients: Vec<ClientRecord>,
    /// Test accuracy of the global model after it.
    pub accuracy: f64,
    /// Updates accepted.
    pub accepted: usize,
    /// True when it changed the global model (enough updates were accepted).
    pub aggregated: bool,
    /// Seconds since the strategy started.
    pub elapsed: f64,
}

impl Round {
    /// Bytes (up, down) of this round's messages.
    pub fn bytes(&self) -> (u64, u64) {
        self.clients.iter().fold((0, 0), |(u, d), c| {
            (u + c.up.unwrap_or(0) as u64, d + c.down as u64)
        })
    }
}

/// The clients selected for `round` (all, or a seeded share of them).
fn select(clients: usize, cfg: &EngineConfig, round: usize) -> Vec<usize> {
    let per_round = ((clients as f64 * cfg.fraction).ceil() as usize)
        .max(cfg.min_clients)
        .clamp(1, clients);
    let mut selected: Vec<usize> = (0..clients).collect();
    if per_round < clients {
        let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(cfg.seed ^ 0x5e1, round as u64));
        selected.shuffle(&mut rng);
        selected.truncate(per_round);
        selected.sort_unstable();
    }
    selected
}

/// What the server makes of one client's delivery: its record and, if accepted, its update.
fn receive<B: AutodiffBackend>(
    strategy: &dyn Strategy<B>,
    (client, delivery): (usize, Delivery),
    task_len: usize,
    round: usize,
    cfg: &EngineConfig,
    expect: &Expect,
) -> (ClientRecord, Option<super::strategy::Accepted>) {
    let down = if delivery == Delivery::Unreachable {
        0
    } else {
        task_len
    };
    let mut record = ClientRecord {
        client,
        down,
        up: None,
        outcome: ClientOutcome::NoAnswer,
        compute_seconds: 0.0,
    };
    let bytes = match delivery {
        Delivery::Reply(b) => b,
        Delivery::NoAnswer => return (record, None),
        Delivery::Late => {
            record.outcome = ClientOutcome::Late;
            return (record, None);
        }
        Delivery::Unreachable => {
            record.outcome = ClientOutcome::Unreachable;
            return (record, None);
        }
    };
    record.up = Some(bytes.len());
    let verdict = decode_update(&bytes, client, round, cfg.max_message_bytes, expect).and_then(
        |u: Update| {
            record.compute_seconds = u.compute_seconds;
            strategy.accept(u)
        },
    );
    match verdict {
        Ok(a) => {
            record.outcome = ClientOutcome::Accepted;
            (record, Some(a))
        }
        Err(r) => {
            record.outcome = ClientOutcome::Rejected(r);
            (record, None)
        }
    }
}

/// The federation a strategy runs in: how many clients, what their updates must look like, how
/// rounds run, and the test set the global model is measured on.
pub struct Federation<'a> {
    /// Clients.
    pub clients: usize,
    /// What updates must look like.
    pub expect: &'a Expect,
    /// How rounds run.
    pub cfg: &'a EngineConfig,
    /// The global model's test set.
    pub test: &'a Dataset,
    /// The first round to run (rounds before it were run before a resume).
    pub first_round: usize,
}

/// Runs `strategy` to the end over `transport` from round `fed.first_round`, testing the global
/// model after every round and handing each round, the strategy and the transport to `on_round`
/// (which may checkpoint them). A round with fewer than `min_clients` accepted updates changes
/// nothing. `seq` counts rounds over consecutive strategies (each task carries it).
pub fn run_rounds<B: AutodiffBackend>(
    strategy: &mut dyn Strategy<B>,
    transport: &mut dyn Transport,
    fed: &Federation<'_>,
    seq: &mut u32,
    device: &B::Device,
    mut on_round: impl FnMut(&Round, &mut dyn Strategy<B>, &dyn Transport) -> Result<()>,
) -> Result<Vec<Round>> {
    let (clients, expect, cfg, test) = (fed.clients, fed.expect, fed.cfg, fed.test);
    let name = strategy.kind().name();
    let started = Instant::now();
    let mut rounds = Vec::new();
    for round in fed.first_round..strategy.rounds() {
        let selected = select(clients, cfg, round);
        let mut task = strategy.configure_round(round);
        task.seq = *seq;
        *seq += 1;
        let bytes = encode_task(&task, cfg.quantization);
        if bytes.len() > cfg.max_message_bytes {
            return Err(Error::Setting(format!(
                "{name}: the round task is {} bytes, above max_message_bytes = {}",
                bytes.len(),
                cfg.max_message_bytes
            )));
        }
        let deliveries = transport.round(round, &selected, &bytes, cfg.deadline);
        let mut records = Vec::with_capacity(deliveries.len());
        let mut accepted = Vec::new();
        for d in deliveries {
            let (record, a) = receive(&*strategy, d, bytes.len(), round, cfg, expect);
            records.push(record);
            accepted.extend(a);
        }
        let n_ok = accepted.len();
        let aggregated = n_ok >= cfg.min_clients.max(1);
        if aggregated {
            strategy.aggregate(round, accepted, device)?;
        }
        let record = Round {
            round,
            clients: records,
            accuracy: strategy.evaluate(test, device),
            accepted: n_ok,
            aggregated,
            elapsed: started.elapsed().as_secs_f64(),
        };
        on_round(&record, &mut *strategy, &*transport)?;
        let reached = cfg.stop_at_accuracy.is_some_and(|t| record.accuracy >= t);
        rounds.push(record);
        if reached {
            break;
        }
    }
    Ok(rounds)
}
