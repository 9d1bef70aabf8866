//! The page over many runs (`distillery report results/`): a table of every run in the folder
//! (kind, name, seed, headline figures, a link to its own report, each rewritten), unfinished
//! runs named as such, and with `--compare` the distill runs' methods paired by seed as
//! `distillery compare` pairs them.

use super::headline::{brief, kind};
use super::page::{document, esc, table, table_html};
use super::run::{write_run_report, REPORT};
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::report::compare::{self, Scores};
use crate::report::records::Summary;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What the page over many runs adds.
#[derive(Clone, Debug, Default)]
pub struct IndexOptions {
    /// Pair the distill runs' methods by seed.
    pub compare: bool,
    /// Pair every other method against this one (with `compare`).
    pub against: Option<String>,
}

/// What `distillery report` wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The page.
    pub page: PathBuf,
    /// Finished runs it reports (1 for a run's own report).
    pub runs: usize,
    /// Run folders without a summary (not finished).
    pub unfinished: usize,
}

/// `distillery report DIR`: the run's report when `dir` is a finished run's folder, else the
/// page over every run folder in `dir` (`dir/report.html`) and each run's own report.
pub fn report(dir: &Path, opts: &IndexOptions) -> Result<Written> {
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such folder (give a results folder, or the folder of many)",
            dir.display()
        )));
    }
    if dir.join("scenario.toml").is_file() {
        if opts.compare {
            return Err(Error::Usage(format!(
                "{}: --compare pairs many runs; give the folder that holds them",
                dir.display()
            )));
        }
        let page = write_run_report(dir)?;
        return Ok(Written {
            page,
            runs: 1,
            unfinished: 0,
        });
    }
    write_index(dir, opts)
}

/// One run folder as the index sees it.
enum Entry {
    Finished(PathBuf, Box<Summary>),
    Unfinished(PathBuf),
}

fn entries(root: &Path) -> Result<Vec<Entry>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenario.toml").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| {
            if d.join("summary.json").is_file() {
                Ok(Entry::Finished(d.clone(), Box::new(Summary::load(&d)?)))
            } else {
                Ok(Entry::Unfinished(d))
            }
        })
        .collect()
}

/// The finished run folders in `root` (each with a summary.json), sorted.
pub fn finished_runs(root: &Path) -> Result<Vec<PathBuf>> {
    Ok(entries(root)?
        .into_iter()
        .filter_map(|e| match e {
            Entry::Finished(d, _) => Some(d),
            Entry::Unfinished(_) => None,
        })
        .collect())
}

fn folder_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `root/report.html` over every run folder in `root` (and each finished run's report).
pub fn write_index(root: &Path, opts: &IndexOptions) -> Result<Written> {
    let entries = entries(root)?;
    if entries.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no results folders in it (folders with a scenario.toml)",
            root.display()
        )));
    }
    let mut rows = Vec::new();
    let (mut runs, mut unfinished) = (0, 0);
    for e in &entries {
        match e {
            Entry::Finished(dir, s) => {
                write_run_report(dir)?;
                runs += 1;
                let name = folder_name(dir);
                rows.push(vec![
                    kind(s).into(),
                    esc(&s.name),
                    s.seed.to_string(),
                    esc(&s.device),
                    format!("{:.1}", s.wall_seconds),
                    esc(&brief(s)),
                    format!("<a href=\"{0}/{REPORT}\">{0}</a>", esc(&name)),
                ]);
            }
            Entry::Unfinished(dir) => {
                unfinished += 1;
                let name = folder_name(dir);
                let row = ["?", "", "", "", "", "not finished (no summary.json)"];
                let mut row: Vec<String> = row.iter().map(|c| c.to_string()).collect();
                row[1] = esc(&name);
                row.push(esc(&name));
                rows.push(row);
            }
        }
    }
    let head = [
        "kind", "name", "seed", "device", "wall s", "headline", "report",
    ];
    let mut body = format!(
        "<p>{runs} finished runs, {unfinished} unfinished, in {}.</p>\n",
        esc(&root.display().to_string())
    );
    body += &table_html(&head, &rows);
    if opts.compare {
        body += &comparison(&entries, opts.against.as_deref())?;
    }
    let page = root.join(REPORT);
    write_atomic(&page, document("Runs", &body).as_bytes())?;
    Ok(Written {
        page,
        runs,
        unfinished,
    })
}

/// The distill runs' methods per model, per seed, and paired against `against`.
fn comparison(entries: &[Entry], against: Option<&str>) -> Result<String> {
    let dirs: Vec<PathBuf> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Finished(d, s) if s.distill().is_some() => Some(d.clone()),
            _ => None,
        })
        .collect();
    let mut out = String::from("<h2>Compared by seed</h2>\n");
    if dirs.is_empty() {
        return Ok(out + "<p>No distill runs to compare.</p>\n");
    }
    let scores = compare::load(&dirs)?;
    if let Some(a) = against {
        if !scores.keys().any(|(m, _)| m == a) {
            let methods: BTreeSet<&str> = scores.keys().map(|(m, _)| m.as_str()).collect();
            let methods: Vec<&str> = methods.into_iter().collect();
            return Err(Error::Usage(format!(
                "--against {a}: no run has that method (they have: {})",
                methods.join(", ")
            )));
        }
    }
    let models: BTreeSet<&String> = scores.keys().map(|(_, m)| m).collect();
    for model in models {
        out += &format!("<h3>{}: test accuracy (%) per seed</h3>\n", esc(model));
        out += &seed_table(&scores, model);
        // A model the baseline was not evaluated on says so in its place.
        let text = compare::report(&scores, model, against).unwrap_or_else(|e| e.to_string());
        out += &format!("<pre>\n{}</pre>\n", esc(&text));
    }
    Ok(out)
}

fn seed_table(scores: &Scores, model: &str) -> String {
    let of_model: Vec<_> = scores.iter().filter(|((_, m), _)| m == model).collect();
    let seeds: BTreeSet<u64> = of_model
        .iter()
        .flat_map(|(_, s)| s.keys().copied())
        .collect();
    let mut head = vec!["method".to_string()];
    head.extend(seeds.iter().map(|s| format!("seed {s}")));
    let rows: Vec<Vec<String>> = of_model
        .iter()
        .map(|((method, _), by_seed)| {
            let mut r = vec![method.clone()];
            r.extend(seeds.iter().map(|s| {
                by_seed
                    .get(s)
                    .map_or("-".into(), |x| format!("{:.2}", 100.0 * x.mean))
            }));
            r
        })
        .collect();
    table(&head, &rows)
}
