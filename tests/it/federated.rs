//! Federated simulation: the wire codec and its checks, bytes in the ledger equal bytes encoded,
//! rounds that survive crashing, poisoning and slow clients, and a real multi-process gRPC run
//! on loopback.

use burn::backend::{Autodiff, Flex};
use distillery::data::Dataset;
use distillery::experiment::{self as runner, RunOptions};
use distillery::fed::protocol::{
    decode_set, decode_tensor, encode_set, encode_task, encode_tensor, wire_len, Quantization,
};
use distillery::fed::strategy::StrategyKind;
use distillery::report::records::Summary;
use distillery::report::rows::{ClientRow, CommRow};
use distillery::scenario;
use prost::Message;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn set(n: usize, k: usize) -> Dataset {
    let shape = [1, 8, 8];
    let images = (0..n * 64)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    Dataset {
        images,
        labels: (0..n).map(|i| i % k).collect(),
        shape,
        classes: (0..k).map(|c| c.to_string()).collect(),
    }
}

#[test]
fn quantized_tensors_round_trip_within_their_precision() {
    let v: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let (f32s, shape) = decode_tensor(&encode_tensor(&v, &[10, 100], Quantization::F32)).unwrap();
    assert_eq!(shape, vec![10, 100]);
    assert_eq!(f32s, v);
    let (h, _) = decode_tensor(&encode_tensor(&v, &[1000], Quantization::F16)).unwrap();
    for (a, b) in v.iter().zip(&h) {
        assert!((a - b).abs() <= 2e-3 * a.abs().max(1.0), "{a} vs {b}");
    }
    let t = encode_tensor(&v, &[1000], Quantization::U8);
    let step = t.scale;
    assert!((step - 6.0 / 255.0).abs() < 1e-3, "scale {step}");
    let (q, _) = decode_tensor(&t).unwrap();
    for (a, b) in v.iter().zip(&q) {
        assert!((a - b).abs() <= step / 2.0 + 1e-5, "{a} vs {b}");
    }
}

#[test]
fn a_u8_set_is_about_a_quarter_of_f32_and_f16_about_half() {
    let d = set(100, 10);
    let f = wire_len(&encode_set(&d, None, Quantization::F32));
    let h = wire_len(&encode_set(&d, None, Quantization::F16));
    let u = wire_len(&encode_set(&d, None, Quantization::U8));
    // 6,400 values: 25,600 bytes as f32, plus labels and framing.
    assert!(f > 25_600 && f < 26_000, "{f}");
    let (rh, ru) = (h as f64 / f as f64, u as f64 / f as f64);
    assert!((0.49..0.52).contains(&rh), "f16/f32 = {rh}");
    assert!((0.24..0.27).contains(&ru), "u8/f32 = {ru}");
    // The length we count is the length of the bytes produced.
    let m = encode_set(&d, None, Quantization::U8);
    assert_eq!(wire_len(&m), m.encode_to_vec().len());
}

#[test]
fn bad_payloads_are_named() {
    let d = set(6, 3);
    let classes = d.classes.clone();
    let ok = encode_set(&d, None, Quantization::F32);
    assert!(decode_set(&ok, [1, 8, 8], &classes).is_ok());
    let err = decode_set(&ok, [1, 4, 4], &classes).unwrap_err();
    assert!(err.contains("shape"), "{err}");
    let mut bad = ok.clone();
    bad.labels[2] = 7;
    assert!(decode_set(&bad, [1, 8, 8], &classes)
        .unwrap_err()
        .contains("label 7"));
    let mut nan = ok.clone();
    nan.images.as_mut().unwrap().data[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(decode_set(&nan, [1, 8, 8], &classes)
        .unwrap_err()
        .contains("not finite"));
    let mut short = ok.clone();
    short.images.as_mut().unwrap().data.pop();
    assert!(decode_set(&short, [1, 8, 8], &classes)
        .unwrap_err()
        .contains("bytes"));
    let mut few = ok;
    few.labels.pop();
    assert!(decode_set(&few, [1, 8, 8], &classes)
        .unwrap_err()
        .contains("labels"));
}

pub fn scenario_text(name: &str, extra: &str) -> String {
    format!(
        r#"
name = "{name}"
kind = "federated"
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
[eval]
epochs = 40
[distill]
method = "random"
ipc = 3
[federated]
clients = 5
partition = {{ kind = "iid" }}
{extra}
"#
    )
}

pub fn run(text: &str, root: &Path) -> runner::RunOutput {
    let l = scenario::parse(text, Path::new("fed.toml")).unwrap();
    runner::run(&l, &RunOptions::quiet(root)).unwrap()
}

fn s_params(l: &scenario::Loaded) -> usize {
    let split = runner::load_data(l).unwrap();
    let fedavg = distillery::scenario::StrategyEntry::of(StrategyKind::Fedavg);
    distillery::plan::federated::settings(l, &split, "results".into(), &fedavg)
        .unwrap()
        .spec
        .num_params()
}

/// The rows of a results CSV, read back typed.
pub fn rows<R: serde::de::DeserializeOwned>(path: &Path) -> Vec<R> {
    csv::Reader::from_path(path)
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn ledger_bytes_are_the_encoded_message_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &scenario_text(
            "ledger",
            r#"strategies = ["distilled_oneshot", "fedavg"]
rounds = 2
fedavg_until_oneshot = false
quantization = "u8""#,
        ),
        dir.path(),
    );
    let comm: Vec<CommRow> = rows(&out.dir.join("comm.csv"));
    // FedAvg's first down message, rebuilt here: the seeded initial global model as u8 tensors
    // in a RoundTask (seq 1: the one-shot round was seq 0). The ledger row must be its length.
    let l = scenario::parse(
        &scenario_text("x", "quantization = \"u8\""),
        Path::new("x.toml"),
    )
    .unwrap();
    let split = runner::load_data(&l).unwrap();
    let entry = distillery::scenario::StrategyEntry::of(StrategyKind::Fedavg);
    let s = distillery::plan::federated::settings(&l, &split, "results".into(), &entry).unwrap();
    let s = std::sync::Arc::new(s);
    let device = Default::default();
    let mut fedavg =
        distillery::fed::strategy::build::build::<Autodiff<Flex>>(StrategyKind::Fedavg, s, &device);
    let mut task = fedavg.configure_round(0);
    task.seq = 1;
    let want = encode_task(&task, Quantization::U8).len();
    let got: Vec<usize> = comm
        .iter()
        .filter(|r| r.strategy == "fedavg" && r.round == 0 && r.direction == "down")
        .map(|r| r.bytes)
        .collect();
    assert_eq!(got, vec![want; 5]);
    // One byte per parameter plus framing: about a quarter of the f32 model.
    let n = s_params(&l);
    assert!(
        want > n && want < n + 2_000,
        "{want} bytes for {n} parameters"
    );
    // Up: each one-shot client sends 30 images of 8x8 as u8 plus 30 labels.
    for r in comm
        .iter()
        .filter(|r| r.strategy == "distilled_oneshot" && r.direction == "up")
    {
        let b = r.bytes;
        assert!((30 * 64..30 * 64 + 120).contains(&b), "{b}");
    }
    // Totals in the summary are the sums of the rows.
    for k in ["fedavg", "distilled_oneshot"] {
        let sum: u64 = comm
            .iter()
            .filter(|r| r.strategy == k)
            .map(|r| r.bytes as u64)
            .sum();
        let f = out.summary.federated().unwrap();
        assert_eq!(f.strategies[k].bytes_total, sum, "{k}");
    }
    // The plots parse: a line per strategy, a cell per client and class.
    let svg = |f: &str| crate::common::svg_shapes(&out.dir.join(f));
    assert_eq!(svg("accuracy_vs_bytes.svg").0, 2);
    let (lines, cells) = svg("partition.svg");
    assert_eq!(lines, 0);
    assert_eq!(cells, 5 * split.train.classes.len());
}

#[test]
fn rounds_complete_without_crashed_poisoned_and_slow_clients() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let out = run(
        &scenario_text(
            "faults",
            r#"strategies = ["fedavg"]
rounds = 2
deadline_seconds = 3.0
faults = { crash = [1], nan = [2], slow = [3], slow_seconds = 6.0 }"#,
        ),
        dir.path(),
    );
    assert!(t0.elapsed() < Duration::from_secs(120));
    let clients: Vec<ClientRow> = rows(&out.dir.join("clients.csv"));
    let of = |round: usize, client: usize| {
        clients
            .iter()
            .find(|r| r.round == round && r.client == client)
            .map(|r| (r.outcome.clone(), r.reason.clone()))
            .unwrap()
    };
    assert_eq!(of(0, 0).0, "accepted");
    assert_eq!(of(0, 4).0, "accepted");
    assert_eq!(of(0, 1).0, "no_answer");
    assert_eq!(of(1, 1).0, "unreachable");
    let (what, why) = of(0, 2);
    assert_eq!(what, "rejected");
    assert!(why.contains("not finite"), "{why}");
    assert_eq!(of(0, 3).0, "late");
    // Every answer's bytes and the client's compute time are beside its outcome.
    for r in clients.iter().filter(|r| r.outcome == "accepted") {
        assert!(r.bytes_up > 0 && r.bytes_down > 0, "{r:?}");
        assert!(r.compute_seconds.0 > 0.0, "{r:?}");
    }
    let f = &out.summary.federated().unwrap().strategies["fedavg"];
    assert_eq!(f.rounds, 2);
    assert_eq!(f.accepted_updates, 4);
    let acc = f.final_accuracy.unwrap();
    assert!(
        acc > 0.3,
        "accuracy {acc} from the two good clients (chance 0.1)"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_and_three_client_processes_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fed.toml");
    let text = scenario_text(
        "loopback",
        r#"strategies = ["distilled_oneshot", "fedavg"]
rounds = 2
fedavg_until_oneshot = false
token = "s3cret""#,
    )
    .replace("clients = 5", "clients = 3");
    std::fs::write(&file, &text).unwrap();
    let port = free_port();
    let bin = env!("CARGO_BIN_EXE_distillery");
    let results = dir.path().join("results");
    let mut server = Command::new(bin)
        .args(["serve", file.to_str().unwrap(), "--quiet", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--results")
        .arg(&results)
        .env_remove("DISTILLERY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    // A client with the wrong token is turned away.
    let intruder = Command::new(bin)
        .args([
            "client",
            file.to_str().unwrap(),
            "--id",
            "0",
            "--server",
            &url,
        ])
        .env("DISTILLERY_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!intruder.status.success());
    let msg = String::from_utf8_lossy(&intruder.stderr);
    assert!(msg.contains("token"), "{msg}");
    let clients: Vec<_> = (0..3)
        .map(|i| {
            Command::new(bin)
                .args(["client", file.to_str().unwrap(), "--server", &url, "--id"])
                .arg(i.to_string())
                .env_remove("DISTILLERY_TOKEN")
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
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(said.contains("3 tasks done"), "client {i}: {said}");
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
    let summary = Summary::load(&run_dir).unwrap();
    let remote = summary.federated().unwrap();
    assert_eq!(remote.transport, "grpc");
    for k in ["distilled_oneshot", "fedavg"] {
        let acc = remote.strategies[k].final_accuracy.unwrap();
        assert!(acc > 0.2, "{k}: {acc}");
        assert!(remote.strategies[k].not_accepted.is_empty());
    }
    // The same scenario in one process gives the same accuracies: same strategy code.
    let local = run(&text.replace("loopback", "loopback-local"), dir.path());
    for k in ["distilled_oneshot", "fedavg"] {
        assert_eq!(
            remote.strategies[k].final_accuracy,
            local.summary.federated().unwrap().strategies[k].final_accuracy,
            "{k}"
        );
    }
}
