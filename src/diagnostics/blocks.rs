//! The doctor's rows for each method's own building blocks, beyond the convolutions, DSA and the
//! MTT step they share: DM's embedding, loss and image gradient; MTT's unrolled student in every
//! gradient form; SelMatch's partial update; an evaluation network's training steps (SGD with
//! momentum and weight decay, as the evaluation trains) and its eval-mode logits.

use super::config::{host, mtt_config, spec, t1, t4, DoctorConfig, Probe};
use crate::data::augment::{Dsa, STRATEGY_DEFAULT};
use crate::distill::dm::{dm_loss, real_means};
use crate::distill::mtt::distiller::{image_update, update_mask};
use crate::distill::mtt::draw_iteration;
use crate::distill::mtt::unroll::{unroll, unroll_manual};
use crate::model::backward::ConvGrads;
use crate::model::layers::one_hot;
use crate::model::{embed, host as out, Mode, Model};
use crate::train::{train_step, Sgd, TrainConfig};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::Rng;

type I<B> = <B as AutodiffBackend>::InnerBackend;

/// DM on two classes: the first half of `x` is the real batch, the second the synthetic set, each
/// class under its own Siamese DSA draw (as `main_DM.py`). Rows: the train-mode embedding, the
/// loss, and the loss's gradient in the synthetic images.
pub fn dm<B: AutodiffBackend>(
    res: &mut Probe,
    cfg: &DoctorConfig,
    params: &[Vec<f32>],
    x: &[f32],
    rng: &mut impl Rng,
    device: &B::Device,
) {
    let [c, h, w] = cfg.shape;
    let n = cfg.batch;
    let spec = spec(cfg);
    let l = c * h * w;
    let p: Vec<Tensor<I<B>, 1>> = params.iter().map(|v| t1(v, device)).collect();
    let mut bufs = spec.buffer_tensors::<I<B>>(device);
    let e = embed(
        &spec,
        &p,
        &mut bufs,
        t4(x, [n, c, h, w], device),
        Mode::Train,
    );
    res.push(("DM embedding (train mode)".into(), out(e)));
    // Two classes of a quarter of the batch each, real and synthetic (at least one image).
    let q = (n / 4).max(1);
    let part = |k: usize| -> Vec<f32> {
        let at = (k * q * l) % x.len();
        x.iter().cycle().skip(at).take(q * l).copied().collect()
    };
    let dsa = Dsa::new(STRATEGY_DEFAULT).expect("the default strategy");
    let draws: Vec<_> = (0..2).map(|_| Some(dsa.draw(None, h, w, rng))).collect();
    let real: Vec<Tensor<I<B>, 4>> = (0..2).map(|k| t4(&part(k), [q, c, h, w], device)).collect();
    let means = real_means(&spec, &p, real, &draws, false);
    let pa: Vec<Tensor<B, 1>> = p.iter().cloned().map(Tensor::from_inner).collect();
    let syn: Vec<Tensor<B, 4>> = (2..4)
        .map(|k| t4::<B>(&part(k), [q, c, h, w], device).require_grad())
        .collect();
    let means = means.into_iter().map(Tensor::from_inner).collect();
    let loss = dm_loss(&spec, &pa, means, syn.clone(), &draws, false);
    let g = loss.backward();
    res.push(("DM loss".into(), out(loss.inner())));
    let grad: Vec<f32> = syn
        .iter()
        .flat_map(|s| out(s.grad(&g).expect("tracked")))
        .collect();
    res.push(("DM loss image grad".into(), grad));
}

/// The student MTT unrolls over `cfg.syn_steps` inner steps (syn_lr 0.01) from `params` on
/// images `x`, in each gradient form: the parameters the matching loss compares.
pub fn mtt_unroll<B: AutodiffBackend>(
    res: &mut Probe,
    cfg: &DoctorConfig,
    params: &[Vec<f32>],
    x: &[f32],
    device: &B::Device,
) {
    let [c, h, w] = cfg.shape;
    let n = cfg.batch;
    let base = mtt_config(cfg);
    let draw = draw_iteration(&base, 1, n, (h, w), cfg.seed, 0);
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let start = || -> Vec<Tensor<I<B>, 1>> { params.iter().map(|v| t1(v, device)).collect() };
    let images = || t4::<I<B>>(x, [n, c, h, w], device);
    let y = one_hot::<I<B>>(&labels, 10, device);
    let lr = t1::<I<B>>(&[0.01], device);
    let flat = |ps: Vec<Tensor<I<B>, 1>>| -> Vec<f32> { ps.into_iter().flat_map(out).collect() };
    for (how, tag) in [(ConvGrads::Conv, "conv"), (ConvGrads::Matmul, "matmul")] {
        let theta = unroll_manual(
            &base.spec,
            start(),
            images(),
            y.clone(),
            lr.clone(),
            &draw.batches,
            how,
        )
        .expect("the reference ConvNet");
        res.push((
            format!("MTT unrolled student, hand-written ({tag})"),
            flat(theta),
        ));
    }
    let theta = unroll::<B>(&base.spec, start(), images(), y, lr, &draw.batches);
    res.push(("MTT unrolled student, nested autodiff".into(), flat(theta)));
}

/// SelMatch's partial update (SelMatch's lr_img 1000, momentum 0.5) of images `x` on the MTT
/// image gradient `gx`, with every other image selected (fixed): the images and momentum after
/// it, and the fixed images before and after (which must be equal on every device).
pub fn selmatch_update<B: AutodiffBackend>(
    res: &mut Probe,
    cfg: &DoctorConfig,
    x: &[f32],
    gx: &[f32],
    rng: &mut impl Rng,
    device: &B::Device,
) {
    let [c, h, w] = cfg.shape;
    let n = cfg.batch;
    let dims = [n, c, h, w];
    let trainable: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    // A run's momentum starts at zero, so a fixed image's stays zero; a moving one's is not.
    let l = c * h * w;
    let mut mom0 = host(rng, x.len(), 1e-3);
    for (m, _) in mom0.chunks_mut(l).zip(&trainable).filter(|(_, t)| !**t) {
        m.fill(0.0);
    }
    let mask = update_mask::<I<B>>(Some(&trainable), n, device).expect("one flag per image");
    let (images, mom) = image_update(
        t4::<I<B>>(x, dims, device),
        t4(&mom0, dims, device),
        t4(gx, dims, device),
        mask.as_ref(),
        0.5,
        1000.0,
    );
    let (images, mom) = (out(images), out(mom));
    let fixed = |v: &[f32]| -> Vec<f32> {
        v.chunks(l)
            .zip(&trainable)
            .filter(|(_, t)| !**t)
            .flat_map(|(img, _)| img.to_vec())
            .collect()
    };
    res.push((
        "SelMatch fixed images after the update".into(),
        fixed(&images),
    ));
    res.push(("SelMatch fixed images before the update".into(), fixed(x)));
    res.push(("SelMatch partial update: images".into(), images));
    res.push(("SelMatch partial update: momentum".into(), mom));
}

/// Two training steps of an evaluation network from `params` on `x` (DSA, a draw per image, as
/// the evaluation augments), with the evaluation's optimiser (lr 0.01, momentum 0.9, weight
/// decay 5e-4): both losses, the parameters after, and the trained network's eval-mode logits.
pub fn eval_steps<B: AutodiffBackend>(
    res: &mut Probe,
    cfg: &DoctorConfig,
    params: &[Vec<f32>],
    x: &[f32],
    rng: &mut impl Rng,
    device: &B::Device,
) {
    let [c, h, w] = cfg.shape;
    let n = cfg.batch;
    let spec = spec(cfg);
    let tc = TrainConfig::reference(2);
    let mut model = Model::<I<B>>::from_host(spec.clone(), params, &spec.buffers(), device);
    let mut opt = Sgd::new(tc.momentum, tc.weight_decay);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % 10).collect();
    let dsa = Dsa::new(STRATEGY_DEFAULT).expect("the default strategy");
    let mut losses = Vec::new();
    for _ in 0..2 {
        let draw = dsa.draw(Some(n), h, w, rng);
        let xb = draw.apply(t4::<B>(x, [n, c, h, w], device));
        let y = one_hot::<B>(&labels, 10, device);
        losses.extend(out(train_step::<B>(&mut model, &mut opt, xb, y, tc.lr)));
    }
    res.push(("evaluation training steps: losses".into(), losses));
    let (p, _) = model.to_host();
    res.push(("evaluation training steps: parameters".into(), p.concat()));
    let logits = model.forward(t4(x, [n, c, h, w], device), Mode::Eval);
    res.push(("evaluation logits (eval mode)".into(), out(logits)));
}
