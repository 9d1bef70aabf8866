//! Model shapes, reference parameter counts, layers against slow loop implementations, gradients
//! against central finite differences, and SGD against a hand-computed update.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use distillery::model::layers::{self, cross_entropy, one_hot};
use distillery::model::{forward, ConvNetSpec, MlpSpec, Mode, ModelSpec, Norm, Pooling};
use distillery::train::{LrSchedule, Sgd, TrainConfig};
use rand::{Rng, SeedableRng};

type B = Flex;
type AD = Autodiff<Flex>;

fn dev() -> burn::backend::flex::FlexDevice {
    Default::default()
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn t1(v: &[f32]) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev())
}

fn t4(v: &[f32], s: [usize; 4]) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(v.to_vec(), s), &dev())
}

fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().unwrap()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0f32, f32::max);
    assert!(
        worst < tol,
        "{what}: worst relative difference {worst:e} >= {tol:e}"
    );
}

#[test]
fn convnet_shapes_for_1_and_3_channels_at_8_28_32() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for (c, s, feat) in [
        (1, 8, 128),
        (3, 8, 128),
        (1, 28, 2048),
        (3, 28, 1152),
        (1, 32, 2048),
        (3, 32, 2048),
    ] {
        let spec = ConvNetSpec::reference([c, s, s], 10);
        assert_eq!(spec.feature_dim(), feat, "{c}x{s}x{s}");
        let mut m = ModelSpec::ConvNet(spec).init::<B, _>(&mut rng, &dev());
        let x = t4(&rand_vec(2 * c * s * s, 1), [2, c, s, s]);
        assert_eq!(m.embed(x.clone(), Mode::Eval).dims(), [2, feat]);
        assert_eq!(m.forward(x, Mode::Train).dims(), [2, 10]);
    }
}

#[test]
fn reference_parameter_counts() {
    // REFERENCE.md §1.1: MNIST 317,706; CIFAR-10 320,010; CIFAR-100 504,420.
    let count = |input, k| ModelSpec::ConvNet(ConvNetSpec::reference(input, k)).num_params();
    assert_eq!(count([1, 28, 28], 10), 317_706);
    assert_eq!(count([3, 32, 32], 10), 320_010);
    assert_eq!(count([3, 32, 32], 100), 504_420);
    let mlp = ModelSpec::Mlp(MlpSpec {
        input: [1, 28, 28],
        num_classes: 10,
        hidden: 128,
    });
    assert_eq!(
        mlp.num_params(),
        784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    );
}

#[test]
fn variants_run_norm_and_pooling() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for norm in [Norm::Instance, Norm::Batch, Norm::Layer, Norm::None] {
        for pooling in [Pooling::Avg, Pooling::Max, Pooling::None] {
            let spec = ConvNetSpec {
                input: [3, 8, 8],
                num_classes: 4,
                width: 6,
                depth: 2,
                norm,
                pooling,
            };
            let mut m = ModelSpec::ConvNet(spec.clone()).init::<B, _>(&mut rng, &dev());
            let out = m.forward(t4(&rand_vec(3 * 192, 2), [3, 3, 8, 8]), Mode::Train);
            assert_eq!(out.dims(), [3, 4], "{norm:?} {pooling:?}");
            assert!(host(out).iter().all(|v| v.is_finite()));
            assert_eq!(m.buffers.len(), if norm == Norm::Batch { 4 } else { 0 });
        }
    }
}

fn naive_conv(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    wt: &[f32],
    b: &[f32],
    o: usize,
    p: usize,
) -> Vec<f32> {
    let (ho, wo) = (h + 2 * p - 2, w + 2 * p - 2);
    let mut out = vec![0f32; n * o * ho * wo];
    for ni in 0..n {
        for oi in 0..o {
            for y in 0..ho {
                for xx in 0..wo {
                    let mut s = b[oi];
                    for ci in 0..c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (y + ky, xx + kx);
                                if iy < p || ix < p || iy - p >= h || ix - p >= w {
                                    continue;
                                }
                                s += wt[((oi * c + ci) * 3 + ky) * 3 + kx]
                                    * x[((ni * c + ci) * h + iy - p) * w + ix - p];
                            }
                        }
                    }
                    out[((ni * o + oi) * ho + y) * wo + xx] = s;
                }
            }
        }
    }
    out
}

#[test]
fn conv_matches_naive_loops() {
    for p in [1, 3] {
        let s = [2, 3, 5, 6];
        let x = rand_vec(180, 3);
        let (wt, b) = (rand_vec(4 * 3 * 9, 4), rand_vec(4, 5));
        let got = host(layers::conv3x3(t4(&x, s), t1(&wt), t1(&b), 3, 4, p));
        assert_close(&got, &naive_conv(&x, s, &wt, &b, 4, p), 1e-5, "conv3x3");
    }
}

#[test]
fn norms_match_naive_loops() {
    let s = [2, 3, 4, 5];
    let x = rand_vec(120, 6);
    let (g, b) = (rand_vec(3, 7), rand_vec(3, 8));
    let hw = 20;
    // Instance norm: per (n, c) over h*w, biased variance, eps 1e-5.
    let mut want = vec![0f32; 120];
    for nc in 0..6 {
        let v = &x[nc * hw..(nc + 1) * hw];
        let m = v.iter().sum::<f32>() / hw as f32;
        let var = v.iter().map(|a| (a - m).powi(2)).sum::<f32>() / hw as f32;
        for i in 0..hw {
            want[nc * hw + i] = (v[i] - m) / (var + 1e-5).sqrt() * g[nc % 3] + b[nc % 3];
        }
    }
    let got = host(layers::instance_norm(t4(&x, s), t1(&g), t1(&b)));
    assert_close(&got, &want, 1e-4, "instance norm");
    // Batch norm (train): per channel over n*h*w; running stats updated with momentum 0.1.
    let mut run = vec![t1(&[0.0; 3]), t1(&[1.0; 3])];
    let got = host(layers::batch_norm(
        t4(&x, s),
        t1(&g),
        t1(&b),
        &mut run,
        true,
    ));
    for c in 0..3 {
        let vals: Vec<f32> = (0..2)
            .flat_map(|n| x[(n * 3 + c) * hw..(n * 3 + c + 1) * hw].to_vec())
            .collect();
        let m = vals.iter().sum::<f32>() / 40.0;
        let var = vals.iter().map(|a| (a - m).powi(2)).sum::<f32>() / 40.0;
        for n in 0..2 {
            for i in 0..hw {
                let k = (n * 3 + c) * hw + i;
                let want = (x[k] - m) / (var + 1e-5).sqrt() * g[c] + b[c];
                assert!((got[k] - want).abs() < 1e-4, "batch norm at {k}");
            }
        }
        let rm = host(run[0].clone())[c];
        let rv = host(run[1].clone())[c];
        assert!((rm - 0.1 * m).abs() < 1e-6, "running mean");
        assert!(
            (rv - (0.9 + 0.1 * var * 40.0 / 39.0)).abs() < 1e-5,
            "running var (unbiased)"
        );
    }
    // Layer norm over (c, h, w) with element-wise affine.
    let (g2, b2) = (rand_vec(60, 9), rand_vec(60, 10));
    let got = host(layers::layer_norm(t4(&x, s), t1(&g2), t1(&b2)));
    for n in 0..2 {
        let v = &x[n * 60..(n + 1) * 60];
        let m = v.iter().sum::<f32>() / 60.0;
        let var = v.iter().map(|a| (a - m).powi(2)).sum::<f32>() / 60.0;
        for i in 0..60 {
            let want = (v[i] - m) / (var + 1e-5).sqrt() * g2[i] + b2[i];
            assert!((got[n * 60 + i] - want).abs() < 1e-4, "layer norm");
        }
    }
}

#[test]
fn pooling_linear_and_loss_match_naive() {
    let s = [1, 2, 5, 7]; // odd sizes: the last row and column are dropped
    let x = rand_vec(70, 11);
    let avg = host(layers::avg_pool2(t4(&x, s)));
    let max = host(layers::max_pool2(t4(&x, s)));
    assert_eq!(avg.len(), 2 * 2 * 3);
    for c in 0..2 {
        for y in 0..2 {
            for xx in 0..3 {
                let v: Vec<f32> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(dy, dx)| x[(c * 5 + 2 * y + dy) * 7 + 2 * xx + dx])
                    .collect();
                let k = (c * 2 + y) * 3 + xx;
                assert!((avg[k] - v.iter().sum::<f32>() / 4.0).abs() < 1e-6);
                assert_eq!(max[k], v.iter().cloned().fold(f32::MIN, f32::max));
            }
        }
    }
    let (xin, w, b) = (rand_vec(6, 12), rand_vec(12, 13), rand_vec(4, 14));
    let xt = Tensor::<B, 2>::from_data(TensorData::new(xin.clone(), [2, 3]), &dev());
    let got = host(layers::linear(xt.clone(), t1(&w), t1(&b), 3, 4));
    for n in 0..2 {
        for o in 0..4 {
            let want = b[o] + (0..3).map(|i| w[o * 3 + i] * xin[n * 3 + i]).sum::<f32>();
            assert!((got[n * 4 + o] - want).abs() < 1e-5);
        }
    }
    let logits = Tensor::<B, 2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0], [2, 3]),
        &dev(),
    );
    let ce = host(cross_entropy(logits, one_hot::<B>(&[1, 0], 3, &dev())))[0];
    let lse = |v: [f32; 3]| v.iter().map(|a| a.exp()).sum::<f32>().ln();
    let want = ((lse([1.0, 2.0, 0.5]) - 2.0) + (lse([-1.0, 0.0, 3.0]) + 1.0)) / 2.0;
    assert!((ce - want).abs() < 1e-5, "cross entropy {ce} vs {want}");
}

fn loss_at(
    spec: &ModelSpec,
    params: &[Vec<f32>],
    x: &[f32],
    shape: [usize; 4],
    labels: &[usize],
) -> f32 {
    let p: Vec<Tensor<B, 1>> = params.iter().map(|v| t1(v)).collect();
    let logits = forward(spec, &p, &mut [], t4(x, shape), Mode::Train);
    host(cross_entropy(
        logits,
        one_hot::<B>(labels, spec.num_classes(), &dev()),
    ))[0]
}

#[test]
fn parameter_gradients_match_finite_differences() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for (norm, pooling) in [
        (Norm::Instance, Pooling::Avg),
        (Norm::Layer, Pooling::Max),
        (Norm::None, Pooling::Avg),
    ] {
        let spec = ModelSpec::ConvNet(ConvNetSpec {
            input: [2, 6, 6],
            num_classes: 3,
            width: 4,
            depth: 2,
            norm,
            pooling,
        });
        let params = spec.init_host(&mut rng);
        let shape = [3, 2, 6, 6];
        let x = rand_vec(216, 21);
        let labels = [0, 2, 1];
        let p_ad: Vec<Tensor<AD, 1>> = params
            .iter()
            .map(|v| {
                Tensor::<AD, 1>::from_data(TensorData::new(v.clone(), [v.len()]), &dev())
                    .require_grad()
            })
            .collect();
        let xa = Tensor::<AD, 4>::from_data(TensorData::new(x.clone(), shape), &dev());
        let loss = cross_entropy(
            forward(&spec, &p_ad, &mut [], xa, Mode::Train),
            one_hot::<AD>(&labels, 3, &dev()),
        );
        let grads = loss.backward();
        // Directional derivative per parameter tensor: (L(p + e d) - L(p - e d)) / 2e against g . d,
        // with d a random unit direction (robust to f32 rounding and ReLU kinks).
        let eps = 2e-3f32;
        let mut worst = 0f32;
        for (k, p) in p_ad.iter().enumerate() {
            let g = host(p.grad(&grads).unwrap());
            let mut d = rand_vec(g.len(), 100 + k as u64);
            let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt();
            d.iter_mut().for_each(|v| *v /= norm);
            let shifted = |sign: f32| {
                let mut q = params.clone();
                q[k].iter_mut()
                    .zip(&d)
                    .for_each(|(v, dv)| *v += sign * eps * dv);
                loss_at(&spec, &q, &x, shape, &labels)
            };
            let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps);
            let an: f32 = g.iter().zip(&d).map(|(a, b)| a * b).sum();
            let err = (fd - an).abs() / (fd.abs().max(an.abs()) + 1e-3);
            worst = worst.max(err);
            assert!(err < 2e-2, "{norm:?}/{pooling:?} param {k}: autodiff {an} vs finite difference {fd} (relative error {err:e})");
        }
        eprintln!("{norm:?}/{pooling:?}: worst relative error {worst:e}");
    }
}

#[test]
fn sgd_matches_hand_computed_updates() {
    let (lr, mom, wd) = (0.1f64, 0.9f64, 0.01f64);
    let mut opt = Sgd::<B>::new(mom, wd);
    let mut params = vec![t1(&[1.0, -2.0])];
    let grads = [[0.5f64, 0.1], [0.2, -0.3], [-0.4, 0.0]];
    // The slow, obvious version of PyTorch's SGD.
    let (mut p, mut buf) = ([1.0f64, -2.0], [0.0f64; 2]);
    for (step, g) in grads.iter().enumerate() {
        for i in 0..2 {
            let d = g[i] + wd * p[i];
            buf[i] = if step == 0 { d } else { mom * buf[i] + d };
            p[i] -= lr * buf[i];
        }
        opt.step(&mut params, vec![t1(&[g[0] as f32, g[1] as f32])], lr);
    }
    let got = host(params[0].clone());
    for i in 0..2 {
        assert!(
            (got[i] as f64 - p[i]).abs() < 1e-6,
            "param {i}: {} vs {}",
            got[i],
            p[i]
        );
    }
}

#[test]
fn lr_schedules() {
    let mut c = TrainConfig::reference(10);
    assert_eq!(c.lr_at(5), 0.01);
    assert!((c.lr_at(6) - 0.001).abs() < 1e-12);
    c.schedule = LrSchedule::Cosine { min_factor: 0.01 };
    assert!((c.lr_at(0) - 0.01).abs() < 1e-12);
    assert!((c.lr_at(5) - 0.01 * (0.01 + 0.99 * 0.5)).abs() < 1e-9);
    c.schedule = LrSchedule::Step {
        milestones: vec![2, 4],
        gamma: 0.5,
    };
    assert_eq!([c.lr_at(1), c.lr_at(2), c.lr_at(4)], [0.01, 0.005, 0.0025]);
}

#[test]
fn resnet18_has_the_reference_shape_and_learns() {
    use distillery::model::ResNetSpec;
    // torchvision-style CIFAR ResNet-18 (kuangliu/pytorch-cifar): 11,173,962 parameters.
    let r = ModelSpec::ResNet18(ResNetSpec::reference([3, 32, 32], 10));
    assert_eq!(r.num_params(), 11_173_962);
    // 20 batch norms (stem, 16 in blocks, 3 shortcuts), each a running mean and variance.
    assert_eq!(r.buffers().len(), 40);
    // A narrow one on 1x28x28 (28 -> 28 -> 14 -> 7 -> 4) gives logits and 8 x width features.
    let spec = ModelSpec::ResNet18(ResNetSpec {
        input: [1, 28, 28],
        num_classes: 3,
        width: 4,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut m = spec.init::<B, _>(&mut rng, &dev());
    let x = t4(&rand_vec(2 * 784, 1), [2, 1, 28, 28]);
    assert_eq!(m.embed(x.clone(), Mode::Eval).dims(), [2, 32]);
    assert_eq!(m.forward(x, Mode::Train).dims(), [2, 3]);
    // It trains: well above chance on easy procedural 8x8 data.
    let mut d = distillery::data::synthetic::generate(150, [1, 8, 8], 3, 0.3, 2);
    let norm = d.channel_stats();
    d.normalize(&norm);
    let spec = ModelSpec::ResNet18(ResNetSpec {
        input: [1, 8, 8],
        num_classes: 3,
        width: 4,
    });
    let mut m = spec.init::<B, _>(&mut rng, &dev());
    let cfg = TrainConfig {
        batch_size: 32,
        lr: 0.05,
        ..TrainConfig::reference(15)
    };
    distillery::train::Training::<AD>::new(&cfg, &dev())
        .run(&mut m, &d, &mut rng)
        .unwrap();
    let (acc, _) = distillery::train::evaluate(&mut m, &d, 64, &dev());
    assert!(acc > 0.8, "training accuracy {acc} (chance 1/3)");
}
