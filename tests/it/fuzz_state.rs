//! Fuzzing the MessagePack state files: a federated run's checkpoint and a remote client's
//! `--state` file, mutated, load or are refused with an error naming the file, within the
//! allocation bound of [`crate::fuzz`].

use crate::fuzz::{bound, edits, largest, mutate};
use distillery::data::Dataset;
use distillery::fed::pb;
use distillery::fed::strategy::ClientState;
use distillery::fed::transport::kept::Store;
use proptest::prelude::*;

/// What the fuzzed checkpoint keeps of a finished strategy.
type Done = (usize, String);

/// A federated checkpoint with a strategy in progress, and a remote client's state file.
fn state_files() -> (Vec<u8>, Vec<u8>) {
    use distillery::experiment::federated::resume::{FedState, Ongoing, Past, Progress};
    use distillery::model::Weights;
    let dir = tempfile::tempdir().unwrap();
    let set = Dataset {
        images: vec![0.25; 8],
        labels: vec![0, 1],
        shape: [1, 2, 2],
        classes: vec!["a".into(), "b".into()],
    };
    let state: FedState<Done> = FedState {
        done: vec![(0, "fedavg".into())],
        seq: 3,
        ongoing: Some(Ongoing {
            strategy: 1,
            task: 0,
            next_round: 2,
            past: Past {
                total: 99,
                rows: vec![vec![0.5, 0.25]],
                bytes_after: vec![7],
                ..Past::default()
            },
            global: Weights {
                params: vec![vec![0.0; 12], vec![0.0; 3]],
                buffers: vec![vec![0.0; 2]],
            },
            progress: Progress::Federated {
                memory: None,
                clients: vec![None],
                sent: [(0, (1, set.clone()))].into(),
            },
        }),
        audit: None,
    };
    distillery::files::checkpoint::save_state(dir.path(), "federated", &state).unwrap();
    let fed = std::fs::read(dir.path().join("checkpoint.msgpack")).unwrap();
    let store = Store::new(dir.path(), "scenario").unwrap();
    let mut c = ClientState::new(1, set.clone());
    c.syn = Some(set);
    let update = pb::ClientUpdate {
        client_id: 1,
        ..Default::default()
    };
    store
        .save(1, 4, &update, &[("feddm".to_string(), c)].into())
        .unwrap();
    (fed, std::fs::read(store.path(1)).unwrap())
}

proptest! {
    #[test]
    fn mutated_checkpoints_and_client_state_files_load_or_are_refused(
        client in any::<bool>(),
        e in edits(),
    ) {
        use distillery::experiment::federated::resume::FedState;
        let (fed, kept) = state_files();
        let bytes = mutate(if client { kept } else { fed }, &e);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "scenario").unwrap();
        let msg = if client {
            std::fs::write(store.path(1), &bytes).unwrap();
            let blank = ClientState::new(1, Dataset::empty([1, 2, 2]));
            let (r, big) = largest(|| store.load(&blank));
            prop_assert!(big <= bound(bytes.len()));
            r.err().map(|e| e.to_string())
        } else {
            std::fs::write(dir.path().join("checkpoint.msgpack"), &bytes).unwrap();
            let load = || {
                distillery::files::checkpoint::load_state::<FedState<Done>>(dir.path(), "federated")
            };
            let (r, big) = largest(load);
            prop_assert!(big <= bound(bytes.len()));
            r.err().map(|e| e.to_string())
        };
        if let Some(m) = msg {
            prop_assert!(m.contains(".msgpack"), "{}", m);
        }
    }
}
