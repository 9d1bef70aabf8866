//! `kind = "federated_continual"`: clients whose data arrives as a task stream. Each task's
//! training data is partitioned over the clients by `[federated] partition` (seeded by the task);
//! every strategy starts from the same network and learns the tasks in turn (`fedavg_finetune`,
//! `fedavg_replay`, `distilled_memory` over the federation; `joint` centrally); after each task
//! the global model is tested on every task. Writes `comm.csv`, `clients.csv`, `rounds.csv` (as a
//! federated run), `metrics.csv` (the accuracy after each task), each strategy's accuracy matrix
//! (CSV and heatmap), `accuracy_vs_bytes.svg` and the forgetting metrics.

use super::each::{each_strategy, PerStrategy};
use super::resume::{Journal, Ongoing, Past, Progress};
use super::rounds::Clients;
use super::Transport;
use crate::cl::learner::{accuracy_row, fit, Fit};
use crate::cl::metrics::AccuracyMatrix;
use crate::data::stream::Task;
use crate::data::Dataset;
use crate::device::BackendJob;
use crate::error::{Error, Result};
use crate::experiment::RunContext;
use crate::fed::strategy::{ClientState, Settings, StrategyKind};
use crate::files::{CsvLog, Fixed};
use crate::model::Weights;
use crate::plan::continual::{check_budget, tasks};
use crate::plan::federated::{client_streams, FedPlan};
use crate::report::continual::{
    seen_means, stream_header, stream_line, stream_outcome, write_matrix,
};
use crate::report::federated::{write_plot, Series};
use crate::report::records::{Outcome, StreamOutcome, StreamStrategy, Summary, TaskInfo};
use crate::report::rows::StreamRow;
use crate::rng::step_seed;
use crate::scenario::{ContinualSection, Kind, Protocol};
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
    (ctx, journal): (&RunContext<'_>, &mut Journal<Finished>),
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
    let current = journal.current;
    if let Some(o) = journal.resumed.take_if(|o| o.strategy == current) {
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
        ctx.say(&format!("resuming {} at task {}", s.label, rows.len()));
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
        journal.save(
            ctx,
            Some(Ongoing {
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
            }),
        )?;
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
    (clients, journal): (&mut Clients<'_>, &mut Journal<Finished>),
    kind: StrategyKind,
    settings: Arc<Settings>,
    tasks: &[Task],
    on_task: &mut OnTask<'_>,
    device: &B::Device,
) -> Result<Learnt> {
    let mut run = clients.start::<B, _>(journal, kind, settings, device)?;
    let first = run.resume_at.map_or(0, |(t, _)| t);
    for (t, task) in tasks.iter().enumerate().skip(first) {
        clients.rounds::<B, _>(journal, &mut run, (t, &task.test), None, device)?;
        let row = accuracy_row(run.strategy.global(), tasks, false, device);
        let total = run.past.total;
        on_task(t, &row, total)?;
        run.past.bytes_after.push(total);
        run.past.rows.push(row);
        clients.save_running(journal, &mut run, (t + 1, 0))?;
    }
    Ok(Learnt {
        memory_images: run.strategy.memory_images(),
        rows: run.past.rows,
        bytes_after: run.past.bytes_after,
        rounds: run.past.rounds,
    })
}

/// The run's shared pieces, made once: the stream and each client's slice of every task.
struct Stream {
    tasks: Vec<Task>,
    slices: Vec<Vec<Dataset>>,
}

impl Stream {
    /// The stream of `plan`'s run, refused when a client's data or a memory cannot work.
    fn new(ctx: &RunContext<'_>, plan: &FedPlan, c: &ContinualSection) -> Result<Self> {
        let tasks = tasks(ctx.loaded, ctx.split)?;
        let slices = client_streams(ctx.loaded, &tasks)?;
        for t in 0..tasks.len() {
            let data: Vec<Dataset> = slices.iter().map(|c| c[t].clone()).collect();
            plan.check_clients(&data, Some(t))?;
        }
        check_memories(plan, c, &tasks, &slices)?;
        Ok(Stream { tasks, slices })
    }
}

/// Memories that could not hold one image per class seen: the server's (distilled_memory, all
/// the stream's slots) and each client's (fedavg_replay, the slots of the classes it holds).
fn check_memories(
    plan: &FedPlan,
    c: &ContinualSection,
    tasks: &[Task],
    slices: &[Vec<Dataset>],
) -> Result<()> {
    let f = &plan.section;
    let uses = |k: StrategyKind| f.strategies.iter().any(|e| e.kind == k);
    if uses(StrategyKind::DistilledMemory) {
        check_budget(c.budget(), tasks, "the server's memory")?;
    }
    if !uses(StrategyKind::FedavgReplay) {
        return Ok(());
    }
    let held = |sl: &[Dataset]| -> usize {
        sl.iter()
            .map(|d| d.class_counts().iter().filter(|&&n| n > 0).count())
            .sum()
    };
    match (slices.iter().map(|sl| held(sl)).enumerate()).find(|&(_, n)| n > f.replay_memory_total) {
        Some((id, n)) => Err(Error::Setting(format!(
            "federated.replay_memory_total = {}: client {id} sees {n} classes over the stream and needs at least one image for each",
            f.replay_memory_total
        ))),
        None => Ok(()),
    }
}

/// A federated continual run's strategies: the stream, and what the finished ones come to.
struct Strategies<'r> {
    ctx: &'r RunContext<'r>,
    plan: &'r FedPlan,
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
        clients: &mut Clients<'_>,
        journal: &mut Journal<Finished>,
        index: usize,
        device: &B::Device,
    ) -> Result<Finished> {
        let (entry, st) = (
            &self.plan.section.strategies[index],
            &self.plan.settings[index],
        );
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
        let learnt = match entry.kind {
            StrategyKind::Joint => joint::<B>((ctx, journal), st, tasks, &mut on_task, device)?,
            kind => {
                let fed = (clients, journal);
                federated::<B>(fed, kind, st.clone(), tasks, &mut on_task, device)?
            }
        };
        let baseline = Some(self.baseline.clone());
        let m = AccuracyMatrix::from_rows(learnt.rows, baseline).map_err(Error::Setting)?;
        write_matrix(&ctx.dir, &ctx.scenario().name, &label, &m)?;
        let curve = (seen_means(&m).into_iter().zip(&learnt.bytes_after))
            .map(|((_, acc), &b)| (b as f64 / 1e6, acc))
            .collect();
        let kept = (learnt.bytes_after, learnt.memory_images);
        let outcome = stream_outcome(&m, &learnt.rounds, kept, t0.elapsed().as_secs_f64());
        Ok(Finished {
            label,
            outcome,
            curve,
        })
    }

    fn take(&mut self, d: &Finished) {
        self.report.push(stream_line(&d.label, &d.outcome));
        self.series.push((d.label.clone(), d.curve.clone()));
        self.results.insert(d.label.clone(), d.outcome.clone());
    }
}

impl BackendJob for StreamJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let c = ctx.scenario().continual_section();
        let plan = FedPlan::new(ctx.loaded, ctx.split, ctx.opts.results_root.clone())?;
        let f = &plan.section;
        let resumed = ctx.resume_state(Kind::FederatedContinual)?;
        let stream = Stream::new(ctx, &plan, &c)?;
        let states = (stream.slices.iter().enumerate())
            .map(|(id, sl)| ClientState::streaming(id, sl.clone()))
            .collect();
        let remote = self.transport.server(f)?;
        let mut journal = Journal::new(Kind::FederatedContinual, resumed);
        let mut clients = Clients::new((ctx, &plan), states, "rounds.csv", remote)?;
        let first = (plan.settings.first()).ok_or_else(|| Error::Setting("no strategy".into()))?;
        let initial = &mut first.initial::<B>(&device);
        let mut per = Strategies {
            ctx,
            plan: &plan,
            stream: &stream,
            log: ctx.csv("metrics.csv")?,
            baseline: accuracy_row(initial, &stream.tasks, false, &device),
            results: BTreeMap::new(),
            series: Vec::new(),
            report: vec![stream_header()],
        };
        let count = f.strategies.len();
        each_strategy::<B, _>(&mut clients, &mut journal, &mut per, count, &device)?;
        let what = (
            "mean accuracy on the tasks seen",
            "mean test accuracy (tasks seen)",
        );
        write_plot((&ctx.dir, &ctx.scenario().name), what, &per.series)?;
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
