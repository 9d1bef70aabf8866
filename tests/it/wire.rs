//! The gRPC wire opened up: TLS with a self-signed certificate (trusted and untrusted clients),
//! clients that start before their server and retry, many clients hosted in one process, a
//! killed client rejoining under its id, and the plaintext warning. Each run is compared with
//! the same scenario in one process: accuracies and every message's byte count.

use crate::federated::{free_port, rows, run, scenario_text};
use distillery::report::records::Summary;
use distillery::report::rows::CommRow;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_distillery");

/// A child process that is killed if the test fails before waiting for it.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_with(args, &[])
    }

    /// `spawn` with environment variables `env` set.
    pub fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let c = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("DISTILLERY_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Proc(Some(c))
    }

    /// Waits at most `limit` for the process to end, then kills it; its output.
    pub fn finish(mut self, limit: Duration) -> Output {
        let mut c = self.0.take().unwrap();
        let until = Instant::now() + limit;
        while c.try_wait().unwrap().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        c.wait_with_output().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn ok(o: &Output, what: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{what}: {}\n{out}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

pub fn finished_run(results: &Path) -> PathBuf {
    std::fs::read_dir(results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("summary.json").exists())
        .expect("a finished run")
}

/// The run in `results` made the same accuracies and sent the same bytes as `text` run in one
/// process (under `root`); the folder of that run.
pub fn equals_in_process(results: &Path, text: &str, name: &str, root: &Path) -> PathBuf {
    let dir = finished_run(results);
    let remote = Summary::load(&dir).unwrap();
    let remote = remote.federated().unwrap();
    assert_eq!(remote.transport, "grpc");
    let local = run(&text.replace(name, &format!("{name}-local")), root);
    let local_f = local.summary.federated().unwrap();
    assert_eq!(
        remote.strategies.keys().collect::<Vec<_>>(),
        local_f.strategies.keys().collect::<Vec<_>>()
    );
    for (k, s) in &remote.strategies {
        assert!(
            s.final_accuracy.unwrap() > 0.2,
            "{k}: {:?}",
            s.final_accuracy
        );
        assert_eq!(
            s.final_accuracy, local_f.strategies[k].final_accuracy,
            "{k}"
        );
        assert!(s.not_accepted.is_empty(), "{k}: {:?}", s.not_accepted);
    }
    let mut a: Vec<CommRow> = rows(&dir.join("comm.csv"));
    let mut b: Vec<CommRow> = rows(&local.dir.join("comm.csv"));
    let key = |r: &CommRow| (r.strategy.clone(), r.round, r.client, r.direction.clone());
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert!(!a.is_empty());
    assert_eq!(a, b, "the bytes of every message");
    local.dir
}

fn scenario(name: &str, clients: usize, token: bool) -> String {
    let token = if token { "\ntoken = \"s3cret\"" } else { "" };
    scenario_text(
        name,
        &format!(
            "strategies = [\"distilled_oneshot\", \"fedavg\"]\nrounds = 2\n\
             fedavg_until_oneshot = false{token}"
        ),
    )
    .replace("clients = 5", &format!("clients = {clients}"))
}

/// A self-signed certificate for localhost and 127.0.0.1: (certificate, key) PEM files.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// `distillery serve FILE --quiet --addr ADDR --results RESULTS` and `extra`.
pub fn serve(file: &Path, addr: &str, results: &Path, extra: &[&str]) -> Proc {
    let mut args = vec![
        "serve",
        s(file),
        "--quiet",
        "--addr",
        addr,
        "--results",
        s(results),
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&args)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_tls_run_equals_the_plaintext_one_and_an_untrusted_client_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tls.toml");
    let text = scenario("tls", 3, true);
    std::fs::write(&file, &text).unwrap();
    let (cert, key) = certificate(dir.path(), "server");
    let (stranger, _) = certificate(dir.path(), "stranger");
    let results = dir.path().join("results");
    let addr = format!("127.0.0.1:{}", free_port());
    let server = serve(
        &file,
        &addr,
        &results,
        &["--tls-cert", s(&cert), "--tls-key", s(&key)],
    );
    let url = format!("https://{addr}");
    // Trusting another certificate, a client is refused once the server is up, and says why.
    let t0 = Instant::now();
    let untrusted = Proc::spawn(&[
        "client",
        s(&file),
        "--id",
        "0",
        "--server",
        &url,
        "--tls-ca",
        s(&stranger),
    ])
    .finish(Duration::from_secs(120));
    let took = t0.elapsed();
    assert!(!untrusted.status.success());
    let msg = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        msg.contains("TLS refused") && msg.contains("certificate"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(60), "refused after {took:?}");
    // A plaintext URL to a TLS client is named before any connection.
    let plain = Proc::spawn(&["client", s(&file), "--id", "0", "--tls-ca", s(&cert)])
        .finish(Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("needs an https:// URL"));
    // A plaintext client of a TLS server sees transport errors, retries, and gives up with a hint.
    let http = format!("http://{addr}");
    let plain = Proc::spawn(&[
        "client",
        s(&file),
        "--id",
        "0",
        "--server",
        &http,
        "--retry-for",
        "1",
    ])
    .finish(Duration::from_secs(60));
    let msg = String::from_utf8_lossy(&plain.stderr);
    assert!(
        !plain.status.success() && msg.contains("connect to https:// with --tls-ca"),
        "{msg}"
    );
    let clients = Proc::spawn(&[
        "client",
        s(&file),
        "--ids",
        "0-2",
        "--server",
        &url,
        "--tls-ca",
        s(&cert),
    ]);
    let said = ok(&clients.finish(Duration::from_secs(300)), "clients");
    for i in 0..3 {
        assert!(
            said.contains(&format!("client {i}: 3 tasks done")),
            "{said}"
        );
    }
    ok(&server.finish(Duration::from_secs(60)), "server");
    equals_in_process(&results, &text, "tls", dir.path());
}

#[test]
fn two_processes_of_two_clients_each_one_started_before_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ids.toml");
    let text = scenario("ids", 4, false);
    std::fs::write(&file, &text).unwrap();
    let results = dir.path().join("results");
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let early = Proc::spawn(&["client", s(&file), "--ids", "0,1", "--server", &url]);
    std::thread::sleep(Duration::from_millis(1500));
    let server = serve(&file, &addr, &results, &[]);
    let late = Proc::spawn(&["client", s(&file), "--ids", "2-3", "--server", &url]);
    let early = early.finish(Duration::from_secs(300));
    let said = ok(&early, "early clients");
    let log = String::from_utf8_lossy(&early.stderr);
    assert!(
        log.contains("cannot reach") && log.contains("retrying in"),
        "{log}"
    );
    let said = said + &ok(&late.finish(Duration::from_secs(300)), "late clients");
    for i in 0..4 {
        assert!(
            said.contains(&format!("client {i}: 3 tasks done")),
            "{said}"
        );
    }
    ok(&server.finish(Duration::from_secs(60)), "server");
    equals_in_process(&results, &text, "ids", dir.path());
}

#[test]
fn a_killed_client_rejoins_under_its_id_and_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rejoin.toml");
    let text = scenario("rejoin", 3, false);
    std::fs::write(&file, &text).unwrap();
    let results = dir.path().join("results");
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let server = serve(&file, &addr, &results, &[]);
    let mut first = Proc::spawn(&["client", s(&file), "--id", "2", "--server", &url]);
    // Once it has joined, kill it (the server now holds a joined id whose connection is dead).
    let out = first.0.as_mut().unwrap().stdout.take().unwrap();
    let line = BufReader::new(out).lines().next().unwrap().unwrap();
    assert!(line.starts_with("joined"), "{line}");
    let pid = first.pid();
    let killed = first.finish(Duration::ZERO);
    assert!(!killed.status.success(), "client {pid} was killed");
    let others = Proc::spawn(&["client", s(&file), "--ids", "0-1", "--server", &url]);
    let again = Proc::spawn(&["client", s(&file), "--id", "2", "--server", &url]);
    let said = ok(&again.finish(Duration::from_secs(300)), "rejoined client");
    assert!(said.contains("client 2: 3 tasks done"), "{said}");
    ok(&others.finish(Duration::from_secs(300)), "other clients");
    ok(&server.finish(Duration::from_secs(60)), "server");
    // One update per client and round: comm.csv equals the in-process run's.
    equals_in_process(&results, &text, "rejoin", dir.path());
}

#[test]
fn a_client_without_a_server_gives_up_after_its_retry_budget() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alone.toml");
    std::fs::write(&file, scenario("alone", 3, false)).unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let t0 = Instant::now();
    let o = Proc::spawn(&[
        "client",
        s(&file),
        "--id",
        "1",
        "--server",
        &url,
        "--retry-for",
        "1",
    ])
    .finish(Duration::from_secs(60));
    assert!(!o.status.success());
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(msg.contains("retrying in 0.25 s"), "{msg}");
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

#[test]
fn serving_plaintext_beyond_loopback_warns() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("open.toml");
    std::fs::write(&file, scenario("open", 3, false)).unwrap();
    let addr = format!("0.0.0.0:{}", free_port());
    let results = dir.path().join("results");
    let mut server = serve(&file, &addr, &results, &[]);
    let err = server.0.as_mut().unwrap().stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).expect("a warning");
    assert!(
        line.contains("warning: serving plaintext") && line.contains(&addr),
        "{line}"
    );
}

#[test]
fn client_ids_parse_as_lists_and_ranges() {
    use distillery::fed::transport::ids::parse_ids;
    assert_eq!(parse_ids("3").unwrap(), [3]);
    assert_eq!(parse_ids("0-4").unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(parse_ids("9,3,5,7-8, 5").unwrap(), [3, 5, 7, 8, 9]);
    assert!(parse_ids("5-2").unwrap_err().contains("backwards"));
    assert!(parse_ids("1,x")
        .unwrap_err()
        .contains("\"x\" is not a client id"));
    assert!(parse_ids("-3").is_err());
    assert!(parse_ids("0-99999999").unwrap_err().contains("million"));
}

#[test]
fn a_client_that_loses_its_server_mid_run_retries_then_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lost.toml");
    std::fs::write(&file, scenario("lost", 2, false)).unwrap();
    let results = dir.path().join("results");
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let server = serve(&file, &addr, &results, &[]);
    let mut client = Proc::spawn(&[
        "client",
        s(&file),
        "--id",
        "0",
        "--server",
        &url,
        "--retry-for",
        "2",
    ]);
    // Joined and waiting for its first task (the server waits for client 1): kill the server.
    let out = client.0.as_mut().unwrap().stdout.take().unwrap();
    let line = BufReader::new(out).lines().next().unwrap().unwrap();
    assert!(line.starts_with("joined"), "{line}");
    server.finish(Duration::ZERO);
    let t0 = Instant::now();
    let o = client.finish(Duration::from_secs(60));
    assert!(!o.status.success());
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(
        msg.contains("client 0: server away") && msg.contains("retrying in"),
        "{msg}"
    );
    assert!(msg.contains("gave up after"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}
