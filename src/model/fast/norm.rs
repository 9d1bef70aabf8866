//! Instance norm (affine), ReLU and 2x2 average pooling as one pass over each `[h, w]` plane of a
//! contiguous NCHW `f32` batch, and its backward as one more: the ConvNet block's tail without the
//! dozen full-size temporaries the same layers cost as separate tensor ops.

use rayon::prelude::*;

const EPS: f32 = 1e-5;

/// What the forward pass keeps for the backward pass: the normalised input and `1/std` per plane.
#[derive(Clone, Debug)]
pub struct Saved {
    /// `(z - mean) / std`, `[n, c, h, w]`.
    pub xhat: Vec<f32>,
    /// `1 / sqrt(var + eps)`, `[n, c]`.
    pub inv: Vec<f32>,
}

/// Planes per parallel task (small planes are cheap; keep the tasks coarse).
fn planes_per_task(hw: usize) -> usize {
    (4096 / hw.max(1)).max(1)
}

/// The sum of `f(i)` for `i` in `0..n` in eight interleaved partial sums: eight independent
/// dependency chains instead of one (a plain serial f32 sum waits on every add's latency).
#[inline(always)]
pub fn sum8(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(i + l);
        }
    }
    let tail = (full..n).fold(0f32, |t, i| t + f(i));
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// [`sum8`] in f64.
#[inline(always)]
fn sum8_f64(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(i + l);
        }
    }
    let tail = (full..n).fold(0f64, |t, i| t + f(i));
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Normalises plane `z` in place into `xhat` and returns `1/std` (two-pass mean and variance).
fn normalise(z: &[f32], xhat: &mut [f32]) -> f32 {
    let m = z.len() as f32;
    // The mean and variance accumulate in f64: the normalised values then barely move when a
    // constant (the conv bias) is added to the plane, as they should not at all.
    let mean = (sum8_f64(z.len(), |i| z[i] as f64) / m as f64) as f32;
    let var = sum8_f64(z.len(), |i| ((z[i] - mean) * (z[i] - mean)) as f64) / m as f64;
    let inv = 1.0 / (var as f32 + EPS).sqrt();
    for (o, &v) in xhat.iter_mut().zip(z) {
        *o = (v - mean) * inv;
    }
    inv
}

/// 2x2 average of `relu(xhat * g + b)` over plane `xhat` (`h` x `w`) into `out` (floor mode).
fn relu_pool(xhat: &[f32], (h, w): (usize, usize), g: f32, b: f32, out: &mut [f32]) {
    let (h2, w2) = (h / 2, w / 2);
    let r = |v: f32| (v * g + b).max(0.0);
    for oy in 0..h2 {
        let (top, bot) = (&xhat[2 * oy * w..], &xhat[(2 * oy + 1) * w..]);
        for ox in 0..w2 {
            let a = (r(top[2 * ox]) + r(top[2 * ox + 1])) * 0.5;
            let c = (r(bot[2 * ox]) + r(bot[2 * ox + 1])) * 0.5;
            out[oy * w2 + ox] = (a + c) * 0.5;
        }
    }
}

/// `avg_pool2(relu(instance_norm(z) * g + b))` for `z` (`[n, c, h, w]`), with what the backward
/// pass needs when `keep` (otherwise the normalised planes live only in a scratch buffer).
pub fn forward(
    z: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    g: &[f32],
    b: &[f32],
    keep: bool,
) -> (Vec<f32>, Option<Saved>) {
    let (hw, hw2) = (h * w, (h / 2) * (w / 2));
    let mut xhat = vec![0f32; if keep { n * c * hw } else { 0 }];
    let mut inv = vec![0f32; n * c];
    let mut out = vec![0f32; n * c * hw2];
    let per = planes_per_task(hw);
    let plane = |t: usize, j: usize, xh: &mut [f32], inv_j: &mut f32, o: &mut [f32]| {
        let p = t * per + j;
        *inv_j = normalise(&z[p * hw..(p + 1) * hw], xh);
        relu_pool(xh, (h, w), g[p % c], b[p % c], o);
    };
    let chunks = inv.par_chunks_mut(per).zip(out.par_chunks_mut(per * hw2));
    if keep {
        chunks
            .zip(xhat.par_chunks_mut(per * hw))
            .enumerate()
            .for_each(|(t, ((is, os), xs))| {
                for (j, inv_j) in is.iter_mut().enumerate() {
                    let o = &mut os[j * hw2..(j + 1) * hw2];
                    plane(t, j, &mut xs[j * hw..(j + 1) * hw], inv_j, o);
                }
            });
    } else {
        chunks.enumerate().for_each_init(
            || vec![0f32; hw],
            |xh, (t, (is, os))| {
                for (j, inv_j) in is.iter_mut().enumerate() {
                    plane(t, j, xh, inv_j, &mut os[j * hw2..(j + 1) * hw2]);
                }
            },
        );
    }
    (out, keep.then_some(Saved { xhat, inv }))
}

/// The gradients `(dz, dg, db)` of [`forward`] for the pooled output's gradient `dp`.
pub fn backward(
    dp: &[f32],
    s: &Saved,
    (n, c, h, w): (usize, usize, usize, usize),
    g: &[f32],
    b: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (hw, h2, w2) = (h * w, h / 2, w / 2);
    let mut dz = vec![0f32; n * c * hw];
    // Per plane: sum(dy) and sum(dy * xhat), for the norm's parameter gradients.
    let mut sums = vec![(0f32, 0f32); n * c];
    let per = planes_per_task(hw);
    dz.par_chunks_mut(per * hw)
        .zip(sums.par_chunks_mut(per))
        .enumerate()
        .for_each(|(t, (ds, ss))| {
            for (j, sum) in ss.iter_mut().enumerate() {
                let p = t * per + j;
                let ch = p % c;
                let (gc, bc) = (g[ch], b[ch]);
                let xh = &s.xhat[p * hw..(p + 1) * hw];
                let d = &mut ds[j * hw..(j + 1) * hw];
                let dpp = &dp[p * h2 * w2..(p + 1) * h2 * w2];
                // dy: the pooled gradient spread over its 2x2 block, where the ReLU passed
                // (a trailing odd row or column gets none).
                for y in 0..2 * h2 {
                    let (row, drow) = (&xh[y * w..y * w + 2 * w2], &dpp[(y / 2) * w2..]);
                    for (x, (o, &v)) in d[y * w..y * w + 2 * w2].iter_mut().zip(row).enumerate() {
                        *o = if v * gc + bc > 0.0 {
                            drow[x / 2] * 0.25
                        } else {
                            0.0
                        };
                    }
                }
                let s1 = sum8(hw, |i| d[i]);
                let s2 = sum8(hw, |i| d[i] * xh[i]);
                *sum = (s1, s2);
                // dz = inv * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * g.
                let m = hw as f32;
                let (m1, m2) = (gc * s1 / m, gc * s2 / m);
                let inv = s.inv[p];
                for (dv, &x) in d.iter_mut().zip(xh) {
                    *dv = inv * (*dv * gc - m1 - x * m2);
                }
            }
        });
    let mut dg = vec![0f32; c];
    let mut db = vec![0f32; c];
    for (p, &(s1, s2)) in sums.iter().enumerate() {
        db[p % c] += s1;
        dg[p % c] += s2;
    }
    (dz, dg, db)
}

/// The instance norm's input gradient from its normalised input `xhat`, `1/std` per plane `inv`,
/// scale `g` and output gradient `dy` (all planes of `hw` values): per plane
/// `dz = inv * (dxh - mean(dxh) - xhat * mean(dxh * xhat))` with `dxh = dy * g`.
pub fn input_grad(dy: &[f32], xhat: &[f32], inv: &[f32], g: &[f32], hw: usize) -> Vec<f32> {
    let c = g.len();
    let mut dz = vec![0f32; dy.len()];
    let per = planes_per_task(hw);
    dz.par_chunks_mut(per * hw).enumerate().for_each(|(t, ds)| {
        for (j, d) in ds.chunks_mut(hw).enumerate() {
            let p = t * per + j;
            let (dyp, xp) = (&dy[p * hw..(p + 1) * hw], &xhat[p * hw..(p + 1) * hw]);
            let gc = g[p % c];
            let m1 = sum8(hw, |i| dyp[i] * gc) / hw as f32;
            let m2 = sum8(hw, |i| dyp[i] * gc * xp[i]) / hw as f32;
            for ((o, &a), &x) in d.iter_mut().zip(dyp).zip(xp) {
                *o = (a * gc - m1 - x * m2) * inv[p];
            }
        }
    });
    dz
}

/// The gradients `(d dy, d xhat, d inv, d g)` of [`input_grad`] for the gradient `gz` of its
/// result (`d g` summed over images).
pub fn input_grad_vjp(
    gz: &[f32],
    (dy, xhat, inv, g): (&[f32], &[f32], &[f32], &[f32]),
    hw: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = g.len();
    let planes = inv.len();
    let (mut ddy, mut dx) = (vec![0f32; dy.len()], vec![0f32; dy.len()]);
    let mut scalars = vec![(0f32, 0f32); planes];
    let per = planes_per_task(hw);
    ddy.par_chunks_mut(per * hw)
        .zip(dx.par_chunks_mut(per * hw))
        .zip(scalars.par_chunks_mut(per))
        .enumerate()
        .for_each(|(t, ((dds, dxs), ss))| {
            for (j, s) in ss.iter_mut().enumerate() {
                let p = t * per + j;
                let r = p * hw..(p + 1) * hw;
                let (gp, dyp, xp) = (&gz[r.clone()], &dy[r.clone()], &xhat[r]);
                let (gc, iv, m) = (g[p % c], inv[p], hw as f32);
                // Forward means, and the means of h = gz * inv the backward needs.
                let m1 = sum8(hw, |i| dyp[i] * gc) / m;
                let m2 = sum8(hw, |i| dyp[i] * gc * xp[i]) / m;
                let h1 = sum8(hw, |i| gp[i] * iv) / m;
                let h2 = sum8(hw, |i| gp[i] * iv * xp[i]) / m;
                let (dd, dxp) = (
                    &mut dds[j * hw..(j + 1) * hw],
                    &mut dxs[j * hw..(j + 1) * hw],
                );
                for i in 0..hw {
                    let (a, x, q) = (dyp[i], xp[i], gp[i]);
                    dd[i] = (q * iv - h1 - x * h2) * gc;
                    dxp[i] = -q * iv * m2 - a * gc * h2;
                }
                let dg = sum8(hw, |i| (gp[i] * iv - h1 - xp[i] * h2) * dyp[i]);
                let dinv = sum8(hw, |i| gp[i] * (dyp[i] * gc - m1 - xp[i] * m2));
                *s = (dinv, dg);
            }
        });
    let dinv = scalars.iter().map(|s| s.0).collect();
    let mut dg = vec![0f32; c];
    for (p, s) in scalars.iter().enumerate() {
        dg[p % c] += s.1;
    }
    (ddy, dx, dinv, dg)
}

/// The normalised planes `(z - mean) / std` of `z` and `1/std` per plane (`hw` values a plane).
pub fn parts(z: &[f32], hw: usize) -> (Vec<f32>, Vec<f32>) {
    let mut xhat = vec![0f32; z.len()];
    let mut inv = vec![0f32; z.len() / hw.max(1)];
    let per = planes_per_task(hw);
    xhat.par_chunks_mut(per * hw)
        .zip(inv.par_chunks_mut(per))
        .enumerate()
        .for_each(|(t, (xs, is))| {
            for (j, iv) in is.iter_mut().enumerate() {
                let p = t * per + j;
                *iv = normalise(&z[p * hw..(p + 1) * hw], &mut xs[j * hw..(j + 1) * hw]);
            }
        });
    (xhat, inv)
}

/// The gradient with respect to `z` of `inv = 1/std(z)` per plane for its gradient `ginv`:
/// `-ginv * inv^2 * xhat / hw`.
pub fn inv_vjp(ginv: &[f32], xhat: &[f32], inv: &[f32], hw: usize) -> Vec<f32> {
    let mut dz = vec![0f32; xhat.len()];
    dz.par_chunks_mut(hw.max(1)).enumerate().for_each(|(p, d)| {
        let k = -ginv[p] * inv[p] * inv[p] / hw as f32;
        for (o, &x) in d.iter_mut().zip(&xhat[p * hw..(p + 1) * hw]) {
            *o = k * x;
        }
    });
    dz
}
