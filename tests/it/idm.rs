//! IDM's additions to DM: partition and expansion against hand-computed values and a slow host
//! reference, the matching gradient through the expansion and the class-aware term against
//! central differences, the model pool resuming exactly, partitioned sets through safetensors
//! and evaluation, the validation split, and the settings' errors.

use crate::common::{ctx, iterations, quiet_ctx, run_text, spec, AD};
use burn::prelude::*;
use distillery::data::augment::Dsa;
use distillery::data::{self, Dataset};
use distillery::distill::dm::{idm_loss, real_means, Idm, ModelPoolSettings};
use distillery::distill::expand::{expand, expand_host, pack, resize_matrix};
use distillery::distill::{Checkpoint, Distiller, Dm, DmConfig, DmSettings, SyntheticSet};
use distillery::train::events::Flow;
use rand::{Rng, SeedableRng};
use std::path::Path;

type In = burn::backend::Flex;

fn randn(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "value {i}: {x} vs {y}");
    }
}

#[test]
fn bilinear_resizing_matches_pytorch_on_hand_computed_rows() {
    // F.interpolate([[1, 2]], scale_factor=2, mode="linear", align_corners=False) is
    // [1, 1.25, 1.75, 2]; shrinking by 2 averages neighbouring pairs.
    let up = resize_matrix(2, 4);
    let x = [1.0f32, 2.0];
    let y: Vec<f32> = (0..4)
        .map(|o| up[o * 2] * x[0] + up[o * 2 + 1] * x[1])
        .collect();
    close(&y, &[1.0, 1.25, 1.75, 2.0], 1e-6);
    let down = resize_matrix(4, 2);
    close(&down, &[0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5], 1e-6);
}

#[test]
fn parts_come_out_in_the_reference_order_and_pack_inverts_them() {
    // One 4x4 image whose quadrants are constant: top-left 1, bottom-left 2, top-right 3,
    // bottom-right 4; its parts are four constant images in that order.
    let mut img = vec![0.0f32; 16];
    for y in 0..4 {
        for x in 0..4 {
            img[y * 4 + x] = 1.0 + (y / 2) as f32 + 2.0 * (x / 2) as f32;
        }
    }
    let parts = expand_host(&img, [1, 4, 4], 2);
    for p in 0..4 {
        close(&parts[p * 16..(p + 1) * 16], &[1.0 + p as f32; 16], 1e-6);
    }
    assert_eq!(pack(&parts, [1, 4, 4], 2), img);
}

#[test]
fn the_tensor_expansion_equals_the_host_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for (shape, f) in [([2, 8, 6], 2), ([1, 6, 9], 3)] {
        let n = 3;
        let v = randn(n * shape.iter().product::<usize>(), &mut rng);
        let t = Tensor::<In, 4>::from_data(
            TensorData::new(v.clone(), [n, shape[0], shape[1], shape[2]]),
            &Default::default(),
        );
        let got: Vec<f32> = expand(t, f)
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap();
        close(&got, &expand_host(&v, shape, f), 1e-5);
    }
}

/// The IDM loss of one class (expansion 2, the class-aware term at weight 0.7) and its gradient
/// with respect to the stored images.
fn loss(params: &[Tensor<In, 1>], real: &[f32], syn: &[f32], dsa: &Dsa) -> (f64, Vec<f32>) {
    let s = spec();
    let dev = Default::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let draws = vec![Some(dsa.draw(None, 8, 8, &mut rng))];
    let real = Tensor::<In, 4>::from_data(TensorData::new(real.to_vec(), [6, 1, 8, 8]), &dev);
    let means = real_means(&s, params, vec![real], &draws, false);
    let p: Vec<Tensor<AD, 1>> = params.iter().cloned().map(Tensor::from_inner).collect();
    let leaf = Tensor::<AD, 4>::from_data(TensorData::new(syn.to_vec(), [2, 1, 8, 8]), &dev)
        .require_grad();
    let means = means.into_iter().map(Tensor::from_inner).collect();
    let idm = Idm {
        expand: 2,
        ce: 0.7,
        classes: &[1],
    };
    let l = idm_loss(&s, &p, means, vec![leaf.clone()], &draws, idm);
    let g = leaf.grad(&l.backward()).unwrap();
    (
        l.into_scalar().elem::<f64>(),
        g.into_data().convert::<f32>().into_vec().unwrap(),
    )
}

#[test]
fn the_idm_gradient_matches_central_differences() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let params = spec().init::<In, _>(&mut rng, &Default::default()).params;
    let real = randn(6 * 64, &mut rng);
    let syn = randn(2 * 64, &mut rng);
    let dsa = Dsa::new("color_crop_cutout_scale_rotate").unwrap();
    let (_, g) = loss(&params, &real, &syn, &dsa);
    let gnorm = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    assert!(gnorm > 0.0);
    for trial in 0..3 {
        let raw = if trial == 0 {
            g.clone()
        } else {
            randn(syn.len(), &mut rng)
        };
        let len = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        let eps = 1e-3f32;
        let moved = |s: f32| -> Vec<f32> {
            syn.iter()
                .zip(&raw)
                .map(|(x, d)| x + s * eps * d / len)
                .collect()
        };
        let fd = (loss(&params, &real, &moved(1.0), &dsa).0
            - loss(&params, &real, &moved(-1.0), &dsa).0)
            / (2.0 * eps as f64);
        let an: f64 = g.iter().zip(&raw).map(|(a, d)| (a * d / len) as f64).sum();
        let err = (fd - an).abs() / gnorm;
        assert!(err < 2e-2, "direction {trial}: {an} vs {fd} ({err:.2e})");
    }
}

fn tiny() -> Dataset {
    let mut d = data::synthetic::generate(90, [1, 8, 8], 3, 0.4, 3);
    let norm = d.channel_stats();
    d.normalize(&norm);
    d
}

fn idm(iterations: usize) -> Dm {
    let settings = DmSettings {
        iterations,
        lr_img: 0.2,
        batch_real: 8,
        model_pool: Some(Box::new(ModelPoolSettings {
            size: 4,
            add_every: 2,
            train_steps: 2,
            batch: 16,
            ..Default::default()
        })),
        ce_weight: 0.01,
        expand: 2,
        ..Default::default()
    };
    let dsa = Dsa::new("color_crop_cutout_scale_rotate").unwrap();
    Dm {
        cfg: DmConfig::new(settings, spec(), &dsa),
    }
}

#[test]
fn an_idm_run_moves_partitioned_images_and_resumes_exactly() {
    let d = tiny();
    let mut none = iterations(|_, l: f64, _| {
        assert!(l.is_finite());
        Ok(Flow::Continue)
    });
    let full = idm(6).distill(&d, 1, &mut ctx(3, &mut none, None)).unwrap();
    let start = idm(0).distill(&d, 1, &mut quiet_ctx(3)).unwrap();
    assert_eq!(full.len(), 3, "one stored image per class");
    assert_eq!(full.provenance.expand, 2);
    assert_ne!(full.images, start.images, "the images never moved");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck.safetensors");
    let mut stop = iterations(|it: usize, _, snap: &dyn Fn() -> Checkpoint| {
        if it == 3 {
            snap().save(&p)?;
            return Err(distillery::Error::Other("stop".into()));
        }
        Ok(Flow::Continue)
    });
    assert!(idm(6).distill(&d, 1, &mut ctx(3, &mut stop, None)).is_err());
    let ck = Checkpoint::load(&p).unwrap();
    assert!(ck
        .extras
        .iter()
        .any(|(n, s, _)| n == "dm_pool_params" && s[0] == 4));
    let mut none2 = iterations(|_, _, _| Ok(Flow::Continue));
    let resumed = idm(6)
        .distill(&d, 1, &mut ctx(3, &mut none2, Some(ck)))
        .unwrap();
    assert_eq!(resumed.images, full.images);
    // The set keeps its partition through safetensors and trains as four images per class.
    let back = SyntheticSet::decode(&full.encode(&Vec::new()).unwrap())
        .unwrap()
        .0;
    assert_eq!(back, full);
    let train = back.to_dataset();
    assert_eq!(train.len(), 12);
    assert_eq!(train.labels, [0, 1, 2].repeat(4));
    assert_eq!(train.images, expand_host(&full.images, full.shape, 2));
}

const DIGITS: &str = r#"
name = "idm-digits"
kind = "distill"
seed = 1
[data]
source = "digits"
[model]
width = 16
depth = 2
[distill]
method = "dm"
ipc = 1
iterations = 40
lr_img = 0.2
batch_real = 32
expand = 2
ce_weight = 0.01
log_every = 10
baselines = ["random"]
[distill.model_pool]
size = 10
add_every = 5
[eval]
epochs = 60
batch_size = 32
repeats = 2
validation = 0.2
[audit]
enabled = false
"#;

#[test]
fn an_idm_digits_run_evaluated_on_a_validation_split_beats_chance() {
    let root = tempfile::tempdir().unwrap();
    let out = run_text(DIGITS, root.path());
    let r = &out.summary.distill().unwrap().results;
    let idm = r["dm"]["convnet"].mean;
    // Ten classes: chance is 0.10.
    assert!(idm > 0.4, "IDM digits accuracy {idm}");
    let text = std::fs::read_to_string(out.dir.join("summary.json")).unwrap();
    assert!(
        text.contains("\"validation\""),
        "the summary names the split"
    );
}

#[test]
fn the_validation_split_is_stratified_disjoint_and_seeded() {
    let text = DIGITS.replace("validation = 0.2", "validation = 0.25");
    let l = distillery::scenario::parse(&text, Path::new("v.toml")).unwrap();
    let a = distillery::experiment::load_data(&l).unwrap();
    let b = distillery::experiment::load_data(&l).unwrap();
    assert_eq!(
        a.test.images, b.test.images,
        "the same seed holds out the same images"
    );
    let plain =
        distillery::scenario::parse(&DIGITS.replace("validation = 0.2", ""), Path::new("p.toml"))
            .unwrap();
    let all = distillery::experiment::load_data(&plain).unwrap();
    assert_eq!(a.train.len() + a.test.len(), all.train.len());
    for (c, (&v, &n)) in a
        .test
        .class_counts()
        .iter()
        .zip(&all.train.class_counts())
        .enumerate()
    {
        assert_eq!(v, ((n as f64) * 0.25).round() as usize, "class {c}");
    }
    let l = a.train.image_len();
    let seen: std::collections::HashSet<Vec<u32>> = (0..a.train.len())
        .map(|i| a.train.image(i).iter().map(|v| v.to_bits()).collect())
        .collect();
    let shared = (0..a.test.len())
        .filter(|&i| {
            seen.contains(
                &a.test
                    .image(i)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
            )
        })
        .count();
    assert!(
        l > 0 && shared <= a.test.len() / 20,
        "{shared} held-out images also train"
    );
}

#[test]
fn idm_settings_errors_name_the_key() {
    let parse = |from: &str, to: &str| {
        let text = DIGITS.replace(from, to);
        distillery::scenario::parse(&text, Path::new("bad.toml"))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = parse("[distill.model_pool]\nsize = 10\nadd_every = 5", "");
    assert!(e.contains("ce_weight") && e.contains("model_pool"), "{e}");
    let e = parse("add_every = 5", "add_every = 0");
    assert!(e.contains("model_pool.add_every"), "{e}");
    let e = parse("expand = 2", "expand = 0");
    assert!(e.contains("expand"), "{e}");
    let e = parse("add_every = 5", "add_every = 5\nsteps = 3");
    assert!(e.contains("steps"), "{e}");
    // 8x8 digits do not split into thirds: refused when the run starts, by name.
    let l = distillery::scenario::parse(
        &DIGITS.replace("expand = 2", "expand = 3"),
        Path::new("x.toml"),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let opts = distillery::experiment::RunOptions::quiet(root.path());
    let e = distillery::experiment::run(&l, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expand = 3"), "{e}");
}

#[test]
fn federated_clients_refuse_partitioned_sets_by_name() {
    let text = crate::federated::scenario_text("idm-fed", r#"strategies = ["distilled_oneshot"]"#)
        .replace(
            "method = \"random\"",
            "method = \"dm\"\niterations = 2\nexpand = 2",
        );
    // Refused when the scenario is read, before any client works.
    let e = distillery::scenario::parse(&text, Path::new("f.toml"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("expand = 2") && e.contains("federated"), "{e}");
    // A teacher labels whole images: refused with expansion too.
    let e = distillery::scenario::parse(
        &DIGITS.replace("expand = 2", "expand = 2\nsoft_labels = \"teacher\""),
        Path::new("t.toml"),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(e.contains("expand") && e.contains("teacher"), "{e}");
}
