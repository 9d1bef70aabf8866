//! Federated continual learning on the embedded digits: the accuracy matrix and its metrics,
//! bytes that add up, distilled memories that forget less than fine-tuning, the gRPC transport
//! giving the in-process result, and the settings that cannot work refused by name.

use crate::common::run_text;
use distillery::experiment::RunOutput;
use distillery::report::records::StreamOutcome;
use distillery::report::rows::{CommRow, StreamRow};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fcl_text(name: &str, extra_federated: &str) -> String {
    format!(
        r#"
name = "{name}"
kind = "federated_continual"
seed = 1
[data]
source = "digits"
[model]
width = 16
depth = 2
[train]
epochs = 2
batch_size = 32
lr = 0.02
schedule = "constant"
[eval]
epochs = 100
[distill]
method = "dm"
ipc = 5
iterations = 20
batch_real = 32
[continual]
class_groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
protocol = "gdumb"
memory_total = 200
[federated]
clients = 4
partition = {{ kind = "dirichlet", alpha = 0.5, min_size = 5 }}
rounds = 2
replay_memory_total = 40
{extra_federated}
"#
    )
}

fn outcome(out: &RunOutput) -> &StreamOutcome {
    out.summary
        .federated_continual()
        .expect("a federated continual run")
}

fn rows<R: serde::de::DeserializeOwned>(path: &Path) -> Vec<R> {
    csv::Reader::from_path(path)
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn the_four_strategies_learn_the_stream_and_their_files_agree() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_text(
        &fcl_text(
            "fcl",
            r#"strategies = ["fedavg_finetune", "fedavg_replay", "distilled_memory", "joint"]"#,
        ),
        dir.path(),
    );
    let o = outcome(&out);
    assert_eq!(o.tasks.len(), 3);
    let metrics: Vec<StreamRow> = rows(&out.dir.join("metrics.csv"));
    let comm: Vec<CommRow> = rows(&out.dir.join("comm.csv"));
    for (name, s) in &o.strategies {
        // Three rows of three tasks, every accuracy a fraction.
        assert_eq!(s.accuracy_matrix.len(), 3, "{name}");
        for row in &s.accuracy_matrix {
            assert_eq!(row.len(), 3, "{name}");
            assert!(
                row.iter().all(|a| (0.0..=1.0).contains(a)),
                "{name}: {row:?}"
            );
        }
        // ACC is the mean of the last row.
        let last = &s.accuracy_matrix[2];
        let acc = last.iter().sum::<f64>() / 3.0;
        assert!(
            (s.metrics.average_accuracy.unwrap() - acc).abs() < 1e-12,
            "{name}"
        );
        // metrics.csv holds the same matrix.
        for (i, row) in s.accuracy_matrix.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let r = metrics
                    .iter()
                    .find(|r| &r.strategy == name && r.after_task == i && r.task == j)
                    .unwrap();
                assert!((r.test_acc.0 - a).abs() < 1e-6, "{name} {i} {j}");
            }
        }
        // The bytes of comm.csv add up to the summary's totals.
        let sum: u64 = comm
            .iter()
            .filter(|r| &r.strategy == name)
            .map(|r| r.bytes as u64)
            .sum();
        assert_eq!(sum, s.bytes_total, "{name}");
        assert_eq!(
            s.bytes_after_task.last().copied(),
            Some(s.bytes_total),
            "{name}"
        );
    }
    let (ft, mem, replay, joint) = (
        &o.strategies["fedavg_finetune"],
        &o.strategies["distilled_memory"],
        &o.strategies["fedavg_replay"],
        &o.strategies["joint"],
    );
    let forgetting =
        |s: &distillery::report::records::StreamStrategy| s.metrics.forgetting.unwrap();
    assert!(
        forgetting(mem) < forgetting(ft),
        "distilled_memory forgets {} against fedavg_finetune's {}",
        forgetting(mem),
        forgetting(ft)
    );
    assert!(forgetting(replay) < forgetting(ft));
    assert!(
        forgetting(ft) > 0.5,
        "fine-tuning forgets: {}",
        forgetting(ft)
    );
    assert_eq!(joint.bytes_total, 0);
    assert!(joint.metrics.average_accuracy.unwrap() > 0.8);
    // One-shot sets are much smaller than FedAvg's weights.
    assert!(
        mem.bytes_total * 5 < ft.bytes_total,
        "{} vs {}",
        mem.bytes_total,
        ft.bytes_total
    );
    // The server's memory holds at most its budget, at least a set of every task.
    assert!(mem.memory_images > 0 && mem.memory_images <= 200);
    for f in [
        "accuracy_vs_bytes.svg",
        "accuracy_matrix_distilled_memory.svg",
        "rounds.csv",
    ] {
        assert!(out.dir.join(f).exists(), "{f}");
    }
    let svg = |f: &str| crate::common::svg_shapes(&out.dir.join(f));
    assert_eq!(svg("accuracy_vs_bytes.svg").0, o.strategies.len());
    let cells: usize = mem.accuracy_matrix.iter().map(Vec::len).sum();
    assert_eq!(svg("accuracy_matrix_distilled_memory.svg"), (0, cells));
}

#[test]
fn budgets_that_cannot_hold_every_class_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: String| {
        let l = distillery::scenario::parse(&text, Path::new("t.toml")).unwrap();
        distillery::experiment::run(&l, &distillery::experiment::RunOptions::quiet(dir.path()))
            .unwrap_err()
            .to_string()
    };
    let e = run(fcl_text("b", r#"strategies = ["distilled_memory"]"#)
        .replace("memory_total = 200", "memory_total = 5"));
    assert!(
        e.contains("continual.memory_total = 5") && e.contains("10 classes"),
        "{e}"
    );
    let e = run(fcl_text("b", r#"strategies = ["fedavg_replay"]"#)
        .replace("replay_memory_total = 40", "replay_memory_total = 2"));
    assert!(e.contains("federated.replay_memory_total = 2"), "{e}");
    // A stream strategy in a federated scenario, and a federated one on a stream.
    let e = distillery::scenario::parse(
        &fcl_text("b", r#"strategies = ["fedavg"]"#),
        Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("federated.strategies") && e.contains("fedavg_finetune"),
        "{e}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn over_grpc_the_stream_gives_the_in_process_accuracies() {
    let dir = tempfile::tempdir().unwrap();
    let text = fcl_text(
        "fcl-grpc",
        r#"strategies = ["fedavg_replay", "distilled_memory"]"#,
    )
    .replace("clients = 4", "clients = 3");
    let file = dir.path().join("fcl.toml");
    std::fs::write(&file, &text).unwrap();
    let port = free_port();
    let bin = env!("CARGO_BIN_EXE_distillery");
    let results = dir.path().join("results");
    let mut server = Command::new(bin)
        .args(["serve", file.to_str().unwrap(), "--quiet", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--results")
        .arg(&results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let clients: Vec<_> = (0..3)
        .map(|i| {
            Command::new(bin)
                .args(["client", file.to_str().unwrap(), "--server", &url, "--id"])
                .arg(i.to_string())
                .arg("--results")
                .arg(&results)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "client {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = server.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_dir = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("summary.json").exists())
        .expect("a finished run");
    let remote = distillery::report::records::Summary::load(&run_dir).unwrap();
    let remote = remote.federated_continual().unwrap();
    assert_eq!(remote.transport, "grpc");
    let local = run_text(&text.replace("fcl-grpc", "fcl-local"), dir.path());
    for (k, s) in &outcome(&local).strategies {
        assert_eq!(
            remote.strategies[k].accuracy_matrix, s.accuracy_matrix,
            "{k}"
        );
        assert_eq!(remote.strategies[k].bytes_total, s.bytes_total, "{k}");
    }
}

#[test]
fn a_server_memory_takes_each_class_from_the_clients_in_turn() {
    use distillery::data::Dataset;
    use distillery::fed::strategy::memory::interleave;
    // Two clients: the first holds classes 0 and 1 (values 1, 2, 3 / 4), the second class 0 (10, 20).
    let set = |vals: &[(f32, usize)]| Dataset {
        images: vals.iter().map(|v| v.0).collect(),
        labels: vals.iter().map(|v| v.1).collect(),
        shape: [1, 1, 1],
        classes: vec!["a".into(), "b".into()],
    };
    let a = set(&[(1.0, 0), (4.0, 1), (2.0, 0), (3.0, 0)]);
    let b = set(&[(10.0, 0), (20.0, 0)]);
    let u = interleave(&[a, b], [1, 1, 1], &["a".into(), "b".into()]);
    assert_eq!(u.images, vec![1.0, 10.0, 2.0, 20.0, 3.0, 4.0]);
    assert_eq!(u.labels, vec![0, 0, 0, 0, 0, 1]);
}

#[test]
fn strategy_entries_name_their_method_and_are_checked() {
    let text = fcl_text(
        "e",
        r#"strategies = ["fedavg_finetune", { strategy = "distilled_memory", method = "random" }, "distilled_memory"]"#,
    );
    let l = distillery::scenario::parse(&text, Path::new("t.toml")).unwrap();
    let labels: Vec<String> = l
        .scenario
        .federated_section()
        .strategies
        .iter()
        .map(|e| e.label())
        .collect();
    assert_eq!(
        labels,
        [
            "fedavg_finetune",
            "distilled_memory-random",
            "distilled_memory"
        ]
    );
    let e = distillery::scenario::parse(
        &fcl_text(
            "e",
            r#"strategies = [{ strategy = "distilled_memory", method = "dm", alpha = 0.5 }]"#,
        ),
        Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`alpha` is a setting of selmatch"), "{e}");
    let e = distillery::scenario::parse(
        &fcl_text(
            "e",
            r#"strategies = ["distilled_memory", "distilled_memory"]"#,
        ),
        Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("each strategy once"), "{e}");
}
