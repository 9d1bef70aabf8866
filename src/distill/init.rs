//! Where a synthetic set starts, and the selection baselines: Gaussian noise, random real images
//! per class, herding and k-center in the embedding of a ConvNet.

use crate::data::Dataset;
use crate::model::{Mode, Model};
use crate::train::batch_images;
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// How to pick or make the starting images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitKind {
    /// Standard Gaussian noise (in normalised space).
    Noise,
    /// Random real images of each class.
    Real,
    /// Herding: greedily match the class mean embedding.
    Herding,
    /// K-center: greedy farthest points in embedding space.
    Kcenter,
}

impl InitKind {
    /// The name used in scenarios and results.
    pub fn name(self) -> &'static str {
        match self {
            InitKind::Noise => "noise",
            InitKind::Real => "random",
            InitKind::Herding => "herding",
            InitKind::Kcenter => "kcenter",
        }
    }
}

/// `ipc` images per class of Gaussian noise, labelled by class.
pub fn noise<R: Rng>(data: &Dataset, ipc: usize, rng: &mut R) -> Dataset {
    let k = data.num_classes();
    let n = k * ipc;
    Dataset {
        images: (0..n * data.image_len())
            .map(|_| StandardNormal.sample(rng))
            .collect(),
        labels: (0..k).flat_map(|c| std::iter::repeat_n(c, ipc)).collect(),
        shape: data.shape,
        classes: data.classes.clone(),
    }
}

/// Embeddings (rows of `dim` features) of the images at `idx`, in batches of `batch`.
pub fn embed_rows<B: Backend>(
    model: &mut Model<B>,
    data: &Dataset,
    idx: &[usize],
    batch: usize,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_images::<B>(data, chunk, device);
        let e = model.embed(x, Mode::Eval);
        let [n, d] = e.dims();
        let v = e.into_data().convert::<f32>().into_vec::<f32>().unwrap();
        for i in 0..n {
            out.push(v[i * d..(i + 1) * d].to_vec());
        }
    }
    out
}

fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (*x - *y) as f64;
            d * d
        })
        .sum()
}

fn mean_row(rows: &[Vec<f32>]) -> Vec<f64> {
    let d = rows.first().map_or(0, Vec::len);
    let mut m = vec![0f64; d];
    for r in rows {
        for (a, &v) in m.iter_mut().zip(r) {
            *a += v as f64;
        }
    }
    for a in &mut m {
        *a /= rows.len().max(1) as f64;
    }
    m
}

/// Herding (Welling 2009, as iCaRL and the DC baselines use it): picks `k` rows one at a time,
/// each time the row that brings the mean of the picked rows closest to the mean of all rows.
/// Returns positions into `rows`, in the order picked.
pub fn herding(rows: &[Vec<f32>], k: usize) -> Vec<usize> {
    let mu = mean_row(rows);
    let d = mu.len();
    let mut sum = vec![0f64; d];
    let mut picked = Vec::new();
    let mut used = vec![false; rows.len()];
    for t in 1..=k.min(rows.len()) {
        let mut best = (f64::INFINITY, usize::MAX);
        for (i, r) in rows.iter().enumerate() {
            if used[i] {
                continue;
            }
            let dist: f64 = (0..d)
                .map(|j| {
                    let m = (sum[j] + r[j] as f64) / t as f64;
                    (mu[j] - m) * (mu[j] - m)
                })
                .sum();
            if dist < best.0 {
                best = (dist, i);
            }
        }
        used[best.1] = true;
        for (s, &v) in sum.iter_mut().zip(&rows[best.1]) {
            *s += v as f64;
        }
        picked.push(best.1);
    }
    picked
}

/// K-center greedy (Sener & Savarese 2018): starts from the row nearest the mean, then picks
/// the row farthest from everything picked so far. Returns positions into `rows`.
pub fn k_center(rows: &[Vec<f32>], k: usize) -> Vec<usize> {
    if rows.is_empty() || k == 0 {
        return Vec::new();
    }
    let mu: Vec<f32> = mean_row(rows).into_iter().map(|v| v as f32).collect();
    let first = (0..rows.len())
        .min_by(|&a, &b| sq_dist(&rows[a], &mu).total_cmp(&sq_dist(&rows[b], &mu)))
        .expect("non-empty");
    let mut picked = vec![first];
    let mut near: Vec<f64> = rows.iter().map(|r| sq_dist(r, &rows[first])).collect();
    while picked.len() < k.min(rows.len()) {
        let next = (0..rows.len())
            .max_by(|&a, &b| near[a].total_cmp(&near[b]))
            .expect("non-empty");
        picked.push(next);
        for (i, r) in rows.iter().enumerate() {
            near[i] = near[i].min(sq_dist(r, &rows[next]));
        }
    }
    picked
}

/// Selects `ipc` images per class with `kind` (Real, Herding or Kcenter), returning dataset
/// indices grouped by class. Herding and k-center embed at most `pool` random candidates per
/// class with `embedder` (all of the class when `pool` is `None`).
pub fn select<B: Backend, R: Rng>(
    data: &Dataset,
    ipc: usize,
    kind: InitKind,
    embedder: Option<&mut Model<B>>,
    pool: Option<usize>,
    rng: &mut R,
    device: &B::Device,
) -> Vec<usize> {
    let mut out = Vec::new();
    let mut embedder = embedder;
    for mut cls in data.class_indices() {
        cls.shuffle(rng);
        match (kind, embedder.as_deref_mut()) {
            (InitKind::Herding | InitKind::Kcenter, Some(m)) => {
                if let Some(p) = pool {
                    cls.truncate(p.max(ipc));
                }
                let rows = embed_rows(m, data, &cls, 256, device);
                let pos = if kind == InitKind::Herding {
                    herding(&rows, ipc)
                } else {
                    k_center(&rows, ipc)
                };
                out.extend(pos.into_iter().map(|p| cls[p]));
            }
            _ => out.extend(cls.into_iter().take(ipc)),
        }
    }
    out
}
