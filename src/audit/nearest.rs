//! Nearest-real distances: for each query vector (a synthetic image, or its embedding), the
//! Euclidean distance to the nearest of a set of real vectors, and which one it is; the real
//! data's own nearest-neighbour distances, which set the near-copy threshold. Exact search
//! (every pair), queries in parallel; each query's answer is independent of the others and of
//! the thread count.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Rows of `dim` values, flat.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    /// The values, row-major.
    pub values: &'a [f32],
    /// Values per row.
    pub dim: usize,
}

impl<'a> Rows<'a> {
    /// `values` as rows of `dim` (a trailing partial row is ignored).
    pub fn new(values: &'a [f32], dim: usize) -> Self {
        Rows { values, dim }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// Squared distance in f32 with eight partial sums (vectorised; used to rank candidates).
fn sq_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// The exact distance in f64 (reported figures).
pub fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((*x as f64) - (*y as f64)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The index of the row of `reals` nearest to `q` (the first of equals), skipping `skip`.
fn nearest_index(q: &[f32], reals: Rows<'_>, skip: Option<usize>) -> Option<usize> {
    let mut best: Option<(f32, usize)> = None;
    for j in 0..reals.len() {
        if Some(j) == skip {
            continue;
        }
        let d = sq_f32(q, reals.row(j));
        if best.is_none_or(|(b, _)| d < b) {
            best = Some((d, j));
        }
    }
    best.map(|(_, j)| j)
}

/// For each query row: (distance to the nearest real row, its index). Ranking is in f32, the
/// reported distance exact, so an exact copy reads 0.
pub fn nearest(queries: Rows<'_>, reals: Rows<'_>) -> Vec<(f64, usize)> {
    (0..queries.len())
        .into_par_iter()
        .map(|i| {
            let q = queries.row(i);
            match nearest_index(q, reals, None) {
                Some(j) => (distance(q, reals.row(j)), j),
                None => (f64::INFINITY, usize::MAX),
            }
        })
        .collect()
}

/// For each of the real rows at `sample`: the distance to its nearest *other* real row.
pub fn own_nearest(reals: Rows<'_>, sample: &[usize]) -> Vec<f64> {
    sample
        .par_iter()
        .map(|&i| {
            let q = reals.row(i);
            nearest_index(q, reals, Some(i)).map_or(f64::INFINITY, |j| distance(q, reals.row(j)))
        })
        .collect()
}

/// The `q`-quantile of `v` (linear between order statistics; NaN when empty).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// One space's nearest-real figures for a set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distances {
    /// Median distance from a set image to its nearest real image.
    pub median: f64,
    /// Mean of those distances.
    pub mean: f64,
    /// The smallest.
    pub min: f64,
    /// The near-copy threshold: the real images' own nearest-neighbour distance at the audit's
    /// quantile.
    pub threshold: f64,
    /// Set images closer than the threshold to some real image.
    pub near_copies: usize,
    /// Their share of the set.
    pub near_copy_share: f64,
}

impl Distances {
    /// The figures of nearest-real distances `d` against `threshold` (a near-copy is strictly
    /// closer than the threshold, or at distance 0).
    pub fn of(d: &[f64], threshold: f64) -> Distances {
        let near = d.iter().filter(|&&x| x < threshold || x == 0.0).count();
        Distances {
            median: quantile(d, 0.5),
            mean: d.iter().sum::<f64>() / d.len().max(1) as f64,
            min: d.iter().copied().fold(f64::INFINITY, f64::min),
            threshold,
            near_copies: near,
            near_copy_share: near as f64 / d.len().max(1) as f64,
        }
    }
}
