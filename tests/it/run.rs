//! End-to-end runs: training on the embedded digits, determinism, results folder, CLI errors.

use crate::common::run_text;
use distillery::experiment::{self as runner, RunOptions};
use distillery::scenario;
use distillery::scenario::edit::with_top_key;
use std::path::Path;
use std::process::Command;

#[test]
fn convnet_on_embedded_digits_reaches_90_percent() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_text(
        r#"
name = "digits-test"
kind = "train"
seed = 1
[data]
source = "digits"
[model]
width = 32
depth = 2
[train]
epochs = 12
batch_size = 32
lr = 0.02
eval_every = 12
"#,
        dir.path(),
    );
    let acc = out.summary.train().unwrap().test_acc_mean;
    assert!(
        acc >= 0.90,
        "test accuracy {acc} below 0.90 (chance is 0.10)"
    );
}

const TINY: &str = r#"
name = "tiny"
kind = "train"
seed = 7
[data]
source = "synthetic"
train = 120
test = 60
size = 8
classes = 4
[model]
width = 8
depth = 2
[train]
epochs = 3
batch_size = 16
lr = 0.05
"#;

fn metrics_without_time(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    // Drop the last column (elapsed seconds), which differs run to run.
    text.lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

#[test]
fn same_scenario_and_seed_give_identical_metrics() {
    let root = tempfile::tempdir().unwrap();
    let a = run_text(TINY, root.path());
    let b = run_text(TINY, root.path());
    assert_ne!(a.dir, b.dir, "each run gets its own folder");
    let (ma, mb) = (metrics_without_time(&a.dir), metrics_without_time(&b.dir));
    assert_eq!(ma.len(), 4, "header + 3 epochs");
    assert_eq!(ma, mb);
    assert_eq!(
        a.summary.train().unwrap().test_acc,
        b.summary.train().unwrap().test_acc
    );
    let c = run_text(&TINY.replace("seed = 7", "seed = 8"), root.path());
    assert_ne!(
        metrics_without_time(&c.dir),
        ma,
        "a different seed gives a different run"
    );
}

#[test]
fn results_folder_holds_scenario_metrics_and_summary() {
    let root = tempfile::tempdir().unwrap();
    let text = TINY.replace(
        "epochs = 3",
        "epochs = 4\nrepeats = 2\neval_every = 2\nipc = 5",
    );
    let out = run_text(&text, root.path());
    let name = out.dir.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("tiny-") && name.len() == "tiny-YYYYMMDD-HHMMSS".len(),
        "{name}"
    );
    assert_eq!(
        std::fs::read_to_string(out.dir.join("scenario.toml")).unwrap(),
        text
    );
    let rows = std::fs::read_to_string(out.dir.join("metrics.csv")).unwrap();
    assert_eq!(
        rows.lines().count(),
        1 + 2 * 2,
        "2 repeats x evaluations at epochs 2 and 4"
    );
    assert!(rows.starts_with("repeat,epoch,lr,train_loss,test_loss,test_acc,elapsed_s"));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["test_acc"].as_array().unwrap().len(), 2);
    assert_eq!(s["ipc"], 5);
    assert_eq!(s["dataset"]["train"], 120);
    assert!(!out.dir.join("summary.json.tmp").exists());
}

#[test]
fn cli_reports_bad_scenarios_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, TINY.replace("lr = 0.05", "lr = -1")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distillery"))
        .args(["run", bad.to_str().unwrap(), "--results"])
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml") && err.contains("train.lr = -1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !dir.path().join("r").exists(),
        "no results folder for a rejected scenario"
    );

    let missing = dir.path().join("idx.toml");
    std::fs::write(
        &missing,
        "name = \"m\"\nkind = \"train\"\n[data]\nsource = \"idx\"\ntrain_images = \"nope-images.gz\"\ntrain_labels = \"l\"\ntest_images = \"ti\"\ntest_labels = \"tl\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distillery"))
        .args(["run", missing.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nope-images.gz"),
        "{err}"
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    for kind in ["cuda", "cuda-unfused"] {
        let l = scenario::parse(
            &TINY.replace("seed = 7", &format!("seed = 7\ndevice = \"{kind}\"")),
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(l.scenario.device.name(), kind);
        let root = tempfile::tempdir().unwrap();
        let e = runner::run(&l, &RunOptions::quiet(root.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--features cuda"), "{kind}: {e}");
    }
}

#[test]
fn non_finite_loss_is_an_error_naming_the_epoch() {
    use burn::backend::{Autodiff, Flex};
    use distillery::data::synthetic;
    use distillery::model::{ConvNetSpec, ModelSpec};
    use distillery::train::{TrainConfig, Training};
    use rand::SeedableRng;
    let data = synthetic::generate(40, [1, 8, 8], 4, 0.1, 0);
    let spec = ModelSpec::ConvNet(ConvNetSpec {
        width: 4,
        depth: 2,
        ..ConvNetSpec::reference([1, 8, 8], 4)
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let dev = Default::default();
    let mut model = spec.init::<Flex, _>(&mut rng, &dev);
    // An absurd learning rate overflows the weights within the first epoch.
    let cfg = TrainConfig {
        lr: 1e30,
        batch_size: 8,
        ..TrainConfig::reference(3)
    };
    let mut epochs_seen = 0;
    let e = Training::<Autodiff<Flex>>::new(&cfg, &dev)
        .run_observed(&mut model, &data, &mut rng, |_, _, _| {
            epochs_seen += 1;
            Ok(())
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training loss became") && e.contains("epoch 1"),
        "{e}"
    );
    assert_eq!(
        epochs_seen, 0,
        "no epoch is reported after a non-finite loss"
    );
}

#[test]
fn non_finite_pixels_are_rejected_by_validation() {
    let mut data = distillery::data::synthetic::generate(10, [1, 4, 4], 2, 0.1, 0);
    assert!(data.validate().is_ok());
    data.images[3 * 16 + 5] = f32::NAN;
    let e = data.validate().unwrap_err();
    assert!(e.contains("image 3") && e.contains("non-finite"), "{e}");
}

#[test]
fn device_flag_overrides_the_scenario_and_is_recorded() {
    use distillery::device::DeviceKind;
    // The key's value is replaced at top level only (comments kept); a missing key is added.
    let t = "# c\nname = \"x\"\ndevice = \"cuda\"\n[data]\ndevice = \"kept\"\n";
    assert_eq!(
        with_top_key(t, "device", DeviceKind::Cpu.name()),
        "# c\nname = \"x\"\ndevice = \"cpu\"\n[data]\ndevice = \"kept\"\n"
    );
    assert_eq!(
        with_top_key("name = \"x\"\n", "device", DeviceKind::Cuda.name()),
        "name = \"x\"\ndevice = \"cuda\"\n"
    );
    // A scenario that names CUDA runs on the CPU with the flag (in any build), and the results
    // folder's copy names the device used.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.toml");
    std::fs::write(
        &file,
        TINY.replace("kind = \"train\"", "kind = \"train\"\ndevice = \"cuda\""),
    )
    .unwrap();
    let opts = RunOptions::quiet(dir.path().join("results"));
    let out = runner::run_file_on(&file, Some(DeviceKind::Cpu), None, &opts).unwrap();
    let copy = std::fs::read_to_string(out.dir.join("scenario.toml")).unwrap();
    assert!(
        copy.contains("device = \"cpu\"") && !copy.contains("cuda"),
        "{copy}"
    );
    assert!(out.summary.train().unwrap().test_acc_mean > 0.25);
    let cli = Command::new(env!("CARGO_BIN_EXE_distillery"))
        .args(["run", "-q", "--device", "cpu", "--results"])
        .arg(dir.path().join("results"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_distillery"))
        .args(["run", "--device", "tpu"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tpu"));
}

#[test]
fn seed_flag_overrides_the_scenario_and_is_recorded() {
    // Top level only: an `[experts] seed` stays, so runs at other seeds share the experts.
    let t = "name = \"x\"\nseed = 0\n[experts]\nseed = 0\n";
    assert_eq!(
        with_top_key(t, "seed", 3),
        "name = \"x\"\nseed = 3\n[experts]\nseed = 0\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.toml");
    std::fs::write(&file, TINY).unwrap();
    let results = dir.path().join("results");
    let run = |seed: Option<u64>| {
        runner::run_file_on(&file, None, seed, &RunOptions::quiet(results.clone())).unwrap()
    };
    let (a, b) = (run(Some(3)), run(None));
    assert_eq!(a.summary.seed, 3);
    assert_eq!(b.summary.seed, 7);
    let copy = std::fs::read_to_string(a.dir.join("scenario.toml")).unwrap();
    assert!(
        copy.contains("seed = 3") && !copy.contains("seed = 7"),
        "{copy}"
    );
    // Another seed is another run: the metrics differ; the same seed through the flag and
    // through the file gives the same metrics.
    assert_ne!(metrics_without_time(&a.dir), metrics_without_time(&b.dir));
    let c = run(Some(7));
    assert_eq!(metrics_without_time(&b.dir), metrics_without_time(&c.dir));
    let cli = Command::new(env!("CARGO_BIN_EXE_distillery"))
        .args(["run", "-q", "--seed", "oops"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("oops"));
}

#[test]
fn the_schedule_makes_periodic_actions_due_before_the_last_iteration_only() {
    use distillery::train::events::Schedule;
    let s = Schedule {
        iterations: 10,
        log_every: 3,
        checkpoint_every: 5,
        eval_every: 5,
        coverage_every: 0,
        max_seconds: None,
    };
    let due: Vec<(bool, bool, bool)> = (1..=10)
        .map(|it| {
            let d = s.due(it, 0.0);
            (d.log, d.checkpoint, d.evaluate)
        })
        .collect();
    // Logs at 3, 6, 9 and the last; checkpoint and evaluation at 5 (not 10, the last).
    assert_eq!(due[2], (true, false, false));
    assert_eq!(due[4], (false, true, true));
    assert_eq!(due[9], (true, false, false));
    assert!((1..=10).all(|it| !s.due(it, 0.0).coverage));
    // A budget spent after iteration 4: that one is the last (logged, nothing else due).
    let b = Schedule {
        max_seconds: Some(1.0),
        ..s.clone()
    };
    let d = b.due(4, 1.5);
    assert!(d.budget_reached && d.log && !d.checkpoint);
    assert!(
        !b.due(10, 9.0).budget_reached,
        "the last iteration ends the run anyway"
    );
}
