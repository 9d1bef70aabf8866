//! Every run kind survives `kill -9` and Ctrl-C: the binary is started as a child, killed once its
//! results folder shows a given round or task done, resumed, and its summary and CSVs compared
//! with an uninterrupted run's on the same seed (timings aside).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_distillery")
}

/// Starts `distillery run -q` on `scen` with results under `root`.
fn start(scen: &Path, root: &Path) -> Child {
    Command::new(exe())
        .args(["run", "-q", "--results"])
        .arg(root)
        .arg(scen)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The only run folder under `root`, once it exists.
pub fn run_dir(root: &Path) -> Option<PathBuf> {
    let e = std::fs::read_dir(root).ok()?.next()?.ok()?;
    Some(e.path())
}

/// Data rows of `dir/name` (0 while it is missing).
pub fn data_rows(dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(name)).map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// Runs `scen` to the end; its results folder.
pub fn full(scen: &Path, root: &Path) -> PathBuf {
    let out = start(scen, root).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_dir(root).unwrap()
}

/// Starts `scen` and waits until `ready` holds of its results folder; the child and folder.
fn started_until(scen: &Path, root: &Path, ready: impl Fn(&Path) -> bool) -> (Child, PathBuf) {
    let mut child = start(scen, root);
    let t0 = Instant::now();
    loop {
        if let Some(d) = run_dir(root).filter(|d| ready(d)) {
            return (child, d);
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the run ended ({st}) before it could be interrupted");
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts `scen`, SIGKILLs it once `ready` holds, and checks it had not finished.
pub fn killed_when(scen: &Path, root: &Path, ready: impl Fn(&Path) -> bool) -> PathBuf {
    let (mut child, dir) = started_until(scen, root, ready);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !dir.join("summary.json").exists(),
        "the run finished before the kill"
    );
    dir
}

/// Sends `child` SIGINT (Ctrl-C) and checks it stopped at a checkpoint (status 130); its stderr.
fn interrupted(child: Child) -> String {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{err}");
    err
}

/// Resumes the run in `dir` and checks it said `said` (that it continued from a checkpoint
/// rather than starting over).
pub fn resume(dir: &Path, said: &str) {
    let out = Command::new(exe())
        .args(["run", "--resume"])
        .arg(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(said), "{err}");
}

/// True for the fields that hold wall-clock times (or lines that print them).
fn timing(key: &str) -> bool {
    key.ends_with("seconds")
        || key.ends_with("_s")
        || key == "report"
        || key == "iterations_this_run"
        || key == "seconds_per_iteration"
        || key == "seconds_per_epoch"
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !timing(k));
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

pub fn summary(dir: &Path) -> Value {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    strip(&mut v);
    v
}

/// Every CSV of `dir`: its rows without the timing columns.
pub fn csvs(dir: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "csv") {
            continue;
        }
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(&p)
            .unwrap();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut keep: Vec<bool> = Vec::new();
        for rec in r.records() {
            let rec = rec.unwrap();
            if keep.is_empty() {
                keep = rec.iter().map(|h| !timing(h)).collect();
            }
            let row = rec
                .iter()
                .zip(keep.iter().chain(std::iter::repeat(&true)))
                .filter(|(_, &k)| k)
                .map(|(c, _)| c.to_string())
                .collect();
            rows.push(row);
        }
        out.insert(p.file_name().unwrap().to_string_lossy().into_owned(), rows);
    }
    out
}

/// The resumed run's summary and CSVs are the uninterrupted run's.
pub fn assert_same(full: &Path, resumed: &Path) {
    let (a, b) = (csvs(full), csvs(resumed));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, rows) in &a {
        assert_eq!(rows.len(), b[name].len(), "{name}: row count");
        assert_eq!(rows, &b[name], "{name}");
    }
    assert_eq!(summary(full), summary(resumed));
}

pub fn write(root: &Path, text: &str) -> PathBuf {
    let p = root.join("scenario.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub const FEDERATED: &str = r#"
name = "fed-resume"
kind = "federated"
seed = 4
[data]
source = "digits"
[model]
width = 8
depth = 2
[train]
epochs = 1
batch_size = 32
lr = 0.02
[distill]
method = "dm"
ipc = 2
iterations = 5
batch_real = 16
[federated]
clients = 4
fraction = 0.5
partition = { kind = "dirichlet", alpha = 0.5, min_size = 5 }
strategies = ["distilled_iterative", "fedavg"]
rounds = 5
fedavg_until_oneshot = false
"#;

#[test]
fn a_federated_run_killed_after_its_second_round_resumes_to_the_same_results() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), FEDERATED);
    let reference = full(&scen, &root.path().join("full"));
    assert_eq!(data_rows(&reference, "metrics.csv"), 10);
    let cut = killed_when(&scen, &root.path().join("cut"), |d| {
        data_rows(d, "metrics.csv") >= 2
    });
    assert!(data_rows(&cut, "metrics.csv") < 10);
    resume(&cut, "resuming distilled_iterative at task 0 round ");
    assert_same(&reference, &cut);
    assert!(
        !cut.join("checkpoint.msgpack").exists(),
        "kept after the end"
    );
}

#[test]
fn a_federated_run_killed_after_an_audited_strategy_resumes_with_its_audit() {
    // The one-shot strategy's sets are audited when it ends; the kill comes in FedAvg's rounds,
    // so the baselines and totals at the end need the audit kept in the checkpoint.
    let text = FEDERATED
        .replace("fed-resume", "fed-audit-resume")
        .replace("\"distilled_iterative\"", "\"distilled_oneshot\"");
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), &text);
    let reference = full(&scen, &root.path().join("full"));
    assert_eq!(data_rows(&reference, "metrics.csv"), 6);
    let privacy = std::fs::read_to_string(reference.join("privacy.csv")).unwrap();
    for set in ["distilled_oneshot", "real_data", "random"] {
        assert!(privacy.contains(&format!("\n{set},")), "{set}: {privacy}");
    }
    let cut = killed_when(&scen, &root.path().join("cut"), |d| {
        data_rows(d, "metrics.csv") >= 3
    });
    resume(&cut, "resuming fedavg at task 0 round ");
    assert_same(&reference, &cut);
    assert!(summary(&cut)["privacy"]["clients"]["real_data"].is_object());
}

const CONTINUAL: &str = r#"
name = "cl-resume"
kind = "continual"
seed = 3
[data]
source = "digits"
[model]
width = 8
depth = 2
[train]
epochs = 2
batch_size = 32
lr = 0.02
schedule = "constant"
[distill]
iterations = 10
batch_real = 16
[continual]
tasks = 5
strategies = ["random", "dm"]
memory_per_class = 5
"#;

#[test]
fn a_continual_run_killed_after_its_second_task_resumes_to_the_same_results() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), CONTINUAL);
    let reference = full(&scen, &root.path().join("full"));
    // Five rows (one per task tested) after each of five tasks, for two strategies.
    assert_eq!(data_rows(&reference, "metrics.csv"), 50);
    // Killed in dm's stream: the finished random memory is audited at the end from the
    // checkpoint's copy.
    let cut = killed_when(&scen, &root.path().join("cut"), |d| {
        data_rows(d, "metrics.csv") >= 35
    });
    resume(&cut, "resuming dm at task ");
    assert_same(&reference, &cut);
    let privacy = std::fs::read_to_string(cut.join("privacy.csv")).unwrap();
    assert!(
        privacy.contains("\nrandom,") && privacy.contains("\ndm,"),
        "{privacy}"
    );
}

const STREAM: &str = r#"
name = "fcl-resume"
kind = "federated_continual"
seed = 1
[data]
source = "digits"
[model]
width = 8
depth = 2
[train]
epochs = 1
batch_size = 32
lr = 0.02
schedule = "constant"
[distill]
method = "dm"
ipc = 2
iterations = 5
batch_real = 16
[continual]
class_groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
protocol = "gdumb"
memory_total = 60
[federated]
clients = 3
partition = { kind = "iid" }
rounds = 2
replay_memory_total = 30
strategies = ["fedavg_replay", "distilled_memory", "joint"]
"#;

#[test]
fn a_federated_continual_run_killed_mid_stream_resumes_to_the_same_results() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), STREAM);
    let reference = full(&scen, &root.path().join("full"));
    let cut = killed_when(&scen, &root.path().join("cut"), |d| {
        data_rows(d, "rounds.csv") >= 3
    });
    resume(&cut, "resuming fedavg_replay at task ");
    assert_same(&reference, &cut);
}

fn distill_text() -> &'static str {
    r#"
name = "dm-resume"
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
iterations = 300
batch_real = 16
log_every = 1
checkpoint_every = 40
eval_every = 100
baselines = ["random"]
[eval]
epochs = 10
batch_size = 16
repeats = 1
"#
}

#[test]
fn a_distill_run_killed_between_checkpoints_repeats_no_row() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), distill_text());
    let reference = full(&scen, &root.path().join("full"));
    // Killed past its first checkpoint (40 rows), before the second is likely.
    let cut = killed_when(&scen, &root.path().join("cut"), |d| {
        d.join("dm.checkpoint.safetensors").exists() && data_rows(d, "metrics.csv") >= 45
    });
    let before = data_rows(&cut, "metrics.csv");
    resume(&cut, "resuming from iteration ");
    let (a, b) = (csvs(&reference), csvs(&cut));
    assert_eq!(
        a["metrics.csv"].len(),
        b["metrics.csv"].len(),
        "killed at {before} rows"
    );
    assert_eq!(a["metrics.csv"], b["metrics.csv"]);
}

#[test]
fn ctrl_c_writes_a_checkpoint_says_how_to_resume_and_the_resumed_run_matches() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), FEDERATED);
    let reference = full(&scen, &root.path().join("full"));
    let (child, dir) = started_until(&scen, &root.path().join("cut"), |d| {
        data_rows(d, "metrics.csv") >= 1
    });
    let err = interrupted(child);
    assert!(err.contains("--resume"), "{err}");
    assert!(dir.join("checkpoint.msgpack").exists());
    assert!(!dir.join("summary.json").exists());
    resume(&dir, "resuming distilled_iterative at task 0 round ");
    assert_same(&reference, &dir);
}

#[test]
fn an_audit_run_stopped_with_ctrl_c_resumes_after_its_last_audit() {
    use distillery::scenario::shortcut::audit::{audit_scenario, AuditArgs};
    let root = tempfile::tempdir().unwrap();
    let digits =
        "name = \"set\"\nkind = \"distill\"\n[data]\nsource = \"digits\"\n[model]\nwidth = 8\n\
        depth = 2\n[distill]\nipc = 2\niterations = 10\nbatch_real = 16\nbaselines = []\n\
        [eval]\nepochs = 5\nrepeats = 1\n[audit]\nenabled = false\n";
    let made = full(&write(root.path(), digits), &root.path().join("made"));
    let text = audit_scenario(&AuditArgs {
        set: made.join("dm.safetensors"),
        data: "digits".into(),
        width: 8,
        depth: 2,
        epochs: 30,
        sample: 60,
        reference_nets: 2,
        seed: 0,
        device: distillery::device::DeviceKind::Cpu,
    });
    let Ok(text) = text else {
        panic!("{:?}", text.err())
    };
    let scen = write(root.path(), &text);
    let reference = full(&scen, &root.path().join("full"));
    let (child, dir) = started_until(&scen, &root.path().join("cut"), |_| true);
    interrupted(child);
    assert!(data_rows(&dir, "privacy.csv") < 3);
    resume(&dir, "resuming the audit after ");
    assert_same(&reference, &dir);
}

#[test]
fn a_corrupt_checkpoint_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), FEDERATED);
    let dir = killed_when(&scen, &root.path().join("cut"), |d| {
        d.join("checkpoint.msgpack").exists()
    });
    std::fs::write(dir.join("checkpoint.msgpack"), b"\x93not a checkpoint").unwrap();
    let out = Command::new(exe())
        .args(["run", "-q", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("checkpoint.msgpack") && err.contains("not a usable checkpoint"),
        "{err}"
    );
}

const TRAIN: &str = r#"
name = "train-resume"
kind = "train"
seed = 5
[data]
source = "digits"
[model]
width = 8
depth = 2
[train]
epochs = 20
batch_size = 32
lr = 0.02
eval_every = 1
repeats = 2
ipc = 100
"#;

#[test]
fn a_train_run_killed_mid_repeat_resumes_to_the_same_results() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), TRAIN);
    let reference = full(&scen, &root.path().join("full"));
    assert_eq!(data_rows(&reference, "metrics.csv"), 40);
    // Killed in the second repeat: the first one's accuracy, and the second's network, momentum,
    // sample order and random stream come from the checkpoint.
    let cut = killed_when(&scen, &root.path().join("cut"), |d| {
        data_rows(d, "metrics.csv") >= 26
    });
    resume(&cut, "resuming repeat 2 at epoch ");
    assert_same(&reference, &cut);
    assert!(!cut.join("checkpoint.msgpack").exists());
}
