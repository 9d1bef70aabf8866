//! ZCA whitening, as MTT's reference applies it to CIFAR (kornia's `ZCAWhitening(eps = 0.1)`
//! fitted on the normalised training images): x' = (x - mean) W with
//! W = U diag(1 / sqrt(lambda + eps)) U^T, where U, lambda are the eigenvectors and eigenvalues of
//! the training images' covariance (unbiased, images flattened in NCHW order).

use super::Dataset;
use crate::error::{Error, Result};
use faer::{Mat, Side};

/// A fitted ZCA transform for images of one shape.
#[derive(Clone, Debug)]
pub struct Zca {
    /// Per-pixel mean of the training images (`c * h * w` values).
    pub mean: Vec<f64>,
    /// The symmetric whitening matrix W, `d x d` with d = `c * h * w`.
    pub matrix: Mat<f64>,
    /// The regulariser added to every eigenvalue.
    pub eps: f64,
}

impl Zca {
    /// Fits the transform to `data`'s images (at least two are needed).
    pub fn fit(data: &Dataset, eps: f64) -> Result<Zca> {
        let n = data.len();
        let d: usize = data.shape.iter().product();
        if n < 2 {
            return Err(Error::Setting(format!(
                "ZCA whitening needs at least 2 training images, got {n}"
            )));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::Setting(format!(
                "ZCA eps must be a finite number >= 0, got {eps}"
            )));
        }
        let mut mean = vec![0f64; d];
        for img in data.images.chunks_exact(d) {
            for (m, &v) in mean.iter_mut().zip(img) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let xc = Mat::from_fn(n, d, |i, j| data.images[i * d + j] as f64 - mean[j]);
        let mut cov = xc.transpose() * &xc;
        let scale = 1.0 / (n as f64 - 1.0);
        for j in 0..d {
            for i in 0..d {
                cov[(i, j)] *= scale;
            }
        }
        let evd = cov
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| Error::Numerics(format!("ZCA eigendecomposition failed: {e:?}")))?;
        let (u, s) = (evd.U(), evd.S().column_vector());
        // Eigenvalues of a covariance are >= 0; rounding can leave tiny negatives.
        let r: Vec<f64> = (0..d).map(|k| 1.0 / (s[k].max(0.0) + eps).sqrt()).collect();
        if let Some(k) = r.iter().position(|v| !v.is_finite()) {
            return Err(Error::Numerics(format!(
                "ZCA: eigenvalue {} gives no finite inverse square root with eps = {eps} (use eps > 0)",
                s[k]
            )));
        }
        let us = Mat::from_fn(d, d, |i, k| u[(i, k)] * r[k]);
        let matrix = &us * u.transpose();
        Ok(Zca { mean, matrix, eps })
    }

    /// Whitens `data`'s images in place (they must have the shape the transform was fitted on).
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        let d = self.mean.len();
        let have: usize = data.shape.iter().product();
        if have != d {
            return Err(Error::Setting(format!(
                "ZCA was fitted on images of {d} values, these have {have}"
            )));
        }
        // In blocks of rows, so whitening a large set needs little extra memory.
        const BLOCK: usize = 2048;
        for chunk in data.images.chunks_mut(BLOCK * d) {
            let rows = chunk.len() / d;
            let x = Mat::from_fn(rows, d, |i, j| chunk[i * d + j] as f64 - self.mean[j]);
            let y = &x * &self.matrix;
            for i in 0..rows {
                for j in 0..d {
                    chunk[i * d + j] = y[(i, j)] as f32;
                }
            }
        }
        Ok(())
    }
}
