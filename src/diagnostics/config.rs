//! What the doctor's checks run on, and what they hand back.

use crate::model::{ConvNetSpec, ModelSpec};

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
