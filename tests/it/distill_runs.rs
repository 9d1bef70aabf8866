//! The `distill` scenario end to end on tiny data: sets, metrics and summary, an interrupted CLI
//! run resumed, the `distillery distill` shortcut, and the validation of `[distill]`.

use distillery::distill::SyntheticSet;
use distillery::experiment::RunOptions;
use std::path::Path;

fn scenario_text(iterations: usize, checkpoint_every: usize) -> String {
    format!(
        r#"
name = "tiny-dm"
kind = "distill"
seed = 2
[data]
source = "synthetic"
train = 150
test = 90
size = 8
classes = 3
[model]
width = 8
depth = 2
[distill]
ipc = 2
iterations = {iterations}
batch_real = 16
log_every = 1
checkpoint_every = {checkpoint_every}
baselines = ["random", "herding"]
[eval]
epochs = 30
batch_size = 16
repeats = 2
models = ["convnet", "mlp"]
"#
    )
}

#[test]
fn distill_scenario_writes_sets_metrics_and_summary_and_beats_chance() {
    let root = tempfile::tempdir().unwrap();
    let l = distillery::scenario::parse(&scenario_text(20, 5), Path::new("t.toml")).unwrap();
    let out = distillery::experiment::run(&l, &RunOptions::quiet(root.path())).unwrap();
    for f in [
        "scenario.toml",
        "run.json",
        "metrics.csv",
        "summary.json",
        "dm.safetensors",
        "dm.png",
        "random.safetensors",
        "herding.png",
    ] {
        assert!(out.dir.join(f).is_file(), "missing {f}");
    }
    assert!(!out.dir.join("dm.checkpoint.safetensors").exists());
    let csv = std::fs::read_to_string(out.dir.join("metrics.csv")).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("distill,dm")).count(),
        20
    );
    // 3 methods x 2 models x 2 nets.
    assert_eq!(csv.lines().filter(|l| l.starts_with("eval,")).count(), 12);
    let r = &out.summary.distill().unwrap().results;
    for m in ["dm", "random", "herding"] {
        for arch in ["convnet", "mlp"] {
            let acc = r[m][arch].mean;
            assert!(acc > 0.6, "{m} on {arch}: {acc} (chance is 1/3)");
        }
    }
    let set = SyntheticSet::load(&out.dir.join("dm.safetensors")).unwrap();
    assert_eq!(set.len(), 6);
    assert_eq!(set.provenance.iterations, 20);
    assert_eq!(set.labels, vec![0, 0, 1, 1, 2, 2]);
}

#[test]
fn an_interrupted_cli_run_resumes_to_the_same_set() {
    let exe = env!("CARGO_BIN_EXE_distillery");
    let root = tempfile::tempdir().unwrap();
    let scen = root.path().join("tiny.toml");
    std::fs::write(&scen, scenario_text(400, 5)).unwrap();
    // The uninterrupted reference.
    let full_root = root.path().join("full");
    let st = std::process::Command::new(exe)
        .args(["run", "-q", "--results"])
        .arg(&full_root)
        .arg(&scen)
        .status()
        .unwrap();
    assert!(st.success());
    // Interrupted: killed once its first checkpoint exists.
    let cut_root = root.path().join("cut");
    let mut child = std::process::Command::new(exe)
        .args(["run", "-q", "--results"])
        .arg(&cut_root)
        .arg(&scen)
        .spawn()
        .unwrap();
    let run_dir = loop {
        if let Some(Ok(e)) = std::fs::read_dir(&cut_root).ok().and_then(|mut d| d.next()) {
            if e.path().join("dm.checkpoint.safetensors").exists() {
                break e.path();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !run_dir.join("summary.json").exists(),
        "the run finished before it could be interrupted"
    );
    let out = std::process::Command::new(exe)
        .args(["run", "-q", "--resume"])
        .arg(&run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full_dir = std::fs::read_dir(&full_root)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let a = SyntheticSet::load(&full_dir.join("dm.safetensors")).unwrap();
    let b = SyntheticSet::load(&run_dir.join("dm.safetensors")).unwrap();
    assert_eq!(a.images, b.images);
    // A finished run refuses to resume.
    let again = std::process::Command::new(exe)
        .args(["run", "--resume"])
        .arg(&run_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"));
}

#[test]
fn distill_shortcut_builds_a_valid_scenario() {
    let exe = env!("CARGO_BIN_EXE_distillery");
    let dir = tempfile::tempdir().unwrap();
    // An MNIST-style folder (empty files are enough to be recognised).
    let mnist = dir.path().join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(mnist.join(f), b"").unwrap();
    }
    let out_file = dir.path().join("s.toml");
    let st = std::process::Command::new(exe)
        .args(["distill", "--method", "dm", "--ipc", "10", "--data"])
        .arg(&mnist)
        .arg("--write-scenario")
        .arg(&out_file)
        .status()
        .unwrap();
    assert!(st.success());
    let l = distillery::scenario::load(&out_file).unwrap();
    let d = l.scenario.distill_section();
    let distillery::distill::MethodConfig::Dm(dm) = &d.method else {
        panic!("the shortcut's method is {:?}", d.method.name())
    };
    assert_eq!((d.run.ipc, dm.iterations, dm.batch_real), (10, 20000, 256));
    assert!(matches!(
        l.scenario.data,
        distillery::scenario::DataSpec::Idx { .. }
    ));
    // A dataset by name (no folder of that name here).
    let named = dir.path().join("named.toml");
    let st = std::process::Command::new(exe)
        .current_dir(dir.path())
        .args(["distill", "--data", "fashion_mnist", "--write-scenario"])
        .arg(&named)
        .status()
        .unwrap();
    assert!(st.success());
    let l = distillery::scenario::load(&named).unwrap();
    assert!(matches!(
        l.scenario.data,
        distillery::scenario::DataSpec::FashionMnist(_)
    ));
    let unknown = std::process::Command::new(exe)
        .current_dir(dir.path())
        .args(["distill", "--data", "nosuch"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && e.contains("fashion_mnist, kmnist"),
        "{e}"
    );
    // A folder with nothing recognisable is a clear error.
    let bad = std::process::Command::new(exe)
        .args(["distill", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(e.contains("found neither MNIST IDX files"), "{e}");
}

/// The message of a scenario that must not parse.
fn parse_err(text: &str) -> String {
    distillery::scenario::parse(text, Path::new("t.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn distill_sections_are_validated_with_field_names() {
    let e = parse_err(&scenario_text(10, 5).replace("ipc = 2", "ipc = 0"));
    assert!(e.contains("distill.ipc = 0"), "{e}");
    // An architecture is a name the reader knows: an unknown one stops the read at its line.
    let text =
        scenario_text(10, 5).replace("models = [\"convnet\", \"mlp\"]", "models = [\"resnet\"]");
    let e = parse_err(&text);
    assert!(
        e.contains("models = [\"resnet\"]")
            && e.contains("unknown variant `resnet`")
            && e.contains("`resnet18_bn`"),
        "{e}"
    );
    let text = scenario_text(10, 5).replace("kind = \"distill\"", "kind = \"train\"");
    let e = parse_err(&text);
    assert!(
        e.contains(
            "kind = \"distill\", \"experts\", \"continual\" or \"federated\" when a [distill] section"
        ),
        "{e}"
    );
    let text = scenario_text(10, 5).replace("batch_real = 16", "batch_real = 16\nlr_imgs = 3");
    let e = parse_err(&text);
    assert!(e.contains("lr_imgs"), "{e}");
    // A key of another method names that method and the keys this one takes.
    let text = scenario_text(10, 5).replace("batch_real = 16", "batch_real = 16\nalpha = 0.5");
    let e = parse_err(&text);
    assert!(
        e.contains("`alpha` is a setting of selmatch, not of method = \"dm\"")
            && e.contains("batch_real, ce_weight, dp, dsa, expand, init, iterations"),
        "{e}"
    );
    // Coverage during distillation needs coverage switched on.
    let text = scenario_text(10, 5)
        .replace("batch_real = 16", "batch_real = 16\ncoverage_every = 5")
        .replace("[eval]", "[eval]\ncoverage = false");
    let e = parse_err(&text);
    assert!(
        e.contains("distill.coverage_every = 5") && e.contains("[eval] coverage = false"),
        "{e}"
    );
}
