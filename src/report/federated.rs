//! The files and report lines of federated runs: every round's rows (`comm.csv`, `clients.csv`,
//! `metrics.csv`), what a strategy's rounds add up to, the report table, the partition's files
//! and the accuracy-against-bytes plot.

use crate::data::partition::{class_counts, counts_csv};
use crate::data::Split;
use crate::error::Result;
use crate::fed::engine::Round;
use crate::fed::message::ClientOutcome;
use crate::files::{write_atomic, CsvLog, Fixed};
use crate::report::plot::{heatmap_svg, lines_svg};
use crate::report::records::{Refusal, StrategyRecord};
use crate::report::rows::{ClientRow, CommRow, RoundRow};
use std::path::Path;

/// The run's three CSV files of rounds.
pub struct Logs {
    /// Every message's bytes.
    pub comm: CsvLog<CommRow>,
    /// What each selected client did.
    pub clients: CsvLog<ClientRow>,
    /// Accuracy and bytes per round.
    pub metrics: CsvLog<RoundRow>,
}

impl Logs {
    /// The rows of one round of `strategy` in `task`, `total` bytes exchanged before it.
    pub fn round(&mut self, strategy: &str, task: usize, r: &Round, total: &mut u64) -> Result<()> {
        for c in &r.clients {
            let mut comm = |direction: &str, bytes: usize| {
                self.comm.row(&CommRow {
                    strategy: strategy.into(),
                    task,
                    round: r.round,
                    client: c.client,
                    direction: direction.into(),
                    bytes,
                })
            };
            if c.outcome != ClientOutcome::Unreachable {
                comm("down", c.down)?;
            }
            if let Some(up) = c.up {
                comm("up", up)?;
            }
            self.clients.row(&ClientRow {
                strategy: strategy.into(),
                task,
                round: r.round,
                client: c.client,
                outcome: c.outcome.name().into(),
                reason: c.outcome.reason(),
                bytes_down: c.down,
                bytes_up: c.up.unwrap_or(0),
                compute_seconds: Fixed(c.compute_seconds),
            })?;
        }
        let (up, down) = r.bytes();
        *total += up + down;
        self.metrics.row(&RoundRow {
            strategy: strategy.into(),
            task,
            round: r.round,
            test_acc: Fixed(r.accuracy),
            bytes_up: up,
            bytes_down: down,
            cumulative_bytes: *total,
            selected: r.clients.len(),
            accepted: r.accepted,
            elapsed_s: Fixed(r.elapsed),
        })
    }
}

/// What a strategy's rounds add up to.
pub fn record(rounds: &[Round], stopped_at: Option<f64>, seconds: f64) -> StrategyRecord {
    let (up, down) = rounds.iter().fold((0, 0), |(u, d), r| {
        let (ru, rd) = r.bytes();
        (u + ru, d + rd)
    });
    let mut refused = Vec::new();
    for r in rounds {
        for c in r
            .clients
            .iter()
            .filter(|c| c.outcome != ClientOutcome::Accepted)
        {
            refused.push(Refusal {
                round: r.round,
                client: c.client,
                outcome: c.outcome.name().into(),
                reason: c.outcome.reason(),
            });
        }
    }
    StrategyRecord {
        final_accuracy: rounds.last().map(|r| r.accuracy),
        accuracy_per_round: rounds.iter().map(|r| r.accuracy).collect(),
        rounds: rounds.len(),
        bytes_up: up,
        bytes_down: down,
        bytes_total: up + down,
        accepted_updates: rounds.iter().map(|r| r.accepted).sum(),
        not_accepted: refused,
        stopped_at_accuracy: stopped_at,
        client_compute_seconds: rounds
            .iter()
            .flat_map(|r| &r.clients)
            .fold(0.0, |a, c| a + c.compute_seconds),
        seconds,
        dp: None,
    }
}

/// One line of the report table.
pub fn report_line(name: &str, r: &StrategyRecord) -> String {
    format!(
        "{:<24} {:>7} {:>9} {:>12.3} {:>12.3} {:>12.3} {:>12.1}",
        name,
        r.rounds,
        r.final_accuracy.map_or("-".into(), |a| format!("{a:.4}")),
        r.bytes_up as f64 / 1e6,
        r.bytes_down as f64 / 1e6,
        r.bytes_total as f64 / 1e6,
        r.client_compute_seconds
    )
}

/// The report table's header.
pub fn report_header() -> String {
    format!(
        "{:<24} {:>7} {:>9} {:>12} {:>12} {:>12} {:>12}",
        "strategy", "rounds", "accuracy", "MB up", "MB down", "MB total", "client s"
    )
}

/// Accuracy against cumulative MB after each round.
pub fn curve(rounds: &[Round]) -> Vec<(f64, f64)> {
    let mut cum = 0u64;
    rounds
        .iter()
        .map(|r| {
            let (u, d) = r.bytes();
            cum += u + d;
            (cum as f64 / 1e6, r.accuracy)
        })
        .collect()
}

/// The report's line of what strategy `label`'s private clients spent, when they are private.
pub fn dp_line(label: &str, r: &StrategyRecord) -> Option<String> {
    r.dp.as_ref().map(|d| {
        format!(
            "{label}: differentially private clients: epsilon at most {:.3} at delta {:e} ({} clients; per client in the summary)",
            d.epsilon_max,
            d.settings.delta,
            d.clients.len()
        )
    })
}

/// A strategy's curve: its label and (cumulative MB, accuracy) points.
pub type Series = (String, Vec<(f64, f64)>);

/// `accuracy_vs_bytes.svg` in `dir` (run `name`): each strategy's curve of `what` (the title's words), on an axis
/// named `axis`.
pub fn write_plot(
    (dir, name): (&Path, &str),
    (what, axis): (&str, &str),
    series: &[Series],
) -> Result<()> {
    let svg = lines_svg(
        &format!("{name}: {what} against bytes exchanged"),
        "cumulative MB (up + down)",
        axis,
        series,
    );
    write_atomic(&dir.join("accuracy_vs_bytes.svg"), svg.as_bytes())
}

/// `partition.csv` in `dir` (run `name`), and (up to 100 clients) the heatmap of samples per client and class.
pub fn write_partition(
    (dir, name): (&Path, &str),
    split: &Split,
    parts: &[Vec<usize>],
) -> Result<()> {
    let counts = class_counts(&split.train.labels, split.train.num_classes(), parts);
    write_atomic(&dir.join("partition.csv"), counts_csv(&counts).as_bytes())?;
    if parts.len() > 100 {
        return Ok(());
    }
    let shares: Vec<Vec<f64>> = counts
        .iter()
        .map(|r| {
            let n = r.iter().sum::<usize>().max(1) as f64;
            r.iter().map(|&c| c as f64 / n).collect()
        })
        .collect();
    let texts: Vec<Vec<String>> = counts
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    let names: Vec<String> = (0..parts.len()).map(|c| format!("client {c}")).collect();
    let svg = heatmap_svg(
        &format!("{name}: samples per client and class"),
        "client",
        "class",
        &names,
        &split.train.classes,
        &shares,
        Some(&texts),
    );
    write_atomic(&dir.join("partition.svg"), svg.as_bytes())
}
