//! Running strategies over the clients (in this process or over gRPC): one strategy's rounds
//! for one task, every round written to `comm.csv`, `clients.csv` and `metrics.csv` as it ends,
//! and what a strategy's rounds add up to.

use crate::data::Dataset;
use crate::error::Result;
use crate::experiment::RunContext;
use crate::fed::engine::{run_rounds, Federation, Round};
use crate::fed::message::ClientOutcome;
use crate::fed::protocol::Expect;
use crate::fed::strategy::build::build;
use crate::fed::strategy::{ClientState, Settings, Strategy, StrategyKind};
use crate::fed::transport::grpc::GrpcServer;
use crate::fed::transport::in_process::{ClientSide, InProcess, WorkerPool};
use crate::files::{CsvLog, Fixed};
use crate::report::records::{Refusal, StrategyRecord};
use crate::report::rows::{ClientRow, CommRow, RoundRow};
use burn::tensor::backend::AutodiffBackend;
use std::sync::Arc;

/// The run's three CSV files of rounds.
pub struct Logs {
    /// Every message's bytes.
    pub comm: CsvLog<CommRow>,
    /// What each selected client did.
    pub clients: CsvLog<ClientRow>,
    /// Accuracy and bytes per round.
    pub metrics: CsvLog<RoundRow>,
}

impl Logs {
    /// The rows of one round of `strategy` in `task`, `total` bytes exchanged before it.
    fn round(&mut self, strategy: &str, task: usize, r: &Round, total: &mut u64) -> Result<()> {
        for c in &r.clients {
            let mut comm = |direction: &str, bytes: usize| {
                self.comm.row(&CommRow {
                    strategy: strategy.into(),
                    task,
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
                task,
                round: r.round,
                client: c.client,
                outcome: c.outcome.name().into(),
                reason: c.outcome.reason(),
                bytes_down: c.down,
                bytes_up: c.up.unwrap_or(0),
                compute_seconds: Fixed(c.compute_seconds),
            })?;
        }
        let (up, down) = r.bytes();
        *total += up + down;
        self.metrics.row(&RoundRow {
            strategy: strategy.into(),
            task,
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

/// The clients of a run and the files their rounds go to.
pub struct Clients<'a> {
    /// The run.
    pub ctx: &'a RunContext<'a>,
    /// Every client as it starts (each strategy's in-process clients start from these).
    pub states: Vec<ClientState>,
    /// The CSV files.
    pub logs: Logs,
    /// Worker threads for in-process clients' compute.
    pub pool: Arc<WorkerPool>,
    /// The gRPC server, when clients are remote processes.
    pub remote: Option<GrpcServer>,
    /// Rounds counted over all strategies (each task carries it).
    pub seq: u32,
}

/// A strategy running over the clients: the server half and, in process, its clients.
pub struct Running<B: AutodiffBackend> {
    /// The server half.
    pub strategy: Box<dyn Strategy<B>>,
    /// Its settings.
    pub settings: Arc<Settings>,
    in_process: Option<InProcess>,
    expect: Expect,
    /// Bytes exchanged so far.
    pub total: u64,
}

impl Clients<'_> {
    /// Starts strategy `kind` with `settings` (and, in process, its clients).
    pub fn start<B: AutodiffBackend>(
        &mut self,
        kind: StrategyKind,
        settings: Arc<Settings>,
        device: &B::Device,
    ) -> Result<Running<B>> {
        let strategy = build::<B>(kind, settings.clone(), device);
        let expect = settings.expect();
        let in_process = match self.remote {
            Some(_) => None,
            None => {
                let s = self.ctx.scenario();
                let f = s.federated_section();
                let side = ClientSide {
                    expect: expect.clone(),
                    quantization: f.quantization,
                    faults: f.faults.clone(),
                    dropout: f.dropout,
                    seed: s.seed,
                };
                let app = strategy.client();
                let states = self.states.clone();
                Some(InProcess::start::<B>(
                    states,
                    app,
                    self.pool.clone(),
                    side,
                    device.clone(),
                )?)
            }
        };
        Ok(Running {
            strategy,
            settings,
            in_process,
            expect,
            total: 0,
        })
    }

    /// Runs `run`'s rounds of `task`, the global model tested on `test` after each, stopping at
    /// accuracy `stop_at` when given.
    pub fn rounds<B: AutodiffBackend>(
        &mut self,
        run: &mut Running<B>,
        (task, test): (usize, &Dataset),
        stop_at: Option<f64>,
        device: &B::Device,
    ) -> Result<Vec<Round>> {
        let ctx = self.ctx;
        let label = run.settings.label.clone();
        let mut cfg = super::setup::engine_config(ctx.loaded);
        cfg.stop_at_accuracy = stop_at;
        let transport: &mut dyn crate::fed::transport::Transport =
            match (self.remote.as_mut(), run.in_process.as_mut()) {
                (Some(r), _) => r,
                (None, Some(p)) => p,
                (None, None) => unreachable!("a strategy starts its in-process clients"),
            };
        let fed = Federation {
            clients: self.states.len(),
            expect: &run.expect,
            cfg: &cfg,
            test,
        };
        let (logs, total) = (&mut self.logs, &mut run.total);
        run.strategy.begin_task(task);
        run_rounds::<B>(
            run.strategy.as_mut(),
            transport,
            &fed,
            &mut self.seq,
            device,
            |r| {
                logs.round(&label, task, r, total)?;
                for c in r
                    .clients
                    .iter()
                    .filter(|c| c.outcome != ClientOutcome::Accepted)
                {
                    let (what, why) = (c.outcome.name(), c.outcome.reason());
                    ctx.say(&format!(
                        "{label} round {}: client {} {what} {why}",
                        r.round, c.client
                    ));
                }
                if !r.aggregated {
                    ctx.say(&format!(
                    "{label} round {}: {} accepted updates, fewer than min_clients = {}; the global model is unchanged",
                    r.round, r.accepted, cfg.min_clients
                ));
                }
                ctx.say(&format!(
                "{label} task {task} round {}: test accuracy {:.4}, {}/{} updates accepted, {:.3} MB",
                r.round,
                r.accuracy,
                r.accepted,
                r.clients.len(),
                *total as f64 / 1e6
            ));
                Ok(())
            },
        )
    }
}

/// What a strategy's rounds add up to.
pub fn record(rounds: &[Round], stopped_at: Option<f64>, seconds: f64) -> StrategyRecord {
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
        client_compute_seconds: rounds
            .iter()
            .flat_map(|r| &r.clients)
            .fold(0.0, |a, c| a + c.compute_seconds),
        seconds,
    }
}

/// One line of the report table.
pub fn report_line(name: &str, r: &StrategyRecord) -> String {
    format!(
        "{:<24} {:>7} {:>9} {:>12.3} {:>12.3} {:>12.3} {:>12.1}",
        name,
        r.rounds,
        r.final_accuracy.map_or("-".into(), |a| format!("{a:.4}")),
        r.bytes_up as f64 / 1e6,
        r.bytes_down as f64 / 1e6,
        r.bytes_total as f64 / 1e6,
        r.client_compute_seconds
    )
}

/// The report table's header.
pub fn report_header() -> String {
    format!(
        "{:<24} {:>7} {:>9} {:>12} {:>12} {:>12} {:>12}",
        "strategy", "rounds", "accuracy", "MB up", "MB down", "MB total", "client s"
    )
}

/// Accuracy against cumulative MB after each round.
pub fn curve(rounds: &[Round]) -> Vec<(f64, f64)> {
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
