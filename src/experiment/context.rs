//! What every run kind shares: its results folder (the scenario's copy, `run.json`, CSV files
//! created or, when resuming, cut back to the last checkpoint and appended to, the checkpoint,
//! the summary written atomically), the data, the network, where caches live, and how it talks
//! to the person watching.

use super::RunOptions;
use crate::data::augment::Dsa;
use crate::data::Split;
use crate::distill::registry::Env;
use crate::error::{Error, Result};
use crate::files::checkpoint;
use crate::files::{timestamp, write_json_atomic, CsvLog};
use crate::model::ModelSpec;
use crate::report::records::{DatasetInfo, ModelInfo, Outcome, Summary};
use crate::scenario::{Kind, Loaded, Scenario};
use crate::train::events::Progress;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A run in progress.
pub struct RunContext<'a> {
    /// The scenario.
    pub loaded: &'a Loaded,
    /// Its data.
    pub split: &'a Split,
    /// The results folder.
    pub dir: PathBuf,
    /// Where results and caches go, and whether to print.
    pub opts: &'a RunOptions,
    /// True when continuing an interrupted run in `dir`.
    pub resuming: bool,
    /// When the run (or this resumption) started.
    pub started: Instant,
    /// Training images held out of the run as the privacy audit's non-members.
    pub heldout: Option<&'a crate::data::Dataset>,
}

/// Makes `root/<name>-<timestamp>[-k]/`.
pub fn new_run_dir(root: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let base = format!("{name}-{}", timestamp());
    for k in 1.. {
        let dir = if k == 1 {
            root.join(&base)
        } else {
            root.join(format!("{base}-{k}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    unreachable!("some folder name is free")
}

/// Where a run started from, kept beside its results.
#[derive(Serialize, serde::Deserialize)]
pub struct RunInfo {
    /// The scenario file it was started from.
    pub scenario: PathBuf,
    /// When (UTC).
    pub started: String,
}

impl<'a> RunContext<'a> {
    /// A fresh results folder for `loaded`, with the scenario's copy and `run.json`.
    pub fn create(loaded: &'a Loaded, split: &'a Split, opts: &'a RunOptions) -> Result<Self> {
        let dir = new_run_dir(&opts.results_root, &loaded.scenario.name)?;
        let copy = dir.join("scenario.toml");
        std::fs::write(&copy, &loaded.text).map_err(|e| Error::io(&copy, e))?;
        let origin = std::path::absolute(&loaded.path).unwrap_or_else(|_| loaded.path.clone());
        write_json_atomic(
            &dir.join("run.json"),
            &RunInfo {
                scenario: origin,
                started: timestamp(),
            },
        )?;
        Ok(RunContext {
            loaded,
            split,
            dir,
            opts,
            resuming: false,
            started: Instant::now(),
            heldout: None,
        })
    }

    /// The unfinished run in results folder `dir`, to continue from its checkpoint.
    pub fn resumed(loaded: &'a Loaded, split: &'a Split, dir: &Path, opts: &'a RunOptions) -> Self {
        RunContext {
            loaded,
            split,
            dir: dir.to_path_buf(),
            opts,
            resuming: true,
            started: Instant::now(),
            heldout: None,
        }
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.loaded.scenario
    }

    /// The run's CSV file `name`: appended to when resuming, created otherwise.
    pub fn csv<R: Serialize + Default>(&self, name: &str) -> Result<CsvLog<R>> {
        let path = self.dir.join(name);
        if self.resuming {
            CsvLog::append(&path)
        } else {
            CsvLog::create(&path)
        }
    }

    /// Writes the run's checkpoint (`state` of a `kind` run, with the CSV lengths it covers),
    /// then stops the run with [`Error::Interrupted`] if Ctrl-C asked for it.
    pub fn checkpoint<S: Serialize>(&self, kind: Kind, state: &S) -> Result<()> {
        checkpoint::save_state(&self.dir, kind.name(), state)?;
        checkpoint::stop_point(&self.dir)
    }

    /// When resuming: the state of the last checkpoint, the CSVs cut back to the rows it covers
    /// (all removed when there is none). Call before opening any CSV.
    pub fn resume_state<S: DeserializeOwned>(&self, kind: Kind) -> Result<Option<S>> {
        if !self.resuming {
            return Ok(None);
        }
        let (state, lengths) = match checkpoint::load_state::<S>(&self.dir, kind.name())? {
            Some((s, l)) => (Some(s), l),
            None => (None, Default::default()),
        };
        checkpoint::rewind(&self.dir, &lengths)?;
        Ok(state)
    }

    /// When resuming from checkpoint `mark` (None: from the start) written with
    /// [`checkpoint::journal`]: the CSVs cut back to the rows it covers. Call before opening any.
    pub fn rewind_to(&self, mark: Option<&str>) -> Result<()> {
        if !self.resuming {
            return Ok(());
        }
        if mark.is_some() && !self.dir.join(checkpoint::JOURNAL_FILE).exists() {
            self.say("no CSV journal in this results folder: rows after the checkpoint are kept");
            return Ok(());
        }
        checkpoint::rewind(&self.dir, &checkpoint::journaled(&self.dir, mark)?)
    }

    /// A progress bar of `total` steps (hidden when quiet).
    pub fn progress(&self, total: u64) -> Progress {
        if self.opts.quiet {
            Progress::hidden()
        } else {
            Progress::bar(total)
        }
    }

    /// Prints `line` unless quiet (on stderr, beside a progress bar).
    pub fn say(&self, line: &str) {
        if !self.opts.quiet {
            eprintln!("{line}");
        }
    }

    /// The scenario's network, sized for the data.
    pub fn spec(&self) -> ModelSpec {
        self.scenario().model_spec(self.split)
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The DSA strategy by name ([`crate::plan::dsa`]).
    pub fn dsa(&self) -> Result<(String, Dsa)> {
        crate::plan::dsa(self.scenario(), self.split)
    }

    /// The registry's environment for this run: its network, DSA, experts and caches.
    pub fn env(&self) -> Result<Env<'a>> {
        crate::plan::env(self.loaded, self.split, self.opts.results_root.clone())
    }

    /// The summary of this run with the kind's `outcome` and the report lines.
    pub fn summary(&self, device: &str, report: Vec<String>, outcome: Outcome) -> Summary {
        let s = self.scenario();
        Summary {
            name: s.name.clone(),
            seed: s.seed,
            device: device.to_string(),
            dataset: DatasetInfo::of(self.split),
            model: ModelInfo::of(&self.spec()),
            wall_seconds: self.elapsed(),
            report,
            outcome,
            privacy: None,
        }
    }
}
