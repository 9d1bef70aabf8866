//! Expert trajectories (groundwork for trajectory matching): training, files, resumption, errors.

use crate::common::train_counting;
use distillery::data;
use distillery::distill::mtt::experts::{expert_path, ExpertPlan, Manifest, Trajectory};
use distillery::model::{ConvNetSpec, ModelSpec, Norm, Pooling};
use distillery::train::{LrSchedule, TrainConfig};
use std::path::Path;

/// The plan of `count` experts by manifest `m` in `dir`.
fn plan(m: &Manifest, count: usize, dir: &Path) -> ExpertPlan {
    ExpertPlan {
        dir: dir.to_path_buf(),
        manifest: m.clone(),
        count,
        dsa: None,
    }
}

fn manifest(seed: u64) -> Manifest {
    Manifest {
        spec: ModelSpec::ConvNet(ConvNetSpec {
            input: [1, 8, 8],
            num_classes: 3,
            width: 6,
            depth: 2,
            norm: Norm::Instance,
            pooling: Pooling::Avg,
        }),
        dataset: "synthetic".into(),
        fingerprint: String::new(),
        train_images: 90,
        train: TrainConfig {
            epochs: 3,
            batch_size: 32,
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.0,
            schedule: LrSchedule::Constant,
        },
        dsa: None,
        seed,
    }
}

#[test]
fn experts_are_saved_per_epoch_reloaded_and_resumed() {
    let d = data::synthetic::generate(90, [1, 8, 8], 3, 0.3, 1);
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(5);
    let made = train_counting(&d, &plan(&m, 2, dir.path())).unwrap();
    assert_eq!(made, vec![0, 1]);
    let t0 = Trajectory::load(&m.spec, 3, &expert_path(dir.path(), 0)).unwrap();
    let t1 = Trajectory::load(&m.spec, 3, &expert_path(dir.path(), 1)).unwrap();
    assert_eq!(t0.params.len(), 4);
    // Epoch 0 is the initialisation; training moves the weights every epoch; experts differ.
    for e in 0..3 {
        assert_ne!(
            t0.params[e][0],
            t0.params[e + 1][0],
            "epoch {e} -> {}",
            e + 1
        );
    }
    assert_ne!(t0.params[0][0], t1.params[0][0]);
    // Round trip through the file format is exact.
    let p = dir.path().join("copy.safetensors");
    t0.save(&m.spec, &p).unwrap();
    assert_eq!(Trajectory::load(&m.spec, 3, &p).unwrap(), t0);
    // Asking for 3 experts trains only the missing one.
    let made = train_counting(&d, &plan(&m, 3, dir.path())).unwrap();
    assert_eq!(made, vec![2]);
    assert_eq!(
        Trajectory::load(&m.spec, 3, &expert_path(dir.path(), 0)).unwrap(),
        t0
    );
    // Other settings in the same folder are refused.
    let e = train_counting(&d, &plan(&manifest(6), 1, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("manifest.json") && e.contains("other settings"),
        "{e}"
    );
}

#[test]
fn corrupt_or_mismatched_expert_files_are_clear_errors() {
    let m = manifest(1);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("expert_0000.safetensors");
    std::fs::write(&p, b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage").unwrap();
    let e = Trajectory::load(&m.spec, 3, &p).unwrap_err().to_string();
    assert!(e.contains("expert_0000.safetensors"), "{e}");
    // A trajectory with fewer epochs than asked for names the missing tensor.
    let d = data::synthetic::generate(30, [1, 8, 8], 3, 0.3, 1);
    let mut short = manifest(1);
    short.train.epochs = 1;
    train_counting(&d, &plan(&short, 1, dir.path())).unwrap();
    let e = Trajectory::load(&m.spec, 3, &p).unwrap_err().to_string();
    assert!(e.contains("missing tensor `epoch2."), "{e}");
}
