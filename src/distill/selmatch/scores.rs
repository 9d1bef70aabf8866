//! Difficulty scores of the training samples for SelMatch: forgetting counts (Toneva et al.)
//! from a training run, EL2N (Paul et al.) from a briefly trained network, or a precomputed CSV
//! (`index,score`, higher is harder). Computed scores are cached as the same CSV and reused.

use super::difficulty::{el2n, forgetting_scores};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::model::{Mode, Model, ModelSpec};
use crate::train::{batch_images, TrainConfig, Training};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where the difficulty scores come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// Forgetting events over a training run (never-learned samples hardest).
    #[default]
    Forgetting,
    /// EL2N of a network trained for a few epochs.
    El2n,
}

impl ScoreKind {
    /// The name used in file names.
    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Forgetting => "forgetting",
            ScoreKind::El2n => "el2n",
        }
    }
}

/// Every sample's logits under `model` (evaluation mode), row-major `len x classes`.
pub fn logits<B: Backend>(model: &mut Model<B>, data: &Dataset, device: &B::Device) -> Vec<f32> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len() * model.spec.num_classes());
    for chunk in idx.chunks(500) {
        let x = batch_images::<B>(data, chunk, device);
        let l = model.forward(x, Mode::Eval).into_data().convert::<f32>();
        out.extend(l.into_vec::<f32>().expect("f32 logits"));
    }
    out
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

/// Computes scores of `kind` for every sample of `data` with a `spec` network trained by `cfg`
/// (seeded by `seed`): forgetting counts from the predictions after every epoch, or EL2N after
/// the last epoch. `on_epoch(e)` reports progress.
pub fn compute<B: AutodiffBackend>(
    data: &Dataset,
    spec: &ModelSpec,
    kind: ScoreKind,
    cfg: &TrainConfig,
    seed: u64,
    device: &B::Device,
    mut on_epoch: impl FnMut(usize),
) -> Result<Vec<f64>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5c0e);
    let mut model = spec.init::<B::InnerBackend, _>(&mut rng, device);
    let k = spec.num_classes();
    let mut correct: Vec<Vec<bool>> = vec![Vec::with_capacity(cfg.epochs); data.len()];
    Training::<B>::new(cfg, device).run_observed(&mut model, data, &mut rng, |e, _, m| {
        if kind == ScoreKind::Forgetting {
            let l = logits(m, data, device);
            for (i, row) in l.chunks_exact(k).enumerate() {
                correct[i].push(argmax(row) == data.labels[i]);
            }
        }
        on_epoch(e);
        Ok(())
    })?;
    Ok(match kind {
        ScoreKind::Forgetting => forgetting_scores(&correct),
        ScoreKind::El2n => logits(&mut model, data, device)
            .chunks_exact(k)
            .zip(&data.labels)
            .map(|(row, &y)| el2n(row, y))
            .collect(),
    })
}

/// Reads `index,score` rows (a header line is allowed) for a training set of `n` samples: every
/// index once, finite scores.
pub fn load_csv(path: &Path, n: usize) -> Result<Vec<f64>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .map_err(|e| Error::data(path, format!("cannot read the scores ({e})")))?;
    let mut scores = vec![f64::NAN; n];
    for (line, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| Error::data(path, format!("line {}: {e}", line + 1)))?;
        let field = |j: usize| rec.get(j).map(str::trim).unwrap_or("");
        let (Ok(i), Ok(s)) = (field(0).parse::<usize>(), field(1).parse::<f64>()) else {
            if line == 0 {
                continue; // a header
            }
            return Err(Error::data(
                path,
                format!("line {}: expected `index,score`, got {:?}", line + 1, rec),
            ));
        };
        if i >= n {
            return Err(Error::data(
                path,
                format!(
                    "line {}: index {i} outside the {n} training samples",
                    line + 1
                ),
            ));
        }
        if !s.is_finite() {
            return Err(Error::data(
                path,
                format!("line {}: score {s} is not finite", line + 1),
            ));
        }
        if !scores[i].is_nan() {
            return Err(Error::data(
                path,
                format!("line {}: index {i} appears twice", line + 1),
            ));
        }
        scores[i] = s;
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::data(path, format!("no score for sample {i}")));
    }
    Ok(scores)
}

/// Writes `index,score` rows with a header (atomically).
pub fn save_csv(path: &Path, scores: &[f64]) -> Result<()> {
    let mut text = String::from("index,score\n");
    for (i, s) in scores.iter().enumerate() {
        text.push_str(&format!("{i},{s}\n"));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(path, text.as_bytes())
}

/// The scores cached at `path` if present (checked against `n`), else `compute()` saved there.
pub fn cached(
    path: &Path,
    n: usize,
    compute: impl FnOnce() -> Result<Vec<f64>>,
) -> Result<Vec<f64>> {
    if path.exists() {
        return load_csv(path, n);
    }
    let s = compute()?;
    save_csv(path, &s)?;
    Ok(s)
}
