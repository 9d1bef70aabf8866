//! Runs a validated scenario: one thin adapter per kind ([`train`], [`distill`], [`continual`],
//! [`federated`]; [`remote`] for gRPC servers and clients) on a shared [`RunContext`] that owns the
//! results folder `results/<name>-<timestamp>/`: `scenario.toml`, CSV rows written as the run goes,
//! `summary.json` written atomically at the end.

pub mod audit;
pub mod context;
pub mod continual;
pub mod distill;
pub mod federated;
pub mod fidelity;
pub mod remote;
pub mod train;

use crate::device::{self, DeviceKind};
use crate::error::{Error, Result};
use crate::files::checkpoint;
use crate::files::write_json_atomic;
use crate::report::records::Summary;
use crate::scenario::{self, Kind, Loaded};
pub use context::RunContext;
use std::path::{Path, PathBuf};

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The folder that receives `<name>-<timestamp>/` and the caches (`experts/`, `scores/`).
    pub results_root: PathBuf,
    /// No progress bar and no per-evaluation lines.
    pub quiet: bool,
}

impl RunOptions {
    /// Options for a run without progress output, with results under `root`.
    pub fn quiet(root: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            results_root: root.into(),
            quiet: true,
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            results_root: PathBuf::from("results"),
            quiet: false,
        }
    }
}

/// What a finished run left behind.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The run's results folder.
    pub dir: PathBuf,
    /// What it wrote to `summary.json`.
    pub summary: Summary,
}

/// Runs the scenario file at `path`.
pub fn run_file(path: &Path, opts: &RunOptions) -> Result<RunOutput> {
    run_file_on(path, None, None, opts)
}

/// Runs the scenario file at `path`, on `device` and with `seed` instead of the ones it names
/// when given (the results folder's copy of the scenario then names them, so `--resume` uses
/// them too). An `[experts] seed` in the file is kept: runs at other seeds share its experts.
pub fn run_file_on(
    path: &Path,
    device: Option<DeviceKind>,
    seed: Option<u64>,
    opts: &RunOptions,
) -> Result<RunOutput> {
    let mut loaded = scenario::load(path)?;
    if let Some(d) = device {
        loaded = loaded.with_top_key("device", d.name())?;
    }
    if let Some(s) = seed {
        loaded = loaded.with_top_key("seed", s as i64)?;
    }
    run(&loaded, opts)
}

/// Runs a loaded scenario, writing a new results folder.
pub fn run(loaded: &Loaded, opts: &RunOptions) -> Result<RunOutput> {
    let device = device::check(loaded.scenario.device)?;
    let (split, heldout) = load_split(loaded)?;
    let mut ctx = RunContext::create(loaded, &split, opts)?;
    ctx.heldout = heldout.as_ref();
    execute(ctx, device)
}

/// The scenario's data, its relative paths resolved against its folder; its training set only
/// the audit's members when `[audit]` holds some out.
pub fn load_data(loaded: &Loaded) -> Result<crate::data::Split> {
    Ok(load_split(loaded)?.0)
}

/// [`load_data`], and the training images held out as the audit's non-members.
pub fn load_split(loaded: &Loaded) -> Result<(crate::data::Split, Option<crate::data::Dataset>)> {
    let split = loaded
        .scenario
        .data
        .load(&|p| loaded.resolve(p), loaded.scenario.seed)?;
    let split = crate::plan::validation(split, &loaded.scenario);
    Ok(crate::plan::hold_out(split, &loaded.scenario))
}

/// Continues an interrupted run in its results folder `dir` from its last checkpoint (distill:
/// each method's; federated: the last round; continual: the last task; train: the last epoch;
/// audit: the last set audited),
/// its CSVs cut back to the
/// rows that checkpoint covers; the scenario is the copy in `dir`, its relative paths resolved
/// as the original's.
pub fn resume(dir: &Path, opts: &RunOptions) -> Result<RunOutput> {
    let loaded = resumable(dir)?;
    let device = device::check(loaded.scenario.device)?;
    let (split, heldout) = load_split(&loaded)?;
    let mut ctx = RunContext::resumed(&loaded, &split, dir, opts);
    ctx.heldout = heldout.as_ref();
    execute(ctx, device)
}

/// The scenario of the unfinished run in results folder `dir` (its copy there, relative paths
/// resolved as the original's), or why it cannot resume.
pub fn resumable(dir: &Path) -> Result<Loaded> {
    let copy = dir.join("scenario.toml");
    if !copy.exists() {
        return Err(Error::Checkpoint(format!(
            "{}: not a results folder (no scenario.toml)",
            dir.display()
        )));
    }
    if dir.join("summary.json").exists() {
        return Err(Error::Checkpoint(format!(
            "{}: this run already finished (summary.json exists); start a new one with `distillery run`",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&copy).map_err(|e| Error::io(&copy, e))?;
    let origin = std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<context::RunInfo>(&t).ok())
        .map(|r| r.scenario)
        .unwrap_or(copy.clone());
    let mut loaded = scenario::parse(&text, &copy)?;
    loaded.path = origin;
    Ok(loaded)
}

fn execute(ctx: RunContext<'_>, device: device::Available) -> Result<RunOutput> {
    let dir = ctx.dir.clone();
    let report = ctx.scenario().report.clone();
    let summary = match ctx.scenario().kind {
        Kind::Train => device::dispatch(device, train::TrainJob { ctx }),
        Kind::Federated => device::dispatch(
            device,
            federated::FederatedJob {
                ctx,
                transport: federated::Transport::InProcess,
            },
        ),
        Kind::Continual => device::dispatch(device, continual::ContinualJob { ctx }),
        Kind::FederatedContinual => device::dispatch(
            device,
            federated::continual::StreamJob {
                ctx,
                transport: federated::Transport::InProcess,
            },
        ),
        Kind::Distill | Kind::Experts => device::dispatch(device, distill::DistillJob { ctx }),
        Kind::Audit => device::dispatch(device, audit::AuditJob { ctx }),
    }?;
    write_json_atomic(&dir.join("summary.json"), &summary)?;
    checkpoint::finished(&dir)?;
    crate::report::at_end(&dir, &report);
    Ok(RunOutput { dir, summary })
}
