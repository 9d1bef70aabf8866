//! SelMatch (Lee et al., ICML 2024) on top of [`super::mtt`]: selection-based initialisation (a
//! window over each class's samples ranked hardest first, its start `beta` chosen by a search),
//! partial updates (only the easier `alpha` fraction of each class is distilled; the harder rest,
//! D_select, stays real), and the flags that make evaluation use combined augmentation.

pub mod difficulty;
pub mod scores;

use crate::error::{Error, Result};
use difficulty::window_select;

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
            Error::Other(format!(
                "no window of the beta grid {grid:?} fits {ipc} images per class"
            ))
        })?
        .beta;
    Ok((best, rows))
}
