//! Wall time of one federated round against the number of clients: one `distilled_oneshot`
//! round (each client distils with DM, the server trains on the union) and one `fedavg` round
//! (each client trains one local epoch, the server averages), clients as tokio tasks over the
//! worker pool, tiny per-client data (procedural 8x8 images, 20 per client, ConvNet width 8).
//!
//! cargo bench --bench fed                       # N = 10, 100, 1000
//! Options after `--`: `--clients 10,100`, `--per-client N` (20), `--dm-iters N` (10),
//! `--server-epochs N` (2). Worker threads: DISTILLERY_THREADS (default: all cores).

use distillery::experiment::{self as runner, RunOptions};
use distillery::scenario;
use std::path::Path;

mod common;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: Vec<usize> = arg(&args, "--clients")
        .unwrap_or("10,100,1000".into())
        .split(',')
        .map(|s| s.parse().expect("--clients N,N,..."))
        .collect();
    let per: usize = arg(&args, "--per-client").map_or(20, |s| s.parse().unwrap());
    let dm_iters: usize = arg(&args, "--dm-iters").map_or(10, |s| s.parse().unwrap());
    let server_epochs: usize = arg(&args, "--server-epochs").map_or(2, |s| s.parse().unwrap());
    let root = std::env::temp_dir().join("distillery-fed-bench");
    println!(
        "{:>8} {:>22} {:>16} {:>14} {:>14}",
        "clients", "distilled_oneshot (s)", "fedavg (s)", "oneshot MB", "fedavg MB"
    );
    for n in clients {
        let text = format!(
            r#"
name = "fed-bench-{n}"
kind = "federated"
seed = 0
[data]
source = "synthetic"
train = {train}
test = 200
channels = 1
size = 8
classes = 10
[model]
width = 8
depth = 2
[train]
epochs = 1
batch_size = 32
[eval]
epochs = {server_epochs}
[distill]
ipc = 1
iterations = {dm_iters}
batch_real = 16
[federated]
clients = {n}
strategies = ["distilled_oneshot", "fedavg"]
rounds = 1
fedavg_until_oneshot = false
"#,
            train = n * per,
        );
        let l = scenario::parse(&text, Path::new("bench.toml")).expect("scenario");
        let out = runner::run(&l, &RunOptions::quiet(&root)).expect("run");
        let s = &out.summary.federated().expect("a federated run").strategies;
        let secs = |k: &str| s[k].seconds;
        let mb = |k: &str| s[k].bytes_total as f64 / 1e6;
        println!(
            "{n:>8} {:>22.2} {:>16.2} {:>14.3} {:>14.3}",
            secs("distilled_oneshot"),
            secs("fedavg"),
            mb("distilled_oneshot"),
            mb("fedavg")
        );
        let _ = std::fs::remove_dir_all(&out.dir);
    }
}
