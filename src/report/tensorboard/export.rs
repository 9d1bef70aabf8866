//! A finished run's figures as TensorBoard events, read from its results folder: losses and
//! accuracies per iteration (distill), epoch (train), round (federated) or task (continual),
//! bytes exchanged, coverage, the audit's AUCs, and each set's images and closest pairs.

use super::EventFile;
use crate::error::{Error, Result};
use crate::report::records::{Outcome, Summary};
use crate::report::rows::{ContinualRow, CoverageRow, DistillRow, RoundRow, StreamRow, TrainRow};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The rows of CSV file `path` (none when it does not exist).
fn rows<R: DeserializeOwned>(path: &Path) -> Result<Vec<R>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut r = csv::Reader::from_path(path).map_err(|e| Error::data(path, e.to_string()))?;
    r.deserialize()
        .collect::<std::result::Result<Vec<R>, _>>()
        .map_err(|e| Error::data(path, format!("not this run kind's rows ({e})")))
}

/// Writes the run's event file in results folder `dir`, replacing one written before; returns
/// its path.
pub fn write_events(dir: &Path) -> Result<PathBuf> {
    let s = Summary::load(dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut ev = EventFile::new(dir, now);
    let metrics = dir.join("metrics.csv");
    match &s.outcome {
        Outcome::Train(_) => train(&mut ev, &rows(&metrics)?),
        Outcome::Distill(_) | Outcome::Experts(_) => {
            distill(&mut ev, &rows(&metrics)?);
            for r in rows::<CoverageRow>(&dir.join("coverage.csv"))? {
                ev.scalar(
                    &format!("{}/coverage", r.method),
                    r.iteration as i64,
                    r.overall.0,
                );
            }
        }
        Outcome::Continual(_) => continual(&mut ev, &rows(&metrics)?),
        Outcome::Federated(_) => rounds(&mut ev, &rows(&metrics)?),
        Outcome::FederatedContinual(_) => {
            stream(&mut ev, &rows(&metrics)?);
            rounds(&mut ev, &rows(&dir.join("rounds.csv"))?);
        }
        Outcome::Audit(_) => {}
    }
    if let Some(p) = &s.privacy {
        for (set, a) in &p.sets {
            ev.scalar(&format!("privacy/{set}/loss_auc"), 0, a.attack.loss.auc);
        }
    }
    images(&mut ev, dir)?;
    for old in crate::files::files_named(dir, "events.out.tfevents.")? {
        std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
    }
    ev.finish()
}

fn train(ev: &mut EventFile, rows: &[TrainRow]) {
    for r in rows {
        let step = r.epoch as i64;
        let tag = |t: &str| format!("repeat{}/{t}", r.repeat);
        ev.scalar(&tag("train_loss"), step, r.train_loss.0);
        ev.scalar(&tag("test_loss"), step, r.test_loss.0);
        ev.scalar(&tag("test_acc"), step, r.test_acc.0);
    }
}

/// The matching loss per iteration, and each evaluation's mean accuracy over its networks.
fn distill(ev: &mut EventFile, rows: &[DistillRow]) {
    let mut acc: BTreeMap<(String, String, i64), Vec<f64>> = BTreeMap::new();
    for r in rows {
        let Ok(step) = r.iteration.parse::<i64>() else {
            continue;
        };
        match (r.phase.as_str(), r.loss, r.test_acc) {
            ("distill", Some(loss), _) => ev.scalar(&format!("{}/loss", r.method), step, loss.0),
            ("eval", _, Some(a)) => acc
                .entry((r.method.clone(), r.model.clone(), step))
                .or_default()
                .push(a.0),
            _ => {}
        }
    }
    for ((method, model, step), v) in acc {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        ev.scalar(&format!("{method}/test_acc/{model}"), step, mean);
    }
}

/// Each task's accuracy after every task, the mean over the tasks seen, loss and memory.
fn continual(ev: &mut EventFile, rows: &[ContinualRow]) {
    let mut seen: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for r in rows {
        let step = r.after_task as i64;
        ev.scalar(
            &format!("{}/task{}/test_acc", r.strategy, r.task),
            step,
            r.test_acc.0,
        );
        if r.task == 0 {
            ev.scalar(&format!("{}/train_loss", r.strategy), step, r.train_loss.0);
            ev.scalar(
                &format!("{}/memory_images", r.strategy),
                step,
                r.memory_images as f64,
            );
        }
        if r.task <= r.after_task {
            let e = seen.entry((r.strategy.clone(), r.after_task)).or_default();
            e.push(r.test_acc.0);
        }
    }
    average(ev, seen);
}

fn average(ev: &mut EventFile, seen: BTreeMap<(String, usize), Vec<f64>>) {
    for ((strategy, task), v) in seen {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        ev.scalar(&format!("{strategy}/average_accuracy"), task as i64, mean);
    }
}

/// A federated stream: each task's accuracy after every task, and bytes so far.
fn stream(ev: &mut EventFile, rows: &[StreamRow]) {
    let mut seen: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for r in rows {
        let step = r.after_task as i64;
        ev.scalar(
            &format!("{}/task{}/test_acc", r.strategy, r.task),
            step,
            r.test_acc.0,
        );
        if r.task == 0 {
            let tag = format!("{}/cumulative_bytes", r.strategy);
            ev.scalar(&tag, step, r.cumulative_bytes as f64);
        }
        if r.task <= r.after_task {
            let e = seen.entry((r.strategy.clone(), r.after_task)).or_default();
            e.push(r.test_acc.0);
        }
    }
    average(ev, seen);
}

/// Federated rounds: accuracy and bytes; in a stream the step counts rounds over all tasks.
fn rounds(ev: &mut EventFile, rows: &[RoundRow]) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rows {
        let n = count.entry(&r.strategy).or_insert(0);
        *n += 1;
        let step = *n;
        let tag = |t: &str| format!("{}/round/{t}", r.strategy);
        ev.scalar(&tag("test_acc"), step, r.test_acc.0);
        ev.scalar(&tag("cumulative_bytes"), step, r.cumulative_bytes as f64);
        ev.scalar(&tag("bytes_up"), step, r.bytes_up as f64);
        ev.scalar(&tag("bytes_down"), step, r.bytes_down as f64);
    }
}

/// Each set's picture (`<set>.png`) and the audit's closest pairs as image summaries.
fn images(ev: &mut EventFile, dir: &Path) -> Result<()> {
    let mut pngs: Vec<(String, PathBuf)> = Vec::new();
    for p in crate::files::files_named(dir, "")? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(stem) = name.as_deref().and_then(|n| n.strip_suffix(".png")) {
            if dir.join(format!("{stem}.safetensors")).is_file() {
                pngs.push((format!("{stem}/images"), p));
            }
        }
    }
    let closest = dir.join("closest");
    if closest.is_dir() {
        for p in crate::files::files_named(&closest, "")? {
            let name = p.file_stem().map(|n| n.to_string_lossy().into_owned());
            if p.extension().is_some_and(|e| e == "png") {
                pngs.push((format!("closest/{}", name.unwrap_or_default()), p));
            }
        }
    }
    for (tag, p) in pngs {
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        ev.image(&tag, 0, &bytes).map_err(|e| Error::data(&p, e))?;
    }
    Ok(())
}
