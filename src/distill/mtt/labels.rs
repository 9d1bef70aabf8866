//! DATM's learned soft labels for trajectory matching (`lr_labels`): label logits per synthetic
//! image, started from an expert's logits on the starting images, updated by SGD with momentum on
//! the matching loss's gradient, kept in checkpoints and turned into the set's soft labels.

use super::experts::Experts;
use super::{MttConfig, Targets};
use crate::distill::set::{find_extra, Extras};
use crate::distill::Checkpoint;
use crate::error::{Error, Result};
use crate::model::{forward, host, Mode};
use burn::prelude::*;

/// Checkpoint tensor names: the logits and their momentum, `[n, classes]` each.
const NAMES: [&str; 2] = ["mtt_label_logits", "mtt_label_momentum"];

/// The learned label logits and their optimiser state.
pub struct LearnedLabels<B: Backend> {
    /// Label logits `[n, classes]`.
    pub logits: Tensor<B, 2>,
    momentum: Tensor<B, 2>,
    lr: f64,
    beta: f64,
}

impl<B: Backend> LearnedLabels<B> {
    /// The labels a run starts from: the checkpoint's when it was made mid-run, else the first
    /// expert's logits at `max_start_epoch` on `images`; None when the settings do not learn
    /// labels.
    pub fn start(
        cfg: &MttConfig,
        experts: &Experts,
        ck: &Checkpoint,
        images: &Tensor<B, 4>,
    ) -> Result<Option<Self>> {
        let st = &cfg.settings;
        let Some(lr) = st.lr_labels else {
            return Ok(None);
        };
        let n = ck.set.len();
        let k = cfg.spec.num_classes();
        let device = images.device();
        let tensor = |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [n, k]), &device);
        let find = |name: &str| find_extra(&ck.extras, name);
        let (logits, momentum) = match (find(NAMES[0]), find(NAMES[1])) {
            (Some((s0, z)), Some((s1, m))) if s0 == [n, k] && s1 == [n, k] => {
                (tensor(z.to_vec()), tensor(m.to_vec()))
            }
            (Some(_), _) | (_, Some(_)) => {
                return Err(Error::Setting(format!(
                    "the checkpoint's learned labels are not [{n}, {k}] logits with their momentum"
                )))
            }
            (None, None) if ck.set.provenance.iterations > 0 => {
                return Err(Error::Setting(
                    "the checkpoint has no learned labels: it was not made with lr_labels".into(),
                ))
            }
            (None, None) => {
                let e = st.max_start_epoch.min(experts.epochs());
                let (params, _) = experts.pair(0, e, e)?;
                let p: Vec<Tensor<B, 1>> = params
                    .iter()
                    .map(|v| Tensor::from_data(TensorData::new(v.clone(), [v.len()]), &device))
                    .collect();
                let mut bufs = cfg.spec.buffer_tensors::<B>(&device);
                let z = forward(&cfg.spec, &p, &mut bufs, images.clone(), Mode::Train);
                let zeros = z.zeros_like();
                (z, zeros)
            }
        };
        Ok(Some(LearnedLabels {
            logits,
            momentum,
            lr,
            beta: st.momentum,
        }))
    }

    /// What the inner steps train on.
    pub fn targets(&self) -> Targets<'static, B> {
        Targets::Logits(self.logits.clone())
    }

    /// One SGD step with momentum on the logits' gradient `g`.
    pub fn update(&mut self, g: Tensor<B, 2>) {
        self.momentum = self.momentum.clone() * self.beta + g;
        self.logits = self.logits.clone() - self.momentum.clone() * self.lr;
    }

    /// The soft labels: each row's softmax.
    pub fn soft(&self) -> Vec<f32> {
        host(burn::tensor::activation::softmax(self.logits.clone(), 1))
    }

    /// The logits and momentum as checkpoint tensors.
    pub fn extras(&self) -> Extras {
        let shape = self.logits.dims().to_vec();
        vec![
            (NAMES[0].into(), shape.clone(), host(self.logits.clone())),
            (NAMES[1].into(), shape, host(self.momentum.clone())),
        ]
    }
}
