//! Scenario parsing and validation: malformed files are rejected with messages naming the field.

use distillery::scenario::{self, DataSpec, Kind};
use std::path::Path;

const GOOD: &str = r#"
name = "t"
kind = "train"
[data]
source = "digits"
[model]
width = 8
[train]
epochs = 2
"#;

fn err(text: &str) -> String {
    scenario::parse(text, Path::new("bad.toml"))
        .unwrap_err()
        .to_string()
}

fn with(section_line: &str, extra: &str) -> String {
    GOOD.replace(section_line, &format!("{section_line}\n{extra}"))
}

#[test]
fn good_scenario_parses_with_defaults() {
    let l = scenario::parse(GOOD, Path::new("x/good.toml")).unwrap();
    let s = &l.scenario;
    assert_eq!(s.kind, Kind::Train);
    assert_eq!(s.data, DataSpec::Digits { split_seed: 0 });
    assert_eq!(s.model.depth, 3);
    assert_eq!(s.train.batch_size, 256);
    assert_eq!(s.train.lr, 0.01);
    assert_eq!(l.resolve(Path::new("d/f.gz")), Path::new("x/d/f.gz"));
    let cfg = s.train_config();
    assert_eq!(cfg.lr_at(0), 0.01);
    assert!(
        (cfg.lr_at(2) - 0.001).abs() < 1e-12,
        "milestone at E/2+1 = 2"
    );
}

#[test]
fn malformed_scenarios_name_the_field() {
    let cases: Vec<(String, &[&str])> = vec![
        (
            GOOD.replace("name = \"t\"\n", ""),
            &["missing field `name`"],
        ),
        (
            with("kind = \"train\"", "colour = 3"),
            &["unknown field `colour`"],
        ),
        (with("[train]", "epochz = 3"), &["unknown field `epochz`"]),
        (
            with("[train]", "lr = \"fast\""),
            &["lr = \"fast\"", "line 9", "expected f64"],
        ),
        (
            with("[train]", "lr = -0.5"),
            &["train.lr = -0.5", "line 9", "learning rate"],
        ),
        (
            with("[train]", "lr = nan"),
            &["train.lr = NaN", "learning rate"],
        ),
        (
            GOOD.replace("epochs = 2", "epochs = 0"),
            &["train.epochs = 0", "positive integer"],
        ),
        (
            with("[train]", "momentum = 1.5"),
            &["train.momentum = 1.5", "[0, 1)"],
        ),
        (with("[train]", "batch_size = 0"), &["train.batch_size = 0"]),
        (
            GOOD.replace("source = \"digits\"", "source = \"imagenet\""),
            &["unknown variant `imagenet`", "digits"],
        ),
        (
            with("[model]", "norm = \"weird\""),
            &["unknown variant `weird`", "instance"],
        ),
        (with("[model]", "depth = 0"), &["model.depth = 0"]),
        (
            GOOD.replace("kind = \"train\"", "kind = \"teleport\""),
            &["unknown variant `teleport`"],
        ),
        (
            GOOD.replace("name = \"t\"", "name = \"a/b\""),
            &["name = \"a/b\"", "results folder"],
        ),
        (
            // Without files CIFAR-10 is the dataset by name; half of a file pair is an error.
            GOOD.replace(
                "source = \"digits\"",
                "source = \"cifar10\"\ntrain_files = [\"a.bin\"]",
            ),
            &["data.test_files", "or neither"],
        ),
        (
            GOOD.replace(
                "source = \"digits\"",
                "source = \"cifar10\"\nroot = \"~/data\"\ndir = \"bin\"",
            ),
            &["data.root", "not both"],
        ),
        (
            GOOD.replace("source = \"digits\"", "source = \"mnist\"\ntrain_first = 0"),
            &["data.train_first"],
        ),
        (
            with("[train]", "milestones = [5, 3]"),
            &["train.milestones", "increasing"],
        ),
        (
            with("[train]", "schedule = \"cosine\"\nmilestones = [1]"),
            &["train.milestones", "step"],
        ),
        (
            with("[data]", "train_images = \"x\""),
            &["unknown field `train_images`"],
        ),
        (
            GOOD.replace(
                "source = \"digits\"",
                "source = \"idx\"\ntrain_images = \"a\"",
            ),
            &["missing field `train_labels`"],
        ),
        (
            with("kind = \"train\"", "device = \"tpu\""),
            &["unknown variant `tpu`", "cuda", "cuda-unfused"],
        ),
        ("name = [".to_string(), &["bad.toml"]),
    ];
    assert!(cases.len() >= 10);
    for (text, needles) in &cases {
        let e = err(text);
        assert!(
            e.starts_with("bad.toml: "),
            "message should name the file: {e}"
        );
        for n in *needles {
            assert!(
                e.contains(n),
                "expected {n:?} in error:\n{e}\n--- scenario ---\n{text}"
            );
        }
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let e = err(&GOOD.replace("epochs = 2", "epochs = 0\nlr = 0\nrepeats = 0"));
    for f in ["train.epochs", "train.lr", "train.repeats"] {
        assert!(e.contains(f), "{f} missing from {e}");
    }
}

#[test]
fn shipped_scenarios_are_valid() {
    let mut n = 0;
    let dirs = std::fs::read_dir("scenarios")
        .into_iter()
        .chain(std::fs::read_dir("scenarios/paper"))
        .chain(std::fs::read_dir("scenarios/tune"))
        .chain(std::fs::read_dir("scenarios/why"));
    for entry in dirs.flatten() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(
        n >= 30,
        "expected the quickstart, MNIST and paper scenarios, found {n}"
    );
}
