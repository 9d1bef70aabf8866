//! FRePo's loss: kernel ridge regression on a network's last-layer features (the reference's
//! `nfr`). With synthetic features `F_s` (n x f), labels `Y_s` (n x k), a real batch's features
//! `F_t` (m x f) and labels `Y_t`:
//! `K_ss = F_s F_sᵀ`, `A = K_ss + reg · tr(K_ss) / n · I`, `P = F_t F_sᵀ A⁻¹ Y_s`, and the loss
//! is `0.5 · Σ (P - Y_t)² / m` (the squared error summed over classes, averaged over the batch).
//!
//! Computed in closed form on the host in f64, the small n x n system solved with `faer`
//! (Cholesky, or LU when `A` is not numerically positive definite), with the gradients with
//! respect to `F_s` and `Y_s` written out by hand (tests compare them with finite differences
//! and the solve with a dense reference):
//! `G = (P - Y_t) / m`, `α = A⁻¹ Y_s`, `β = A⁻¹ K_tsᵀ G`, `dY_s = β`, `dA = -β αᵀ`,
//! `dK_ss = dA + reg / n · tr(dA) · I`, `dF_s = (dK_ss + dK_ssᵀ) F_s + (G αᵀ)ᵀ F_t`.

use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef, Side};

/// Row-major `rows x cols` values as a matrix.
pub fn mat(v: &[f64], rows: usize, cols: usize) -> Mat<f64> {
    Mat::from_fn(rows, cols, |i, j| v[i * cols + j])
}

/// A matrix's values, row-major.
pub fn values(m: MatRef<'_, f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            out.push(m[(i, j)]);
        }
    }
    out
}

/// `A⁻¹ B` for symmetric `A`: Cholesky, or partial-pivot LU when Cholesky fails.
pub fn solve(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    match a.llt(Side::Lower) {
        Ok(l) => l.solve(b),
        Err(_) => a.partial_piv_lu().solve(b),
    }
}

/// The regularised kernel `K_ss + reg · tr(K_ss) / n · I` of features `fs`.
pub fn regularised(fs: MatRef<'_, f64>, reg: f64) -> Mat<f64> {
    let n = fs.nrows();
    let mut a = fs * fs.transpose();
    let ridge = reg * (0..n).map(|i| a[(i, i)]).sum::<f64>() / n as f64;
    for i in 0..n {
        a[(i, i)] += ridge;
    }
    a
}

/// The KRR predictions `F_t F_sᵀ A⁻¹ Y_s` for target features `ft`.
pub fn predict(
    fs: MatRef<'_, f64>,
    ys: MatRef<'_, f64>,
    ft: MatRef<'_, f64>,
    reg: f64,
) -> Mat<f64> {
    let a = regularised(fs, reg);
    let alpha = solve(a.as_ref(), ys);
    ft * fs.transpose() * alpha
}

/// The loss and its gradients with respect to the synthetic features and labels.
pub struct KrrGrads {
    /// `0.5 · Σ (P - Y_t)² / m`.
    pub loss: f64,
    /// d loss / d F_s (n x f).
    pub features: Mat<f64>,
    /// d loss / d Y_s (n x k).
    pub labels: Mat<f64>,
}

/// The KRR loss of synthetic features `fs` with labels `ys` on target features `ft` with labels
/// `yt`, and its gradients.
pub fn loss_and_grads(
    fs: MatRef<'_, f64>,
    ys: MatRef<'_, f64>,
    ft: MatRef<'_, f64>,
    yt: MatRef<'_, f64>,
    reg: f64,
) -> KrrGrads {
    let (n, m) = (fs.nrows(), ft.nrows());
    let a = regularised(fs, reg);
    let alpha = solve(a.as_ref(), ys);
    let kts = ft * fs.transpose();
    let r = &kts * &alpha - yt;
    let loss = 0.5 * values(r.as_ref()).iter().map(|v| v * v).sum::<f64>() / m as f64;
    let g = r * (1.0 / m as f64);
    let beta = solve(a.as_ref(), (kts.transpose() * &g).as_ref());
    let mut dk = -(&beta * alpha.transpose());
    let tr = (0..n).map(|i| dk[(i, i)]).sum::<f64>();
    let shift = reg / n as f64 * tr;
    for i in 0..n {
        dk[(i, i)] += shift;
    }
    let dkts = &g * alpha.transpose();
    let features = (&dk + dk.transpose()) * fs + dkts.transpose() * ft;
    KrrGrads {
        loss,
        features,
        labels: beta,
    }
}

/// The reference's label term `mean_i -min(top1_i - top2_i, 1/k)` over label rows `ys` (it keeps
/// learned labels from collapsing), and its gradient.
pub fn margin_loss(ys: &[f64], k: usize) -> (f64, Vec<f64>) {
    let n = ys.len() / k.max(1);
    let mut grad = vec![0.0; ys.len()];
    let mut total = 0.0;
    if k < 2 || n == 0 {
        return (0.0, grad);
    }
    for i in 0..n {
        let row = &ys[i * k..(i + 1) * k];
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let (t1, t2) = (order[0], order[1]);
        let margin = row[t1] - row[t2];
        if margin < 1.0 / k as f64 {
            total -= margin;
            grad[i * k + t1] -= 1.0 / n as f64;
            grad[i * k + t2] += 1.0 / n as f64;
        } else {
            total -= 1.0 / k as f64;
        }
    }
    (total / n as f64, grad)
}
