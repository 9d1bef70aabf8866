//! `distillery fidelity`: the table's rows hold exactly the finished runs' figures, the
//! published figure and source of each scenario's `[published]` table, and say "not run" for a
//! scenario without a run; a run of an edited scenario is not taken for the original's; bad
//! input is an error naming the file.

use distillery::experiment::fidelity::write_table;
use distillery::experiment::RunOptions;
use distillery::report::records::{Outcome, Summary};
use std::path::Path;

/// A tiny DM row with a random and a herding baseline and the published figure it stands for.
const ROW: &str = r#"
name = "fid-dm"
kind = "distill"
seed = 1
[data]
source = "digits"
[model]
width = 8
depth = 2
[distill]
method = "dm"
ipc = 1
iterations = 6
batch_real = 16
baselines = ["random", { method = "herding", pool = 200 }]
[eval]
epochs = 4
repeats = 2
coverage = false
[audit]
enabled = false
[published]
accuracy = 89.7
std = 0.6
source = "DM paper, Table 1 (MNIST)"
note = "the digits stand in for MNIST"
"#;

/// A row that is never run.
const LATER: &str = r#"
name = "fid-later"
kind = "distill"
[data]
source = "digits"
[distill]
method = "dc"
ipc = 10
iterations = 1000
[published]
accuracy = 97.8
source = "DSA paper, Table 2"
"#;

/// The table's line for scenario file `file`.
fn line<'a>(md: &'a str, file: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(&format!("| {file} |")))
        .unwrap_or_else(|| panic!("no row for {file} in\n{md}"))
}

/// `mean ± sd (n)` of `method` in the summary at `dir`, as the table writes it.
fn cell(dir: &Path, method: &str) -> String {
    let s = Summary::load(dir).unwrap();
    let Outcome::Distill(d) = s.outcome else {
        panic!("not a distill summary")
    };
    let a = &d.results[method]["convnet"];
    format!(
        "{:.2} ± {:.2} ({})",
        100.0 * a.mean,
        100.0 * a.std,
        a.test_acc.len()
    )
}

#[test]
fn the_table_holds_each_runs_figures_beside_the_published_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, root, out) = (
        tmp.path().join("paper"),
        tmp.path().join("results"),
        tmp.path().join("docs/fidelity.md"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-dm.toml"), ROW).unwrap();
    std::fs::write(dir.join("b-later.toml"), LATER).unwrap();
    let opts = RunOptions::quiet(&root);

    // Nothing run yet: both rows say so, with their budgets.
    assert_eq!(write_table(&dir, &opts, &out, false).unwrap(), (0, 2));
    let md = std::fs::read_to_string(&out).unwrap();
    let later = line(&md, "b-later.toml");
    assert!(later.contains("| not run | not run | not run |"), "{later}");
    assert!(
        later.contains("| 97.8 | - | DSA paper, Table 2 |"),
        "{later}"
    );
    assert!(later.contains("1000 iterations"), "{later}");

    // A run of an edited copy of the row is not the row's run.
    let edited = dir.join("../edited.toml");
    std::fs::write(&edited, ROW.replace("seed = 1", "seed = 2")).unwrap();
    distillery::experiment::run_file(&edited, &opts).unwrap();
    assert_eq!(write_table(&dir, &opts, &out, false).unwrap(), (0, 2));

    // Running the missing row: its line holds that run's own figures.
    std::fs::remove_file(dir.join("b-later.toml")).unwrap();
    assert_eq!(write_table(&dir, &opts, &out, true).unwrap(), (1, 1));
    let md = std::fs::read_to_string(&out).unwrap();
    let row = line(&md, "a-dm.toml");
    let loaded = distillery::scenario::parse(ROW, &dir.join("a-dm.toml")).unwrap();
    let run = distillery::report::fidelity::last_run(&root, &loaded)
        .unwrap()
        .expect("the row's run");
    for m in ["dm", "random", "herding"] {
        let c = cell(&run, m);
        assert!(row.contains(&format!("| {c} |")), "{m}: {c} not in {row}");
    }
    assert!(row.contains("| dm | digits | 1 |"), "{row}");
    // The gap: ours minus the published figure, in points.
    let mean = match Summary::load(&run).unwrap().outcome {
        Outcome::Distill(d) => d.results["dm"]["convnet"].mean,
        _ => unreachable!(),
    };
    let gap = format!("{:+.1}", 100.0 * mean - 89.7);
    assert!(
        row.contains(&format!(
            "| 89.7 ± 0.6 | {gap} | DM paper, Table 1 (MNIST); the digits stand in for MNIST |"
        )),
        "{row}"
    );
    assert!(
        row.contains("6 iterations, eval 4 epochs x 2 nets, width 8 depth 2"),
        "{row}"
    );
    // Asked again, nothing is run a second time.
    let runs = std::fs::read_dir(&root).unwrap().count();
    write_table(&dir, &opts, &out, true).unwrap();
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), runs);
}

#[test]
fn bad_rows_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("paper");
    std::fs::create_dir_all(&dir).unwrap();
    let opts = RunOptions::quiet(tmp.path().join("results"));
    let out = tmp.path().join("f.md");
    let e = write_table(&dir, &opts, &out, false).unwrap_err();
    assert!(e.to_string().contains("no scenario files"), "{e}");
    let bad = ROW.replace("accuracy = 89.7", "accuracy = 189.7");
    std::fs::write(dir.join("bad.toml"), bad).unwrap();
    let e = write_table(&dir, &opts, &out, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.toml") && e.contains("published.accuracy"),
        "{e}"
    );
    let train = "name = \"t\"\nkind = \"train\"\n[data]\nsource = \"digits\"\n";
    std::fs::write(dir.join("bad.toml"), train).unwrap();
    let e = write_table(&dir, &opts, &out, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.toml") && e.contains("distill"), "{e}");
    assert!(!out.exists(), "no table is written from bad rows");
}

#[test]
fn a_table_of_validation_runs_says_it_is_not_the_test_set() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = (tmp.path().join("tune"), tmp.path().join("tuning.md"));
    std::fs::create_dir_all(&dir).unwrap();
    let text = ROW
        .replace("coverage = false", "coverage = false\nvalidation = 0.2")
        .replace("method = \"dm\"", "method = \"dm\"\nexpand = 2");
    std::fs::write(dir.join("v.toml"), text).unwrap();
    let opts = RunOptions::quiet(tmp.path().join("results"));
    assert_eq!(write_table(&dir, &opts, &out, false).unwrap(), (0, 1));
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(
        md.starts_with("# Tuning: settings compared on a validation split"),
        "{md}"
    );
    assert!(md.contains("Accuracies are validation accuracy"), "{md}");
    let row = line(&md, "v.toml");
    assert!(
        row.contains("expand 2") && row.contains("20% of the training images held out"),
        "{row}"
    );
}
