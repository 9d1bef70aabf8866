//! Client fleets over gRPC: one client process hosting thousands of clients on one HTTP/2
//! connection (the 10,000-client stall: h2 closed such a connection with ENHANCE_YOUR_CALM once
//! their small requests outweighed half its window), and a server that names the clients it
//! waits for, at the join timeout and at a round's deadline.

use super::federated::free_port;
use distillery::fed::pb;
use distillery::fed::pb::federation_client::FederationClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A federated fedavg scenario over `clients` clients of ten synthetic 8x8 images each.
fn fleet_scenario(clients: usize, extra: &str) -> String {
    format!(
        r#"
name = "fleet"
kind = "federated"
seed = 3
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
batch_size = 10
lr = 0.02
[eval]
epochs = 2
[distill]
method = "random"
ipc = 1
[federated]
clients = {clients}
partition = {{ kind = "iid" }}
strategies = ["fedavg"]
rounds = 1
{extra}
"#,
        train = clients * 10
    )
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_distillery")
}

fn serve(file: &Path, port: u16, results: &Path, join_timeout: &str) -> Child {
    Command::new(bin())
        .args(["serve", file.to_str().unwrap(), "--quiet", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--results")
        .arg(results)
        .args(["--join-timeout", join_timeout])
        .env("RUST_LOG", "warn,distillery=info")
        .env_remove("DISTILLERY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn client(file: &Path, port: u16, ids: &str, cache: &Path) -> Child {
    Command::new(bin())
        .args(["client", file.to_str().unwrap(), "--server"])
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["--ids", ids, "--retry-for", "60", "--results"])
        .arg(cache)
        .env_remove("DISTILLERY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `c` up to `limit` (reading what it prints meanwhile, so a full pipe cannot block
/// it), killing it and failing, with what it printed, past that.
fn finish(c: Child, limit: Duration, what: &str) -> Output {
    let pid = c.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(c.wait_with_output().unwrap()));
    match rx.recv_timeout(limit) {
        Ok(o) => o,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let o = rx.recv().unwrap();
            panic!(
                "{what} still running after {limit:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// The one run folder under `results`, and its metrics.csv rows as (selected, accepted).
fn metrics(results: &Path) -> Vec<(usize, usize)> {
    let run: PathBuf = std::fs::read_dir(results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("summary.json").exists())
        .expect("a finished run");
    let mut r = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (s, a) = (col("selected"), col("accepted"));
    r.records()
        .map(|row| {
            let row = row.unwrap();
            (row[s].parse().unwrap(), row[a].parse().unwrap())
        })
        .collect()
}

#[test]
fn one_client_process_hosts_three_thousand_clients() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.toml");
    std::fs::write(&file, fleet_scenario(3000, "")).unwrap();
    let (port, results) = (free_port(), dir.path().join("results"));
    let server = serve(&file, port, &results, "120");
    let fleet = client(&file, port, "0-2999", &dir.path().join("cache"));
    let o = finish(fleet, Duration::from_secs(240), "the client process");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && said.contains("joined http://127.0.0.1")
            && said.contains("3000 clients (0-2999): 1 tasks done each"),
        "{said}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = finish(server, Duration::from_secs(60), "the server");
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    assert_eq!(metrics(&results), [(3000, 3000)]);
}

/// Joins as client `id` and then never fetches nor answers, until dropped.
fn silent_client(port: u16, id: u32) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    rt.block_on(async move {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = FederationClient::connect(url.clone()).await {
                if c.join(pb::JoinRequest { client_id: id }).await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < until, "the server never came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    rt
}

#[test]
fn a_server_names_the_clients_it_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.toml");
    std::fs::write(&file, fleet_scenario(4, "deadline_seconds = 3")).unwrap();
    let (port, results) = (free_port(), dir.path().join("results"));
    let server = serve(&file, port, &results, "4");
    // Client 3 joins and goes silent; client 2 never comes; clients 0 and 1 do their work.
    let silent = silent_client(port, 3);
    let pair = client(&file, port, "0-1", &dir.path().join("cache"));
    let o = finish(pair, Duration::from_secs(90), "the client process");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = finish(server, Duration::from_secs(60), "the server");
    drop(silent);
    let said = String::from_utf8_lossy(&s.stderr);
    assert!(s.status.success(), "{said}");
    assert!(
        said.contains("3 of 4 clients joined within 4 s; starting without ids 2"),
        "{said}"
    );
    assert!(
        said.contains("1 selected clients never joined (ids 2)"),
        "{said}"
    );
    assert!(
        said.contains("its deadline (3 s) passed with 2 of 3 updates; no answer from ids 3"),
        "{said}"
    );
    assert!(said.contains("ids 3 never fetched that news"), "{said}");
    assert_eq!(metrics(&results), [(4, 2)]);
}
