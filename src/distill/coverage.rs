//! SelMatch's coverage diagnostic for any synthetic set: in the feature space of a network
//! trained on the real data, the fraction of real test samples within radius r of some synthetic
//! sample, r being the mean nearest-neighbour distance among real training samples; overall and
//! for the easy and hard halves of the test samples (by EL2N under the same network).

use super::selmatch::difficulty::{coverage, el2n, mean_nn_distance};
use super::selmatch::scores::logits;
use super::SyntheticSet;
use crate::data::Dataset;
use crate::error::Result;
use crate::model::ModelSpec;
use crate::model::{Mode, Model};
use crate::train::{batch_images, TrainConfig, Training};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// A set's coverage figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// The radius r (mean nearest-neighbour distance among the real training samples used).
    pub radius: f64,
    /// Fraction of all test samples covered.
    pub overall: f64,
    /// Fraction of the easier half covered.
    pub easy: f64,
    /// Fraction of the harder half covered.
    pub hard: f64,
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.4} (easy {:.4}, hard {:.4}, r {:.3})",
            self.overall, self.easy, self.hard, self.radius
        )
    }
}

/// The feature space: a trained network's embeddings of the real training subset (for r) and of
/// the test set, with each test sample's difficulty.
pub struct FeatureSpace {
    radius: f64,
    easy: Vec<Vec<f32>>,
    hard: Vec<Vec<f32>>,
}

/// Every image's embedding (evaluation mode).
pub fn embed<B: Backend>(
    model: &mut Model<B>,
    data: &Dataset,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut feats = Vec::with_capacity(data.len());
    for chunk in idx.chunks(500) {
        let t = model.embed(batch_images::<B>(data, chunk, device), Mode::Eval);
        let [n, d] = t.dims();
        let v = t
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32");
        feats.extend((0..n).map(|i| v[i * d..(i + 1) * d].to_vec()));
    }
    feats
}

impl FeatureSpace {
    /// Builds the space from `model`: r over `train_sample` (a subset of the real training
    /// set), the test set split at its median EL2N into easy and hard halves.
    pub fn new<B: Backend>(
        model: &mut Model<B>,
        train_sample: &Dataset,
        test: &Dataset,
        device: &B::Device,
    ) -> Self {
        let radius = mean_nn_distance(&embed(model, train_sample, device));
        let test_f = embed(model, test, device);
        // Only the test images need logits (their EL2N splits them into halves).
        let k = model.spec.num_classes();
        let score: Vec<f64> = logits(model, test, device)
            .chunks_exact(k)
            .zip(&test.labels)
            .map(|(l, &y)| el2n(l, y))
            .collect();
        let mut order: Vec<usize> = (0..test.len()).collect();
        order.sort_by(|&a, &b| score[a].total_cmp(&score[b]).then(a.cmp(&b)));
        let half = order.len() / 2;
        let pick = |o: &[usize]| o.iter().map(|&i| test_f[i].clone()).collect();
        FeatureSpace {
            radius,
            easy: pick(&order[..half]),
            hard: pick(&order[half..]),
        }
    }

    /// The coverage of a set whose embeddings are `centres`.
    pub fn coverage(&self, centres: &[Vec<f32>]) -> Coverage {
        let (e, h) = (
            coverage(&self.easy, centres, self.radius),
            coverage(&self.hard, centres, self.radius),
        );
        let (ne, nh) = (self.easy.len() as f64, self.hard.len() as f64);
        Coverage {
            radius: self.radius,
            overall: if ne + nh > 0.0 {
                (e * ne + h * nh) / (ne + nh)
            } else {
                0.0
            },
            easy: e,
            hard: h,
        }
    }
}

/// A trained feature network and its coverage space, built once per run and asked for the
/// coverage of each set (at the end, and every `coverage_every` iterations while distilling).
pub struct CoverageProbe<B: Backend> {
    net: Model<B>,
    space: FeatureSpace,
}

/// The coverage network: a `spec` network trained on `train` for `epochs` (at least one) with the
/// reference protocol, seeded by `seed`; and the generator, which the probe goes on drawing from.
pub fn feature_net<AD: AutodiffBackend>(
    spec: &ModelSpec,
    train: &Dataset,
    epochs: usize,
    seed: u64,
    device: &AD::Device,
) -> Result<(Model<AD::InnerBackend>, rand::rngs::StdRng)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xc0e7);
    let mut net = spec.init::<AD::InnerBackend, _>(&mut rng, device);
    let cfg = TrainConfig::reference(epochs.max(1));
    Training::<AD>::new(&cfg, device).run(&mut net, train, &mut rng)?;
    Ok((net, rng))
}

/// The coverage probe: a `spec` network trained on `train` for `epochs` (seeded), the radius from
/// `sample` real training images (a seeded subset), the whole `test` set queried.
pub fn probe<AD: AutodiffBackend>(
    spec: &ModelSpec,
    train: &Dataset,
    test: &Dataset,
    (epochs, sample): (usize, usize),
    seed: u64,
    device: &AD::Device,
) -> Result<CoverageProbe<AD::InnerBackend>> {
    let (mut net, mut rng) = feature_net::<AD>(spec, train, epochs, seed, device)?;
    let n = sample.clamp(2, train.len().max(2)).min(train.len());
    let mut idx = rand::seq::index::sample(&mut rng, train.len(), n).into_vec();
    idx.sort_unstable();
    let space = FeatureSpace::new(&mut net, &train.subset(&idx), test, device);
    Ok(CoverageProbe { net, space })
}

impl<B: Backend> CoverageProbe<B> {
    /// The trained feature network (the privacy audit measures distances in its space too).
    pub fn net(&self) -> &Model<B> {
        &self.net
    }

    /// The coverage of `set` in the probe's feature space.
    pub fn measure(&mut self, set: &SyntheticSet, device: &B::Device) -> Coverage {
        let f = embed(&mut self.net, &set.to_dataset(), device);
        self.space.coverage(&f)
    }
}
