//! The fidelity table (`distillery fidelity DIR`): one row per distill scenario of a folder (such
//! as `scenarios/paper/`), each with our set's accuracy from the last finished run of exactly
//! that scenario, the baselines of the same run, the published figure the scenario names in its
//! `[published]` table, the budget it ran at and its wall time; rows not yet run say so with
//! their budget.

use super::html::headline;
use super::records::{Accuracy, Outcome, Summary};
use crate::error::{Error, Result};
use crate::scenario::{self, Kind, Loaded, Published};
use std::path::{Path, PathBuf};

/// One scenario's row.
#[derive(Clone, Debug)]
pub struct Row {
    /// The scenario file.
    pub file: PathBuf,
    /// The scenario.
    pub loaded: Loaded,
    /// The summary of its last finished run (None: not run yet).
    pub summary: Option<Summary>,
}

/// The finished runs under a results folder, each with its scenario's text, read once (and no
/// summary but the rows' own: another run's broken summary is not the table's concern).
pub struct Runs(Vec<(PathBuf, String)>);

impl Runs {
    /// The run folders of `root` that hold a `summary.json`, in name order (none when `root`
    /// does not exist yet).
    pub fn scan(root: &Path) -> Result<Runs> {
        if !root.is_dir() {
            return Ok(Runs(Vec::new()));
        }
        let mut runs = Vec::new();
        for d in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
            let d = d.map_err(|e| Error::io(root, e))?.path();
            if !d.join("summary.json").is_file() {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(d.join("scenario.toml")) {
                runs.push((d, text));
            }
        }
        runs.sort();
        Ok(Runs(runs))
    }

    /// The last run of exactly `loaded`'s text (a run of an edited scenario, or one started
    /// with `--seed`, is another row's). Folder names end in the start time, so the last in
    /// name order is the newest.
    pub fn last(&self, loaded: &Loaded) -> Option<&Path> {
        (self.0.iter().rev())
            .find(|(_, text)| *text == loaded.text)
            .map(|(d, _)| d.as_path())
    }
}

/// The distill scenarios of `dir` (every `*.toml`, by name), each checked; an error names the
/// file that is not a valid distill scenario.
pub fn scenarios(dir: &Path) -> Result<Vec<(PathBuf, Loaded)>> {
    let files = crate::files::files_ending(dir, ".toml")?;
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no scenario files (*.toml) in it",
            dir.display()
        )));
    }
    let mut out = Vec::new();
    for f in files {
        let loaded = scenario::load(&f)?;
        if loaded.scenario.kind != Kind::Distill {
            return Err(Error::Usage(format!(
                "{}: the fidelity table takes kind = \"distill\" scenarios, not {:?}",
                f.display(),
                loaded.scenario.kind.name()
            )));
        }
        out.push((f, loaded));
    }
    Ok(out)
}

/// The last finished run under `root` of exactly `loaded`'s text ([`Runs::last`]).
pub fn last_run(root: &Path, loaded: &Loaded) -> Result<Option<PathBuf>> {
    Ok(Runs::scan(root)?.last(loaded).map(Path::to_path_buf))
}

/// The rows of `scenarios` from `runs`.
pub fn rows(scenarios: Vec<(PathBuf, Loaded)>, runs: &Runs) -> Result<Vec<Row>> {
    (scenarios.into_iter())
        .map(|(file, loaded)| {
            let summary = runs.last(&loaded).map(Summary::load).transpose()?;
            Ok(Row {
                file,
                loaded,
                summary,
            })
        })
        .collect()
}

/// `mean ± std (n)` in percent.
fn percent(a: &Accuracy) -> String {
    format!(
        "{} ({})",
        headline::percent(a.mean, Some(a.std)),
        a.test_acc.len()
    )
}

/// The budget a scenario runs at, in words.
pub fn budget(loaded: &Loaded) -> String {
    let s = &loaded.scenario;
    let m = loaded.method();
    let d = s.distill_section();
    let mut parts = vec![format!("{} iterations", m.iterations())];
    if let Some(t) = d.run.max_seconds {
        parts.push(format!("at most {t:.0} s"));
    }
    if m.trajectory_matching().is_some() {
        let x = s.experts_section();
        parts.push(format!("{} experts x {} epochs", x.count, x.epochs));
    }
    if let Some(r) = m.trajectory_matching().and_then(|t| t.lr_labels) {
        parts.push(format!("labels learned at lr {r}"));
    }
    if let crate::distill::MethodConfig::Dm(dm) = &m {
        if dm.expand > 1 {
            parts.push(format!("expand {}", dm.expand));
        }
        if let Some(p) = &dm.model_pool {
            parts.push(format!(
                "model pool ({} net(s) x {} steps of {} per iteration)",
                p.train_nets, p.train_steps, p.batch
            ));
        }
        if dm.ce_weight > 0.0 {
            parts.push(format!("ce_weight {}", dm.ce_weight));
        }
    }
    let e = s.eval_section();
    parts.push(format!("eval {} epochs x {} nets", e.epochs, e.repeats));
    if e.labels == crate::distill::eval::EvalLabels::Soft {
        parts.push("soft labels where the set has them".into());
    }
    if let Some(v) = e.validation {
        parts.push(format!(
            "scored on {:.0}% of the training images held out, not the test set",
            100.0 * v
        ));
    }
    parts.push(format!("width {} depth {}", s.model.width, s.model.depth));
    parts.join(", ")
}

/// The published column: the figure with its spread.
fn published(p: Option<&Published>) -> (String, String) {
    match p {
        Some(p) => {
            let fig = match p.std {
                Some(sd) => format!("{:.1} ± {sd:.1}", p.accuracy),
                None => format!("{:.1}", p.accuracy),
            };
            let note = match p.note.trim() {
                "" => p.source.clone(),
                n => format!("{}; {n}", p.source),
            };
            (fig, note)
        }
        None => ("-".into(), "-".into()),
    }
}

/// The accuracies of `method` on the run's first evaluation model.
fn accuracy_of<'a>(s: &'a Summary, method: &str) -> Option<&'a Accuracy> {
    let Outcome::Distill(d) = &s.outcome else {
        return None;
    };
    let first = d.eval.models.first()?.name();
    d.results.get(method)?.get(first)
}

/// The method column: `idm` for DM with all three of IDM's additions, else the method's name.
fn label(m: &crate::distill::MethodConfig) -> &'static str {
    match m {
        crate::distill::MethodConfig::Dm(d)
            if d.model_pool.is_some() && d.ce_weight > 0.0 && d.expand > 1 =>
        {
            "idm"
        }
        other => other.name(),
    }
}

/// One row of the table.
fn line(r: &Row) -> String {
    let s = &r.loaded.scenario;
    let method = r.loaded.method();
    let name = method.name();
    let ipc = s.distill_section().run.ipc;
    let (pub_fig, source) = published(s.published.as_ref());
    let ours_mean = (r.summary.as_ref()).and_then(|sum| accuracy_of(sum, name).map(|a| a.mean));
    let gap = match (ours_mean, s.published.as_ref()) {
        (Some(m), Some(p)) => format!("{:+.1}", 100.0 * m - p.accuracy),
        _ => "-".into(),
    };
    let (data, ours, random, herding, wall) = match &r.summary {
        Some(sum) => {
            let cell = |m: &str| accuracy_of(sum, m).map_or("-".into(), percent);
            (
                sum.dataset.name.clone(),
                cell(name),
                cell("random"),
                cell("herding"),
                format!("{:.0} s", sum.wall_seconds),
            )
        }
        None => {
            let not = "not run".to_string();
            let data = s.data.name().to_string();
            (data, not.clone(), not.clone(), not, "-".into())
        }
    };
    format!(
        "| {} | {} | {data} | {ipc} | {ours} | {random} | {herding} | {pub_fig} | {gap} | {source} | {} | {wall} |",
        crate::files::name_of(&r.file),
        label(&method),
        budget(&r.loaded)
    )
}

/// The table as Markdown: a header naming where it came from, then one row per scenario.
pub fn markdown(rows: &[Row], (dir, root): (&Path, &Path)) -> String {
    let measured = rows.iter().filter(|r| r.summary.is_some()).count();
    let tuning = !rows.is_empty()
        && (rows.iter()).all(|r| r.loaded.scenario.eval_section().validation.is_some());
    let title = match tuning {
        true => "# Tuning: settings compared on a validation split, not the test set",
        false => "# Fidelity: our distilled sets beside the published figures",
    };
    let mut out = vec![
        title.to_string(),
        String::new(),
        format!(
            "Written by `distillery fidelity {} --results {}` from the last finished run of each scenario there ({measured} of {} rows measured). Accuracies are {} accuracy in percent on the first evaluation architecture: mean ± population sd over the evaluation networks (their number in brackets); random and herding are the same run's baselines, evaluated the same way. The published figure and its source are the scenario's `[published]` table, and the gap is ours minus it in points (the published figures come from longer budgets, wider networks and, for CIFAR-10, the full training set: see each source); a method `idm` is DM with all three of IDM's additions; the budget is the scenario's; wall is the run's whole time (distillation, baselines, evaluation) on the machine it ran on. A row \"not run\" has not been run at its budget yet. A row whose budget says it was scored on held-out training images (`[eval] validation`, the scenarios of `scenarios/tune/`) reports validation accuracy: that is where settings are chosen, before a row of `scenarios/paper/` measures them once on the test set.",
            dir.display(),
            root.display(),
            rows.len(),
            if tuning { "validation" } else { "test" }
        ),
        String::new(),
        "| scenario | method | data | IPC | ours | random | herding | published | gap | source | budget | wall |".into(),
        "|---|---|---|---|---|---|---|---|---|---|---|---|".into(),
    ];
    out.extend(rows.iter().map(line));
    out.push(String::new());
    out.join("\n")
}
