//! The files and report lines of continual runs (both kinds): each strategy's accuracy matrix
//! (CSV, heatmap, each task's accuracy over the stream), the mean accuracy on the tasks seen,
//! the report tables.

use crate::cl::metrics::AccuracyMatrix;
use crate::error::Result;
use crate::files::write_atomic;
use crate::report::federated::record;
use crate::report::plot::{heatmap_svg, lines_svg};
use crate::report::records::{StrategyOutcome, StreamStrategy};
use std::path::Path;

/// The accuracy matrix of `name` as CSV and heatmap, and each task's accuracy over the stream.
pub fn write_matrix(dir: &Path, title: &str, name: &str, m: &AccuracyMatrix) -> Result<()> {
    let tasks = m.r.first().map_or(0, Vec::len);
    let names: Vec<String> = (0..tasks).map(|t| format!("task {t}")).collect();
    write_atomic(
        &dir.join(format!("accuracy_matrix_{name}.csv")),
        m.to_csv().as_bytes(),
    )?;
    let svg = heatmap_svg(
        &format!("{title} — accuracy after each task ({name})"),
        "after training on",
        "tested on",
        &names,
        &names,
        &m.r,
        None,
    );
    write_atomic(
        &dir.join(format!("accuracy_matrix_{name}.svg")),
        svg.as_bytes(),
    )?;
    let per_task: Vec<(String, Vec<(f64, f64)>)> = (0..tasks)
        .map(|j| {
            let pts = (j..m.r.len()).map(|i| (i as f64, m.r[i][j])).collect();
            (format!("task {j}"), pts)
        })
        .collect();
    let svg = lines_svg(
        &format!("Each task's accuracy over the stream ({name})"),
        "after training on task",
        "test accuracy",
        &per_task,
    );
    write_atomic(
        &dir.join(format!("task_accuracy_{name}.svg")),
        svg.as_bytes(),
    )
}

/// The mean accuracy on the tasks seen so far, after each task.
pub fn seen_means(m: &AccuracyMatrix) -> Vec<(f64, f64)> {
    m.r.iter()
        .enumerate()
        .map(|(i, r)| (i as f64, r[..=i].iter().sum::<f64>() / (i + 1) as f64))
        .collect()
}

/// The report table of a continual run: one line per strategy.
pub fn report(results: &[(String, &StrategyOutcome)]) -> Vec<String> {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    let mut lines = vec![format!(
        "{:<10} {:>7} {:>9} {:>11} {:>9} {:>9}",
        "strategy", "memory", "ACC", "forgetting", "BWT", "AIA"
    )];
    for (n, r) in results {
        let m = &r.metrics;
        lines.push(format!(
            "{n:<10} {:>7} {:>9} {:>11} {:>9} {:>9}",
            r.memory_images,
            fmt(m.average_accuracy),
            fmt(m.forgetting),
            fmt(m.backward_transfer),
            fmt(m.average_incremental_accuracy)
        ));
    }
    lines.push(
        "ACC: mean of the last row; forgetting: Chaudhry max-minus-last; BWT: GEM paper (T-1); AIA: average incremental accuracy"
            .to_string(),
    );
    lines
}

/// A federated continual strategy's outcome: its accuracy matrix `m`, `rounds`, the bytes
/// exchanged by the end of each task, its memory's size, and the `seconds` it took.
pub fn stream_outcome(
    m: &AccuracyMatrix,
    rounds: &[crate::fed::engine::Round],
    (bytes_after_task, memory_images): (Vec<u64>, usize),
    seconds: f64,
) -> StreamStrategy {
    let rec = record(rounds, None, seconds);
    StreamStrategy {
        metrics: m.summary(),
        accuracy_matrix: m.r.clone(),
        rounds: rec.rounds,
        bytes_up: rec.bytes_up,
        bytes_down: rec.bytes_down,
        bytes_total: rec.bytes_total,
        bytes_after_task,
        client_compute_seconds: rec.client_compute_seconds,
        memory_images,
        not_accepted: rec.not_accepted,
        seconds: rec.seconds,
    }
}

/// The federated continual report table's header.
pub fn stream_header() -> String {
    format!(
        "{:<22} {:>8} {:>11} {:>9} {:>12} {:>10}",
        "strategy", "ACC", "forgetting", "BWT", "MB total", "client s"
    )
}

/// One strategy's line of the federated continual report table.
pub fn stream_line(name: &str, r: &StreamStrategy) -> String {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    let m = &r.metrics;
    format!(
        "{name:<22} {:>8} {:>11} {:>9} {:>12.3} {:>10.1}",
        fmt(m.average_accuracy),
        fmt(m.forgetting),
        fmt(m.backward_transfer),
        r.bytes_total as f64 / 1e6,
        r.client_compute_seconds
    )
}
