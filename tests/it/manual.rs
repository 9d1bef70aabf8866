//! The hand-written ConvNet backward (groundwork for trajectory matching) against autodiff.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use distillery::model::backward::{loss_and_grads, loss_and_grads_with, ConvGrads};
use distillery::model::layers::{cross_entropy, one_hot};
use distillery::model::{forward, ConvNetSpec, Mode, ModelSpec, Norm, Pooling};
use rand::{Rng, SeedableRng};

type AD = Autodiff<Flex>;

fn host<BK: Backend>(t: Tensor<BK, 1>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

/// Both ways of forming the convolution gradients.
fn compare(spec: ConvNetSpec) {
    compare_with(spec.clone(), ConvGrads::Conv);
    compare_with(spec, ConvGrads::Matmul);
}

fn compare_with(spec: ConvNetSpec, how: ConvGrads) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let ms = ModelSpec::ConvNet(spec.clone());
    let dev = Default::default();
    let p = ms.init_host(&mut rng);
    let [c, h, w] = spec.input;
    let n = 5;
    let x: Vec<f32> = (0..n * c * h * w)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let labels: Vec<usize> = (0..n).map(|i| i % spec.num_classes).collect();
    let xt = || Tensor::<AD, 4>::from_data(TensorData::new(x.clone(), [n, c, h, w]), &dev);
    let params: Vec<Tensor<AD, 1>> = p
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [v.len()]), &dev).require_grad())
        .collect();
    let y = one_hot::<AD>(&labels, spec.num_classes, &dev);
    let loss = cross_entropy(forward(&ms, &params, &mut [], xt(), Mode::Train), y.clone());
    let g = loss.backward();
    let (loss2, manual) = loss_and_grads_with(&spec, &params, xt(), y, how).expect("supported");
    let (l1, l2) = (
        loss.into_scalar().elem::<f64>(),
        loss2.into_scalar().elem::<f64>(),
    );
    assert!(
        (l1 - l2).abs() < 1e-6 * l1.abs().max(1.0),
        "loss {l1} vs {l2}"
    );
    let auto: Vec<Vec<f32>> = (0..params.len())
        .map(|i| host(params[i].grad(&g).unwrap()))
        .collect();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let total = norm(&auto.concat());
    for ((info, a), m) in ms.params().iter().zip(&auto).zip(manual) {
        let m = host(m.inner());
        assert_eq!(a.len(), m.len(), "{}", info.name);
        let diff: f64 = a
            .iter()
            .zip(&m)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let an = norm(a);
        // A conv bias before instance norm has an exactly zero gradient; autodiff returns
        // round-off there, so such tensors are compared against the whole gradient's size.
        let (rel, what) = if an < 1e-5 * total {
            (diff / total, "of the whole gradient")
        } else {
            (diff / an, "relative")
        };
        assert!(
            rel < 1e-4,
            "{how:?} {:?}/{:?} {}: hand-written vs autodiff gradient, error {rel:.2e} {what} (norm {an:.3e})",
            spec.norm,
            spec.pooling,
            info.name
        );
    }
}

#[test]
fn hand_written_gradients_equal_autodiff_for_every_layer_type() {
    for (norm, pooling, input) in [
        (Norm::Instance, Pooling::Avg, [1, 28, 28]),
        (Norm::None, Pooling::Avg, [3, 8, 8]),
        (Norm::Instance, Pooling::None, [1, 6, 6]),
        (Norm::Instance, Pooling::Avg, [3, 9, 9]),
    ] {
        compare(ConvNetSpec {
            input,
            num_classes: 4,
            width: 5,
            depth: 2,
            norm,
            pooling,
        });
    }
}

#[test]
fn unsupported_layers_are_declined() {
    let spec = ConvNetSpec {
        norm: Norm::Batch,
        ..ConvNetSpec::reference([1, 8, 8], 3)
    };
    let dev = Default::default();
    let ms = ModelSpec::ConvNet(spec.clone());
    let p: Vec<Tensor<Flex, 1>> = ms
        .init_host(&mut rand::rngs::StdRng::seed_from_u64(0))
        .into_iter()
        .map(|v| {
            let n = v.len();
            Tensor::from_data(TensorData::new(v, [n]), &dev)
        })
        .collect();
    let x = Tensor::<Flex, 4>::zeros([1, 1, 8, 8], &dev);
    assert!(loss_and_grads(&spec, &p, x, one_hot::<Flex>(&[0], 3, &dev)).is_none());
}
