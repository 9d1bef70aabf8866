//! One method's set in a distill run: loaded when a resumed run already saved it; else built by
//! the registry and made (from the last checkpoint when resuming), then saved with its picture.

use super::observer::mark;
use super::observer::{Logs, Probe, RunObserver};
use super::plan::Plan;
use crate::device::DeviceKind;
use crate::distill::mtt::check::StepCheck;
use crate::distill::{registry, Checkpoint, Ctx, MethodConfig, SyntheticSet};
use crate::error::{Error, Result};
use crate::report::records::{Distilled, ExpertsInfo};
use crate::train::events::{Progress, Schedule};
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::time::Instant;

/// What the methods of a run have made so far.
#[derive(Default)]
pub struct Made {
    /// Each method's set, in order.
    pub sets: Vec<(String, SyntheticSet)>,
    /// Per optimising method: iterations and seconds.
    pub distilled: BTreeMap<String, Distilled>,
    /// Per trajectory-matching method on a GPU: the device check.
    pub checks: BTreeMap<String, StepCheck>,
    /// The experts, when a method used them.
    pub experts: Option<ExpertsInfo>,
    /// Seconds of mid-run evaluations and coverage.
    pub excluded: f64,
}

/// The journal's name for `method`'s finished set.
fn done_mark(method: &str) -> String {
    format!("{method}@done")
}

/// The checkpoint a resumed run continues from: the last finished set of the methods in order,
/// or the checkpoint of the first unfinished one (None: it starts over).
pub fn resume_mark(plan: &Plan<'_>) -> Result<Option<String>> {
    let dir = &plan.ctx.dir;
    let mut last = None;
    for m in &plan.methods {
        let name = m.name();
        if dir.join(format!("{name}.safetensors")).exists() {
            last = Some(done_mark(name));
            continue;
        }
        let ck = dir.join(format!("{name}.checkpoint.safetensors"));
        if ck.exists() {
            let done = Checkpoint::load(&ck)?.set.provenance.iterations;
            last = Some(mark(name, done));
        }
        break;
    }
    Ok(last)
}

/// True when a resumed run that starts over must keep its rows: experts' rows are written once
/// per expert as the cache fills, and a resumed run does not retrain those already cached.
pub fn keeps_rows_from_start(plan: &Plan<'_>) -> bool {
    plan.methods
        .iter()
        .any(|m| m.trajectory_matching().is_some())
}

/// An observer for `method` over the run's logs.
fn observer<'a, 'p, B: AutodiffBackend>(
    plan: &'a Plan<'p>,
    method: &'a str,
    logs: &'a mut Logs,
    probe: &'a mut Probe<B>,
    progress: &'a Progress,
    device: &B::Device,
) -> RunObserver<'a, 'p, B> {
    let d = &plan.distill;
    let iterations = plan
        .methods
        .iter()
        .find(|m| m.name() == method)
        .map_or(0, MethodConfig::iterations);
    RunObserver {
        plan,
        method,
        logs,
        probe,
        schedule: Schedule {
            iterations,
            log_every: d.run.log_every,
            checkpoint_every: d.run.checkpoint_every,
            eval_every: d.run.eval_every,
            coverage_every: d.run.coverage_every,
            max_seconds: d.run.max_seconds,
        },
        checkpoint: plan
            .ctx
            .dir
            .join(format!("{method}.checkpoint.safetensors")),
        progress,
        device: device.clone(),
        started: Instant::now(),
        excluded: 0.0,
        selection: 0.0,
        checked: None,
    }
}

/// A context for `method` whose events go to `obs`.
fn context<'a, B: AutodiffBackend>(
    plan: &Plan<'_>,
    obs: &'a mut RunObserver<'_, '_, B>,
    resume: Option<Checkpoint>,
) -> Ctx<'a, B> {
    let split = plan.ctx.split;
    Ctx {
        device: obs.device.clone(),
        seed: plan.seed,
        dataset: split.cache_name(),
        normalization: split.pixel_normalization(),
        progress: obs.progress.clone(),
        observer: Some(obs),
        resume,
    }
}

/// Runs `f` with a context whose events `method`'s observer hears (experts-only runs).
pub fn with_observer<B: AutodiffBackend, T>(
    plan: &Plan<'_>,
    method: &str,
    logs: &mut Logs,
    probe: &mut Probe<B>,
    progress: &Progress,
    device: &B::Device,
    f: impl FnOnce(&mut Ctx<'_, B>) -> Result<T>,
) -> Result<T> {
    let mut obs = observer::<B>(plan, method, logs, probe, progress, device);
    let mut ctx = context(plan, &mut obs, None);
    f(&mut ctx)
}

/// The set of `method`: loaded if saved, else made and saved.
pub fn set<B: AutodiffBackend>(
    plan: &Plan<'_>,
    method: &MethodConfig,
    logs: &mut Logs,
    probe: &mut Probe<B>,
    progress: &Progress,
    device: &B::Device,
    made: &mut Made,
) -> Result<SyntheticSet> {
    let run = plan.ctx;
    let name = method.name();
    let path = run.dir.join(format!("{name}.safetensors"));
    if run.resuming && path.exists() {
        return SyntheticSet::load(&path);
    }
    let ck_path = run.dir.join(format!("{name}.checkpoint.safetensors"));
    let resume = match run.resuming && ck_path.exists() {
        true => {
            let ck = Checkpoint::load(&ck_path)?;
            let done = ck.set.provenance.iterations;
            progress.skip(done as u64);
            run.say(&format!("{name}: resuming from iteration {done}"));
            Some(ck)
        }
        false => None,
    };
    let first = resume.as_ref().map_or(0, |c| c.set.provenance.iterations);
    let mut env = run.env()?;
    env.window = Some(plan.window_search());
    let kind = run.scenario().device;
    env.check_device = (kind != DeviceKind::Cpu).then(|| kind.name().to_string());
    if method.trajectory_matching().is_some() {
        let x = &env.experts;
        made.experts = Some(ExpertsInfo {
            dir: env
                .expert_plan(plan.train, &run.split.cache_name(), plan.seed)
                .dir,
            count: x.count,
            epochs: x.epochs,
        });
    }
    let mut obs = observer::<B>(plan, name, logs, probe, progress, device);
    let t0 = Instant::now();
    let mut distiller =
        registry::build(method, plan.train, &env, &mut context(plan, &mut obs, None))?;
    let prepared = t0.elapsed().as_secs_f64();
    obs.started = Instant::now();
    let set = distiller.distill(
        plan.train,
        plan.distill.run.ipc,
        &mut context(plan, &mut obs, resume),
    )?;
    if method.optimises() {
        let reached = set.provenance.iterations;
        made.distilled.insert(
            name.to_string(),
            Distilled {
                iterations: reached,
                iterations_this_run: reached.saturating_sub(first),
                seconds: obs.spent(),
                preparation_seconds: prepared + obs.selection,
                stopped_by_budget: reached < method.iterations(),
                dp: method.dp_spent(&plan.train.class_counts(), 1, reached),
            },
        );
    }
    made.excluded += obs.excluded - obs.selection;
    if let Some(c) = obs.checked.take() {
        made.checks.insert(name.to_string(), c);
    }
    crate::files::checkpoint::journal(&run.dir, &done_mark(name))?;
    set.save(&path)?;
    set.save_png(&run.dir.join(format!("{name}.png")))?;
    if ck_path.exists() {
        std::fs::remove_file(&ck_path).map_err(|e| Error::io(&ck_path, e))?;
    }
    Ok(set)
}
