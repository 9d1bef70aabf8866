//! SelMatch's window: each class's samples ranked hardest first, a window of `ipc` of them that
//! skips the `floor(ipc * beta)` hardest, its start chosen by the paper's sliding-window search
//! (networks trained on each candidate window's real images, tested), and the partial-update mask
//! (the easier `alpha` fraction of each class is distilled; the harder rest, D_select, stays real).

use super::difficulty::window_select;
use crate::data::augment::Plain;
use crate::data::Dataset;
use crate::distill::eval::{evaluate_set, EvalConfig, EvalSettings};
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::train::events::Progress;
use burn::tensor::backend::AutodiffBackend;

/// Which images of a SelMatch set are distilled (`true`) and which stay selected real images:
/// per class (grouped, `ipc` each, hardest first) the first `ipc - floor(ipc * alpha)` stay.
pub fn distilled_mask(num_classes: usize, ipc: usize, alpha: f64) -> Vec<bool> {
    let keep = ipc - distilled_per_class(ipc, alpha);
    (0..num_classes * ipc).map(|i| i % ipc >= keep).collect()
}

/// `floor(ipc * alpha)`, the reference's `cpc`: images per class that are distilled.
pub fn distilled_per_class(ipc: usize, alpha: f64) -> usize {
    ((ipc as f64 * alpha.clamp(0.0, 1.0)) + 1e-9).floor() as usize
}

/// One candidate window of the beta search and how well a network trained on it did.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowScore {
    /// The window start (skip `floor(ipc * beta)` hardest samples per class).
    pub beta: f64,
    /// Test accuracy of each evaluation network trained on the window's images.
    pub accs: Vec<f64>,
}

impl WindowScore {
    /// Mean accuracy.
    pub fn mean(&self) -> f64 {
        self.accs.iter().sum::<f64>() / self.accs.len().max(1) as f64
    }
}

/// The paper's sliding-window search: for every `beta` of `grid`, select the window and score
/// it with `score(indices)`; returns every window's score, and the best beta (the first of equal
/// means). Windows that do not fit a class are skipped; none fitting is an error.
pub fn search_beta(
    labels: &[usize],
    scores: &[f64],
    num_classes: usize,
    ipc: usize,
    grid: &[f64],
    mut score: impl FnMut(f64, &[usize]) -> Result<Vec<f64>>,
) -> Result<(f64, Vec<WindowScore>)> {
    let mut rows = Vec::new();
    for &beta in grid {
        let Ok(idx) = window_select(labels, scores, num_classes, ipc, beta) else {
            continue;
        };
        rows.push(WindowScore {
            beta,
            accs: score(beta, &idx)?,
        });
    }
    let best = rows
        .iter()
        .fold(None::<&WindowScore>, |b, r| match b {
            Some(b) if b.mean() >= r.mean() => Some(b),
            _ => Some(r),
        })
        .ok_or_else(|| {
            Error::Setting(format!(
                "no window of the beta grid {grid:?} fits {ipc} images per class"
            ))
        })?
        .beta;
    Ok((best, rows))
}

/// What the window search trains and tests: the evaluation protocol (its training, DSA),
/// `repeats` networks of `spec` per window, plain augmentation for the window's real images, and
/// the held-out images they are tested on (the test set, as the paper's search does).
#[derive(Clone, Debug)]
pub struct WindowSearch<'a> {
    /// Training of each network (the evaluation protocol, or `window_epochs` of it).
    pub eval: EvalConfig,
    /// The evaluation's settings (for `window_epochs` of its training).
    pub eval_settings: EvalSettings,
    /// The network.
    pub spec: ModelSpec,
    /// Plain augmentation of the window's images.
    pub plain: Plain,
    /// Where the networks are tested.
    pub test: &'a Dataset,
}

impl WindowSearch<'_> {
    /// Each network's accuracy after training on the real images at `idx` of `data`.
    pub fn score<B: AutodiffBackend>(
        &self,
        data: &Dataset,
        idx: &[usize],
        seed: u64,
        device: &B::Device,
    ) -> Result<Vec<f64>> {
        let window = data.subset(idx);
        // Real images only: plain augmentation for all of them.
        let cfg = EvalConfig {
            combined: Some((self.plain.clone(), vec![true; window.len()])),
            ..self.eval.clone()
        };
        evaluate_set::<B>(
            &window,
            self.test,
            &self.spec,
            &cfg,
            seed,
            device,
            &Progress::hidden(),
        )
    }
}
