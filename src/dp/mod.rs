//! Differentially private distribution matching (FedDM's private variant, Xiong et al. 2023):
//! each iteration Poisson-samples every class's real images, scales each image's embedding to L2
//! norm at most `clip`, adds Gaussian noise of standard deviation `noise_multiplier * clip` to the
//! per-class sum and divides by the expected batch size; the synthetic images only ever see these
//! noisy means. Classes hold disjoint images, so one iteration is one sampled Gaussian step for
//! any image, and [`rdp`] composes the iterations into the (ε, δ) a run reports.
//!
//! The noise is drawn from the run's seed, so a simulation is repeatable; anyone who knows the
//! seed can remove it. A deployment would draw it from the operating system's entropy.

pub mod rdp;

use crate::error::{Problem, Problems};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// `[distill] dp = { noise_multiplier = 1.0, clip = 1.0, delta = 1e-5 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSettings {
    /// The noise's standard deviation over the sensitivity `clip` (σ).
    pub noise_multiplier: f64,
    /// The largest L2 norm an image's embedding keeps.
    #[serde(default = "one")]
    pub clip: f64,
    /// The δ of the (ε, δ) reported.
    #[serde(default = "delta")]
    pub delta: f64,
}

fn one() -> f64 {
    1.0
}

fn delta() -> f64 {
    1e-5
}

impl DpSettings {
    /// The values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        for (key, v) in [
            ("dp.noise_multiplier", self.noise_multiplier),
            ("dp.clip", self.clip),
        ] {
            p.require(v.is_finite() && v > 0.0, key, v, "a positive number");
        }
        let d = self.delta;
        p.require(d > 0.0 && d < 1.0, "dp.delta", d, "a delta in (0, 1)");
        p.into_vec()
    }

    /// What a run of `steps` iterations with per-class sampling rate at most `q` spends.
    pub fn spent(&self, q: f64, steps: usize) -> DpSpent {
        let (epsilon, order) = rdp::spent(q, self.noise_multiplier, steps, self.delta);
        DpSpent {
            settings: self.clone(),
            sampling_rate: q,
            steps,
            epsilon,
            order,
            accountant: "Rényi DP of the Poisson-sampled Gaussian mechanism (Mironov et al. 2019), dp-accounting's orders, improved conversion (Balle et al. 2020)".into(),
        }
    }
}

/// The privacy a DP set cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpSpent {
    /// The mechanism's settings.
    pub settings: DpSettings,
    /// The largest per-class sampling rate (batch_real over the class's images, at most 1).
    pub sampling_rate: f64,
    /// Iterations composed.
    pub steps: usize,
    /// ε at the settings' δ.
    pub epsilon: f64,
    /// The Rényi order that gave it.
    pub order: f64,
    /// How it was computed.
    pub accountant: String,
}

/// What private DM cost the clients of a federated strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientsSpent {
    /// The mechanism's settings.
    pub settings: DpSettings,
    /// The largest ε of any client (each client's guarantee is its own).
    pub epsilon_max: f64,
    /// Per client that distilled.
    pub clients: Vec<ClientSpent>,
    /// How it was computed.
    pub accountant: String,
}

/// What one client's private DM cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientSpent {
    /// The client.
    pub client: usize,
    /// Its largest per-class sampling rate.
    pub sampling_rate: f64,
    /// Iterations composed over the rounds it worked in.
    pub steps: usize,
    /// ε at the settings' δ.
    pub epsilon: f64,
}

impl DpSettings {
    /// What clients `(id, sampling rate, steps)` spent.
    pub fn clients_spent(
        &self,
        clients: impl Iterator<Item = (usize, f64, usize)>,
    ) -> ClientsSpent {
        let clients: Vec<ClientSpent> = clients
            .map(|(client, q, steps)| ClientSpent {
                client,
                sampling_rate: q,
                steps,
                epsilon: self.spent(q, steps).epsilon,
            })
            .collect();
        ClientsSpent {
            settings: self.clone(),
            epsilon_max: clients.iter().map(|c| c.epsilon).fold(0.0, f64::max),
            clients,
            accountant: "per client as for a distill run of its partition (the classes it distils), composed over the rounds it worked in".into(),
        }
    }
}

/// The per-class sampling rate of DM's batches: `batch_real` of a class's `n` images.
pub fn rate(batch_real: usize, n: usize) -> f64 {
    (batch_real as f64 / n.max(1) as f64).min(1.0)
}

/// The largest sampling rate over the classes of `counts` that hold at least `min` images (and
/// at least one): the rate any image's privacy is accounted at.
pub fn max_rate(batch_real: usize, counts: &[usize], min: usize) -> f64 {
    counts
        .iter()
        .filter(|&&n| n >= min.max(1))
        .map(|&n| rate(batch_real, n))
        .fold(0.0, f64::max)
}

/// A Poisson sample of `class` (each image kept with probability `q`).
pub fn poisson<R: Rng>(class: &[usize], q: f64, rng: &mut R) -> Vec<usize> {
    class
        .iter()
        .copied()
        .filter(|_| rng.random::<f64>() < q)
        .collect()
}

/// Each row of `e` (`[n, F]`) scaled to L2 norm at most `clip`.
pub fn clipped<B: Backend>(e: Tensor<B, 2>, clip: f64) -> Tensor<B, 2> {
    let norms = e
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    let scale = norms.recip().mul_scalar(clip).clamp_max(1.0);
    e * scale
}

/// The noisy mean `[1, F]` of embeddings `e` (`[n, F]`, n may be 0: None): each row scaled to
/// norm at most `clip`, summed, N(0, (σ·clip)²) noise from `seed` added, divided by `expected`.
pub fn noisy_mean<B: Backend>(
    e: Option<Tensor<B, 2>>,
    dim: usize,
    dp: &DpSettings,
    expected: f64,
    seed: u64,
    device: &B::Device,
) -> Tensor<B, 2> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sd = (dp.noise_multiplier * dp.clip) as f32;
    let noise: Vec<f32> = (0..dim)
        .map(|_| sd * rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect();
    let noise = Tensor::<B, 1>::from_data(TensorData::new(noise, [dim]), device).reshape([1, dim]);
    let sum = match e {
        Some(e) => clipped(e, dp.clip).sum_dim(0) + noise,
        None => noise,
    };
    sum.div_scalar(expected.max(1.0))
}
