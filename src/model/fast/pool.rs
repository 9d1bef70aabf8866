//! ReLU followed by 2x2 average pooling (floor mode) on contiguous NCHW `f32` planes, and its
//! backward pass. Both are linear in the pooled side given the pre-activation `y` (the ReLU mask
//! is piecewise constant), so each one's backward is the other: a closed pair the hand-written
//! MTT backward can be differentiated through with one autodiff level.

use rayon::prelude::*;

/// Planes per parallel task.
fn per_task(hw: usize) -> usize {
    (8192 / hw.max(1)).max(1)
}

/// `avg_pool2(relu(y))` for `y` (`[n, c, h, w]` as `planes` planes of `h` x `w`), or, given
/// `masked`, `avg_pool2(masked * (y > 0))`.
pub fn forward(
    y: &[f32],
    masked: Option<&[f32]>,
    planes: usize,
    (h, w): (usize, usize),
) -> Vec<f32> {
    let (h2, w2) = (h / 2, w / 2);
    let mut out = vec![0f32; planes * h2 * w2];
    if out.is_empty() {
        return out;
    }
    let per = per_task(h * w);
    out.par_chunks_mut(per * h2 * w2)
        .enumerate()
        .for_each(|(t, os)| {
            for (j, o) in os.chunks_mut(h2 * w2).enumerate() {
                let p = t * per + j;
                let yp = &y[p * h * w..(p + 1) * h * w];
                let v = |i: usize| match masked {
                    Some(m) if yp[i] > 0.0 => m[p * h * w + i],
                    Some(_) => 0.0,
                    None => yp[i].max(0.0),
                };
                for oy in 0..h2 {
                    for ox in 0..w2 {
                        let (a, b) = (2 * oy * w + 2 * ox, (2 * oy + 1) * w + 2 * ox);
                        let top = (v(a) + v(a + 1)) * 0.5;
                        let bot = (v(b) + v(b + 1)) * 0.5;
                        o[oy * w2 + ox] = (top + bot) * 0.5;
                    }
                }
            }
        });
    out
}

/// The gradient with respect to `y` of [`forward`] (unmasked) for the pooled gradient `dp`: a
/// quarter of each pooled gradient on its 2x2 block where `y > 0`, zero elsewhere.
pub fn backward(dp: &[f32], y: &[f32], planes: usize, (h, w): (usize, usize)) -> Vec<f32> {
    let (h2, w2) = (h / 2, w / 2);
    let mut out = vec![0f32; planes * h * w];
    if out.is_empty() {
        return out;
    }
    let per = per_task(h * w);
    out.par_chunks_mut(per * h * w)
        .enumerate()
        .for_each(|(t, os)| {
            for (j, o) in os.chunks_mut(h * w).enumerate() {
                let p = t * per + j;
                let (yp, dpp) = (&y[p * h * w..(p + 1) * h * w], &dp[p * h2 * w2..]);
                for yy in 0..2 * h2 {
                    for x in 0..2 * w2 {
                        let i = yy * w + x;
                        if yp[i] > 0.0 {
                            o[i] = dpp[(yy / 2) * w2 + x / 2] * 0.25;
                        }
                    }
                }
            }
        });
    out
}
