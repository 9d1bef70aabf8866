//! The literature's evaluation protocol (REFERENCE.md §1.6): train freshly initialised networks
//! on a synthetic set (SGD lr 0.01, momentum 0.9, weight decay 5e-4, lr x0.1 at half, batch 256,
//! DSA with one draw per sample), test each on the real test set, report mean and std.

use crate::data::augment::{Combined, Dsa, Plain};
use crate::data::Dataset;
use crate::device::par_map;
use crate::error::Result;
use crate::model::{ConvNetSpec, MlpSpec, ModelSpec, Norm, Pooling, ResNetSpec};
use crate::rng::step_seed;
use crate::train::{evaluate, train, train_augmented, TrainConfig};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;

/// How synthetic sets are evaluated.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Training of each fresh network.
    pub train: TrainConfig,
    /// DSA during training (per-sample draws); None for no augmentation.
    pub dsa: Option<Dsa>,
    /// Number of fresh networks per architecture.
    pub repeats: usize,
    /// SelMatch's combined augmentation: plain augmentation for the rows flagged in `fixed`
    /// (selected real images), DSA for the others. None: DSA (or nothing) for every row.
    pub combined: Option<(Plain, Vec<bool>)>,
}

/// The architectures of the cross-architecture table, by name.
pub const ARCHITECTURES: &[&str] = &[
    "convnet",
    "convnet_bn",
    "convnet_nonorm",
    "convnet_maxpool",
    "convnet_wide",
    "mlp",
    "resnet18_bn",
];

/// The network `name` derived from the base ConvNet: `convnet` (as is), `convnet_bn` (batch
/// norm), `convnet_nonorm`, `convnet_maxpool`, `convnet_wide` (twice the width), `mlp`,
/// `resnet18_bn` (ResNet-18, batch norm, CIFAR stem, width 64).
pub fn architecture(base: &ConvNetSpec, name: &str) -> Option<ModelSpec> {
    let c = |f: &dyn Fn(&mut ConvNetSpec)| {
        let mut s = base.clone();
        f(&mut s);
        Some(ModelSpec::ConvNet(s))
    };
    match name {
        "convnet" => c(&|_| {}),
        "convnet_bn" => c(&|s| s.norm = Norm::Batch),
        "convnet_nonorm" => c(&|s| s.norm = Norm::None),
        "convnet_maxpool" => c(&|s| s.pooling = Pooling::Max),
        "convnet_wide" => c(&|s| s.width *= 2),
        "resnet18_bn" => Some(ModelSpec::ResNet18(ResNetSpec::reference(
            base.input,
            base.num_classes,
        ))),
        "mlp" => Some(ModelSpec::Mlp(MlpSpec {
            input: base.input,
            hidden: 128,
            num_classes: base.num_classes,
        })),
        _ => None,
    }
}

/// Trains `cfg.repeats` fresh `spec` networks on `set` and returns each one's test accuracy.
/// Network `r` is seeded from `(seed, r)`; networks train in parallel on the worker threads;
/// `on_step` is called after every training step.
pub fn evaluate_set<B: AutodiffBackend>(
    set: &Dataset,
    test: &Dataset,
    spec: &ModelSpec,
    cfg: &EvalConfig,
    seed: u64,
    device: &B::Device,
    on_step: impl Fn() + Sync,
) -> Result<Vec<f64>> {
    let run = |r: usize| -> Result<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(seed ^ 0xe7a1, r as u64));
        let mut model = spec.init::<B::InnerBackend, _>(&mut rng, device);
        match (&cfg.dsa, &cfg.combined) {
            (Some(dsa), Some((plain, fixed))) => {
                let aug = Combined {
                    dsa: dsa.clone(),
                    plain: plain.clone(),
                    fixed: fixed.clone(),
                };
                train_augmented::<B, _, _>(
                    &mut model,
                    set,
                    &cfg.train,
                    Some(&aug),
                    &mut rng,
                    device,
                    &on_step,
                    |_, _, _| Ok(()),
                )?
            }
            _ => train::<B, _>(
                &mut model,
                set,
                &cfg.train,
                cfg.dsa.as_ref(),
                &mut rng,
                device,
                &on_step,
                |_, _, _| Ok(()),
            )?,
        }
        Ok(evaluate(&mut model, test, 500, device).0)
    };
    par_map(cfg.repeats, run).into_iter().collect()
}
