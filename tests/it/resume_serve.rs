//! A `distillery serve` killed after its first round and restarted with `--resume`: its clients
//! reconnect and the run ends with the uninterrupted run's accuracies.

use crate::federated::free_port;
use crate::resume::{csvs, exe, full, run_dir, summary, write, FEDERATED};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `distillery serve` on a free port, and `clients` client processes against it.
fn serve(scen: &Path, root: &Path, resume: Option<&Path>, clients: usize) -> (Child, Vec<Child>) {
    let port = free_port();
    let mut cmd = Command::new(exe());
    cmd.arg("serve")
        .arg(scen)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--results")
        .arg(root)
        .env_remove("DISTILLERY_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(d) = resume {
        cmd.arg("--resume").arg(d);
    }
    let server = cmd.spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let clients = (0..clients)
        .map(|i| {
            Command::new(exe())
                .arg("client")
                .arg(scen)
                .args(["--server", &url, "--id", &i.to_string()])
                .env_remove("DISTILLERY_TOKEN")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    (server, clients)
}

#[test]
fn a_server_killed_after_round_one_and_restarted_with_resume_finishes_the_same() {
    let root = tempfile::tempdir().unwrap();
    let text = FEDERATED
        .replace("\"distilled_iterative\", ", "")
        .replace("fraction = 0.5\n", "")
        .replace("clients = 4", "clients = 2")
        .replace(
            "{ kind = \"dirichlet\", alpha = 0.5, min_size = 5 }",
            "{ kind = \"iid\" }",
        );
    let scen = write(root.path(), &text);
    let reference = full(&scen, &root.path().join("full"));
    let results = root.path().join("served");
    let (mut server, clients) = serve(&scen, &results, None, 2);
    let t0 = Instant::now();
    let dir = loop {
        if let Some(d) = run_dir(&results).filter(|d| d.join("checkpoint.msgpack").exists()) {
            break d;
        }
        assert!(
            server.try_wait().unwrap().is_none(),
            "the server ended early"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "no round finished");
        std::thread::sleep(Duration::from_millis(2));
    };
    server.kill().unwrap();
    server.wait().unwrap();
    for mut c in clients {
        let _ = c.kill();
        c.wait().unwrap();
    }
    assert!(
        !dir.join("summary.json").exists(),
        "the run finished before the kill"
    );
    let (server, clients) = serve(&scen, &results, Some(&dir), 2);
    for c in clients {
        let _ = c.wait_with_output().unwrap();
    }
    let out = server.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming fedavg at task 0 round "), "{err}");
    let (a, b) = (csvs(&reference), csvs(&dir));
    assert_eq!(a["metrics.csv"], b["metrics.csv"]);
    let acc = |d: &Path| summary(d)["strategies"]["fedavg"]["accuracy_per_round"].clone();
    assert_eq!(acc(&reference), acc(&dir));
    assert_eq!(acc(&dir).as_array().map(Vec::len), Some(5));
}
