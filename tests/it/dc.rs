//! DC / DSA gradient matching: the layer-wise distance against a slow host reference, its
//! gradient with respect to the synthetic images against central finite differences (through
//! both ways of forming the network gradient), resuming, and the method's settings errors.

use crate::common::{ctx, iterations, quiet_ctx, spec, AD};
use crate::resume::{csvs, data_rows, full, killed_when, resume, summary, write};
use burn::prelude::*;
use distillery::data::augment::Dsa;
use distillery::data::{self, Dataset};
use distillery::distill::dc::matching::{class_loss, distance, row_shapes};
use distillery::distill::dc::{loops, Dc, DcConfig, DcSettings};
use distillery::distill::{Checkpoint, Distiller};
use distillery::model::{ConvNetSpec, ModelSpec, Norm, Pooling};
use distillery::train::events::Flow;
use rand::{Rng, SeedableRng};
use std::path::Path;

type In = burn::backend::Flex;

fn tensor4(v: &[f32], shape: [usize; 4]) -> Tensor<In, 4> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
}

fn randn(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

#[test]
fn dc_distance_matches_a_slow_reference() {
    let s = spec();
    let rows = row_shapes(&s);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let sizes: Vec<usize> = s
        .params()
        .iter()
        .map(|p| p.shape.iter().product())
        .collect();
    let a: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(n, &mut rng)).collect();
    let b: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(n, &mut rng)).collect();
    // The reference: per parameter of more than one dimension, per output row, 1 - cos.
    let mut want = 0.0f64;
    for (p, (ga, gb)) in s.params().iter().zip(a.iter().zip(&b)) {
        if p.shape.len() < 2 {
            continue;
        }
        let cols = ga.len() / p.shape[0];
        for r in 0..p.shape[0] {
            let (x, y) = (&ga[r * cols..(r + 1) * cols], &gb[r * cols..(r + 1) * cols]);
            let dot: f64 = x.iter().zip(y).map(|(u, v)| (u * v) as f64).sum();
            let nx: f64 = x.iter().map(|u| (u * u) as f64).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|u| (u * u) as f64).sum::<f64>().sqrt();
            want += 1.0 - dot / (nx * ny + 1e-6);
        }
    }
    let t = |v: &Vec<Vec<f32>>| -> Vec<Tensor<In, 1>> {
        v.iter()
            .map(|x| Tensor::from_data(TensorData::new(x.clone(), [x.len()]), &Default::default()))
            .collect()
    };
    let got = distance(&t(&b), &t(&a), &rows).into_scalar() as f64;
    assert!(
        (got - want).abs() < 1e-4 * want.abs().max(1.0),
        "{got} vs {want}"
    );
    // Identical gradients are at distance (about) zero.
    let same = distance(&t(&a), &t(&a), &rows).into_scalar();
    assert!(same.abs() < 1e-3, "{same}");
}

struct Problem {
    spec: ModelSpec,
    params: Vec<Tensor<In, 1>>,
    real: Vec<f32>,
    syn: Vec<f32>,
}

fn problem(norm: Norm) -> Problem {
    let spec = ModelSpec::ConvNet(ConvNetSpec {
        input: [1, 8, 8],
        num_classes: 3,
        width: 4,
        depth: 2,
        norm,
        pooling: Pooling::Avg,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let params = spec.init::<In, _>(&mut rng, &Default::default()).params;
    Problem {
        spec,
        params,
        real: randn(6 * 64, &mut rng),
        syn: randn(2 * 64, &mut rng),
    }
}

fn loss(p: &Problem, syn: &[f32], hand: bool) -> (f64, Vec<f32>) {
    let pair = (tensor4(&p.real, [6, 1, 8, 8]), tensor4(syn, [2, 1, 8, 8]));
    let (v, g) = class_loss::<AD>(&p.spec, &p.params, pair, 1, None, hand);
    (v, g.into_data().convert::<f32>().into_vec().unwrap())
}

/// The directional derivative along unit directions (the gradient's own, then random) against
/// central differences, the error relative to the gradient's norm. The step is small: the ReLU
/// masks inside the network gradient make the matching loss piecewise smooth, and a larger
/// step crosses their kinks.
fn check(norm: Norm, hand: bool) {
    let p = problem(norm);
    let (_, g) = loss(&p, &p.syn, hand);
    let gnorm = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    assert!(gnorm > 0.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for trial in 0..3 {
        let raw: Vec<f32> = if trial == 0 {
            g.clone()
        } else {
            randn(p.syn.len(), &mut rng)
        };
        let len = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        let dir: Vec<f32> = raw.iter().map(|v| v / len).collect();
        let eps = 1e-3f32;
        let moved = |s: f32| -> Vec<f32> {
            p.syn
                .iter()
                .zip(&dir)
                .map(|(x, d)| x + s * eps * d)
                .collect()
        };
        let fd =
            (loss(&p, &moved(1.0), hand).0 - loss(&p, &moved(-1.0), hand).0) / (2.0 * eps as f64);
        let an: f64 = g.iter().zip(&dir).map(|(a, d)| (a * d) as f64).sum();
        let err = (fd - an).abs() / gnorm;
        assert!(
            err < 2e-2,
            "{norm:?} hand {hand}, direction {trial}: autodiff {an} vs central difference {fd} (error {err:.2e} of the norm {gnorm:.3e})"
        );
    }
}

#[test]
fn dc_matching_gradient_matches_central_differences() {
    check(Norm::Instance, true);
    check(Norm::Instance, false);
    check(Norm::Batch, false);
}

#[test]
fn dc_hand_written_and_nested_gradients_agree() {
    let p = problem(Norm::Instance);
    let (va, a) = loss(&p, &p.syn, true);
    let (vb, b) = loss(&p, &p.syn, false);
    assert!((va - vb).abs() < 1e-4 * va.abs().max(1.0), "{va} vs {vb}");
    let scale = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-3 * scale, "worst {worst} of {scale}");
}

#[test]
fn dc_loops_follow_the_reference_table() {
    assert_eq!(loops(1), (1, 1));
    assert_eq!(loops(10), (10, 50));
    assert_eq!(loops(50), (50, 10));
    assert_eq!(loops(100), (50, 10));
    assert_eq!(loops(5), (1, 1));
    assert_eq!(loops(6), (10, 50));
}

fn tiny() -> Dataset {
    let mut d = data::synthetic::generate(60, [1, 8, 8], 3, 0.4, 3);
    let norm = d.channel_stats();
    d.normalize(&norm);
    d
}

fn dc(iterations: usize) -> Dc {
    let settings = DcSettings {
        iterations,
        outer_loop: Some(3),
        inner_loop: Some(2),
        batch_real: 8,
        ..Default::default()
    };
    let dsa = Dsa::new("color_crop_cutout_scale_rotate").unwrap();
    Dc {
        cfg: DcConfig::new(settings, spec(), &dsa),
    }
}

#[test]
fn dc_moves_the_images_and_resumes_exactly() {
    let d = tiny();
    let mut none = iterations(|_, l: f64, _| {
        assert!(l.is_finite());
        Ok(Flow::Continue)
    });
    let fullset = dc(4).distill(&d, 2, &mut ctx(3, &mut none, None)).unwrap();
    let start = dc(0).distill(&d, 2, &mut quiet_ctx(3)).unwrap();
    assert_ne!(fullset.images, start.images, "the images never moved");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck.safetensors");
    let mut stop = iterations(|it: usize, _, snap: &dyn Fn() -> Checkpoint| {
        if it == 2 {
            snap().save(&p)?;
            return Err(distillery::Error::Other("stop".into()));
        }
        Ok(Flow::Continue)
    });
    assert!(dc(4).distill(&d, 2, &mut ctx(3, &mut stop, None)).is_err());
    let ck = Checkpoint::load(&p).unwrap();
    let mut none2 = iterations(|_, _, _| Ok(Flow::Continue));
    let resumed = dc(4)
        .distill(&d, 2, &mut ctx(3, &mut none2, Some(ck)))
        .unwrap();
    assert_eq!(resumed.images, fullset.images);
}

const DISTILL: &str = r#"
name = "dc-resume"
kind = "distill"
seed = 2
[data]
source = "synthetic"
train = 150
test = 90
size = 8
classes = 3
[model]
width = 8
depth = 2
[distill]
method = "dc"
ipc = 2
iterations = 200
outer_loop = 2
inner_loop = 1
batch_real = 16
log_every = 1
checkpoint_every = 30
[eval]
epochs = 5
batch_size = 16
repeats = 1
"#;

#[test]
fn a_dc_run_killed_between_checkpoints_resumes_to_the_same_rows() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), DISTILL);
    let reference = full(&scen, &root.path().join("full"));
    let cut = killed_when(&scen, &root.path().join("cut"), |d| {
        d.join("dc.checkpoint.safetensors").exists() && data_rows(d, "metrics.csv") >= 35
    });
    resume(&cut, "resuming from iteration ");
    let (a, b) = (csvs(&reference), csvs(&cut));
    assert_eq!(a["metrics.csv"], b["metrics.csv"]);
    assert_eq!(summary(&reference), summary(&cut));
}

#[test]
fn dc_settings_errors_name_the_key() {
    let parse = |extra: &str| {
        let text = DISTILL.replace("outer_loop = 2", extra);
        distillery::scenario::parse(&text, Path::new("bad.toml"))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = parse("lr_img = -1.0");
    assert!(e.contains("lr_img"), "{e}");
    let e = parse("batch_train = 0");
    assert!(e.contains("batch_train"), "{e}");
    let e = parse("syn_steps = 3");
    assert!(e.contains("syn_steps") && e.contains("mtt"), "{e}");
}
