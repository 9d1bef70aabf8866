//! What federated clients distil: MTT and SelMatch clients on their own partitions (experts
//! cached and reused), a client set shaped and labelled as its partition, and an MTT client
//! with too few images refused.

use crate::federated::{rows, run};
use burn::backend::{Autodiff, Flex};
use distillery::experiment::{self as runner, RunOptions};
use distillery::report::rows::ClientRow;
use distillery::scenario;
use std::path::Path;

/// A federated digits scenario whose clients use MTT ([distill]) and SelMatch (its own entry),
/// with tiny experts.
fn trajectory_clients(name: &str) -> String {
    format!(
        r#"
name = "{name}"
kind = "federated"
seed = 2
[data]
source = "digits"
[model]
width = 8
depth = 2
[train]
epochs = 1
batch_size = 32
[eval]
epochs = 40
[experts]
count = 1
epochs = 2
batch_size = 64
lr = 0.02
[distill]
method = "mtt"
ipc = 2
iterations = 3
syn_steps = 2
expert_epochs = 1
max_start_epoch = 1
lr_img = 100
lr_teacher = 0.02
[federated]
clients = 3
partition = {{ kind = "iid" }}
strategies = [
  "distilled_oneshot",
  {{ strategy = "distilled_oneshot", method = "selmatch", beta = 0.0, alpha = 0.5, iterations = 3, syn_steps = 2, expert_epochs = 1, max_start_epoch = 1, lr_img = 100, lr_teacher = 0.02, batch_syn = 10, difficulty = "el2n", difficulty_epochs = 1 }},
]
"#
    )
}

/// Every expert file under `root/experts` with its modification time.
fn expert_files(root: &Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(root.join("experts")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            out.push((p, t));
        }
    }
    out.sort();
    out
}

#[test]
fn mtt_and_selmatch_clients_distil_their_partitions_and_reuse_their_experts() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&trajectory_clients("traj"), dir.path());
    let f = out.summary.federated().unwrap();
    for k in ["distilled_oneshot", "distilled_oneshot-selmatch"] {
        let s = &f.strategies[k];
        assert_eq!(s.accepted_updates, 3, "{k}: {:?}", s.not_accepted);
        assert!(
            s.final_accuracy.unwrap() > 0.3,
            "{k}: {:?}",
            s.final_accuracy
        );
        assert!(s.client_compute_seconds > 0.0);
    }
    let clients: Vec<ClientRow> = rows(&out.dir.join("clients.csv"));
    assert_eq!(clients.len(), 6);
    for r in &clients {
        assert!(r.bytes_up > 0 && r.compute_seconds.0 > 0.0, "{r:?}");
    }
    // One expert folder per client (each trained on its own partition), reused by SelMatch.
    let experts = expert_files(dir.path());
    assert_eq!(
        std::fs::read_dir(dir.path().join("experts"))
            .unwrap()
            .count(),
        3
    );
    // A second run trains no experts: the files are untouched.
    let again = run(&trajectory_clients("traj-again"), dir.path());
    assert_eq!(expert_files(dir.path()), experts);
    let before = &out.summary.federated().unwrap().strategies["distilled_oneshot"];
    let after = &again.summary.federated().unwrap().strategies["distilled_oneshot"];
    assert_eq!(before.final_accuracy, after.final_accuracy);
}

/// The set client `state` sends for `entry`'s first round (settings' caches under `dir`).
pub fn client_set(
    l: &scenario::Loaded,
    split: &distillery::data::Split,
    entry: &distillery::scenario::StrategyEntry,
    mut state: distillery::fed::strategy::ClientState,
    dir: &Path,
) -> distillery::data::Dataset {
    use distillery::fed::message::{Payload, Task};
    use distillery::fed::strategy::build::client_app;
    let s = distillery::plan::federated::settings(l, split, dir.into(), entry).unwrap();
    let app = client_app::<Autodiff<Flex>>(entry.kind, std::sync::Arc::new(s));
    let task = Task {
        round: 0,
        seq: 0,
        strategy: entry.label(),
        task: 0,
        global: None,
    };
    match app
        .work(&task, &mut state, &Default::default())
        .unwrap()
        .payload
    {
        Payload::Set(set) => set.data,
        _ => panic!("{}: not a set", entry.label()),
    }
}

#[test]
fn a_client_set_has_the_shape_and_labels_of_its_partition() {
    use distillery::fed::strategy::ClientState;
    let dir = tempfile::tempdir().unwrap();
    let l = scenario::parse(&trajectory_clients("shape"), Path::new("t.toml")).unwrap();
    let split = runner::load_data(&l).unwrap();
    let f = l.scenario.federated_section();
    let data = distillery::plan::federated::client_data(&l, &split).unwrap();
    for entry in &f.strategies {
        let state = ClientState::new(1, data[1].clone());
        let set = client_set(&l, &split, entry, state, dir.path());
        let held: Vec<usize> = (0..10)
            .filter(|&c| data[1].class_counts()[c] >= 2)
            .collect();
        assert_eq!(set.shape, [1, 8, 8]);
        assert_eq!(set.len(), 2 * held.len(), "{}", entry.label());
        for c in &held {
            assert_eq!(set.labels.iter().filter(|&&y| y == *c).count(), 2);
        }
        assert!(set.images.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn an_mtt_client_with_fewer_images_than_batch_syn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = trajectory_clients("small").replace(
        "lr_teacher = 0.02\n[federated]",
        "lr_teacher = 0.02\nbatch_syn = 100\n[federated]",
    );
    let l = scenario::parse(&text, Path::new("t.toml")).unwrap();
    let e = runner::run(&l, &RunOptions::quiet(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("distill.batch_syn = 100") && e.contains("client 0"),
        "{e}"
    );
}
