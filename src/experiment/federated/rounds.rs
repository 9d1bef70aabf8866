//! Running strategies over the clients (in this process or over gRPC): one strategy's rounds
//! for one task, every round written to `comm.csv`, `clients.csv` and `metrics.csv` as it ends
//! ([`crate::report::federated`]) and checkpointed.

use super::resume::{FedState, Journal, Ongoing, Past, Progress};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::experiment::RunContext;
use crate::fed::engine::{run_rounds, Federation, Round};
use crate::fed::message::ClientOutcome;
use crate::fed::protocol::Expect;
use crate::fed::strategy::build::build;
use crate::fed::strategy::recording::{snapshot, Sent};
use crate::fed::strategy::{ClientState, Kept, Settings, Strategy, StrategyKind};
use crate::fed::transport::grpc::GrpcServer;
use crate::fed::transport::in_process::{InProcess, WorkerPool};
use crate::files::checkpoint::STATE_FILE;
use crate::model::Weights;
use crate::plan::federated::FedPlan;
use crate::report::federated::Logs;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The federation of a run: its clients, the worker pool or gRPC server they run on, and the
/// files their rounds go to.
pub struct Clients<'a> {
    /// The run.
    pub ctx: &'a RunContext<'a>,
    /// Its plan.
    pub plan: &'a FedPlan,
    /// Every client as it starts (each strategy's in-process clients start from these).
    pub states: Vec<ClientState>,
    /// The CSV files.
    pub logs: Logs,
    /// Worker threads for in-process clients' compute.
    pub pool: Arc<WorkerPool>,
    /// The gRPC server, when clients are remote processes.
    pub remote: Option<GrpcServer>,
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

impl<'a> Clients<'a> {
    /// The clients of a run starting from `states`, their rounds logged to `metrics` beside
    /// `comm.csv` and `clients.csv`, served by `remote` when remote.
    pub fn new(
        (ctx, plan): (&'a RunContext<'a>, &'a FedPlan),
        states: Vec<ClientState>,
        metrics: &str,
        remote: Option<GrpcServer>,
    ) -> Result<Self> {
        Ok(Clients {
            ctx,
            plan,
            states,
            logs: Logs {
                comm: ctx.csv("comm.csv")?,
                clients: ctx.csv("clients.csv")?,
                metrics: ctx.csv(metrics)?,
            },
            pool: Arc::new(WorkerPool::new(
                (plan.section.workers).unwrap_or_else(crate::device::worker_threads),
            )),
            remote,
        })
    }

    /// The checkpoint of `run` at `task` before round `next_round`, written.
    pub fn save_running<B: AutodiffBackend, D: Clone + Serialize>(
        &self,
        journal: &Journal<D>,
        run: &mut Running<B>,
        at: (usize, usize),
    ) -> Result<()> {
        let transport = run
            .in_process
            .as_ref()
            .map(|p| p as &dyn crate::fed::transport::Transport);
        let o = ongoing::<B>(
            journal.current,
            at,
            &run.past,
            run.strategy.as_mut(),
            transport,
            journal.sent.as_ref(),
        );
        journal.save(self.ctx, Some(o))
    }

    /// Starts strategy `kind` with `settings` (and, in process, its clients), from the
    /// checkpoint when it was in progress there.
    pub fn start<B: AutodiffBackend, D>(
        &mut self,
        journal: &mut Journal<D>,
        kind: StrategyKind,
        settings: Arc<Settings>,
        device: &B::Device,
    ) -> Result<Running<B>> {
        let mut strategy = build::<B>(kind, settings.clone(), device);
        let expect = settings.expect();
        let mut states = self.states.clone();
        let (mut past, mut resume_at, mut kept_sent) = (Past::default(), None, BTreeMap::new());
        let current = journal.current;
        if let Some(o) = journal.resumed.take_if(|o| o.strategy == current) {
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
                let side = self.plan.client_side(expect.clone());
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
    pub fn rounds<B: AutodiffBackend, D: Clone + Serialize>(
        &mut self,
        journal: &mut Journal<D>,
        run: &mut Running<B>,
        (task, test): (usize, &Dataset),
        stop_at: Option<f64>,
        device: &B::Device,
    ) -> Result<()> {
        let ctx = self.ctx;
        let label = run.settings.label.clone();
        let mut cfg = self.plan.engine.clone();
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
        let Journal {
            kind,
            done,
            seq,
            current,
            audit,
            sent,
            ..
        } = journal;
        let (kind, current, seq0, sent) = (*kind, *current, *seq, sent.as_ref());
        run.strategy.begin_task(task);
        run_rounds::<B>(
            run.strategy.as_mut(),
            transport,
            &fed,
            seq,
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
