//! IDM's partition and expansion (Zhao et al., CVPR 2023 §3.1, from IDC): a stored image of
//! `h x w` holds `f x f` smaller images of `h/f x w/f`; training cuts it into those parts and
//! enlarges each back to `h x w` by bilinear interpolation (PyTorch's `F.interpolate(...,
//! mode="bilinear")`, `align_corners = False`), so a set of `n` stored images trains as `f² n`.
//! Parts come out block by block (all images' first part, then all images' second, ...), parts
//! ordered column by column as the reference's `number_sign_augment` orders its four quadrants
//! (top-left, bottom-left, top-right, bottom-right). [`pack`] is the inverse used to start a set
//! from real images: each shrunk to `h/f x w/f` (the same bilinear rule) and tiled.

use burn::prelude::*;

/// The `[n_out, n_in]` matrix of 1-D bilinear resizing with `align_corners = False`: output `o`
/// reads input coordinate `(o + 0.5) * n_in / n_out - 0.5`, clamped at 0, between its two
/// neighbours (the upper one clamped at the edge).
pub fn resize_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for o in 0..n_out {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let t = (src - i0 as f64) as f32;
        m[o * n_in + i0] += 1.0 - t;
        m[o * n_in + i1] += t;
    }
    m
}

/// The part `(i, j)` (row block, column block) of each part index `p`, column by column.
fn part(p: usize, f: usize) -> (usize, usize) {
    (p % f, p / f)
}

/// Host form (the slow, obvious reference): `n` images `[c, h, w]` into `f² n` images, part
/// blocks in order. `f = 1` returns the images as they are.
pub fn expand_host(images: &[f32], shape: [usize; 3], f: usize) -> Vec<f32> {
    if f == 1 {
        return images.to_vec();
    }
    let [c, h, w] = shape;
    let (ph, pw) = (h / f, w / f);
    let (rh, rw) = (resize_matrix(ph, h), resize_matrix(pw, w));
    let l = c * h * w;
    let n = images.len() / l;
    let mut out = Vec::with_capacity(images.len() * f * f);
    for p in 0..f * f {
        let (bi, bj) = part(p, f);
        for img in images.chunks(l).take(n) {
            for ch in 0..c {
                let plane = &img[ch * h * w..(ch + 1) * h * w];
                for y in 0..h {
                    for x in 0..w {
                        let mut v = 0.0f32;
                        for a in 0..ph {
                            let wy = rh[y * ph + a];
                            if wy == 0.0 {
                                continue;
                            }
                            for b in 0..pw {
                                let wx = rw[x * pw + b];
                                if wx != 0.0 {
                                    v += wy * wx * plane[(bi * ph + a) * w + bj * pw + b];
                                }
                            }
                        }
                        out.push(v);
                    }
                }
            }
        }
    }
    out
}

/// Tensor form of [`expand_host`], differentiable: `[n, c, h, w]` into `[f² n, c, h, w]`.
pub fn expand<B: Backend>(x: Tensor<B, 4>, f: usize) -> Tensor<B, 4> {
    if f == 1 {
        return x;
    }
    let [n, c, h, w] = x.dims();
    let (ph, pw) = (h / f, w / f);
    let device = x.device();
    // Resizing is `R_h · P · R_wᵀ` per plane: two 2-D matrix products.
    let rh = Tensor::<B, 2>::from_data(TensorData::new(resize_matrix(ph, h), [h, ph]), &device);
    let rw = Tensor::<B, 2>::from_data(TensorData::new(resize_matrix(pw, w), [w, pw]), &device);
    let parts: Vec<Tensor<B, 4>> = (0..f * f)
        .map(|p| {
            let (bi, bj) = part(p, f);
            let q = x.clone().narrow(2, bi * ph, ph).narrow(3, bj * pw, pw);
            let q = q.reshape([n * c * ph, pw]).matmul(rw.clone().transpose());
            let q = q
                .reshape([n * c, ph, w])
                .swap_dims(1, 2)
                .reshape([n * c * w, ph]);
            let q = q.matmul(rh.clone().transpose());
            q.reshape([n * c, w, h])
                .swap_dims(1, 2)
                .reshape([n, c, h, w])
        })
        .collect();
    Tensor::cat(parts, 0)
}

/// The inverse start: `f² n` images (part blocks in [`expand_host`]'s order) shrunk by `f` and
/// tiled into `n` images.
pub fn pack(images: &[f32], shape: [usize; 3], f: usize) -> Vec<f32> {
    if f == 1 {
        return images.to_vec();
    }
    let [c, h, w] = shape;
    let (ph, pw) = (h / f, w / f);
    let (sh, sw) = (resize_matrix(h, ph), resize_matrix(w, pw));
    let l = c * h * w;
    let n = images.len() / l / (f * f);
    let mut out = vec![0.0f32; n * l];
    for p in 0..f * f {
        let (bi, bj) = part(p, f);
        for k in 0..n {
            let src = &images[(p * n + k) * l..(p * n + k + 1) * l];
            let dst = &mut out[k * l..(k + 1) * l];
            for ch in 0..c {
                for a in 0..ph {
                    for b in 0..pw {
                        let mut v = 0.0f32;
                        for y in 0..h {
                            let wy = sh[a * h + y];
                            if wy == 0.0 {
                                continue;
                            }
                            for x in 0..w {
                                v += wy * sw[b * w + x] * src[ch * h * w + y * w + x];
                            }
                        }
                        dst[ch * h * w + (bi * ph + a) * w + bj * pw + b] = v;
                    }
                }
            }
        }
    }
    out
}
