//! Distillation: the DM loss and its gradient, the selection rules, synthetic-set files and a
//! method's checkpoint/resume, all on tiny data ([`crate::distill_runs`]: the `distill` scenario
//! end to end).

use crate::common::{ctx, iterations};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use distillery::data::augment::{Draw, Dsa, STRATEGY_DIGITS};
use distillery::data::{self, Dataset};
use distillery::distill::dm::{dm_loss, draw_iteration, real_means};
use distillery::distill::init::{herding, k_center};
use distillery::distill::{
    Checkpoint, Distiller, Dm, DmConfig, DmSettings, InitKind, Provenance, SyntheticSet,
};
use distillery::model::{ConvNetSpec, ModelSpec, Norm, Pooling};
use distillery::train::batch_images;
use distillery::train::events::Flow;

type B = Flex;
type AD = Autodiff<Flex>;

fn tiny_data() -> Dataset {
    let mut d = data::synthetic::generate(120, [1, 8, 8], 3, 0.3, 7);
    let norm = d.channel_stats();
    d.normalize(&norm);
    d
}

fn tiny_spec(norm: Norm) -> ModelSpec {
    ModelSpec::ConvNet(ConvNetSpec {
        input: [1, 8, 8],
        num_classes: 3,
        width: 6,
        depth: 1,
        norm,
        pooling: Pooling::Avg,
    })
}

fn tiny_cfg(norm: Norm, dsa: Option<Dsa>, iterations: usize) -> DmConfig {
    let settings = DmSettings {
        iterations,
        batch_real: 16,
        init: InitKind::Noise,
        dsa: dsa.is_some(),
        ..DmSettings::default()
    };
    let dsa = dsa.unwrap_or_else(|| Dsa::new(STRATEGY_DIGITS).unwrap());
    DmConfig::new(settings, tiny_spec(norm), &dsa)
}

/// The mean DM loss of `images` (grouped by class, `ipc` each) over the networks and real
/// batches of iterations 1000..1008 (never used while distilling), without augmentation.
fn held_out_loss(cfg: &DmConfig, data: &Dataset, images: &[f32], ipc: usize) -> f64 {
    let dev = Default::default();
    let classes = data.class_indices();
    let l = data.image_len() * ipc;
    let mut total = 0.0;
    for it in 1000..1008 {
        let d = draw_iteration::<B>(cfg, &classes, data.shape, 99, it, &dev);
        let none: Vec<Option<Draw>> = vec![None; classes.len()];
        let real = d
            .real
            .iter()
            .map(|idx| batch_images::<B>(data, idx, &dev))
            .collect();
        let means = real_means(&cfg.spec, &d.params, real, &none, false);
        let syn = (0..classes.len())
            .map(|c| {
                Tensor::<B, 4>::from_data(
                    TensorData::new(images[c * l..(c + 1) * l].to_vec(), [ipc, 1, 8, 8]),
                    &dev,
                )
            })
            .collect();
        total += dm_loss(&cfg.spec, &d.params, means, syn, &none, false)
            .into_scalar()
            .elem::<f64>();
    }
    total / 8.0
}

#[test]
fn dm_loss_decreases_on_tiny_data() {
    let data = tiny_data();
    let cfg = tiny_cfg(Norm::Instance, Some(Dsa::new(STRATEGY_DIGITS).unwrap()), 40);
    let mut losses = Vec::new();
    let mut on = iterations(|_, l, _| {
        losses.push(l);
        Ok(Flow::Continue)
    });
    let mut c = ctx(3, &mut on, None);
    let set = Dm { cfg: cfg.clone() }.distill(&data, 2, &mut c).unwrap();
    drop(c);
    // The set DM started from (its noise init for seed 3).
    let start = distillery::distill::initial_checkpoint(
        &data,
        2,
        cfg.settings.init,
        &cfg.spec,
        None,
        "dm",
        &crate::common::quiet_ctx(3),
    )
    .unwrap()
    .set;
    let before = held_out_loss(&cfg, &data, &start.images, 2);
    let after = held_out_loss(&cfg, &data, &set.images, 2);
    assert_eq!(losses.len(), 40);
    assert!(
        after < 0.5 * before,
        "held-out DM loss {before:.4} -> {after:.4} after 40 iterations"
    );
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[35..].iter().sum::<f64>() / 5.0;
    assert!(last < first, "training loss {first:.4} -> {last:.4}");
}

/// Loss of the synthetic images `x` (flat, 3 classes x 2 images) for a fixed net, batches and draws.
fn loss_at<BK: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<BK, 1>],
    real: &[Vec<f32>],
    x: &[f32],
    draws: &[Option<Draw>],
) -> Tensor<BK, 1> {
    let dev = params[0].device();
    let r = real
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [v.len() / 64, 1, 8, 8]), &dev))
        .collect();
    let means: Vec<Tensor<BK, 2>> = real_means(spec, params, r, draws, false)
        .into_iter()
        .map(|m| m.detach())
        .collect();
    let syn = (0..3)
        .map(|c| {
            Tensor::from_data(
                TensorData::new(x[c * 128..(c + 1) * 128].to_vec(), [2, 1, 8, 8]),
                &dev,
            )
        })
        .collect();
    dm_loss(spec, params, means, syn, draws, false)
}

fn check_gradient(norm: Norm, draws: Vec<Option<Draw>>) {
    use rand::{Rng, SeedableRng};
    let spec = tiny_spec(norm);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let dev = Default::default();
    let params_host = spec.init_host(&mut rng);
    let real: Vec<Vec<f32>> = (0..3)
        .map(|_| (0..4 * 64).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let x: Vec<f32> = (0..3 * 128).map(|_| rng.random_range(-1.0..1.0)).collect();
    let to = |v: &Vec<f32>| Tensor::<AD, 1>::from_data(TensorData::new(v.clone(), [v.len()]), &dev);
    let params: Vec<Tensor<AD, 1>> = params_host.iter().map(to).collect();
    // Autodiff gradient with respect to the synthetic images.
    let leaves: Vec<Tensor<AD, 4>> = (0..3)
        .map(|c| {
            Tensor::<AD, 4>::from_data(
                TensorData::new(x[c * 128..(c + 1) * 128].to_vec(), [2, 1, 8, 8]),
                &dev,
            )
            .require_grad()
        })
        .collect();
    let r = real
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [4, 1, 8, 8]), &dev))
        .collect();
    let means = real_means(&spec, &params, r, &draws, false);
    let loss = dm_loss(&spec, &params, means, leaves.clone(), &draws, false);
    let grads = loss.backward();
    let g: Vec<f32> = leaves
        .iter()
        .flat_map(|l| {
            l.grad(&grads)
                .unwrap()
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .unwrap()
        })
        .collect();
    // Central differences of the same loss on the plain backend, along random directions.
    let pb: Vec<Tensor<B, 1>> = params_host
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [v.len()]), &dev))
        .collect();
    let f = |x: &[f32]| {
        loss_at::<B>(&spec, &pb, &real, x, &draws)
            .into_scalar()
            .elem::<f64>()
    };
    // Unit directions: the gradient's own, then random ones. The error is measured against the
    // gradient's norm (a directional derivative along a unit vector is at most that): f32
    // round-off in the loss limits central differences to about 1e-3 of it here.
    let gnorm: f64 = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let eps = 1e-2f32;
    let mut worst = 0f64;
    for trial in 0..4u64 {
        let raw: Vec<f32> = if trial == 0 {
            g.clone()
        } else {
            let mut r2 = rand::rngs::StdRng::seed_from_u64(100 + trial);
            (0..x.len()).map(|_| r2.random_range(-1.0..1.0)).collect()
        };
        let n = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        let dir: Vec<f32> = raw.iter().map(|v| v / n).collect();
        let plus: Vec<f32> = x.iter().zip(&dir).map(|(a, d)| a + eps * d).collect();
        let minus: Vec<f32> = x.iter().zip(&dir).map(|(a, d)| a - eps * d).collect();
        let fd = (f(&plus) - f(&minus)) / (2.0 * eps as f64);
        let ad: f64 = g
            .iter()
            .zip(&dir)
            .map(|(a, d)| (*a as f64) * (*d as f64))
            .sum();
        let rel = (fd - ad).abs() / gnorm;
        worst = worst.max(rel);
        assert!(
            rel < 1e-2,
            "{norm:?}, direction {trial}: autodiff {ad:.6} vs central difference {fd:.6} (error {rel:.2e} of the gradient norm {gnorm:.4})"
        );
    }
    eprintln!("{norm:?}: worst error {worst:.2e} of the gradient norm");
    assert!(g.iter().any(|v| *v != 0.0));
}

#[test]
fn dm_gradient_matches_central_differences() {
    check_gradient(Norm::Instance, vec![None; 3]);
    check_gradient(Norm::Batch, vec![None; 3]);
}

#[test]
fn dm_gradient_through_siamese_dsa_matches_central_differences() {
    let draws = vec![
        Some(Draw::Color {
            brightness: vec![0.1],
            saturation: vec![1.3],
            contrast: vec![0.8],
        }),
        Some(Draw::Affine(vec![[1.1, 0.0, 0.0, 0.0, 0.9, 0.0]])),
        Some(Draw::Crop(vec![(1, -1)])),
    ];
    check_gradient(Norm::Instance, draws);
}

#[test]
fn herding_and_k_center_pick_the_hand_computed_points() {
    let rows: Vec<Vec<f32>> = [0.0, 1.0, 2.0, 10.0].iter().map(|&v| vec![v]).collect();
    // Mean 3.25: herding first takes 2, then the x that brings (2 + x) / 2 closest to 3.25 (x = 1),
    // then (3 + x) / 3 closest to 3.25 (x = 10 gives 4.33, x = 0 gives 1): 10.
    assert_eq!(herding(&rows, 3), vec![2, 1, 3]);
    // K-center: start at the point nearest the mean (2), then the farthest (10), then 0 (distance 2).
    assert_eq!(k_center(&rows, 3), vec![2, 3, 0]);
    // Asking for more than there are returns each once.
    assert_eq!(herding(&rows, 9).len(), 4);
    assert_eq!(k_center(&rows, 9).len(), 4);
}

fn sample_set() -> SyntheticSet {
    SyntheticSet {
        images: (0..3 * 16).map(|i| (i as f32 * 0.37).sin() * 3.0).collect(),
        shape: [2, 4, 2],
        labels: vec![2, 0, 1],
        soft_labels: Some((0..9).map(|i| i as f32 / 9.0).collect()),
        syn_lr: Some(0.0123),
        fixed: Some(vec![true, false, true]),
        provenance: Provenance {
            method: "dm".into(),
            ipc: 1,
            dataset: "synthetic".into(),
            seed: 5,
            iterations: 77,
            classes: vec!["a".into(), "b".into(), "c".into()],
            normalization: Some(data::Normalization {
                mean: vec![0.5, 0.4],
                std: vec![0.2, 0.3],
            }),
            expand: 1,
        },
    }
}

#[test]
fn safetensors_round_trip_preserves_every_value_and_label() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("set.safetensors");
    let set = sample_set();
    set.save(&p).unwrap();
    let back = SyntheticSet::load(&p).unwrap();
    assert_eq!(back, set);
    assert_eq!(back.images.len(), 48);
    // The bytes on disk are what `encode` produced (what a byte count would measure).
    assert_eq!(std::fs::read(&p).unwrap(), set.encode(&Vec::new()).unwrap());
    // The header declares NCHW float32 images and int64 labels, as safetensors.torch expects.
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["images"]["dtype"], "F32");
    assert_eq!(header["images"]["shape"], serde_json::json!([3, 2, 4, 2]));
    assert_eq!(header["labels"]["dtype"], "I64");
    // A PNG grid renders.
    let png = dir.path().join("set.png");
    set.save_png(&png).unwrap();
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
}

#[test]
fn corrupt_or_foreign_set_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.safetensors");
    std::fs::write(&p, b"not a tensor file at all").unwrap();
    let e = SyntheticSet::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("bad.safetensors") && e.contains("not a safetensors file"),
        "{e}"
    );
    // A label outside the classes.
    let mut set = sample_set();
    set.labels[0] = 7;
    set.save(&p).unwrap();
    let e = SyntheticSet::load(&p).unwrap_err().to_string();
    assert!(e.contains("label 7 outside 0..3"), "{e}");
    // A NaN pixel.
    let mut set = sample_set();
    set.images[5] = f32::NAN;
    set.save(&p).unwrap();
    let e = SyntheticSet::load(&p).unwrap_err().to_string();
    assert!(e.contains("non-finite") && e.contains("index 5"), "{e}");
}

#[test]
fn resuming_from_a_checkpoint_reproduces_the_uninterrupted_run() {
    let data = tiny_data();
    let cfg = tiny_cfg(Norm::Instance, Some(Dsa::new(STRATEGY_DIGITS).unwrap()), 12);
    let full = Dm { cfg: cfg.clone() }
        .distill(&data, 2, &mut crate::common::quiet_ctx(4))
        .unwrap();
    // Interrupted after iteration 5 (the callback fails), with a checkpoint taken there.
    let dir = tempfile::tempdir().unwrap();
    let ck_path = dir.path().join("ck.safetensors");
    let mut stop = iterations(|it, _, snap: &dyn Fn() -> Checkpoint| {
        if it == 5 {
            snap().save(&ck_path)?;
            return Err(distillery::Error::Other("interrupted".into()));
        }
        Ok(Flow::Continue)
    });
    let e = Dm { cfg: cfg.clone() }
        .distill(&data, 2, &mut ctx(4, &mut stop, None))
        .unwrap_err();
    assert_eq!(e.to_string(), "interrupted");
    let ck = Checkpoint::load(&ck_path).unwrap();
    assert_eq!(ck.set.provenance.iterations, 5);
    let mut seen = Vec::new();
    let mut count = iterations(|it, _, _| {
        seen.push(it);
        Ok(Flow::Continue)
    });
    let resumed = Dm { cfg }
        .distill(&data, 2, &mut ctx(4, &mut count, Some(ck)))
        .unwrap();
    assert_eq!(seen, (6..=12).collect::<Vec<_>>());
    assert_eq!(resumed.images, full.images);
    assert_eq!(resumed.provenance.iterations, 12);
}
