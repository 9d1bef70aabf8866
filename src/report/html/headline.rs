//! The headline table of a run: one row per method, strategy or audited set, with accuracy (±
//! std over the evaluation networks), MB (a set's float32 images, or the bytes a federated
//! strategy exchanged), compute seconds, ACC / forgetting / BWT (continual runs) and ε (private
//! runs). Columns that no row fills are left out.

use crate::cl::metrics::ClMetrics;
use crate::report::records::{Outcome, Summary};

/// The headline table: its column names and rows of formatted cells (`-`: not applicable).
#[derive(Clone, Debug, PartialEq)]
pub struct Headline {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each as many cells as columns.
    pub rows: Vec<Vec<String>>,
}

const COLUMNS: [&str; 9] = [
    "set / strategy",
    "model",
    "accuracy (%)",
    "MB",
    "compute s",
    "ACC",
    "forgetting",
    "BWT",
    "ε",
];

/// A row before formatting: the label, then optional cells in [`COLUMNS`] order.
#[derive(Default)]
struct Row {
    label: String,
    model: Option<String>,
    accuracy: Option<String>,
    mb: Option<f64>,
    seconds: Option<f64>,
    cl: Option<[Option<f64>; 3]>,
    epsilon: Option<f64>,
}

/// Accuracy as a percentage, with the spread when there is one.
pub fn percent(mean: f64, std: Option<f64>) -> String {
    match std {
        Some(s) => format!("{:.2} ± {:.2}", 100.0 * mean, 100.0 * s),
        None => format!("{:.2}", 100.0 * mean),
    }
}

/// Megabytes with three decimals.
pub fn megabytes(bytes: f64) -> String {
    format!("{:.3}", bytes / 1e6)
}

/// A fraction (ACC, forgetting, BWT) with four decimals.
pub fn fraction(x: f64) -> String {
    format!("{x:.4}")
}

fn cl(m: &ClMetrics) -> Option<[Option<f64>; 3]> {
    Some([m.average_accuracy, m.forgetting, m.backward_transfer])
}

/// The bytes of `images` float32 images of the run's shape.
fn image_bytes(s: &Summary, images: usize) -> f64 {
    let [c, h, w] = s.dataset.shape;
    (images * c * h * w * 4) as f64
}

fn rows(s: &Summary) -> Vec<Row> {
    match &s.outcome {
        Outcome::Train(t) => vec![Row {
            label: t
                .ipc
                .map_or("all images".into(), |k| format!("random {k} per class")),
            accuracy: Some(percent(t.test_acc_mean, Some(t.test_acc_std))),
            mb: t.ipc.map(|k| image_bytes(s, k * s.dataset.classes)),
            seconds: Some(t.seconds_per_epoch * (t.train.epochs * t.test_acc.len()) as f64),
            ..Row::default()
        }],
        Outcome::Distill(d) => {
            let set = image_bytes(s, d.distill.run.ipc * s.dataset.classes);
            let mut out = Vec::new();
            for (method, models) in &d.results {
                let made = d.distilled.get(method);
                for (model, a) in models {
                    out.push(Row {
                        label: method.clone(),
                        model: Some(model.clone()),
                        accuracy: Some(percent(a.mean, Some(a.std))),
                        mb: Some(set),
                        seconds: made.map(|m| m.seconds + m.preparation_seconds),
                        epsilon: made.and_then(|m| m.dp.as_ref()).map(|dp| dp.epsilon),
                        ..Row::default()
                    });
                }
            }
            out
        }
        Outcome::Experts(e) => vec![Row {
            label: format!("{} experts x {} epochs", e.experts.count, e.experts.epochs),
            seconds: Some(e.experts_seconds),
            ..Row::default()
        }],
        Outcome::Continual(c) => c
            .strategies
            .iter()
            .map(|(name, st)| Row {
                label: name.clone(),
                mb: Some(image_bytes(s, st.memory_images)),
                seconds: Some(st.seconds),
                cl: cl(&st.metrics),
                ..Row::default()
            })
            .collect(),
        Outcome::Federated(f) => f
            .strategies
            .iter()
            .map(|(name, st)| Row {
                label: name.clone(),
                accuracy: st.final_accuracy.map(|a| percent(a, None)),
                mb: Some(st.bytes_total as f64),
                seconds: Some(st.client_compute_seconds),
                epsilon: st.dp.as_ref().map(|dp| dp.epsilon_max),
                ..Row::default()
            })
            .collect(),
        Outcome::FederatedContinual(f) => f
            .strategies
            .iter()
            .map(|(name, st)| Row {
                label: name.clone(),
                mb: Some(st.bytes_total as f64),
                seconds: Some(st.client_compute_seconds),
                cl: cl(&st.metrics),
                ..Row::default()
            })
            .collect(),
        Outcome::Audit(_) => s
            .privacy
            .iter()
            .flat_map(|p| &p.sets)
            .map(|(name, set)| Row {
                label: name.clone(),
                accuracy: Some(percent(set.test_acc, None)),
                mb: Some(image_bytes(s, set.images)),
                ..Row::default()
            })
            .collect(),
    }
}

/// The headline table of `s`.
pub fn headline(s: &Summary) -> Headline {
    let dash = |x: Option<String>| x.unwrap_or_else(|| "-".into());
    let cells: Vec<Vec<String>> = rows(s)
        .into_iter()
        .map(|r| {
            let [acc, fgt, bwt] = r.cl.unwrap_or([None; 3]);
            vec![
                r.label,
                dash(r.model),
                dash(r.accuracy),
                dash(r.mb.map(megabytes)),
                dash(r.seconds.map(|x| format!("{x:.1}"))),
                dash(acc.map(fraction)),
                dash(fgt.map(fraction)),
                dash(bwt.map(fraction)),
                dash(r.epsilon.map(|e| format!("{e:.2}"))),
            ]
        })
        .collect();
    let keep: Vec<usize> = (0..COLUMNS.len())
        .filter(|&j| j == 0 || cells.iter().any(|r| r[j] != "-"))
        .collect();
    Headline {
        columns: keep.iter().map(|&j| COLUMNS[j].to_string()).collect(),
        rows: cells
            .iter()
            .map(|r| keep.iter().map(|&j| r[j].clone()).collect())
            .collect(),
    }
}

/// The run kind's name as the summary writes it (`distill`, `federated_continual`, ...).
pub fn kind(s: &Summary) -> &'static str {
    match s.outcome {
        Outcome::Train(_) => "train",
        Outcome::Distill(_) => "distill",
        Outcome::Experts(_) => "experts",
        Outcome::Continual(_) => "continual",
        Outcome::Federated(_) => "federated",
        Outcome::FederatedContinual(_) => "federated_continual",
        Outcome::Audit(_) => "audit",
    }
}

/// One line of headline figures for the page over many runs: each row's label and its main
/// figure (accuracy, else ACC, else seconds).
pub fn brief(s: &Summary) -> String {
    let h = headline(s);
    let col = |name: &str| h.columns.iter().position(|c| c == name);
    let main = col("accuracy (%)")
        .map(|j| (j, "%"))
        .or(col("ACC").map(|j| (j, " ACC")))
        .or(col("compute s").map(|j| (j, " s")));
    let model = col("model");
    h.rows
        .iter()
        .map(|r| {
            let label = match model {
                Some(m) => format!("{} ({})", r[0], r[m]),
                None => r[0].clone(),
            };
            match main {
                Some((j, unit)) => format!("{label} {}{unit}", r[j]),
                None => label,
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
