//! `kind = "federated_continual"`: clients whose data arrives as a task stream. Each task's
//! training data is partitioned over the clients by `[federated] partition` (seeded by the task);
//! every strategy starts from the same network and learns the tasks in turn (`fedavg_finetune`,
//! `fedavg_replay`, `distilled_memory` over the federation; `joint` centrally); after each task
//! the global model is tested on every task. Writes `comm.csv`, `clients.csv`, `rounds.csv` (as a
//! federated run), `metrics.csv` (the accuracy after each task), each strategy's accuracy matrix
//! (CSV and heatmap), `accuracy_vs_bytes.svg` and the forgetting metrics.

use super::each::{each_strategy, write_plot, PerStrategy, Series};
use super::resume::{Ongoing, Past, Progress};
use super::rounds::{record, Clients};
use super::{setup, Transport};
use crate::cl::learner::{accuracy_row, fit, Fit};
use crate::cl::metrics::AccuracyMatrix;
use crate::data::stream::Task;
use crate::data::Dataset;
use crate::device::BackendJob;
use crate::error::{Error, Result};
use crate::experiment::continual::{seen_means, write_matrix};
use crate::experiment::RunContext;
use crate::fed::strategy::{ClientState, Settings, StrategyKind};
use crate::files::{CsvLog, Fixed};
use crate::model::Weights;
use crate::report::records::{Outcome, StreamOutcome, StreamStrategy, Summary, TaskInfo};
use crate::report::rows::StreamRow;
use crate::rng::step_seed;
use crate::scenario::{FederatedSection, Kind, Protocol};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// A strategy a federated continual run has finished, as its checkpoint keeps it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Finished {
    label: String,
    outcome: StreamStrategy,
    curve: Vec<(f64, f64)>,
}

/// A federated continual run.
pub struct StreamJob<'a> {
    /// The run.
    pub ctx: RunContext<'a>,
    /// Where its clients run.
    pub transport: Transport,
}

/// Hears each task's end: the task, the accuracy on every task, the bytes exchanged so far.
type OnTask<'a> = dyn FnMut(usize, &[f64], u64) -> Result<()> + 'a;

/// A strategy's rows of the accuracy matrix, with the bytes exchanged by the end of each task.
struct Learnt {
    rows: Vec<Vec<f64>>,
    bytes_after: Vec<u64>,
    rounds: Vec<crate::fed::engine::Round>,
    memory_images: usize,
}

/// `joint`: the network trained centrally on all tasks' data so far (`[train]` for as many
/// epochs per task as a FedAvg client makes: `epochs x rounds`), a fresh copy of the initial
/// network per task under GDumb.
fn joint<B: AutodiffBackend>(
    clients: &mut Clients<'_, Finished>,
    s: &Settings,
    tasks: &[Task],
    on_task: &mut OnTask<'_>,
    device: &B::Device,
) -> Result<Learnt> {
    let c = s
        .continual
        .as_ref()
        .ok_or_else(|| Error::Setting("joint runs on a stream".into()))?;
    let mut model = s.initial::<B>(device);
    let mut rng = ChaCha12Rng::seed_from_u64(step_seed(s.seed, 0x5eed));
    let mut train = s.local.clone();
    train.epochs *= s.rounds.max(1);
    let fit_cfg = Fit {
        train: &train,
        replay_fraction: c.replay_fraction,
        dsa: None,
        heads: None,
    };
    let mut seen = Dataset::empty(s.shape);
    seen.classes = s.classes.clone();
    let mut rows = Vec::new();
    let current = clients.current;
    if let Some(o) = clients.resumed.take_if(|o| o.strategy == current) {
        o.global
            .restore(&mut model, device)
            .map_err(Error::Checkpoint)?;
        let Progress::Central { rng: kept } = o.progress else {
            return Err(Error::Checkpoint(format!(
                "the checkpoint of {} keeps no training stream",
                s.label
            )));
        };
        (rng, rows) = (kept, o.past.rows);
        clients
            .ctx
            .say(&format!("resuming {} at task {}", s.label, rows.len()));
    }
    for (t, task) in tasks.iter().enumerate() {
        seen.images.extend_from_slice(&task.train.images);
        seen.labels.extend_from_slice(&task.train.labels);
        if t < rows.len() {
            continue;
        }
        if c.protocol == Protocol::Gdumb {
            model = s.initial::<B>(device);
        }
        fit::<B, _>(&mut model, &seen, None, &fit_cfg, &mut rng, device)?;
        let row = accuracy_row(&mut model, tasks, false, device);
        on_task(t, &row, 0)?;
        rows.push(row);
        clients.save(Some(Ongoing {
            strategy: current,
            task: t + 1,
            next_round: 0,
            past: Past {
                bytes_after: vec![0; rows.len()],
                rows: rows.clone(),
                ..Past::default()
            },
            global: Weights::of(&model),
            progress: Progress::Central { rng: rng.clone() },
        }))?;
    }
    Ok(Learnt {
        bytes_after: vec![0; tasks.len()],
        rows,
        rounds: Vec::new(),
        memory_images: 0,
    })
}

/// A federated strategy over the stream: each task's rounds, then the global model tested on
/// every task; a checkpoint after each round and each task.
fn federated<B: AutodiffBackend>(
    clients: &mut Clients<'_, Finished>,
    kind: StrategyKind,
    settings: Arc<Settings>,
    tasks: &[Task],
    on_task: &mut OnTask<'_>,
    device: &B::Device,
) -> Result<Learnt> {
    let mut run = clients.start::<B>(kind, settings, device)?;
    let first = run.resume_at.map_or(0, |(t, _)| t);
    for (t, task) in tasks.iter().enumerate().skip(first) {
        clients.rounds::<B>(&mut run, (t, &task.test), None, device)?;
        let row = accuracy_row(run.strategy.global(), tasks, false, device);
        let total = run.past.total;
        on_task(t, &row, total)?;
        run.past.bytes_after.push(total);
        run.past.rows.push(row);
        clients.save_running(&mut run, (t + 1, 0))?;
    }
    Ok(Learnt {
        memory_images: run.strategy.memory_images(),
        rows: run.past.rows,
        bytes_after: run.past.bytes_after,
        rounds: run.past.rounds,
    })
}

/// Memories that could not hold one image per class seen: the server's (distilled_memory, all
/// the stream's slots) and each client's (fedavg_replay, the slots of the classes it holds).
fn check_budgets(ctx: &RunContext<'_>, tasks: &[Task], slices: &[Vec<Dataset>]) -> Result<()> {
    let s = ctx.scenario();
    let (f, c) = (s.federated_section(), s.continual_section());
    let uses = |k: StrategyKind| f.strategies.iter().any(|e| e.kind == k);
    let slots: usize = tasks.iter().map(|t| t.classes.len()).sum();
    let held = |sl: &[Dataset]| -> usize {
        sl.iter()
            .map(|d| d.class_counts().iter().filter(|&&n| n > 0).count())
            .sum()
    };
    if let (true, crate::cl::memory::Budget::Total(t)) =
        (uses(StrategyKind::DistilledMemory), c.budget())
    {
        if t < slots {
            return Err(Error::Setting(format!(
                "continual.memory_total = {t}: the server's memory needs at least one image for each of the stream's {slots} classes"
            )));
        }
    }
    if uses(StrategyKind::FedavgReplay) {
        if let Some((id, n)) = slices
            .iter()
            .map(|sl| held(sl))
            .enumerate()
            .find(|&(_, n)| n > f.replay_memory_total)
        {
            return Err(Error::Setting(format!(
                "federated.replay_memory_total = {}: client {id} sees {n} classes over the stream and needs at least one image for each",
                f.replay_memory_total
            )));
        }
    }
    Ok(())
}

/// The run's shared pieces, made once.
struct Stream {
    tasks: Vec<Task>,
    slices: Vec<Vec<Dataset>>,
    settings: Vec<Arc<Settings>>,
}

impl Stream {
    fn new(ctx: &RunContext<'_>) -> Result<Self> {
        let s = ctx.scenario();
        let f = s.federated_section();
        let tasks = s.stream(ctx.split).map_err(|m| {
            Error::Setting(format!(
                "{}: [continual] tasks: {m}",
                ctx.loaded.path.display()
            ))
        })?;
        let slices = setup::client_streams(ctx.loaded, &tasks)?;
        let settings = setup::all_settings(ctx, &f)?;
        for (e, st) in f.strategies.iter().zip(&settings) {
            if e.kind.distils() {
                for t in 0..tasks.len() {
                    let data: Vec<Dataset> = slices.iter().map(|c| c[t].clone()).collect();
                    setup::check_clients(st, &data)
                        .map_err(|e| Error::Setting(format!("task {t}: {e}")))?;
                }
            }
        }
        check_budgets(ctx, &tasks, &slices)?;
        Ok(Stream {
            tasks,
            slices,
            settings,
        })
    }
}

/// A federated continual run's strategies: the stream, and what the finished ones come to.
struct Strategies<'r> {
    ctx: &'r RunContext<'r>,
    f: &'r FederatedSection,
    stream: &'r Stream,
    log: CsvLog<StreamRow>,
    /// The initial network's accuracy on every task.
    baseline: Vec<f64>,
    results: BTreeMap<String, StreamStrategy>,
    series: Vec<Series>,
    report: Vec<String>,
}

impl<B: AutodiffBackend> PerStrategy<B> for Strategies<'_> {
    type Done = Finished;

    fn run(
        &mut self,
        clients: &mut Clients<'_, Finished>,
        index: usize,
        device: &B::Device,
    ) -> Result<Finished> {
        let (entry, st) = (&self.f.strategies[index], &self.stream.settings[index]);
        let (ctx, tasks, log) = (self.ctx, &self.stream.tasks, &mut self.log);
        let label = entry.label();
        let t0 = Instant::now();
        let mut on_task = |t: usize, row: &[f64], bytes: u64| -> Result<()> {
            for (j, a) in row.iter().enumerate() {
                log.row(&StreamRow {
                    strategy: label.clone(),
                    after_task: t,
                    task: j,
                    test_acc: Fixed(*a),
                    cumulative_bytes: bytes,
                    elapsed_s: Fixed(ctx.elapsed()),
                })?;
            }
            let seen = row[..=t].iter().sum::<f64>() / (t + 1) as f64;
            ctx.say(&format!(
                "{label} after task {t}: mean accuracy on tasks seen {seen:.4}"
            ));
            Ok(())
        };
        let mut learnt = match entry.kind {
            StrategyKind::Joint => joint::<B>(clients, st, tasks, &mut on_task, device)?,
            kind => federated::<B>(clients, kind, st.clone(), tasks, &mut on_task, device)?,
        };
        let rows = std::mem::take(&mut learnt.rows);
        let m =
            AccuracyMatrix::from_rows(rows, Some(self.baseline.clone())).map_err(Error::Setting)?;
        write_matrix(&ctx.dir, &ctx.scenario().name, &label, &m)?;
        let curve = (seen_means(&m).into_iter().zip(&learnt.bytes_after))
            .map(|((_, acc), &b)| (b as f64 / 1e6, acc))
            .collect();
        let outcome = strategy_outcome(learnt, &m, t0.elapsed().as_secs_f64());
        Ok(Finished {
            label,
            outcome,
            curve,
        })
    }

    fn take(&mut self, d: &Finished) {
        self.report.push(line(&d.label, &d.outcome));
        self.series.push((d.label.clone(), d.curve.clone()));
        self.results.insert(d.label.clone(), d.outcome.clone());
    }
}

impl BackendJob for StreamJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let s = ctx.scenario();
        let (f, c) = (s.federated_section(), s.continual_section());
        let resumed = ctx.resume_state(Kind::FederatedContinual)?;
        let stream = Stream::new(ctx)?;
        let states = (stream.slices.iter().enumerate())
            .map(|(id, sl)| ClientState::streaming(id, sl.clone()))
            .collect();
        let remote = self.transport.server(&f)?;
        let kind = (Kind::FederatedContinual, "rounds.csv");
        let mut clients = Clients::new(ctx, states, kind, remote, resumed)?;
        let first =
            (stream.settings.first()).ok_or_else(|| Error::Setting("no strategy".into()))?;
        let initial = &mut first.initial::<B>(&device);
        let mut per = Strategies {
            ctx,
            f: &f,
            stream: &stream,
            log: ctx.csv("metrics.csv")?,
            baseline: accuracy_row(initial, &stream.tasks, false, &device),
            results: BTreeMap::new(),
            series: Vec::new(),
            report: vec![header()],
        };
        each_strategy::<B, _>(&mut clients, &mut per, f.strategies.len(), &device)?;
        let what = (
            "mean accuracy on the tasks seen",
            "mean test accuracy (tasks seen)",
        );
        write_plot(ctx, what, &per.series)?;
        let mut report = per.report;
        report.push(
            "ACC: mean of the last row; forgetting: Chaudhry max-minus-last; BWT: GEM paper (T-1); MB: encoded protobuf messages, all clients".into(),
        );
        let outcome = StreamOutcome {
            stream: c.stream,
            tasks: stream.tasks.iter().map(TaskInfo::from).collect(),
            clients: f.clients,
            partition: f.partition.clone(),
            client_sizes: (stream.slices.iter())
                .map(|sl| sl.iter().map(Dataset::len).collect())
                .collect(),
            protocol: c.protocol,
            memory_budget: c.budget().into(),
            replay_memory_total: f.replay_memory_total,
            quantization: f.quantization.name().into(),
            transport: self.transport.name().into(),
            random_init_accuracy: per.baseline,
            strategies: per.results,
        };
        Ok(ctx.summary(
            backend,
            report,
            Outcome::FederatedContinual(Box::new(outcome)),
        ))
    }
}

/// What a strategy's stream comes to: `learnt` with its accuracy matrix `m`.
fn strategy_outcome(learnt: Learnt, m: &AccuracyMatrix, seconds: f64) -> StreamStrategy {
    let rec = record(&learnt.rounds, None, seconds);
    StreamStrategy {
        metrics: m.summary(),
        accuracy_matrix: m.r.clone(),
        rounds: rec.rounds,
        bytes_up: rec.bytes_up,
        bytes_down: rec.bytes_down,
        bytes_total: rec.bytes_total,
        bytes_after_task: learnt.bytes_after,
        client_compute_seconds: rec.client_compute_seconds,
        memory_images: learnt.memory_images,
        not_accepted: rec.not_accepted,
        seconds: rec.seconds,
    }
}

/// The report table's header.
fn header() -> String {
    format!(
        "{:<22} {:>8} {:>11} {:>9} {:>12} {:>10}",
        "strategy", "ACC", "forgetting", "BWT", "MB total", "client s"
    )
}

/// One strategy's line of the report table.
fn line(name: &str, r: &StreamStrategy) -> String {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    let m = &r.metrics;
    format!(
        "{name:<22} {:>8} {:>11} {:>9} {:>12.3} {:>10.1}",
        fmt(m.average_accuracy),
        fmt(m.forgetting),
        fmt(m.backward_transfer),
        r.bytes_total as f64 / 1e6,
        r.client_compute_seconds
    )
}
