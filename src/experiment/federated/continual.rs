//! `kind = "federated_continual"`: clients whose data arrives as a task stream. Each task's
//! training data is partitioned over the clients by `[federated] partition` (seeded by the task);
//! every strategy starts from the same network and learns the tasks in turn (`fedavg_finetune`,
//! `fedavg_replay`, `distilled_memory` over the federation; `joint` centrally); after each task
//! the global model is tested on every task. Writes `comm.csv`, `clients.csv`, `rounds.csv` (as a
//! federated run), `metrics.csv` (the accuracy after each task), each strategy's accuracy matrix
//! (CSV and heatmap), `accuracy_vs_bytes.svg` and the forgetting metrics.

use super::resume::{FedState, Ongoing, Weights};
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
use crate::files::checkpoint::STATE_FILE;
use crate::files::{write_atomic, CsvLog, Fixed};
use crate::report::plot::lines_svg;
use crate::report::records::{
    BudgetInfo, Outcome, StreamOutcome, StreamStrategy, Summary, TaskInfo,
};
use crate::report::rows::StreamRow;
use crate::rng::step_seed;
use crate::scenario::Protocol;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The kind a federated continual run's checkpoints are of.
const KIND: &str = "federated_continual";

/// A strategy a federated continual run has finished, as its checkpoint keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Finished {
    index: usize,
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
    clients: &mut Clients<'_>,
    s: &Settings,
    tasks: &[Task],
    on_task: &mut OnTask<'_>,
    device: &B::Device,
) -> Result<Learnt> {
    let c = s
        .continual
        .as_ref()
        .ok_or_else(|| Error::Other("joint runs on a stream".into()))?;
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
        rng = o
            .rng
            .ok_or_else(|| Error::Checkpoint("the checkpoint of joint keeps no RNG".into()))?;
        rows = o.rows;
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
            rounds: Vec::new(),
            total: 0,
            rows: rows.clone(),
            bytes_after: vec![0; rows.len()],
            global: Weights::of(&model),
            memory: None,
            clients: Vec::new(),
            rng: Some(rng.clone()),
            sent: Default::default(),
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
    clients: &mut Clients<'_>,
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
            return Err(Error::Other(format!(
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
            return Err(Error::Other(format!(
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
            Error::Other(format!(
                "{}: [continual] tasks: {m}",
                ctx.loaded.path.display()
            ))
        })?;
        let slices = setup::client_streams(ctx.loaded, &tasks)?;
        let cache = ctx.opts.results_root.clone();
        let settings: Vec<Arc<Settings>> = f
            .strategies
            .iter()
            .map(|e| setup::settings(ctx.loaded, ctx.split, cache.clone(), e).map(Arc::new))
            .collect::<Result<_>>()?;
        for (e, st) in f.strategies.iter().zip(&settings) {
            if e.kind.distils() {
                for t in 0..tasks.len() {
                    let data: Vec<Dataset> = slices.iter().map(|c| c[t].clone()).collect();
                    setup::check_clients(st, &data)
                        .map_err(|e| Error::Other(format!("task {t}: {e}")))?;
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

impl BackendJob for StreamJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let s = ctx.scenario();
        let (f, c) = (s.federated_section(), s.continual_section());
        let resumed: Option<FedState> = ctx.resume_state(KIND)?;
        let stream = Stream::new(ctx)?;
        let tasks = &stream.tasks;
        let mut clients = Clients::new(
            ctx,
            stream
                .slices
                .iter()
                .enumerate()
                .map(|(id, sl)| ClientState::streaming(id, sl.clone()))
                .collect(),
            (KIND, "rounds.csv"),
            self.transport.server(&f)?,
        )?;
        let mut log: CsvLog<StreamRow> = ctx.csv("metrics.csv")?;
        let first = stream
            .settings
            .first()
            .ok_or_else(|| Error::Other("no strategy".into()))?;
        let baseline = accuracy_row(&mut first.initial::<B>(&device), tasks, false, &device);
        let mut results = BTreeMap::new();
        let (mut series, mut report) = (Vec::new(), vec![header()]);
        let next = match resumed {
            Some(st) => restore(st, &mut clients, &mut results, &mut series, &mut report)?,
            None => 0,
        };
        for (index, (entry, st)) in f.strategies.iter().zip(&stream.settings).enumerate() {
            if index < next {
                continue;
            }
            clients.current = index;
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
                StrategyKind::Joint => joint::<B>(&mut clients, st, tasks, &mut on_task, &device)?,
                kind => {
                    federated::<B>(&mut clients, kind, st.clone(), tasks, &mut on_task, &device)?
                }
            };
            let m =
                AccuracyMatrix::from_rows(std::mem::take(&mut learnt.rows), Some(baseline.clone()))
                    .map_err(Error::Other)?;
            write_matrix(&ctx.dir, &s.name, &label, &m)?;
            let cum: Vec<(f64, f64)> = seen_means(&m)
                .into_iter()
                .zip(&learnt.bytes_after)
                .map(|((_, acc), &b)| (b as f64 / 1e6, acc))
                .collect();
            series.push((label.clone(), cum));
            let outcome = strategy_outcome(learnt, &m, t0.elapsed().as_secs_f64());
            report.push(line(&label, &outcome));
            let done = Finished {
                index,
                label: label.clone(),
                outcome: outcome.clone(),
                curve: series.last().map(|s| s.1.clone()).unwrap_or_default(),
            };
            clients
                .done
                .push(serde_json::to_value(&done).map_err(|e| Error::Other(e.to_string()))?);
            results.insert(label, outcome);
            clients.save(None)?;
        }
        drop(clients.remote.take());
        let svg = lines_svg(
            &format!(
                "{}: mean accuracy on the tasks seen against bytes exchanged",
                s.name
            ),
            "cumulative MB (up + down)",
            "mean test accuracy (tasks seen)",
            &series,
        );
        write_atomic(&ctx.dir.join("accuracy_vs_bytes.svg"), svg.as_bytes())?;
        report.push(
            "ACC: mean of the last row; forgetting: Chaudhry max-minus-last; BWT: GEM paper (T-1); MB: encoded protobuf messages, all clients".into(),
        );
        let outcome = StreamOutcome {
            stream: c.stream,
            tasks: tasks
                .iter()
                .map(|t| TaskInfo {
                    id: t.id,
                    classes: t.classes.clone(),
                    train: t.train.len(),
                    test: t.test.len(),
                })
                .collect(),
            clients: f.clients,
            partition: f.partition.clone(),
            client_sizes: stream
                .slices
                .iter()
                .map(|sl| sl.iter().map(Dataset::len).collect())
                .collect(),
            protocol: c.protocol,
            memory_budget: budget_info(c.budget()),
            replay_memory_total: f.replay_memory_total,
            quantization: f.quantization.name().into(),
            transport: self.transport.name().into(),
            random_init_accuracy: baseline,
            strategies: results,
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

/// The memory budget as the summary states it.
fn budget_info(b: crate::cl::memory::Budget) -> BudgetInfo {
    match b {
        crate::cl::memory::Budget::PerClass(n) => BudgetInfo {
            per_class: Some(n),
            total: None,
        },
        crate::cl::memory::Budget::Total(n) => BudgetInfo {
            per_class: None,
            total: Some(n),
        },
    }
}

/// Puts back the strategies checkpoint `st` had finished (results, curves, report lines) and
/// hands its strategy in progress to `clients`; the index of the first strategy left to run.
fn restore(
    st: FedState,
    clients: &mut Clients<'_>,
    results: &mut BTreeMap<String, StreamStrategy>,
    series: &mut Vec<(String, Vec<(f64, f64)>)>,
    report: &mut Vec<String>,
) -> Result<usize> {
    let mut next = 0;
    for v in &st.done {
        let d: Finished = serde_json::from_value(v.clone()).map_err(|e| {
            Error::Checkpoint(format!(
                "{}: {e}",
                clients.ctx.dir.join(STATE_FILE).display()
            ))
        })?;
        report.push(line(&d.label, &d.outcome));
        series.push((d.label.clone(), d.curve));
        results.insert(d.label, d.outcome);
        next = d.index + 1;
    }
    next = st.ongoing.as_ref().map_or(next, |o| o.strategy);
    (clients.done, clients.seq, clients.resumed) = (st.done, st.seq, st.ongoing);
    Ok(next)
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
