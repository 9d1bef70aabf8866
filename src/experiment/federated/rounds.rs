//! Running strategies over the clients (in this process or over gRPC): one strategy's rounds
//! for one task, every round written to `comm.csv`, `clients.csv` and `metrics.csv` as it ends,
//! and what a strategy's rounds add up to.

use super::resume::{FedState, Ongoing, Past, Progress};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::experiment::audit::federated::{snapshot, AuditKept, Sent};
use crate::experiment::RunContext;
use crate::fed::engine::{run_rounds, Federation, Round};
use crate::fed::message::ClientOutcome;
use crate::fed::protocol::Expect;
use crate::fed::strategy::build::build;
use crate::fed::strategy::{ClientState, Kept, Settings, Strategy, StrategyKind};
use crate::fed::transport::grpc::GrpcServer;
use crate::fed::transport::in_process::{ClientSide, InProcess, WorkerPool};
use crate::files::checkpoint::STATE_FILE;
use crate::files::{CsvLog, Fixed};
use crate::model::Weights;
use crate::report::records::{Refusal, StrategyRecord};
use crate::report::rows::{ClientRow, CommRow, RoundRow};
use crate::scenario::Kind;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use std::collections::BTreeMap;
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

/// The clients of a run and the files their rounds go to; `D` is what the run kind keeps of a
/// finished strategy.
pub struct Clients<'a, D> {
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
    /// The run kind its checkpoints are of.
    pub kind: Kind,
    /// What the job made of each finished strategy (kept in checkpoints).
    pub done: Vec<D>,
    /// The index of the strategy in progress among the scenario's.
    pub current: usize,
    /// The checkpoint's strategy in progress, until it is started again.
    pub resumed: Option<Ongoing>,
    /// The privacy audit of the strategies finished (kept in checkpoints).
    pub audit: Option<AuditKept>,
    /// The sets the strategy in progress has accepted, when they are audited.
    pub sent: Option<Sent>,
}

/// A strategy running over the clients: the server half and, in process, its clients.
pub struct Running<B: AutodiffBackend> {
    /// The server half.
    pub strategy: Box<dyn Strategy<B>>,
    /// Its settings.
    pub settings: Arc<Settings>,
    in_process: Option<InProcess>,
    expect: Expect,
    /// Its rounds so far.
    pub past: Past,
    /// Where a resumed strategy continues: (task, round).
    pub resume_at: Option<(usize, usize)>,
    /// The sets its clients had sent by the checkpoint it resumed from (client -> (round, set)).
    pub kept_sent: BTreeMap<usize, (usize, Dataset)>,
}

/// The checkpoint of a strategy in progress at `task`, before round `next_round`.
fn ongoing<B: AutodiffBackend>(
    current: usize,
    (task, next_round): (usize, usize),
    past: &Past,
    strategy: &mut dyn Strategy<B>,
    transport: Option<&dyn crate::fed::transport::Transport>,
    sent: Option<&Sent>,
) -> Ongoing {
    Ongoing {
        strategy: current,
        task,
        next_round,
        past: past.clone(),
        global: Weights::of(strategy.global()),
        progress: Progress::Federated {
            memory: strategy.memory().cloned(),
            clients: transport.map_or_else(Vec::new, |t| {
                t.client_states()
                    .iter()
                    .map(|c| c.as_ref().map(Kept::of))
                    .collect()
            }),
            sent: sent.map(snapshot).unwrap_or_default(),
        },
    }
}

impl<'a, D: Clone + Serialize> Clients<'a, D> {
    /// The clients of a run of kind `kind` starting from `states` (or from checkpoint
    /// `resumed`), their rounds logged to `metrics` beside `comm.csv` and `clients.csv`, served
    /// by `remote` when remote.
    pub fn new(
        ctx: &'a RunContext<'a>,
        states: Vec<ClientState>,
        (kind, metrics): (Kind, &str),
        remote: Option<GrpcServer>,
        resumed: Option<FedState<D>>,
    ) -> Result<Self> {
        let f = ctx.scenario().federated_section();
        let st = resumed.unwrap_or(FedState {
            done: Vec::new(),
            seq: 0,
            ongoing: None,
            audit: None,
        });
        Ok(Clients {
            ctx,
            states,
            logs: Logs {
                comm: ctx.csv("comm.csv")?,
                clients: ctx.csv("clients.csv")?,
                metrics: ctx.csv(metrics)?,
            },
            pool: Arc::new(WorkerPool::new(
                f.workers.unwrap_or_else(crate::device::worker_threads),
            )),
            remote,
            seq: st.seq,
            kind,
            done: st.done,
            current: 0,
            resumed: st.ongoing,
            audit: st.audit,
            sent: None,
        })
    }

    /// The run's checkpoint with `ongoing` the strategy in progress (stops the run there when
    /// Ctrl-C asked for it).
    pub fn save(&self, ongoing: Option<Ongoing>) -> Result<()> {
        let state = FedState {
            done: self.done.clone(),
            seq: self.seq,
            ongoing,
            audit: self.audit.clone(),
        };
        self.ctx.checkpoint(self.kind, &state)
    }

    /// The checkpoint of `run` at `task` before round `next_round`, written.
    pub fn save_running<B: AutodiffBackend>(
        &self,
        run: &mut Running<B>,
        at: (usize, usize),
    ) -> Result<()> {
        let transport = run
            .in_process
            .as_ref()
            .map(|p| p as &dyn crate::fed::transport::Transport);
        let o = ongoing::<B>(
            self.current,
            at,
            &run.past,
            run.strategy.as_mut(),
            transport,
            self.sent.as_ref(),
        );
        self.save(Some(o))
    }

    /// Starts strategy `kind` with `settings` (and, in process, its clients), from the
    /// checkpoint when it was in progress there.
    pub fn start<B: AutodiffBackend>(
        &mut self,
        kind: StrategyKind,
        settings: Arc<Settings>,
        device: &B::Device,
    ) -> Result<Running<B>> {
        let mut strategy = build::<B>(kind, settings.clone(), device);
        let expect = settings.expect();
        let mut states = self.states.clone();
        let (mut past, mut resume_at, mut kept_sent) = (Past::default(), None, BTreeMap::new());
        if let Some(o) = self.resumed.take_if(|o| o.strategy == self.current) {
            let bad = |e: String| {
                Error::Checkpoint(format!("{}: {e}", self.ctx.dir.join(STATE_FILE).display()))
            };
            o.global.restore(strategy.global(), device).map_err(bad)?;
            let Progress::Federated {
                memory,
                clients,
                sent,
            } = o.progress
            else {
                return Err(bad(format!(
                    "{} kept a central learner's state",
                    settings.label
                )));
            };
            if let Some(m) = memory {
                strategy.set_memory(m);
            }
            for (c, k) in states.iter_mut().zip(clients) {
                if let Some(k) = k {
                    k.restore(c);
                }
            }
            (past, kept_sent) = (o.past, sent);
            self.ctx.say(&format!(
                "resuming {} at task {} round {}",
                settings.label, o.task, o.next_round
            ));
            resume_at = Some((o.task, o.next_round));
        }
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
            past,
            resume_at,
            kept_sent,
        })
    }

    /// Runs `run`'s rounds of `task` (from where a checkpoint left it), the global model tested
    /// on `test` after each, stopping at accuracy `stop_at` when given; a checkpoint after each.
    pub fn rounds<B: AutodiffBackend>(
        &mut self,
        run: &mut Running<B>,
        (task, test): (usize, &Dataset),
        stop_at: Option<f64>,
        device: &B::Device,
    ) -> Result<()> {
        let ctx = self.ctx;
        let label = run.settings.label.clone();
        let mut cfg = super::setup::engine_config(ctx.loaded);
        cfg.stop_at_accuracy = stop_at;
        let first_round = match run.resume_at.take() {
            Some((t, r)) if t == task => r,
            _ => 0,
        };
        let reached = |r: &Round| stop_at.is_some_and(|t| r.accuracy >= t);
        if first_round > 0 && run.past.rounds.last().is_some_and(reached) {
            return Ok(());
        }
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
            first_round,
        };
        let (logs, past) = (&mut self.logs, &mut run.past);
        let (kind, current, done, seq0) = (self.kind, self.current, &self.done, self.seq);
        let (audit, sent) = (&self.audit, self.sent.as_ref());
        run.strategy.begin_task(task);
        run_rounds::<B>(
            run.strategy.as_mut(),
            transport,
            &fed,
            &mut self.seq,
            device,
            |r, strategy, transport| {
                logs.round(&label, task, r, &mut past.total)?;
                past.rounds.push(r.clone());
                say_round(ctx, &label, task, r, past.total, cfg.min_clients);
                let o = ongoing::<B>(
                    current,
                    (task, r.round + 1),
                    past,
                    strategy,
                    Some(transport),
                    sent,
                );
                let state = FedState {
                    done: done.clone(),
                    seq: seq0 + (r.round + 1 - first_round) as u32,
                    ongoing: Some(o),
                    audit: audit.clone(),
                };
                ctx.checkpoint(kind, &state)
            },
        )?;
        Ok(())
    }
}

/// What the person watching hears of round `r`.
fn say_round(ctx: &RunContext<'_>, label: &str, task: usize, r: &Round, total: u64, min: usize) {
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
            "{label} round {}: {} accepted updates, fewer than min_clients = {min}; the global model is unchanged",
            r.round, r.accepted
        ));
    }
    ctx.say(&format!(
        "{label} task {task} round {}: test accuracy {:.4}, {}/{} updates accepted, {:.3} MB",
        r.round,
        r.accuracy,
        r.accepted,
        r.clients.len(),
        total as f64 / 1e6
    ));
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
        dp: None,
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
