//! Second-order gradients through unrolled SGD (groundwork for trajectory matching): the outer
//! gradient with respect to the synthetic images and the step size against central differences.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use distillery::data::augment::Draw;
use distillery::distill::mtt::unroll::{matching_loss, unroll, unroll_manual, InnerBatch};
use distillery::model::backward::ConvGrads;
use distillery::model::layers::one_hot;
use distillery::model::{ConvNetSpec, ModelSpec, Norm, Pooling};
use rand::{Rng, SeedableRng};

type B = Flex;
type B1 = Autodiff<Flex>;

struct Problem {
    spec: ModelSpec,
    start: Vec<Vec<f32>>,
    target: Vec<Vec<f32>>,
    images: Vec<f32>,
    labels: Vec<usize>,
    batches: Vec<InnerBatch>,
}

fn problem(norm: Norm) -> Problem {
    let spec = ModelSpec::ConvNet(ConvNetSpec {
        input: [1, 8, 8],
        num_classes: 3,
        width: 4,
        depth: 1,
        norm,
        pooling: Pooling::Avg,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let start = spec.init_host(&mut rng);
    let target = start
        .iter()
        .map(|p| {
            p.iter()
                .map(|v| v + rng.random_range(-0.05..0.05))
                .collect()
        })
        .collect();
    let images = (0..6 * 64).map(|_| rng.random_range(-1.0..1.0)).collect();
    let batches = vec![
        InnerBatch {
            rows: vec![0, 2, 4, 5],
            draw: None,
        },
        InnerBatch {
            rows: vec![1, 3, 5, 0],
            draw: Some(Draw::Affine(vec![
                [1.1, 0.0, 0.0, 0.0, 0.9, 0.0],
                [0.97, -0.26, 0.0, 0.26, 0.97, 0.0],
                [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                [0.9, 0.0, 0.0, 0.0, 1.2, 0.0],
            ])),
        },
        InnerBatch {
            rows: vec![2, 3, 4, 1],
            draw: Some(Draw::Color {
                brightness: vec![0.1, -0.2, 0.0, 0.3],
                saturation: vec![1.0; 4],
                contrast: vec![0.8, 1.2, 1.0, 0.9],
            }),
        },
    ];
    Problem {
        spec,
        start,
        target,
        images,
        labels: vec![0, 0, 1, 1, 2, 2],
        batches,
    }
}

fn vec1<BK: Backend>(v: &[f32], dev: &BK::Device) -> Tensor<BK, 1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), dev)
}

/// The matching loss after the unroll, as a plain number (first-order autodiff inside only).
fn loss_value(p: &Problem, images: &[f32], lr: f32) -> f64 {
    let dev = Default::default();
    let start: Vec<Tensor<B, 1>> = p.start.iter().map(|v| vec1(v, &dev)).collect();
    let target: Vec<Tensor<B, 1>> = p.target.iter().map(|v| vec1(v, &dev)).collect();
    let x = Tensor::<B, 4>::from_data(TensorData::new(images.to_vec(), [6, 1, 8, 8]), &dev);
    let theta = unroll::<Autodiff<B>>(
        &p.spec,
        start.clone(),
        x,
        one_hot::<B>(&p.labels, 3, &dev),
        vec1(&[lr], &dev),
        &p.batches,
    );
    matching_loss(&theta, &start, &target)
        .into_scalar()
        .elem::<f64>()
}

fn check(norm: Norm) {
    let p = problem(norm);
    let dev = Default::default();
    let lr = 0.5f32;
    let start: Vec<Tensor<B1, 1>> = p.start.iter().map(|v| vec1(v, &dev)).collect();
    let target: Vec<Tensor<B1, 1>> = p.target.iter().map(|v| vec1(v, &dev)).collect();
    let x = Tensor::<B1, 4>::from_data(TensorData::new(p.images.clone(), [6, 1, 8, 8]), &dev)
        .require_grad();
    let lr_t = vec1::<B1>(&[lr], &dev).require_grad();
    let theta = unroll::<Autodiff<B1>>(
        &p.spec,
        start.clone(),
        x.clone(),
        one_hot::<B1>(&p.labels, 3, &dev),
        lr_t.clone(),
        &p.batches,
    );
    let loss = matching_loss(&theta, &start, &target);
    let value = loss.clone().into_scalar().elem::<f64>();
    assert!((value - loss_value(&p, &p.images, lr)).abs() < 1e-5 * value.abs().max(1.0));
    let grads = loss.backward();
    let gx: Vec<f32> = x
        .grad(&grads)
        .expect("images get a gradient")
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap();
    let glr = lr_t
        .grad(&grads)
        .expect("syn_lr gets a gradient")
        .into_scalar()
        .elem::<f64>();
    // Step size: central difference.
    let h = 1e-3f32;
    let fd_lr =
        (loss_value(&p, &p.images, lr + h) - loss_value(&p, &p.images, lr - h)) / (2.0 * h as f64);
    let rel = (fd_lr - glr).abs() / fd_lr.abs().max(1e-8);
    assert!(
        rel < 1e-2,
        "{norm:?}: d loss / d syn_lr: autodiff {glr:.6e} vs central difference {fd_lr:.6e} (relative error {rel:.2e})"
    );
    // Images: unit directions (the gradient's own, then random), error relative to the norm.
    let gnorm: f64 = gx.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    assert!(gnorm > 0.0);
    // A small step: the ReLUs make the loss piecewise smooth, and at 1e-2 some directions cross
    // kinks (measured: a central difference of 2.28 at 1e-2 against -0.0604 at 3e-3, 1e-3, 3e-4).
    let eps = 1e-3f32;
    for trial in 0..3u64 {
        let raw: Vec<f32> = if trial == 0 {
            gx.clone()
        } else {
            let mut r = rand::rngs::StdRng::seed_from_u64(50 + trial);
            (0..gx.len()).map(|_| r.random_range(-1.0..1.0)).collect()
        };
        let n = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        let dir: Vec<f32> = raw.iter().map(|v| v / n).collect();
        let plus: Vec<f32> = p
            .images
            .iter()
            .zip(&dir)
            .map(|(a, d)| a + eps * d)
            .collect();
        let minus: Vec<f32> = p
            .images
            .iter()
            .zip(&dir)
            .map(|(a, d)| a - eps * d)
            .collect();
        let fd = (loss_value(&p, &plus, lr) - loss_value(&p, &minus, lr)) / (2.0 * eps as f64);
        let ad: f64 = gx
            .iter()
            .zip(&dir)
            .map(|(a, d)| *a as f64 * *d as f64)
            .sum();
        let err = (fd - ad).abs() / gnorm;
        assert!(
            err < 1e-2,
            "{norm:?}, direction {trial}: autodiff {ad:.6e} vs central difference {fd:.6e} (error {err:.2e} of the gradient norm {gnorm:.3e})"
        );
    }
}

#[test]
fn outer_gradient_through_three_sgd_steps_matches_central_differences() {
    check(Norm::Instance);
}

#[test]
fn outer_gradient_with_batch_norm_matches_central_differences() {
    check(Norm::Batch);
}

#[test]
fn hand_written_unroll_gives_the_same_outer_gradient_as_nested_autodiff() {
    let p = problem(Norm::Instance);
    let dev = Default::default();
    let run = |manual: Option<ConvGrads>| {
        let start: Vec<Tensor<B1, 1>> = p.start.iter().map(|v| vec1(v, &dev)).collect();
        let target: Vec<Tensor<B1, 1>> = p.target.iter().map(|v| vec1(v, &dev)).collect();
        let x = Tensor::<B1, 4>::from_data(TensorData::new(p.images.clone(), [6, 1, 8, 8]), &dev)
            .require_grad();
        let lr = vec1::<B1>(&[0.5], &dev).require_grad();
        let y = one_hot::<B1>(&p.labels, 3, &dev);
        let theta = match manual {
            Some(how) => unroll_manual(
                &p.spec,
                start.clone(),
                x.clone(),
                y,
                lr.clone(),
                &p.batches,
                how,
            )
            .unwrap(),
            None => {
                unroll::<Autodiff<B1>>(&p.spec, start.clone(), x.clone(), y, lr.clone(), &p.batches)
            }
        };
        let loss = matching_loss(&theta, &start, &target);
        let v = loss.clone().into_scalar().elem::<f64>();
        let g = loss.backward();
        let gx: Vec<f32> = x
            .grad(&g)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap();
        let glr = lr.grad(&g).unwrap().into_scalar().elem::<f64>();
        (v, gx, glr)
    };
    let (va, ga, la) = run(None);
    // Both ways of forming the convolution gradients by hand.
    for how in [ConvGrads::Conv, ConvGrads::Matmul] {
        let (vm, gm, lm) = run(Some(how));
        assert!(
            (va - vm).abs() < 1e-5 * va.abs(),
            "{how:?}: loss {va} vs {vm}"
        );
        let norm: f64 = ga.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let diff: f64 = ga
            .iter()
            .zip(&gm)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            diff / norm < 1e-4,
            "{how:?}: image gradients differ by {:.2e} of their norm",
            diff / norm
        );
        assert!(
            (la - lm).abs() < 1e-4 * la.abs(),
            "{how:?}: syn_lr gradient {la} vs {lm}"
        );
    }
}
