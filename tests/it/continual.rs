//! End-to-end continual runs on the embedded digits: replay beats fine-tuning, the files agree
//! with each other, task-incremental heads help, budgets hold, bad sections are refused.

use crate::common::run_text;
use distillery::experiment::{self as runner, RunOptions};
use distillery::report::records::StrategyOutcome;
use distillery::scenario;
use std::path::Path;

fn scenario_text(extra: &str) -> String {
    format!(
        r#"
name = "split-digits-test"
kind = "continual"
seed = 3
[data]
source = "digits"
[model]
width = 16
depth = 2
[train]
epochs = 4
batch_size = 32
lr = 0.02
schedule = "constant"
[distill]
iterations = 20
batch_real = 32
[continual]
tasks = 5
{extra}
"#
    )
}

fn strategy<'a>(out: &'a runner::RunOutput, name: &str) -> &'a StrategyOutcome {
    &out.summary.continual().unwrap().strategies[name]
}

fn acc(out: &runner::RunOutput, name: &str) -> f64 {
    strategy(out, name).metrics.average_accuracy.unwrap()
}

#[test]
fn replay_beats_finetuning_and_files_agree() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_text(
        &scenario_text(
            r#"strategies = ["finetune", "random", "dm", "joint"]
memory_per_class = 10"#,
        ),
        dir.path(),
    );
    let (ft, rnd, dm, joint) = (
        acc(&out, "finetune"),
        acc(&out, "random"),
        acc(&out, "dm"),
        acc(&out, "joint"),
    );
    // Fine-tuning a shared head forgets the old classes: about one task in five right.
    assert!(ft < 0.4, "finetune ACC {ft}");
    assert!(rnd > ft + 0.3, "random replay {rnd} vs finetune {ft}");
    assert!(dm > ft + 0.3, "dm replay {dm} vs finetune {ft}");
    assert!(joint > 0.85, "joint {joint}");
    let f = strategy(&out, "finetune").metrics.forgetting.unwrap();
    assert!(f > 0.5, "finetune forgetting {f}");

    // The matrix file, the summary and metrics.csv say the same thing.
    let csv = std::fs::read_to_string(out.dir.join("accuracy_matrix_random.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 5);
    let last_mean = rows[4].iter().sum::<f64>() / 5.0;
    assert!((last_mean - rnd).abs() < 1e-5, "{last_mean} vs {rnd}");
    // Chaudhry forgetting by hand from the file.
    let by_hand = (0..4)
        .map(|j| (j..4).map(|l| rows[l][j]).fold(f64::MIN, f64::max) - rows[4][j])
        .sum::<f64>()
        / 4.0;
    let fr = strategy(&out, "random").metrics.forgetting.unwrap();
    assert!((by_hand - fr).abs() < 1e-5, "{by_hand} vs {fr}");
    let metrics = std::fs::read_to_string(out.dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 4 * 5 * 5);
    for f in [
        "accuracy_matrix_dm.svg",
        "task_accuracy_dm.svg",
        "average_accuracy.svg",
        "memory.csv",
    ] {
        assert!(out.dir.join(f).exists(), "{f} missing");
    }
    // The plots parse: a cell per matrix entry, a line per task and per strategy.
    let svg = |f: &str| crate::common::svg_shapes(&out.dir.join(f));
    let cells: usize = rows.iter().map(Vec::len).sum();
    assert_eq!(svg("accuracy_matrix_dm.svg"), (0, cells));
    assert_eq!(svg("task_accuracy_dm.svg").0, rows.len());
    assert_eq!(svg("average_accuracy.svg").0, 4);
    // Memory: 10 per class seen, 100 at the end.
    assert_eq!(strategy(&out, "dm").memory_images, 100);
}

#[test]
fn task_heads_help_finetuning_and_a_total_budget_holds() {
    let dir = tempfile::tempdir().unwrap();
    let class_il = run_text(&scenario_text(r#"strategies = ["finetune"]"#), dir.path());
    let task_il = run_text(
        &scenario_text(
            r#"strategies = ["finetune", "herding"]
task_incremental = true
protocol = "gdumb"
memory_epochs = 30
memory_total = 25"#,
        ),
        dir.path(),
    );
    let (c, t) = (acc(&class_il, "finetune"), acc(&task_il, "finetune"));
    assert!(t > c + 0.3, "task-incremental {t} vs class-incremental {c}");
    // Two-way choices with a head per task: far above chance (0.5) from the memory alone.
    let h = acc(&task_il, "herding");
    assert!(h > 0.8, "gdumb herding with task heads {h}");
    let mem = std::fs::read_to_string(task_il.dir.join("memory.csv")).unwrap();
    for step in 0..5 {
        let total: usize = mem
            .lines()
            .skip(1)
            .filter(|l| l.split(',').nth(1) == Some(&step.to_string()))
            .map(|l| l.split(',').nth(4).unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(total, 25, "after task {step}");
    }
}

#[test]
fn continual_sections_are_validated() {
    let bad = scenario_text(
        r#"stream = "permuted"
task_incremental = true
memory_total = 10
memory_per_class = 2
replay_fraction = 1.5"#,
    );
    let err = scenario::parse(&bad, Path::new("bad.toml"))
        .unwrap_err()
        .to_string();
    for needle in ["task_incremental", "memory_total", "replay_fraction"] {
        assert!(err.contains(needle), "{needle} not in: {err}");
    }
    let bad_split = scenario_text("").replace("tasks = 5", "tasks = 3");
    let l = scenario::parse(&bad_split, Path::new("t.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = runner::run(&l, &RunOptions::quiet(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tasks = 3"), "{err}");
}

#[test]
fn an_mtt_memory_is_distilled_per_task_and_holds_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let text = scenario_text(
        r#"tasks = 2
strategies = ["finetune", { method = "mtt", iterations = 3, syn_steps = 2, expert_epochs = 1, max_start_epoch = 1, lr_img = 100, lr_teacher = 0.02 }]
memory_total = 20"#,
    )
    .replace("tasks = 5\n", "")
    + "[experts]\ncount = 1\nepochs = 2\nbatch_size = 64\nlr = 0.02\n";
    let out = run_text(&text, dir.path());
    let mtt = strategy(&out, "mtt");
    assert!(
        mtt.memory_images > 0 && mtt.memory_images <= 20,
        "{}",
        mtt.memory_images
    );
    let mem = std::fs::read_to_string(out.dir.join("memory.csv")).unwrap();
    for after in 0..2 {
        let held: usize = mem
            .lines()
            .skip(1)
            .filter(|l| l.starts_with(&format!("mtt,{after},")))
            .map(|l| l.rsplit(',').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert!(held > 0 && held <= 20, "after task {after}: {held}");
    }
    // One folder of experts per task's data.
    assert_eq!(
        std::fs::read_dir(dir.path().join("experts"))
            .unwrap()
            .count(),
        2
    );
    assert!(acc(&out, "mtt") > acc(&out, "finetune"));
}
