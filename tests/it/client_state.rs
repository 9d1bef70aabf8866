//! A remote client's state across a restart (`distillery client --state DIR`): a FedDM client
//! killed mid-distillation and started again continues from the set it kept, so the run equals
//! the in-process one (accuracies, every message's bytes, and each client's last set as the
//! privacy audit measures it); and the state file refuses another scenario or client.

use crate::federated::{free_port, rows, scenario_text};
use crate::wire::{equals_in_process, finished_run, ok, s, serve, Proc};
use distillery::audit::records::PrivacyRow;
use distillery::data::Dataset;
use distillery::fed::message::Payload;
use distillery::fed::protocol::update_message;
use distillery::fed::strategy::ClientState;
use distillery::fed::transport::kept::Store;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

fn feddm(name: &str) -> String {
    scenario_text(
        name,
        "strategies = [\"distilled_iterative\"]\nrounds = 3\nfedavg_until_oneshot = false",
    )
    .replace("clients = 5", "clients = 3")
    .replace(
        "method = \"random\"",
        "method = \"dm\"\niterations = 300\nbatch_real = 16",
    )
}

#[test]
fn a_feddm_client_killed_mid_work_continues_from_its_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keep.toml");
    let text = feddm("keep");
    std::fs::write(&file, &text).unwrap();
    let (results, state) = (dir.path().join("results"), dir.path().join("state"));
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let server = serve(&file, &addr, &results, &[]);
    let others = Proc::spawn(&["client", s(&file), "--ids", "0-1", "--server", &url]);
    let args = [
        "client",
        s(&file),
        "--id",
        "2",
        "--server",
        &url,
        "--state",
        s(&state),
    ];
    let mut first = Proc::spawn_with(&args, &[("RUST_LOG", "distillery=debug")]);
    // Kill it as it starts on the second round's task (its round-1 set is in the folder).
    let err = first.0.as_mut().unwrap().stderr.take().unwrap();
    let t0 = Instant::now();
    let mut said = Vec::new();
    for line in BufReader::new(err).lines() {
        let line = line.unwrap();
        if line.contains("client 2: working on task 1") {
            break;
        }
        said.push(line);
        assert!(t0.elapsed() < Duration::from_secs(120), "{said:?}");
    }
    let killed = first.finish(Duration::ZERO);
    assert!(!killed.status.success(), "client 2 was killed");
    let blank = ClientState::new(2, Dataset::empty([1, 8, 8]));
    let kept = Store::new(&state, &text).unwrap().load(&blank).unwrap();
    let kept = kept.expect("a state file after the first task");
    assert_eq!(kept.last.0, 0, "killed before its second answer was kept");
    let set = kept.states["distilled_iterative"].syn.clone();
    assert_eq!(
        set.map(|d| d.len()),
        Some(30),
        "its round-1 set: 3 per class"
    );
    let again = Proc::spawn(&args);
    let out = again.finish(Duration::from_secs(300));
    let said = ok(&out, "restarted client");
    assert!(said.contains("client 2: 2 tasks done"), "{said}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client 2: continuing from its state after task 0"),
        "{err}"
    );
    ok(&others.finish(Duration::from_secs(300)), "other clients");
    ok(&server.finish(Duration::from_secs(60)), "server");
    let local = equals_in_process(&results, &text, "keep", dir.path());
    // Each client's last set, measured: the restarted client's round-3 set grew from its kept
    // round-1 and round-2 sets exactly as in one process.
    let key = |r: &PrivacyRow| (r.set.clone(), r.client);
    let mut remote: Vec<PrivacyRow> = rows(&finished_run(&results).join("privacy.csv"));
    let mut local: Vec<PrivacyRow> = rows(&local.join("privacy.csv"));
    remote.sort_by_key(key);
    local.sort_by_key(key);
    assert!(remote.iter().any(|r| r.client == Some(2)));
    assert_eq!(remote, local);
}

#[test]
fn a_state_file_is_refused_for_another_scenario_or_client_and_when_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let text = feddm("refuse");
    let store = Store::new(dir.path(), &text).unwrap();
    let mut c = ClientState::new(1, Dataset::empty([1, 8, 8]));
    assert!(store.load(&c).unwrap().is_none(), "no file yet");
    c.syn = Some(Dataset {
        images: vec![0.5; 128],
        labels: vec![3, 7],
        shape: [1, 8, 8],
        classes: (0..10).map(|k| k.to_string()).collect(),
    });
    c.task = 0;
    let update = update_message(
        &distillery::fed::message::Update {
            client: 1,
            round: 4,
            num_samples: 9,
            compute_seconds: 0.0,
            payload: Payload::Failed("x".into()),
        },
        Default::default(),
    );
    let states = HashMap::from([("feddm".to_string(), c.clone())]);
    store.save(1, 7, &update, &states).unwrap();
    let back = store.load(&c).unwrap().unwrap();
    assert_eq!(back.last.0, 7);
    assert_eq!(back.last.1, update);
    assert_eq!(back.states["feddm"].syn, c.syn);
    let other = Store::new(dir.path(), &text.replace("seed = 1", "seed = 2")).unwrap();
    let e = other.load(&c).err().unwrap().to_string();
    assert!(
        e.contains("another scenario") && e.contains("client-1.msgpack"),
        "{e}"
    );
    std::fs::copy(store.path(1), store.path(2)).unwrap();
    let e = store
        .load(&ClientState::new(2, Dataset::empty([1, 8, 8])))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("holds client 1's state, not client 2's"), "{e}");
    std::fs::write(store.path(1), b"\x93garbage").unwrap();
    let e = store.load(&c).err().unwrap().to_string();
    assert!(e.contains("not a client state file"), "{e}");
}
