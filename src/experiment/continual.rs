//! `kind = "continual"`: build the task stream, run every strategy on it (each from the same
//! initial network, [`crate::cl::harness`]), and write `metrics.csv`, `memory.csv`, each
//! strategy's accuracy matrix (CSV and heatmap), the per-task and average-accuracy plots, and
//! the forgetting metrics.

use super::RunContext;
use crate::cl::harness::{Harness, Learner, StreamPoint, TaskDone};
use crate::cl::metrics::AccuracyMatrix;
use crate::device::BackendJob;
use crate::distill::registry::Env;
use crate::error::{Error, Result};
use crate::files::{write_atomic, CsvLog, Fixed};
use crate::plan::continual::ContinualPlan;
use crate::report::continual::{report, seen_means, write_matrix};
use crate::report::plot::lines_svg;
use crate::report::records::{
    ContinualOutcome, Outcome, SlotInfo, StrategyOutcome, Summary, TaskInfo,
};
use crate::report::rows::{ContinualRow, MemoryRow};
use crate::scenario::ClEntry;
use crate::scenario::Kind;
use crate::train::events::Progress;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// A continual run.
pub struct ContinualJob<'a> {
    /// The run.
    pub ctx: RunContext<'a>,
}

/// A strategy's name, results, and mean accuracy on the tasks seen after each task.
type Streamed = (String, StrategyOutcome, Vec<(f64, f64)>);

/// A continual run's checkpoint, written after every task: the strategies finished, and where
/// the one in progress stands (its index among the scenario's).
#[derive(Clone, Default, Serialize, Deserialize)]
struct State {
    done: Vec<Streamed>,
    ongoing: Option<(usize, StreamPoint)>,
    /// Each finished memory strategy's final memory, for the privacy audit at the end.
    #[serde(default)]
    memories: Vec<(String, crate::data::Dataset)>,
}

/// One continual run in progress: the stream, what memory methods need, the files, and what
/// its checkpoint keeps.
struct Streams<'a, 'h> {
    ctx: &'a RunContext<'a>,
    harness: &'a Harness<'h>,
    env: &'a Env<'a>,
    baseline: Vec<f64>,
    log: CsvLog<ContinualRow>,
    mem_log: CsvLog<MemoryRow>,
    progress: Progress,
    state: State,
}

impl Streams<'_, '_> {
    /// Runs strategy `entry` over the stream, writing its rows and files as it goes; returns its
    /// name, its results and its mean accuracy on the tasks seen after each task.
    fn strategy<B: AutodiffBackend>(
        &mut self,
        (index, entry): (usize, &ClEntry),
        device: &B::Device,
    ) -> Result<Streamed> {
        let name = entry.name();
        let method = match entry {
            ClEntry::Memory(m) => Some(self.ctx.loaded.method_config(m)?),
            _ => None,
        };
        let learner = match (entry, &method) {
            (ClEntry::Finetune, _) => Learner::Finetune,
            (ClEntry::Joint, _) => Learner::Joint,
            (_, Some(m)) => Learner::Memory {
                method: m,
                env: self.env,
            },
            (ClEntry::Memory(_), None) => unreachable!("memory entries have a method"),
        };
        let t0 = Instant::now();
        let from = match self.state.ongoing.take() {
            Some((i, p)) if i == index => {
                self.progress.skip(p.next_task as u64);
                self.ctx
                    .say(&format!("resuming {name} at task {}", p.next_task));
                Some(p)
            }
            _ => None,
        };
        let (ctx, log, mem_log, progress) =
            (self.ctx, &mut self.log, &mut self.mem_log, &self.progress);
        let (finished, memories) = (&self.state.done, &self.state.memories);
        let learned = self
            .harness
            .run::<B>(&learner, device, from, |done: TaskDone<'_>| {
                for (j, a) in done.row.iter().enumerate() {
                    log.row(&ContinualRow {
                        strategy: name.clone(),
                        after_task: done.task,
                        task: j,
                        test_acc: Fixed(*a),
                        memory_images: done.memory.len(),
                        train_loss: Fixed(done.loss),
                        elapsed_s: Fixed(ctx.elapsed()),
                    })?;
                }
                for (task, class, images) in done.memory.counts() {
                    mem_log.row(&MemoryRow {
                        strategy: name.clone(),
                        after_task: done.task,
                        task,
                        class,
                        images,
                    })?;
                }
                let t = done.task;
                let seen = done.row[..=t].iter().sum::<f64>() / (t + 1) as f64;
                progress.tick();
                progress.say(&format!(
                "{name:>9} after task {t}: mean accuracy on tasks seen {seen:.4}, memory {} images",
                done.memory.len()
            ));
                let state = State {
                    done: finished.clone(),
                    ongoing: Some((index, done.point)),
                    memories: memories.clone(),
                };
                ctx.checkpoint(Kind::Continual, &state)
            })?;
        let m = AccuracyMatrix::from_rows(learned.rows, Some(self.baseline.clone()))
            .map_err(Error::Setting)?;
        write_matrix(&ctx.dir, &ctx.scenario().name, &name, &m)?;
        let memory = &learned.memory;
        if method.is_some() && !memory.is_empty() {
            self.state.memories.push((name.clone(), memory.dataset()));
        }
        let outcome = StrategyOutcome {
            metrics: m.summary(),
            memory_images: memory.len(),
            memory_per_slot: memory
                .counts()
                .into_iter()
                .map(|(task, class, images)| SlotInfo {
                    task,
                    class,
                    images,
                })
                .collect(),
            seconds: t0.elapsed().as_secs_f64(),
            memory_fill_seconds: learned.fill_seconds,
            accuracy_matrix: m.r.clone(),
        };
        Ok((name, outcome, seen_means(&m)))
    }
}

impl BackendJob for ContinualJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let s = ctx.scenario();
        let plan = ContinualPlan::new(ctx.loaded, ctx.split)?;
        let (c, tasks) = (&plan.section, &plan.tasks);
        let harness = plan.harness();
        let env = ctx.env()?;
        let state: State = ctx.resume_state(Kind::Continual)?.unwrap_or_default();
        let mut run = Streams {
            ctx,
            harness: &harness,
            env: &env,
            baseline: harness.baseline::<B>(&device),
            log: ctx.csv("metrics.csv")?,
            mem_log: ctx.csv("memory.csv")?,
            progress: ctx.progress((c.strategies.len() * tasks.len()) as u64),
            state,
        };
        let mut results = Vec::new();
        let mut avg_series = Vec::new();
        for (name, outcome, series) in run.state.done.clone() {
            run.progress.skip(tasks.len() as u64);
            avg_series.push((name.clone(), series));
            results.push((name, outcome));
        }
        for (index, entry) in c.strategies.iter().enumerate().skip(results.len()) {
            let done = run.strategy::<B>((index, entry), &device)?;
            run.state.done.push(done.clone());
            ctx.checkpoint(Kind::Continual, &run.state)?;
            let (name, outcome, series) = done;
            avg_series.push((name.clone(), series));
            results.push((name, outcome));
        }
        let svg = lines_svg(
            &format!("{}: mean accuracy on the tasks seen so far", s.name),
            "after training on task",
            "mean test accuracy (tasks seen)",
            &avg_series,
        );
        write_atomic(&ctx.dir.join("average_accuracy.svg"), svg.as_bytes())?;
        let memory_dsa = c.dsa.then_some(&plan.dsa);
        let privacy = super::audit::continual::audit::<B>(
            ctx,
            tasks,
            &run.state.memories,
            (&plan.memory_train, memory_dsa),
            &device,
        )?;
        run.progress.finish();
        let mut lines = report(
            &results
                .iter()
                .map(|(n, r)| (n.clone(), r))
                .collect::<Vec<_>>(),
        );
        let outcome = ContinualOutcome {
            stream: c.stream,
            tasks: tasks.iter().map(TaskInfo::from).collect(),
            task_incremental: c.task_incremental,
            protocol: c.protocol,
            memory_budget: c.budget().into(),
            memory_shares: "each slot (a class of a task) keeps floor(B / slots) images, the first B mod slots slots one more; shrinking drops the images added last".into(),
            replay_fraction: c.replay_fraction,
            train: plan.train.clone(),
            random_init_accuracy: run.baseline.clone(),
            strategies: results.into_iter().collect::<BTreeMap<_, _>>(),
        };
        let privacy = privacy.map(|(record, more)| {
            lines.extend(more);
            record
        });
        let mut summary = ctx.summary(backend, lines, Outcome::Continual(Box::new(outcome)));
        summary.privacy = privacy;
        Ok(summary)
    }
}
