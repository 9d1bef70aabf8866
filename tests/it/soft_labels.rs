//! Soft labels end to end: they survive safetensors and the wire bit for bit, the ledger counts
//! their bytes exactly, training on one-hot soft labels is training on hard labels, the KD
//! gradient against a written-out reference, a teacher relabels any method's set, and malformed
//! settings are errors naming their key.

use crate::common::AD;
use crate::federated::{rows, run, scenario_text};
use burn::prelude::*;
use distillery::data::augment::Dsa;
use distillery::data::{embedded, Dataset};
use distillery::distill::eval::{evaluate_set, evaluate_set_soft, EvalConfig, EvalSettings};
use distillery::distill::registry::{self, Env};
use distillery::distill::soft::{one_hot_rows, SoftLabelSource};
use distillery::distill::{Ctx, MethodConfig, Provenance, SyntheticSet};
use distillery::fed::message::{Payload, SentSet, Update};
use distillery::fed::pb;
use distillery::fed::protocol::{
    decode_update, encode_tensor, update_message, Expect, Quantization,
};
use distillery::model::{ConvNetSpec, ModelSpec, Norm, Pooling, Weights};
use distillery::report::rows::CommRow;
use distillery::train::kd::{kd_logit_grad_reference, kd_loss};
use distillery::train::SoftTargets;
use prost::Message;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// Soft labels with awkward bit patterns: subnormals, values near 1, a negative zero.
fn awkward_soft(n: usize, k: usize) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut v: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>()).collect();
    v[0] = f32::MIN_POSITIVE / 3.0;
    v[1] = 1.0 - f32::EPSILON;
    v[2] = -0.0;
    v
}

fn tiny_set(n: usize, k: usize) -> SyntheticSet {
    SyntheticSet {
        images: (0..n * 64).map(|i| (i as f32 * 0.13).sin()).collect(),
        shape: [1, 8, 8],
        labels: (0..n).map(|i| i % k).collect(),
        soft_labels: Some(awkward_soft(n, k)),
        syn_lr: None,
        fixed: None,
        provenance: Provenance {
            method: "random".into(),
            ipc: n / k,
            dataset: "digits".into(),
            seed: 1,
            iterations: 0,
            classes: (0..k).map(|c| c.to_string()).collect(),
            normalization: None,
            expand: 1,
        },
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn soft_labels_survive_safetensors_and_the_wire_bit_for_bit() {
    let set = tiny_set(12, 3);
    let want = bits(set.soft_labels.as_ref().unwrap());
    let (back, _) = SyntheticSet::decode(&set.encode(&Vec::new()).unwrap()).unwrap();
    assert_eq!(bits(back.soft_labels.as_ref().unwrap()), want);
    // Through the whole update message, f32 encoding.
    let update = Update {
        client: 2,
        round: 0,
        num_samples: 40,
        compute_seconds: 0.0,
        payload: Payload::Set(SentSet {
            data: set.to_dataset(),
            soft_labels: set.soft_labels.clone(),
        }),
    };
    let bytes = update_message(&update, Quantization::F32).encode_to_vec();
    let expect = Expect {
        weights: Weights {
            params: vec![],
            buffers: vec![],
        },
        shape: [1, 8, 8],
        classes: set.provenance.classes.clone(),
    };
    let got = decode_update(&bytes, 2, 0, usize::MAX, &expect).unwrap();
    match got.payload {
        Payload::Set(s) => {
            assert_eq!(bits(s.soft_labels.as_ref().unwrap()), want);
            assert_eq!(s.data.labels, set.labels);
        }
        other => panic!("not a set: {other:?}"),
    }
    // A set without soft labels arrives without them; soft labels of the wrong shape are refused.
    let hard = Update {
        payload: Payload::Set(SentSet::hard(set.to_dataset())),
        ..update.clone()
    };
    let bytes = update_message(&hard, Quantization::F32).encode_to_vec();
    match decode_update(&bytes, 2, 0, usize::MAX, &expect)
        .unwrap()
        .payload
    {
        Payload::Set(s) => assert!(s.soft_labels.is_none()),
        other => panic!("not a set: {other:?}"),
    }
    let mut m = update_message(&update, Quantization::F32);
    if let Some(pb::client_update::Payload::Synthetic(s)) = &mut m.payload {
        s.soft_labels = Some(encode_tensor(&[0.5; 22], &[11, 2], Quantization::F32));
    }
    let err = decode_update(&m.encode_to_vec(), 2, 0, usize::MAX, &expect).unwrap_err();
    assert!(
        err.to_string().contains("soft labels of shape [11, 2]"),
        "{err}"
    );
}

fn scenario(name: &str, soft: &str) -> String {
    scenario_text(name, "strategies = [\"distilled_oneshot\"]")
        .replace("ipc = 3\n", &format!("ipc = 3\n{soft}"))
}

#[test]
fn the_ledger_counts_the_soft_labels_bytes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let hard = run(&scenario("hard", ""), &dir.path().join("h"));
    let soft = run(
        &scenario("soft", "soft_labels = \"teacher\"\nteacher_epochs = 2\n"),
        &dir.path().join("s"),
    );
    let up = |d: &Path| -> Vec<usize> {
        rows::<CommRow>(&d.join("comm.csv"))
            .into_iter()
            .filter(|r| r.direction == "up")
            .map(|r| r.bytes)
            .collect()
    };
    let (h, s) = (up(&hard.dir), up(&soft.dir));
    assert_eq!(h.len(), 5);
    // Each client sends 30 images (3 per class of 10): their soft labels are a [30, 10] f32
    // tensor in field 4 of the set, and nothing else changes (the frame's length prefix stays
    // two bytes: both lengths lie in 128..16384).
    let t = encode_tensor(&[0.0; 300], &[30, 10], Quantization::F32);
    let field = pb::SyntheticSet {
        soft_labels: Some(t),
        ..Default::default()
    }
    .encoded_len();
    assert_eq!(field, 1 + 2 + (1 + 1 + 2) + (1 + 2 + 1200));
    for (a, b) in h.iter().zip(&s) {
        assert!(*a > 7_680 && *b < 16_000, "{a} {b}");
        assert_eq!(b - a, field, "hard {a}, soft {b}");
    }
}

/// 40 normalised digits (4 per class) and the digits test set.
fn digits_set() -> (Dataset, Dataset) {
    let split = embedded::digits_split(0);
    let by = split.train.class_indices();
    let idx: Vec<usize> = by.iter().flat_map(|v| v[..4].to_vec()).collect();
    (split.train.subset(&idx), split.test)
}

fn digits_spec() -> ModelSpec {
    ModelSpec::ConvNet(ConvNetSpec {
        input: [1, 8, 8],
        num_classes: 10,
        width: 8,
        depth: 2,
        norm: Norm::Instance,
        pooling: Pooling::Avg,
    })
}

#[test]
fn one_hot_soft_labels_train_exactly_as_hard_labels() {
    let (set, test) = digits_set();
    let settings = EvalSettings {
        epochs: 6,
        repeats: 2,
        batch_size: 16,
        ..EvalSettings::default()
    };
    let cfg: EvalConfig = settings.config(&Dsa::new("color_crop_cutout_scale_rotate").unwrap());
    let progress = distillery::train::events::Progress::hidden();
    let hard = evaluate_set::<AD>(
        &set,
        &test,
        &digits_spec(),
        &cfg,
        3,
        &Default::default(),
        &progress,
    )
    .unwrap();
    let rows = one_hot_rows(&set.labels, 10);
    let soft = SoftTargets {
        probs: &rows,
        temperature: 1.0,
    };
    let with_soft = evaluate_set_soft::<AD>(
        &set,
        Some(soft),
        &test,
        &digits_spec(),
        &cfg,
        3,
        &Default::default(),
        &progress,
    )
    .unwrap();
    assert_eq!(hard, with_soft);
    // Softer targets train a different network (the targets are used at all).
    let smooth: Vec<f32> = rows.iter().map(|&p| 0.5 * p + 0.05).collect();
    let other = SoftTargets {
        probs: &smooth,
        temperature: 1.0,
    };
    let smoothed = evaluate_set_soft::<AD>(
        &set,
        Some(other),
        &test,
        &digits_spec(),
        &cfg,
        3,
        &Default::default(),
        &progress,
    )
    .unwrap();
    assert_ne!(hard, smoothed);
}

#[test]
fn the_kd_gradient_matches_the_written_out_reference() {
    use burn::backend::Flex;
    let (n, k) = (5, 4);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let z: Vec<f32> = (0..n * k).map(|_| rng.random_range(-3.0..3.0)).collect();
    let mut p: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>()).collect();
    for row in p.chunks_mut(k) {
        let s: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    let device = Default::default();
    for t in [1.0, 4.0] {
        let logits =
            Tensor::<AD, 2>::from_data(TensorData::new(z.clone(), [n, k]), &device).require_grad();
        let target = Tensor::<AD, 2>::from_data(TensorData::new(p.clone(), [n, k]), &device);
        let grads = kd_loss(logits.clone(), target, t).backward();
        let g: Vec<f32> = logits.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let want = kd_logit_grad_reference(&z, &p, k, t);
        for (a, b) in g.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-6, "t = {t}: {a} vs {b}");
        }
        // The loss against central differences of itself (f64 reference of the loss).
        let loss = |z: &[f32]| -> f64 {
            let mut l = 0.0;
            for (zr, pr) in z.chunks(k).zip(p.chunks(k)) {
                let m = zr.iter().copied().fold(f32::MIN, f32::max) as f64;
                let e: Vec<f64> = zr.iter().map(|&v| ((v as f64 - m) / t).exp()).collect();
                let lse = e.iter().sum::<f64>().ln();
                for (j, &pj) in pr.iter().enumerate() {
                    l -= pj as f64 * ((zr[j] as f64 - m) / t - lse);
                }
            }
            t * t * l / n as f64
        };
        let l0 = kd_loss(
            Tensor::<Flex, 2>::from_data(TensorData::new(z.clone(), [n, k]), &device),
            Tensor::<Flex, 2>::from_data(TensorData::new(p.clone(), [n, k]), &device),
            t,
        )
        .into_scalar();
        assert!((l0 as f64 - loss(&z)).abs() < 1e-5, "{l0} vs {}", loss(&z));
        for (i, &w) in want.iter().enumerate() {
            let h = 1e-3;
            let (mut up, mut dn) = (z.clone(), z.clone());
            up[i] += h;
            dn[i] -= h;
            let fd = (loss(&up) - loss(&dn)) / (2.0 * h as f64);
            assert!((fd - w).abs() < 1e-4, "t = {t}, logit {i}: {fd} vs {w}");
        }
    }
}

#[test]
fn a_teacher_relabels_any_methods_set() {
    let split = embedded::digits_split(0);
    let mut train = split.train.clone();
    train.images.truncate(300 * 64);
    train.labels.truncate(300);
    let env = Env::new(
        digits_spec(),
        Dsa::new("color_crop_cutout_scale_rotate").unwrap(),
        Default::default(),
        std::env::temp_dir(),
    );
    let table = |extra: &str| -> MethodConfig {
        let v: toml::Table = toml::from_str(&format!("method = \"random\"\n{extra}")).unwrap();
        MethodConfig::from_map(
            &serde_json::to_value(v)
                .unwrap()
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap()
    };
    let m = table("soft_labels = \"teacher\"\nteacher_epochs = 80\nteacher_temperature = 2");
    assert_eq!(m.labels().soft_labels, SoftLabelSource::Teacher);
    let mut ctx: Ctx<'_, AD> = Ctx::quiet(Default::default(), 4, "digits");
    let set = registry::distil(&m, &train, 2, &env, &mut ctx).unwrap();
    let soft = set.soft_labels.as_ref().expect("soft labels");
    assert_eq!(soft.len(), 20 * 10);
    let mut agree = 0;
    for (row, &y) in soft.chunks(10).zip(&set.labels) {
        let s: f32 = row.iter().sum();
        assert!((s - 1.0).abs() < 1e-5, "row sums to {s}");
        assert!(row.iter().all(|&p| p > 0.0 && p < 1.0));
        let top = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        agree += usize::from(top == y);
    }
    // A teacher trained on real digits agrees with most of their labels.
    assert!(agree >= 15, "the teacher agrees with {agree} of 20 labels");
    // The default keeps the method's (none for random); the images are the same set's.
    let plain = registry::distil(&table(""), &train, 2, &env, &mut ctx).unwrap();
    assert!(plain.soft_labels.is_none());
    assert_eq!(plain.images, set.images);
}

#[test]
fn malformed_soft_label_settings_are_errors_naming_the_key() {
    let parse = |extra_distill: &str, extra_eval: &str| -> String {
        let text = crate::federated::scenario_text("bad", "strategies = [\"distilled_oneshot\"]")
            .replace("ipc = 3\n", &format!("ipc = 3\n{extra_distill}\n"))
            .replace("epochs = 40\n", &format!("epochs = 40\n{extra_eval}\n"));
        match distillery::scenario::parse(&text, Path::new("bad.toml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    assert_eq!(parse("soft_labels = \"teacher\"", "labels = \"soft\""), "");
    for (d, e, key) in [
        ("soft_labels = \"teachr\"", "", "soft_labels"),
        ("teacher_temperature = 0", "", "teacher_temperature"),
        (
            "soft_labels = \"teacher\"\nteacher_epochs = 0",
            "",
            "teacher_epochs",
        ),
        ("", "labels = \"sof\"", "labels"),
        ("", "kd_temperature = -1", "kd_temperature"),
    ] {
        let err = parse(d, e);
        assert!(err.contains(key), "{d} {e}: {err:?} does not name `{key}`");
    }
}
