//! Fixtures shared by the trajectory-matching tests: a tiny ConvNet and experts trained on
//! synthetic 8x8 data.
#![allow(dead_code)]

use burn::backend::{Autodiff, Flex};
use distillery::data::{self, Dataset};
use distillery::distill::mtt::experts::{expert_path, train_experts, Manifest, Trajectory};
use distillery::model::{ConvNetSpec, ModelSpec, Norm, Pooling};
use distillery::train::{LrSchedule, TrainConfig};

/// The CPU autodiff backend the tests run on.
pub type AD = Autodiff<Flex>;

/// ConvNet of width 8 and depth 2 on 1x8x8 images, 3 classes.
pub fn spec() -> ModelSpec {
    ModelSpec::ConvNet(ConvNetSpec {
        input: [1, 8, 8],
        num_classes: 3,
        width: 8,
        depth: 2,
        norm: Norm::Instance,
        pooling: Pooling::Avg,
    })
}

/// `train` normalised synthetic images (3 classes) and `count` experts of `epochs` epochs
/// trained on them (SGD lr 0.05, batch 32, no DSA, seed 1).
pub fn experts(train: usize, epochs: usize, count: usize) -> (Dataset, Vec<Trajectory>) {
    let mut d = data::synthetic::generate(train, [1, 8, 8], 3, 0.4, 3);
    let norm = d.channel_stats();
    d.normalize(&norm);
    let m = Manifest {
        spec: spec(),
        dataset: "synthetic".into(),
        train_images: d.len(),
        train: TrainConfig {
            epochs,
            batch_size: 32,
            lr: 0.05,
            momentum: 0.0,
            weight_decay: 0.0,
            schedule: LrSchedule::Constant,
        },
        dsa: None,
        seed: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let dev = Default::default();
    train_experts::<AD>(&d, &m, None, count, dir.path(), &dev, || {}, |_| Ok(())).unwrap();
    let experts = (0..count)
        .map(|i| Trajectory::load(&m.spec, epochs, &expert_path(dir.path(), i)).unwrap())
        .collect();
    (d, experts)
}
