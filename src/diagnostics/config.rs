//! What the doctor's checks run on, and what they hand back.

use crate::data::augment::{Dsa, STRATEGY_DEFAULT};
use crate::distill::mtt::{MttConfig, MttSettings};
use crate::model::{ConvNetSpec, ModelSpec};
use burn::prelude::*;
use rand::Rng;

/// What the checks run on.
#[derive(Clone, Debug, PartialEq)]
pub struct DoctorConfig {
    /// Image shape (channels, height, width).
    pub shape: [usize; 3],
    /// ConvNet width (channels of every block).
    pub width: usize,
    /// Images per batch (the synthetic set's size in the MTT step).
    pub batch: usize,
    /// Inner SGD steps of the MTT step.
    pub syn_steps: usize,
    /// Seed of every input.
    pub seed: u64,
}

impl Default for DoctorConfig {
    /// CIFAR-10 at IPC 10 with the reference ConvNet-3 (width 128), two inner steps.
    fn default() -> Self {
        DoctorConfig {
            shape: [3, 32, 32],
            width: 128,
            batch: 100,
            syn_steps: 2,
            seed: 0,
        }
    }
}

/// Named results of the probe on one backend.
pub type Probe = Vec<(String, Vec<f32>)>;

/// The network the checks use.
pub fn spec(cfg: &DoctorConfig) -> ModelSpec {
    ModelSpec::ConvNet(ConvNetSpec {
        width: cfg.width,
        ..ConvNetSpec::reference(cfg.shape, 10)
    })
}

/// The MTT configuration of the checks: `cfg.syn_steps` inner steps of one-epoch experts, under
/// the default DSA strategy.
pub fn mtt_config(cfg: &DoctorConfig) -> MttConfig {
    let settings = MttSettings {
        syn_steps: cfg.syn_steps,
        expert_epochs: 1,
        max_start_epoch: 1,
        ..MttSettings::default()
    };
    let dsa = Dsa::new(STRATEGY_DEFAULT).expect("the default strategy");
    MttConfig::new(settings, spec(cfg), &dsa)
}

/// `n` values drawn uniformly from (-scale, scale).
pub fn host(rng: &mut impl Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// A 4-D tensor of `v` in `shape`.
pub fn t4<B: Backend>(v: &[f32], shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// A 1-D tensor of `v`.
pub fn t1<B: Backend>(v: &[f32], device: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}
