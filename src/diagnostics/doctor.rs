//! `distillery doctor`: a device's numerics against the CPU's on the building blocks of
//! distillation, at the shapes a run uses: 3x3 convolutions and the two ways their gradients are
//! formed (burn's autodiff kernels, and the swapped-dims conv2d / conv_transpose2d that the
//! hand-written backward and nested autodiff use, and nine shifted matmuls), DSA and its gradient
//! with respect to the images, the ConvNet's parameter gradient by hand and by autodiff, one MTT
//! step, and each method's own blocks ([`super::blocks`]: DM, MTT's unrolled student, SelMatch's
//! partial update, the evaluation's training steps). A backend bug then shows as a named row
//! rather than as a distillation that silently diverges.

use super::blocks;
use super::config::{host, mtt_config, t4};
pub use super::config::{spec, DoctorConfig, Probe};
use crate::data::augment::{Dsa, STRATEGY_DEFAULT};
use crate::device::{self, BackendJob, DeviceKind};
pub use crate::distill::mtt::check::TOLERANCE;
use crate::distill::mtt::check::{form_name, forms, rel_err};
use crate::distill::mtt::{draw_iteration, step};
use crate::error::{Error, Result};
use crate::model::backward::ConvGrads;
use crate::model::layers::{conv3x3_input_grad, conv3x3_weight_grad, cross_entropy, one_hot};
use crate::model::{backward, forward, host as out, Mode, ModelSpec};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use rand::{Rng, SeedableRng};

/// One compared quantity.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What was computed.
    pub name: String,
    /// What it is compared with (`cpu`, or another way of computing it on the same device).
    pub against: String,
    /// Euclidean norm of the reference values.
    pub norm: f64,
    /// `||value - reference|| / ||reference||` (NaN when either holds a non-finite number).
    pub rel_err: f64,
}

impl Row {
    /// True when the two agree within [`TOLERANCE`].
    pub fn ok(&self) -> bool {
        self.rel_err <= TOLERANCE
    }
}

type I<B> = <B as AutodiffBackend>::InnerBackend;

/// Computes every checked quantity on backend `B` from inputs drawn from `cfg.seed` alone, so two
/// backends see identical inputs.
pub fn probe<B: AutodiffBackend>(cfg: &DoctorConfig, device: &B::Device) -> Probe {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let [c, h, w] = cfg.shape;
    let (n, wd) = (cfg.batch, cfg.width);
    let mut res: Probe = Vec::new();
    // Convolutions at the first two blocks' shapes (the second after 2x2 pooling).
    for (layer, shape) in [(c, h, w), (wd, h / 2, w / 2)].into_iter().enumerate() {
        convolutions::<B>(&mut res, layer, shape, cfg, &mut rng, device);
    }
    // DSA, one family at a time, per-sample draws: the output and its gradient in the images.
    let x = host(&mut rng, n * c * h * w, 1.0);
    let r = host(&mut rng, n * c * h * w, 1.0);
    for fam in STRATEGY_DEFAULT.split('_') {
        let dsa = Dsa::new(fam).expect("a known family");
        let draw = dsa.draw(Some(n), h, w, &mut rng);
        let xa = t4::<B>(&x, [n, c, h, w], device).require_grad();
        let y = draw.apply(xa.clone());
        res.push((format!("DSA {fam} forward"), out(y.clone().inner())));
        let g = (y * t4::<B>(&r, [n, c, h, w], device)).sum().backward();
        res.push((
            format!("DSA {fam} image grad"),
            out(xa.grad(&g).expect("tracked")),
        ));
    }
    let params = spec(cfg).init_host(&mut rng);
    let real_grad = convnet::<B>(&mut res, cfg, &params, &x, device);
    let gx = mtt_step::<B>(&mut res, cfg, &params, &real_grad, &x, device);
    blocks::mtt_unroll::<B>(&mut res, cfg, &params, &x, device);
    blocks::selmatch_update::<B>(&mut res, cfg, &x, &gx, &mut rng, device);
    blocks::dm::<B>(&mut res, cfg, &params, &x, &mut rng, device);
    blocks::eval_steps::<B>(&mut res, cfg, &params, &x, &mut rng, device);
    res
}

/// The 3x3 convolution of block `layer` (input `(channels, height, width)`): its forward pass and
/// its weight and input gradients formed every way.
fn convolutions<B: AutodiffBackend>(
    res: &mut Probe,
    layer: usize,
    (ci, hh, ww): (usize, usize, usize),
    cfg: &DoctorConfig,
    rng: &mut impl Rng,
    device: &B::Device,
) {
    let (n, wd) = (cfg.batch, cfg.width);
    let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let tag = format!("block {}: {ci}->{wd} ch, {hh}x{ww}", layer + 1);
    let x = host(rng, n * ci * hh * ww, 1.0);
    let k = host(rng, wd * ci * 9, 0.2);
    let dz = host(rng, n * wd * hh * ww, 1.0);
    let xi = t4::<I<B>>(&x, [n, ci, hh, ww], device);
    let ki = t4::<I<B>>(&k, [wd, ci, 3, 3], device);
    let dzi = t4::<I<B>>(&dz, [n, wd, hh, ww], device);
    res.push((
        format!("conv2d forward ({tag})"),
        out(conv2d(xi.clone(), ki.clone(), None, opts.clone())),
    ));
    // The hand-written backward's two forms of each gradient.
    for (how, wname, iname) in [
        (ConvGrads::Conv, "swapped-dims conv2d", "conv_transpose2d"),
        (
            ConvGrads::Matmul,
            "shifted matmuls",
            "flipped-kernel conv2d",
        ),
    ] {
        res.push((
            format!("conv weight grad, {wname} ({tag})"),
            out(conv3x3_weight_grad(xi.clone(), dzi.clone(), 1, how)),
        ));
        res.push((
            format!("conv input grad, {iname} ({tag})"),
            out(conv3x3_input_grad(dzi.clone(), ki.clone(), 1, how)),
        ));
    }
    let xa = t4::<B>(&x, [n, ci, hh, ww], device).require_grad();
    let ka = t4::<B>(&k, [wd, ci, 3, 3], device).require_grad();
    let loss =
        (conv2d(xa.clone(), ka.clone(), None, opts) * t4::<B>(&dz, [n, wd, hh, ww], device)).sum();
    let g = loss.backward();
    res.push((
        format!("conv weight grad, autodiff ({tag})"),
        out(ka.grad(&g).expect("tracked")),
    ));
    res.push((
        format!("conv input grad, autodiff ({tag})"),
        out(xa.grad(&g).expect("tracked")),
    ));
}

/// The ConvNet's parameter gradient on one batch `x` at `params`, hand-written (both forms) and
/// by autodiff; returns the autodiff one.
fn convnet<B: AutodiffBackend>(
    res: &mut Probe,
    cfg: &DoctorConfig,
    params: &[Vec<f32>],
    x: &[f32],
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let [c, h, w] = cfg.shape;
    let n = cfg.batch;
    let spec = spec(cfg);
    let ModelSpec::ConvNet(conv) = &spec else {
        unreachable!("spec() builds a ConvNet")
    };
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let p_inner: Vec<Tensor<I<B>, 1>> = params
        .iter()
        .map(|p| Tensor::from_data(TensorData::new(p.clone(), [p.len()]), device))
        .collect();
    let xi = t4::<I<B>>(x, [n, c, h, w], device);
    let y = one_hot::<I<B>>(&labels, 10, device);
    for (how, tag) in [(ConvGrads::Conv, "conv"), (ConvGrads::Matmul, "matmul")] {
        let (_, grads) = backward::loss_and_grads_with(conv, &p_inner, xi.clone(), y.clone(), how)
            .expect("instance norm and average pooling");
        res.push((
            format!("ConvNet parameter grads, hand-written ({tag})"),
            grads.into_iter().flat_map(out).collect(),
        ));
    }
    let p2: Vec<Tensor<B, 1>> = p_inner
        .iter()
        .map(|p| Tensor::from_inner(p.clone()).require_grad())
        .collect();
    let mut bufs = spec.buffer_tensors::<B>(device);
    let logits = forward(&spec, &p2, &mut bufs, Tensor::from_inner(xi), Mode::Train);
    let g = cross_entropy(logits, Tensor::from_inner(y)).backward();
    let real_grad: Vec<Vec<f32>> = p2
        .iter()
        .map(|p| out(p.grad(&g).expect("tracked")))
        .collect();
    res.push((
        "ConvNet parameter grads, autodiff".into(),
        real_grad.concat(),
    ));
    real_grad
}

/// One MTT step on images `x` from `params` towards the point ten SGD steps (lr 0.01) along
/// `real_grad` reach, as an expert's would, in every gradient form. A target off in a random
/// direction makes the image gradient a small residue of cancelling terms, poorly resolved in
/// f32 even on one backend. Returns the first form's image gradient.
fn mtt_step<B: AutodiffBackend>(
    res: &mut Probe,
    cfg: &DoctorConfig,
    params: &[Vec<f32>],
    real_grad: &[Vec<f32>],
    x: &[f32],
    device: &B::Device,
) -> Vec<f32> {
    let [c, h, w] = cfg.shape;
    let n = cfg.batch;
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let target: Vec<Vec<f32>> = params
        .iter()
        .zip(real_grad)
        .map(|(p, g)| p.iter().zip(g).map(|(v, d)| v - 0.1 * d).collect())
        .collect();
    let base = mtt_config(cfg);
    // The inner steps' rows and DSA draws, as a run's first iteration draws them.
    let draw = draw_iteration(&base, 1, n, (h, w), cfg.seed, 0);
    // Hand-written (conv), hand-written (matmul), nested autodiff.
    let mut first = None;
    for mcfg in forms(&base) {
        let how = form_name(&mcfg);
        let images = t4::<I<B>>(x, [n, c, h, w], device);
        let (loss, gx, glr) = step::<B>(&mcfg, params, &target, &draw, images, &labels, 0.01);
        let gx = out(gx);
        res.push((format!("MTT step loss, {how}"), vec![loss as f32]));
        res.push((format!("MTT step syn_lr grad, {how}"), vec![glr]));
        res.push((format!("MTT step image grad, {how}"), gx.clone()));
        first.get_or_insert(gx);
    }
    first.expect("at least one form")
}

/// Pairs of rows that compute the same quantity two ways on one device.
const SAME_THING: [(&str, &str); 10] = [
    (
        "conv weight grad, swapped-dims conv2d",
        "conv weight grad, autodiff",
    ),
    (
        "conv weight grad, shifted matmuls",
        "conv weight grad, autodiff",
    ),
    (
        "conv input grad, conv_transpose2d",
        "conv input grad, autodiff",
    ),
    (
        "conv input grad, flipped-kernel conv2d",
        "conv input grad, autodiff",
    ),
    (
        "ConvNet parameter grads, hand-written",
        "ConvNet parameter grads, autodiff",
    ),
    (
        "MTT step loss, hand-written",
        "MTT step loss, nested autodiff",
    ),
    (
        "MTT step syn_lr grad, hand-written",
        "MTT step syn_lr grad, nested autodiff",
    ),
    (
        "MTT step image grad, hand-written",
        "MTT step image grad, nested autodiff",
    ),
    (
        "MTT unrolled student, hand-written",
        "MTT unrolled student, nested autodiff",
    ),
    (
        "SelMatch fixed images after the update",
        "SelMatch fixed images before the update",
    ),
];

/// Compares `device`'s probe with the CPU's, row by row, and each two-way pair on the device.
pub fn compare(device: &Probe, cpu: &Probe, device_name: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = device
        .iter()
        .zip(cpu)
        .map(|((name, a), (_, b))| {
            let (rel_err, norm) = rel_err(a, b);
            Row {
                name: format!("{name} [{device_name}]"),
                against: "cpu".into(),
                norm,
                rel_err,
            }
        })
        .collect();
    for (one, other) in SAME_THING {
        for (name, a) in device.iter().filter(|(n, _)| n.starts_with(one)) {
            // The twin keeps the row's suffix (a block's shape), or is the bare name when the
            // other way has one row only (autodiff against both hand-written variants).
            let suffixed = name.replacen(one, other, 1);
            let twin = device.iter().find(|(n, _)| *n == suffixed || n == other);
            if let Some((twin, b)) = twin {
                let (rel_err, norm) = rel_err(a, b);
                rows.push(Row {
                    name: format!("{name} [{device_name}]"),
                    against: format!("{twin} [{device_name}]"),
                    norm,
                    rel_err,
                });
            }
        }
    }
    rows
}

struct ProbeJob(DoctorConfig);

impl BackendJob for ProbeJob {
    type Output = Probe;
    fn run<B: AutodiffBackend>(self, device: B::Device, _: &str) -> Probe {
        probe::<B>(&self.0, &device)
    }
}

/// Runs the probe on `kind` and on the CPU and compares them.
pub fn doctor(kind: DeviceKind, cfg: &DoctorConfig) -> Result<Vec<Row>> {
    let [c, h, w] = cfg.shape;
    if cfg.batch == 0 || cfg.width == 0 || c == 0 || h < 2 || w < 2 {
        return Err(Error::Usage(format!(
            "doctor needs a batch, a width and channels of at least 1 and images of at least 2x2, got {cfg:?}"
        )));
    }
    let here = device::dispatch(device::check(kind)?, ProbeJob(cfg.clone()));
    let cpu = device::dispatch(device::check(DeviceKind::Cpu)?, ProbeJob(cfg.clone()));
    Ok(compare(&here, &cpu, kind.name()))
}

/// The rows as an aligned table, mismatches marked.
pub fn table(rows: &[Row]) -> String {
    let wide = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut s = format!(
        "{:<wide$}  {:>10}  {:>10}  against\n",
        "quantity", "norm", "rel. err"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<wide$}  {:>10.3e}  {:>10.2e}  {}{}\n",
            r.name,
            r.norm,
            r.rel_err,
            r.against,
            if r.ok() { "" } else { "  <-- MISMATCH" }
        ));
    }
    s
}
