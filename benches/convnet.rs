//! ConvNet-3 (width 128) forward + backward + SGD step on a batch of 256 28x28x1 images:
//! median milliseconds per iteration on each CPU backend compiled in.
//!
//! cargo bench --bench convnet                      # flex (the default CPU backend)
//! cargo bench --bench convnet --features ndarray   # flex and ndarray
//! Options after `--`: `--iters N` (default 7), `--batch N` (default 256), `--threads` is taken
//! from RAYON_NUM_THREADS / the machine.

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use distillery::model::layers::one_hot;
use distillery::model::{ConvNetSpec, ModelSpec};
use distillery::train::{train_step, Sgd};
use rand::{Rng, SeedableRng};
use std::time::Instant;

mod common;
use common::peak_rss_mib;

fn bench<B: AutodiffBackend>(name: &str, device: B::Device, batch: usize, iters: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let spec = ModelSpec::ConvNet(ConvNetSpec::reference([1, 28, 28], 10));
    let mut model = spec.init::<B::InnerBackend, _>(&mut rng, &device);
    let x: Vec<f32> = (0..batch * 784)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let mut opt = Sgd::new(0.9, 5e-4);
    let mut times = Vec::new();
    for i in 0..iters + 2 {
        let xs = Tensor::<B, 4>::from_data(TensorData::new(x.clone(), [batch, 1, 28, 28]), &device);
        let ys = one_hot::<B>(&labels, 10, &device);
        let t = Instant::now();
        let loss = train_step::<B>(&mut model, &mut opt, xs, ys, 0.01);
        let _ = loss.into_scalar();
        let _ = model.params[0].clone().sum().into_scalar();
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<10} ConvNet-3 w128, batch {batch} 28x28x1, fwd+bwd+step: median {:.0} ms (min {:.0}, max {:.0}, {} runs), peak RSS {:.0} MiB",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len(),
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (iters, batch) = (get("--iters", 7), get("--batch", 256));
    bench::<Autodiff<burn::backend::Flex>>("flex", Default::default(), batch, iters);
    #[cfg(feature = "ndarray")]
    bench::<Autodiff<burn::backend::NdArray>>("ndarray", Default::default(), batch, iters);
}
