//! `kind = "federated"`: partition the training set over the clients, then run every strategy of
//! the scenario (clients in this process, or remote `distillery client`s over gRPC), writing
//! `partition.csv/.svg`, `comm.csv` (every message's bytes), `clients.csv` (what each selected
//! client did each round), `metrics.csv` (accuracy and bytes per round) and
//! `accuracy_vs_bytes.svg`.

use super::RunContext;
use crate::data::partition::{class_counts, counts_csv, partition};
use crate::data::{Dataset, Split};
use crate::device::{worker_threads, BackendJob};
use crate::error::{Error, Result};
use crate::fed::engine::{run_rounds, EngineConfig, Federation, Round};
use crate::fed::message::ClientOutcome;
use crate::fed::strategy::build::build;
use crate::fed::strategy::{ClientState, Settings, StrategyKind};
use crate::fed::transport::grpc::{token, GrpcServer};
use crate::fed::transport::in_process::{ClientSide, InProcess, WorkerPool};
use crate::files::{write_atomic, CsvLog, Fixed};
use crate::report::plot::{heatmap_svg, lines_svg};
use crate::report::records::{FederatedOutcome, Outcome, Refusal, StrategyRecord, Summary};
use crate::report::rows::{ClientRow, CommRow, RoundRow};
use crate::scenario::Loaded;
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the clients run.
pub enum Transport {
    /// Tokio tasks in this process.
    InProcess,
    /// Remote processes that connect to a gRPC server at this address.
    Grpc(std::net::SocketAddr),
}

/// A federated run.
pub struct FederatedJob<'a> {
    /// The run.
    pub ctx: RunContext<'a>,
    /// Where its clients run.
    pub transport: Transport,
}

/// The settings the strategies share, from a scenario (the same on server and clients).
pub fn settings(loaded: &Loaded, split: &Split, cache: PathBuf) -> Result<Settings> {
    let s = &loaded.scenario;
    let f = s.federated_section();
    let d = s.distill_section();
    let e = s.eval_section();
    let dsa_name = d
        .run
        .dsa_strategy
        .clone()
        .unwrap_or_else(|| super::context::default_strategy(&split.name).to_string());
    let dsa = crate::data::augment::Dsa::new(&dsa_name).map_err(Error::Other)?;
    let mut experts = s.experts_section();
    experts.dir = experts.dir.map(|p| loaded.resolve(&p));
    Ok(Settings {
        spec: s.model_spec(split),
        seed: s.seed,
        rounds: f.rounds,
        quantization: f.quantization,
        local: s.train_config(),
        server: e.train_config(e.epochs),
        server_dsa: e.dsa.then(|| dsa.clone()),
        dsa,
        ipc: d.run.ipc,
        method: loaded.method(),
        experts,
        cache,
        rho: f.rho as f32,
        dataset: split.cache_name(),
        classes: split.train.classes.clone(),
        shape: split.train.shape,
    })
}

/// Each client's partition of the training set (global labels), as the scenario's seed makes it.
pub fn client_data(loaded: &Loaded, split: &Split) -> Result<Vec<Dataset>> {
    Ok(client_indices(loaded, split)?
        .iter()
        .map(|p| split.train.subset(p))
        .collect())
}

fn client_indices(loaded: &Loaded, split: &Split) -> Result<Vec<Vec<usize>>> {
    let s = &loaded.scenario;
    let f = s.federated_section();
    let k = split.train.num_classes();
    partition(&split.train.labels, k, f.clients, &f.partition, s.seed)
        .map_err(|m| Error::Other(format!("[federated] partition: {m}")))
}

/// The engine settings of a scenario.
pub fn engine_config(loaded: &Loaded) -> EngineConfig {
    let s = &loaded.scenario;
    let f = s.federated_section();
    EngineConfig {
        fraction: f.fraction,
        min_clients: f.min_clients,
        deadline: f.deadline_seconds.map(Duration::from_secs_f64),
        dropout: f.dropout,
        max_message_bytes: f.max_message_bytes,
        quantization: f.quantization,
        faults: f.faults.clone(),
        seed: s.seed,
        stop_at_accuracy: None,
    }
}

/// `partition.csv`, and (up to 100 clients) the heatmap of samples per client and class.
fn write_partition(ctx: &RunContext<'_>, parts: &[Vec<usize>]) -> Result<()> {
    let split = ctx.split;
    let counts = class_counts(&split.train.labels, split.train.num_classes(), parts);
    write_atomic(
        &ctx.dir.join("partition.csv"),
        counts_csv(&counts).as_bytes(),
    )?;
    if parts.len() > 100 {
        return Ok(());
    }
    let shares: Vec<Vec<f64>> = counts
        .iter()
        .map(|r| {
            let n = r.iter().sum::<usize>().max(1) as f64;
            r.iter().map(|&c| c as f64 / n).collect()
        })
        .collect();
    let texts: Vec<Vec<String>> = counts
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    let names: Vec<String> = (0..parts.len()).map(|c| format!("client {c}")).collect();
    let svg = heatmap_svg(
        &format!("{}: samples per client and class", ctx.scenario().name),
        "client",
        "class",
        &names,
        &split.train.classes,
        &shares,
        Some(&texts),
    );
    write_atomic(&ctx.dir.join("partition.svg"), svg.as_bytes())
}

/// The run's three CSV files.
struct Logs {
    comm: CsvLog<CommRow>,
    clients: CsvLog<ClientRow>,
    metrics: CsvLog<RoundRow>,
}

impl Logs {
    /// The rows of one round of `strategy`, `total` bytes exchanged before it.
    fn round(&mut self, strategy: &str, r: &Round, total: &mut u64) -> Result<()> {
        for c in &r.clients {
            let mut comm = |direction: &str, bytes: usize| {
                self.comm.row(&CommRow {
                    strategy: strategy.into(),
                    round: r.round,
                    client: c.client,
                    direction: direction.into(),
                    bytes,
                })
            };
            if c.outcome != ClientOutcome::Unreachable {
                comm("down", c.down)?;
            }
            if let Some(up) = c.up {
                comm("up", up)?;
            }
            self.clients.row(&ClientRow {
                strategy: strategy.into(),
                round: r.round,
                client: c.client,
                outcome: c.outcome.name().into(),
                reason: c.outcome.reason(),
            })?;
        }
        let (up, down) = r.bytes();
        *total += up + down;
        self.metrics.row(&RoundRow {
            strategy: strategy.into(),
            round: r.round,
            test_acc: Fixed(r.accuracy),
            bytes_up: up,
            bytes_down: down,
            cumulative_bytes: *total,
            selected: r.clients.len(),
            accepted: r.accepted,
            elapsed_s: Fixed(r.elapsed),
        })
    }
}

/// What a strategy's rounds add up to.
fn record(rounds: &[Round], stopped_at: Option<f64>, seconds: f64) -> StrategyRecord {
    let (up, down) = rounds.iter().fold((0, 0), |(u, d), r| {
        let (ru, rd) = r.bytes();
        (u + ru, d + rd)
    });
    let mut refused = Vec::new();
    for r in rounds {
        for c in r
            .clients
            .iter()
            .filter(|c| c.outcome != ClientOutcome::Accepted)
        {
            refused.push(Refusal {
                round: r.round,
                client: c.client,
                outcome: c.outcome.name().into(),
                reason: c.outcome.reason(),
            });
        }
    }
    StrategyRecord {
        final_accuracy: rounds.last().map(|r| r.accuracy),
        accuracy_per_round: rounds.iter().map(|r| r.accuracy).collect(),
        rounds: rounds.len(),
        bytes_up: up,
        bytes_down: down,
        bytes_total: up + down,
        accepted_updates: rounds.iter().map(|r| r.accepted).sum(),
        not_accepted: refused,
        stopped_at_accuracy: stopped_at,
        seconds,
    }
}

/// One line of the report table.
fn report_line(name: &str, r: &StrategyRecord) -> String {
    format!(
        "{:<20} {:>7} {:>9} {:>12.3} {:>12.3} {:>12.3}",
        name,
        r.rounds,
        r.final_accuracy.map_or("-".into(), |a| format!("{a:.4}")),
        r.bytes_up as f64 / 1e6,
        r.bytes_down as f64 / 1e6,
        r.bytes_total as f64 / 1e6
    )
}

/// A federated run in progress: its settings, its clients' data, the files, the transport.
struct Federated<'a> {
    ctx: &'a RunContext<'a>,
    settings: Arc<Settings>,
    data: Vec<Dataset>,
    logs: Logs,
    pool: Arc<WorkerPool>,
    remote: Option<GrpcServer>,
    /// Rounds counted over all strategies (each task carries it).
    seq: u32,
}

impl Federated<'_> {
    /// Runs strategy `kind` to the end (FedAvg stopping at `stop_at` when given): its rounds.
    fn strategy<B: AutodiffBackend>(
        &mut self,
        kind: StrategyKind,
        stop_at: Option<f64>,
        device: &B::Device,
    ) -> Result<(Vec<Round>, EngineConfig)> {
        let ctx = self.ctx;
        let s = ctx.scenario();
        let f = s.federated_section();
        let name = kind.name();
        let mut strategy = build::<B>(kind, self.settings.clone(), device);
        let mut cfg = engine_config(ctx.loaded);
        cfg.stop_at_accuracy = stop_at;
        let expect = self.settings.expect();
        let mut in_process;
        let transport: &mut dyn crate::fed::transport::Transport = match self.remote.as_mut() {
            Some(r) => r,
            None => {
                let states = self
                    .data
                    .iter()
                    .enumerate()
                    .map(|(id, d)| ClientState {
                        id,
                        data: d.clone(),
                        syn: None,
                    })
                    .collect();
                let side = ClientSide {
                    expect: expect.clone(),
                    quantization: f.quantization,
                    faults: f.faults.clone(),
                    dropout: f.dropout,
                    seed: s.seed,
                };
                let app = strategy.client();
                in_process =
                    InProcess::start::<B>(states, app, self.pool.clone(), side, device.clone())?;
                &mut in_process
            }
        };
        let fed = Federation {
            clients: f.clients,
            expect: &expect,
            cfg: &cfg,
            test: &ctx.split.test,
        };
        let (logs, mut total) = (&mut self.logs, 0u64);
        let rounds = run_rounds::<B>(
            strategy.as_mut(),
            transport,
            &fed,
            &mut self.seq,
            device,
            |r| {
                logs.round(name, r, &mut total)?;
                for c in r
                    .clients
                    .iter()
                    .filter(|c| c.outcome != ClientOutcome::Accepted)
                {
                    let (what, why) = (c.outcome.name(), c.outcome.reason());
                    ctx.say(&format!(
                        "{name} round {}: client {} {what} {why}",
                        r.round, c.client
                    ));
                }
                if !r.aggregated {
                    ctx.say(&format!(
                    "{name} round {}: {} accepted updates, fewer than min_clients = {}; the global model is unchanged",
                    r.round, r.accepted, cfg.min_clients
                ));
                }
                ctx.say(&format!(
                    "{name} round {}: test accuracy {:.4}, {}/{} updates accepted, {:.3} MB so far",
                    r.round,
                    r.accuracy,
                    r.accepted,
                    r.clients.len(),
                    total as f64 / 1e6
                ));
                Ok(())
            },
        )?;
        Ok((rounds, cfg))
    }
}

/// Accuracy against cumulative MB after each round.
fn curve(rounds: &[Round]) -> Vec<(f64, f64)> {
    let mut cum = 0u64;
    rounds
        .iter()
        .map(|r| {
            let (u, d) = r.bytes();
            cum += u + d;
            (cum as f64 / 1e6, r.accuracy)
        })
        .collect()
}

impl BackendJob for FederatedJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let s = ctx.scenario();
        let f = s.federated_section();
        let parts = client_indices(ctx.loaded, ctx.split)?;
        write_partition(ctx, &parts)?;
        let remote = match &self.transport {
            Transport::InProcess => None,
            Transport::Grpc(addr) => Some(GrpcServer::start(
                *addr,
                f.clients,
                token(&f.token),
                f.max_message_bytes,
            )?),
        };
        let mut run = Federated {
            ctx,
            settings: Arc::new(settings(
                ctx.loaded,
                ctx.split,
                ctx.opts.results_root.clone(),
            )?),
            data: parts.iter().map(|p| ctx.split.train.subset(p)).collect(),
            logs: Logs {
                comm: ctx.csv("comm.csv")?,
                clients: ctx.csv("clients.csv")?,
                metrics: ctx.csv("metrics.csv")?,
            },
            pool: Arc::new(WorkerPool::new(f.workers.unwrap_or_else(worker_threads))),
            remote,
            seq: 0,
        };
        let mut oneshot_acc: Option<f64> = None;
        let mut results = BTreeMap::new();
        let mut series = Vec::new();
        let mut report = vec![format!(
            "{:<20} {:>7} {:>9} {:>12} {:>12} {:>12}",
            "strategy", "rounds", "accuracy", "MB up", "MB down", "MB total"
        )];
        for &kind in &f.strategies {
            let name = kind.name();
            if results.contains_key(name) {
                continue;
            }
            let t0 = Instant::now();
            let stop_at = (kind == StrategyKind::Fedavg && f.fedavg_until_oneshot)
                .then_some(oneshot_acc)
                .flatten();
            let (rounds, cfg) = run.strategy::<B>(kind, stop_at, &device)?;
            let rec = record(&rounds, cfg.stop_at_accuracy, t0.elapsed().as_secs_f64());
            if kind == StrategyKind::DistilledOneshot {
                oneshot_acc = rec.final_accuracy;
            }
            report.push(report_line(name, &rec));
            series.push((name.to_string(), curve(&rounds)));
            results.insert(name.to_string(), rec);
        }
        drop(run.remote.take());
        let svg = lines_svg(
            &format!("{}: global test accuracy against bytes exchanged", s.name),
            "cumulative MB (up + down)",
            "test accuracy",
            &series,
        );
        write_atomic(&ctx.dir.join("accuracy_vs_bytes.svg"), svg.as_bytes())?;
        report.push(format!(
            "bytes: encoded protobuf message lengths (tensors as {}), up and down, all clients",
            f.quantization.name()
        ));
        let outcome = FederatedOutcome {
            clients: f.clients,
            partition: f.partition.clone(),
            client_sizes: run.data.iter().map(Dataset::len).collect(),
            quantization: f.quantization.name().into(),
            transport: match self.transport {
                Transport::InProcess => "in_process".into(),
                Transport::Grpc(_) => "grpc".into(),
            },
            strategies: results,
        };
        Ok(ctx.summary(backend, report, Outcome::Federated(outcome)))
    }
}
