//! One run's `report.html`: what ran (the scenario's text, seed, device, budget, wall time),
//! the headline table, every SVG plot the run wrote (inline), each set's images, the privacy
//! audit's tables and closest pairs, and links to the run's other files.

use super::headline::{headline, kind};
use super::page::{document, esc, png_figure, svg_figure, table};
use super::privacy;
use crate::distill::SyntheticSet;
use crate::error::{Error, Result};
use crate::files::{files_ending, name_of, write_atomic};
use crate::report::records::{BudgetInfo, Outcome, Summary};
use std::path::{Path, PathBuf};

/// The file name of a run's report.
pub const REPORT: &str = "report.html";

/// Writes `dir/report.html` for the finished run in results folder `dir`; returns its path.
pub fn write_run_report(dir: &Path) -> Result<PathBuf> {
    let page = run_page(dir)?;
    let path = dir.join(REPORT);
    write_atomic(&path, page.as_bytes())?;
    Ok(path)
}

/// The report page of the finished run in results folder `dir`.
pub fn run_page(dir: &Path) -> Result<String> {
    let s = Summary::load(dir)?;
    let scenario = dir.join("scenario.toml");
    let text = std::fs::read_to_string(&scenario).map_err(|e| Error::io(&scenario, e))?;
    let mut body = what_ran(&s, &text);
    let h = headline(&s);
    body += "<h2>Headline</h2>\n";
    body += &table(&h.columns, &h.rows);
    body += &report_lines(&s);
    body += &plots(dir)?;
    body += &set_images(dir)?;
    if let Some(p) = &s.privacy {
        body += &privacy::section(p, dir)?;
    }
    body += &files(dir)?;
    Ok(document(&format!("{} ({})", s.name, kind(&s)), &body))
}

fn what_ran(s: &Summary, text: &str) -> String {
    let facts = [
        ("kind", kind(s).to_string()),
        ("seed", s.seed.to_string()),
        ("device", s.device.clone()),
        (
            "data",
            format!(
                "{}: {} training, {} test images of {}x{}x{}, {} classes",
                s.dataset.name,
                s.dataset.train,
                s.dataset.test,
                s.dataset.shape[0],
                s.dataset.shape[1],
                s.dataset.shape[2],
                s.dataset.classes
            ),
        ),
        (
            "network",
            format!(
                "{} ({} parameters)",
                serde_json::to_string(&s.model.spec).unwrap_or_default(),
                s.model.params
            ),
        ),
        ("budget", budget(s)),
        ("wall time", format!("{:.1} s", s.wall_seconds)),
    ];
    let mut out = String::from("<h2>What ran</h2>\n<dl>\n");
    for (k, v) in facts {
        out += &format!("<dt>{k}</dt><dd>{}</dd>\n", esc(&v));
    }
    // HTML drops the one newline right after <pre>: the one written here, so the text keeps its own.
    out + &format!(
        "</dl>\n<details><summary>scenario.toml (the exact text that ran)</summary>\n<pre>\n{}</pre>\n</details>\n",
        esc(text)
    )
}

fn memory(b: &BudgetInfo) -> String {
    match (b.per_class, b.total) {
        (Some(k), _) => format!("memory of {k} images per class"),
        (None, Some(n)) => format!("memory of {n} images"),
        (None, None) => "no memory".into(),
    }
}

/// The run's budget in its own terms: iterations and time (distill), epochs (train), memory
/// (continual), rounds (federated).
fn budget(s: &Summary) -> String {
    match &s.outcome {
        Outcome::Train(t) => format!("{} epochs x {} networks", t.train.epochs, t.test_acc.len()),
        Outcome::Distill(d) => {
            let time = d
                .distill
                .run
                .max_seconds
                .map_or("no time limit".into(), |t| format!("at most {t} s each"));
            let stopped: Vec<&str> = d
                .distilled
                .iter()
                .filter(|(_, m)| m.stopped_by_budget)
                .map(|(n, _)| n.as_str())
                .collect();
            let mut out = format!(
                "{} images per class, {} iterations, {time}",
                d.distill.run.ipc,
                d.distill.method.iterations()
            );
            if !stopped.is_empty() {
                out += &format!(" (stopped by the time limit: {})", stopped.join(", "));
            }
            out
        }
        Outcome::Experts(e) => {
            format!("{} experts of {} epochs", e.experts.count, e.experts.epochs)
        }
        Outcome::Continual(c) => format!("{} tasks, {}", c.tasks.len(), memory(&c.memory_budget)),
        Outcome::Federated(f) => {
            let rounds: Vec<String> = f
                .strategies
                .iter()
                .map(|(n, r)| format!("{n} {}", r.rounds))
                .collect();
            format!("{} clients; rounds run: {}", f.clients, rounds.join(", "))
        }
        Outcome::FederatedContinual(f) => format!(
            "{} tasks, {} clients, server {}",
            f.tasks.len(),
            f.clients,
            memory(&f.memory_budget)
        ),
        Outcome::Audit(a) => format!("audits {}", a.set.display()),
    }
}

fn report_lines(s: &Summary) -> String {
    if s.report.is_empty() {
        return String::new();
    }
    format!(
        "<details><summary>The lines the run printed</summary>\n<pre>\n{}</pre>\n</details>\n",
        esc(&s.report.join("\n"))
    )
}

fn plots(dir: &Path) -> Result<String> {
    let svgs = files_ending(dir, ".svg")?;
    if svgs.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from("<h2>Plots</h2>\n");
    for p in svgs {
        let svg = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        out += &svg_figure(&svg, &name_of(&p));
    }
    Ok(out)
}

/// Each set's images: its `<set>.png` where the run wrote one, else drawn from its safetensors.
fn set_images(dir: &Path) -> Result<String> {
    let sets: Vec<PathBuf> = files_ending(dir, ".safetensors")?
        .into_iter()
        .filter(|p| !name_of(p).ends_with(".checkpoint.safetensors"))
        .collect();
    if sets.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from("<h2>Distilled images</h2>\n<p>One row per class.</p>\n");
    for set in sets {
        let png = set.with_extension("png");
        let bytes = if png.is_file() {
            std::fs::read(&png).map_err(|e| Error::io(&png, e))?
        } else {
            SyntheticSet::load(&set)?
                .png_bytes()
                .map_err(|e| Error::data(&set, format!("cannot draw its images: {e}")))?
        };
        let stem = set.file_stem().map(|s| s.to_string_lossy().into_owned());
        out += &png_figure(&bytes, &stem.unwrap_or_default());
    }
    Ok(out)
}

/// Links to the run's other files.
fn files(dir: &Path) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| name_of(&p))
        .filter(|n| n != REPORT)
        .collect();
    names.sort();
    let items: Vec<String> = names
        .iter()
        .map(|n| format!("<li><a href=\"{0}\">{0}</a></li>", esc(n)))
        .collect();
    Ok(format!(
        "<h2>Files</h2>\n<ul>\n{}\n</ul>\n",
        items.join("\n")
    ))
}
