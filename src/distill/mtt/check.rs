//! A GPU run's first MTT step checked against the CPU's, from the same inputs: when the form of
//! the gradient the scenario asks for disagrees (a backend kernel computing a wrong result), the
//! run goes on with another form that agrees, or stops with an error naming the numbers, instead
//! of distilling on a wrong gradient.

use crate::device::Reference;
use crate::distill::mtt::{step, MttConfig, MttDraw};
use crate::error::{Error, Result};
use crate::model::backward::ConvGrads;
use crate::model::host;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// Relative error above which a row is reported as a mismatch. Rounding alone reaches about 1e-3:
/// f32 sums in another order, TF32 tensor cores where a GPU uses them, and ReLU masks that rounding can flip
/// (the MTT image gradient's two forms differ by 1.0e-3 on the CPU at the default shapes). A wrong
/// op is off by order 1.
pub const TOLERANCE: f64 = 1e-2;

/// Relative error of `a` against reference `b` and the norm of `b` (NaN when either holds a
/// non-finite number or the lengths differ).
pub fn rel_err(a: &[f32], b: &[f32]) -> (f64, f64) {
    let norm = b.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let finite = a.iter().chain(b).all(|v| v.is_finite());
    if a.len() != b.len() || !finite {
        return (f64::NAN, norm);
    }
    let diff = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    (diff / norm.max(1e-30), norm)
}

/// Inner steps the check unrolls: every inner step has the same shapes, so the same kernels.
pub const CHECK_STEPS: usize = 2;

/// One step's results on the host: loss, image gradient, syn_lr gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The matching loss.
    pub loss: f64,
    /// The gradient with respect to the images.
    pub image_grad: Vec<f32>,
    /// The gradient with respect to syn_lr.
    pub lr_grad: f32,
}

/// One form's agreement with the CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tried {
    /// The form (`hand-written (conv)`, `hand-written (matmul)`, `nested autodiff`).
    pub form: String,
    /// Relative error of the loss.
    pub loss: f64,
    /// Relative error of the syn_lr gradient.
    pub lr_grad: f64,
    /// Relative error of the image gradient.
    pub image_grad: f64,
}

impl Tried {
    /// True when all three agree within [`TOLERANCE`] (NaN never does).
    pub fn ok(&self) -> bool {
        [self.loss, self.lr_grad, self.image_grad]
            .iter()
            .all(|e| *e <= TOLERANCE)
    }
}

/// What the check found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCheck {
    /// The device checked.
    pub device: String,
    /// The form the scenario asked for.
    pub configured: String,
    /// The form the run goes on with.
    pub chosen: String,
    /// Every form tried, the configured one first.
    pub tried: Vec<Tried>,
}

impl std::fmt::Display for StepCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errs: Vec<String> = self
            .tried
            .iter()
            .map(|t| {
                format!(
                    "{}: loss {:.1e}, syn_lr grad {:.1e}, image grad {:.1e}",
                    t.form, t.loss, t.lr_grad, t.image_grad
                )
            })
            .collect();
        write!(
            f,
            "first MTT step on {} against the CPU (relative errors; {TOLERANCE:.0e} allowed): {}",
            self.device,
            errs.join("; ")
        )?;
        if self.chosen != self.configured {
            write!(
                f,
                "; the {} form disagrees, so this run uses {}",
                self.configured, self.chosen
            )?;
        }
        Ok(())
    }
}

/// The name of the gradient form `cfg` unrolls with.
pub fn form_name(cfg: &MttConfig) -> &'static str {
    match (cfg.settings.hand_written_backward, cfg.settings.conv_grads) {
        (true, ConvGrads::Conv) => "hand-written (conv)",
        (true, ConvGrads::Matmul) => "hand-written (matmul)",
        (false, _) => "nested autodiff",
    }
}

/// `configured` first, then the other forms of the gradient (hand-written with either
/// [`ConvGrads`], nested autodiff), each once.
pub fn forms(configured: &MttConfig) -> Vec<MttConfig> {
    let mut out = vec![configured.clone()];
    for (hand_written_backward, conv_grads) in [
        (true, ConvGrads::Matmul),
        (true, ConvGrads::Conv),
        (false, ConvGrads::Conv),
    ] {
        let mut c = configured.clone();
        c.settings.hand_written_backward = hand_written_backward;
        c.settings.conv_grads = conv_grads;
        if out.iter().all(|o| form_name(o) != form_name(&c)) {
            out.push(c);
        }
    }
    out
}

/// Compares `on_device(form)` with `reference` (the CPU's) for the configured form, then, while
/// none agrees, for the others: the first form that agrees is the one to go on with. An error,
/// naming every form's errors, when none does.
pub fn decide(
    configured: &MttConfig,
    reference: &Outcome,
    device: &str,
    mut on_device: impl FnMut(&MttConfig) -> Outcome,
) -> Result<(StepCheck, MttConfig)> {
    let mut check = StepCheck {
        device: device.to_string(),
        configured: form_name(configured).into(),
        chosen: String::new(),
        tried: Vec::new(),
    };
    for cfg in forms(configured) {
        let got = on_device(&cfg);
        let tried = Tried {
            form: form_name(&cfg).into(),
            loss: rel_err(&[got.loss as f32], &[reference.loss as f32]).0,
            lr_grad: rel_err(&[got.lr_grad], &[reference.lr_grad]).0,
            image_grad: rel_err(&got.image_grad, &reference.image_grad).0,
        };
        let ok = tried.ok();
        check.tried.push(tried);
        if ok {
            check.chosen = form_name(&cfg).into();
            return Ok((check, cfg));
        }
    }
    Err(Error::Numerics(format!(
        "{check}; no form agrees, so {device} computes MTT's gradient wrongly at these shapes. \
         `distillery doctor --device {device}` names the op; `[distill] check_device = false` runs anyway"
    )))
}

/// Runs the first [`CHECK_STEPS`] inner steps of iteration `draw` (from the expert's
/// parameters `from` towards `to`) on backend `B` and on the CPU, and [`decide`]s which gradient
/// form the run goes on with.
pub fn check_step<B: AutodiffBackend>(
    cfg: &MttConfig,
    device_name: &str,
    (from, to): (&[Vec<f32>], &[Vec<f32>]),
    draw: &MttDraw,
    images: &Tensor<B::InnerBackend, 4>,
    labels: &[usize],
    syn_lr: f32,
) -> Result<(StepCheck, MttConfig)> {
    let short = MttDraw {
        expert: draw.expert,
        start: draw.start,
        batches: draw.batches.iter().take(CHECK_STEPS).cloned().collect(),
    };
    let dims = images.dims();
    let pixels = host(images.clone());
    let cpu = Default::default();
    let on_cpu = Tensor::<<Reference as AutodiffBackend>::InnerBackend, 4>::from_data(
        TensorData::new(pixels, dims),
        &cpu,
    );
    let (loss, gx, lr_grad) = step::<Reference>(cfg, from, to, &short, on_cpu, labels, syn_lr);
    let reference = Outcome {
        loss,
        image_grad: host(gx),
        lr_grad,
    };
    decide(cfg, &reference, device_name, |c| {
        let (loss, gx, lr_grad) = step::<B>(c, from, to, &short, images.clone(), labels, syn_lr);
        Outcome {
            loss,
            image_grad: host(gx),
            lr_grad,
        }
    })
}
