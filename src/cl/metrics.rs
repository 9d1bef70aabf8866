//! Continual-learning metrics over the accuracy matrix `R[i][j]`, the test accuracy on task `j`
//! after training on task `i` (REFERENCE.md §4.3). Conventions, named in every summary:
//! - average accuracy: GEM's ACC, the mean of the last row;
//! - average incremental accuracy: iCaRL's, the mean over steps of the mean accuracy on the tasks
//!   seen so far (equal weight per task);
//! - forgetting: Chaudhry et al.'s, `max_{l < T} R[l][j] - R[T][j]` averaged over `j < T`
//!   (max over the past, not Avalanche's first-minus-last);
//! - backward transfer: the GEM paper's, `(1 / (T - 1)) sum_{j < T} (R[T][j] - R[j][j])` (its code
//!   divides by T);
//! - forward transfer: the GEM paper's, `(1 / (T - 1)) sum_{j > 1} (R[j-1][j] - b[j])`, where `b[j]`
//!   is a randomly initialised model's accuracy on task `j`.

use serde::{Deserialize, Serialize};

/// The accuracy matrix of a task stream, filled row by row as training proceeds.
#[derive(Clone, Debug, PartialEq)]
pub struct AccuracyMatrix {
    /// `r[i][j]`: accuracy on task `j` after training on task `i` (a row per finished task).
    pub r: Vec<Vec<f64>>,
    /// Accuracy on each task of the model at random initialisation (for forward transfer).
    pub baseline: Option<Vec<f64>>,
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

impl AccuracyMatrix {
    /// A matrix from its rows; each row must hold one accuracy per task of the stream.
    pub fn from_rows(r: Vec<Vec<f64>>, baseline: Option<Vec<f64>>) -> Result<Self, String> {
        let t = r.first().map_or(0, Vec::len);
        if let Some((i, row)) = r.iter().enumerate().find(|(_, row)| row.len() != t) {
            return Err(format!(
                "row {i} has {} accuracies, expected {t}",
                row.len()
            ));
        }
        if r.len() > t {
            return Err(format!("{} rows for a stream of {t} tasks", r.len()));
        }
        if let Some(b) = &baseline {
            if b.len() != t {
                return Err(format!("{} baseline accuracies for {t} tasks", b.len()));
            }
        }
        if let Some(v) = r
            .iter()
            .flatten()
            .chain(baseline.iter().flatten())
            .find(|v| !(0.0..=1.0).contains(*v))
        {
            return Err(format!("accuracy {v} outside [0, 1]"));
        }
        Ok(AccuracyMatrix { r, baseline })
    }

    /// Tasks trained so far.
    pub fn steps(&self) -> usize {
        self.r.len()
    }

    /// Mean accuracy over all tasks after the last trained one (GEM's ACC when all are trained).
    pub fn average_accuracy(&self) -> Option<f64> {
        mean(self.r.last()?.iter().copied())
    }

    /// Mean over steps of the mean accuracy on the tasks seen so far (iCaRL).
    pub fn average_incremental_accuracy(&self) -> Option<f64> {
        mean(
            self.r
                .iter()
                .enumerate()
                .filter_map(|(i, row)| mean(row[..=i].iter().copied())),
        )
    }

    /// Chaudhry's average forgetting after the last step (None before the second task).
    pub fn forgetting(&self) -> Option<f64> {
        let k = self.steps();
        if k < 2 {
            return None;
        }
        let last = &self.r[k - 1];
        mean((0..k - 1).map(|j| {
            let best = self.r[..k - 1]
                .iter()
                .map(|row| row[j])
                .fold(f64::NEG_INFINITY, f64::max);
            best - last[j]
        }))
    }

    /// GEM's backward transfer after the last step (None before the second task).
    pub fn backward_transfer(&self) -> Option<f64> {
        let k = self.steps();
        if k < 2 {
            return None;
        }
        mean((0..k - 1).map(|j| self.r[k - 1][j] - self.r[j][j]))
    }

    /// GEM's forward transfer (None without a baseline or before the second task).
    pub fn forward_transfer(&self) -> Option<f64> {
        let b = self.baseline.as_ref()?;
        let k = self.steps();
        if k < 2 {
            return None;
        }
        mean((1..k).map(|j| self.r[j - 1][j] - b[j]))
    }

    /// The matrix as CSV: a header `after_task,task_0,...`, then a row per trained task.
    pub fn to_csv(&self) -> String {
        let t = self.r.first().map_or(0, Vec::len);
        let mut out = String::from("after_task");
        for j in 0..t {
            out.push_str(&format!(",task_{j}"));
        }
        out.push('\n');
        for (i, row) in self.r.iter().enumerate() {
            out.push_str(&i.to_string());
            for v in row {
                out.push_str(&format!(",{v:.6}"));
            }
            out.push('\n');
        }
        out
    }

    /// Every metric with the convention it follows, for a summary file.
    pub fn summary(&self) -> ClMetrics {
        let conventions = [
            ("average_accuracy", "GEM ACC: mean of the last row"),
            ("average_incremental_accuracy", "iCaRL: mean over steps of the mean accuracy on the tasks seen so far"),
            ("forgetting", "Chaudhry et al. 2018: max over earlier steps minus last, averaged over all but the last task"),
            ("backward_transfer", "GEM paper: mean over j < T of R[T][j] - R[j][j] (divides by T - 1)"),
            ("forward_transfer", "GEM paper: mean over j > 1 of R[j-1][j] - accuracy of a random-init model (divides by T - 1)"),
        ];
        ClMetrics {
            average_accuracy: self.average_accuracy(),
            average_incremental_accuracy: self.average_incremental_accuracy(),
            forgetting: self.forgetting(),
            backward_transfer: self.backward_transfer(),
            forward_transfer: self.forward_transfer(),
            conventions: conventions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// The forgetting metrics of one accuracy matrix, with the convention each follows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClMetrics {
    /// ACC (None before the first task).
    pub average_accuracy: Option<f64>,
    /// AIA.
    pub average_incremental_accuracy: Option<f64>,
    /// Forgetting (None before the second task).
    pub forgetting: Option<f64>,
    /// BWT (None before the second task).
    pub backward_transfer: Option<f64>,
    /// FWT (None without a baseline or before the second task).
    pub forward_transfer: Option<f64>,
    /// Each metric's convention, by name.
    pub conventions: std::collections::BTreeMap<String, String>,
}
