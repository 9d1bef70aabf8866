//! 3x3, stride-1 convolutions on contiguous NCHW `f32` slices, each image through one im2col
//! buffer and one gemm (no layout conversions): the forward pass, the weight gradient (gemm
//! against the same im2col) and the input gradient (the forward convolution of the output
//! gradient with the flipped, transposed kernel). Images run in parallel on rayon's pool; the
//! weight gradient sums fixed chunks of images in a fixed order, so results never depend on the
//! number of threads.

use rayon::prelude::*;

/// The shapes of one convolution: `n` images of `ci` x `h` x `w` to `co` channels, padding
/// `pad` on every side (negative: cropping, which the input gradient of padding above 2 needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub ci: usize,
    /// Output channels.
    pub co: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Padding (signed).
    pub pad: isize,
}

impl Geom {
    /// Output height and width.
    pub fn out(&self) -> (usize, usize) {
        let o = |s: usize| (s as isize + 2 * self.pad - 2).max(0) as usize;
        (o(self.h), o(self.w))
    }

    /// The geometry of the input gradient seen as a forward convolution of the output gradient.
    fn transposed(&self) -> Geom {
        let (ho, wo) = self.out();
        Geom {
            n: self.n,
            ci: self.co,
            co: self.ci,
            h: ho,
            w: wo,
            pad: 2 - self.pad,
        }
    }
}

/// Images per weight-gradient partial sum (fixed, for a thread-independent summation order).
const WGRAD_CHUNK: usize = 8;

/// Writes the im2col matrix of one image `x` (`[c, h, w]`) into `col` (`[c * 9, ho * wo]`):
/// row `c * 9 + ky * 3 + kx` holds `x[c, oy + ky - pad, ox + kx - pad]`, zero outside.
fn im2col(x: &[f32], g: &Geom, col: &mut [f32]) {
    let (ho, wo) = g.out();
    let (h, w) = (g.h as isize, g.w as isize);
    for c in 0..g.ci {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for k in 0..9 {
            let (ky, kx) = ((k / 3) as isize, (k % 3) as isize);
            let row = &mut col[(c * 9 + k) * ho * wo..(c * 9 + k + 1) * ho * wo];
            let dx = kx - g.pad;
            let ox0 = (-dx).clamp(0, wo as isize) as usize;
            let ox1 = (w - dx).clamp(ox0 as isize, wo as isize) as usize;
            for oy in 0..ho {
                let out = &mut row[oy * wo..(oy + 1) * wo];
                let iy = oy as isize + ky - g.pad;
                if iy < 0 || iy >= h {
                    out.fill(0.0);
                    continue;
                }
                out[..ox0].fill(0.0);
                out[ox1..].fill(0.0);
                let s = (iy * w + ox0 as isize + dx) as usize;
                out[ox0..ox1].copy_from_slice(&plane[s..s + (ox1 - ox0)]);
            }
        }
    }
}

/// `dst (m x n) [+]= lhs (m x k) * rhs (k x n)`, each given by its row and column strides,
/// single-threaded (the callers parallelise over images).
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (dst_rs, dst_cs): (isize, isize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (isize, isize),
) {
    let last = |rs: isize, cs: isize, r: usize, c: usize| {
        (r.max(1) - 1) as isize * rs + (c.max(1) - 1) as isize * cs
    };
    assert!(last(dst_rs, dst_cs, m, n) < dst.len() as isize);
    assert!(last(lhs_rs, lhs_cs, m, k) < lhs.len() as isize);
    assert!(last(rhs_rs, rhs_cs, k, n) < rhs.len() as isize);
    // SAFETY: the asserts above keep every index the strides reach inside the slices, and `dst`
    // is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The forward convolution `[n, co, ho, wo]` of `x` (`[n, ci, h, w]`) with kernel `k`
/// (`[co, ci, 3, 3]`) and optional bias `[co]`.
pub fn forward(x: &[f32], k: &[f32], bias: Option<&[f32]>, g: &Geom) -> Vec<f32> {
    let (ho, wo) = g.out();
    let (img_in, img_out, kk) = (g.ci * g.h * g.w, g.co * ho * wo, g.ci * 9);
    let mut out = vec![0f32; g.n * img_out];
    if img_out == 0 {
        return out;
    }
    out.par_chunks_mut(img_out)
        .zip(x.par_chunks(img_in.max(1)))
        .for_each_init(
            || vec![0f32; kk * ho * wo],
            |col, (o, xi)| {
                im2col(xi, g, col);
                if let Some(b) = bias {
                    for (row, &v) in o.chunks_mut(ho * wo).zip(b) {
                        row.fill(v);
                    }
                }
                let hw = (ho * wo) as isize;
                gemm(
                    (g.co, ho * wo, kk),
                    o,
                    (hw, 1),
                    bias.is_some(),
                    k,
                    (kk as isize, 1),
                    col,
                    (hw, 1),
                );
            },
        );
    out
}

/// The input gradient `[n, ci, h, w]` for output gradient `dz` (`[n, co, ho, wo]`) and kernel
/// `k` (`[co, ci, 3, 3]`): the forward convolution of `dz` with `k` flipped and transposed.
pub fn input_grad(dz: &[f32], k: &[f32], g: &Geom) -> Vec<f32> {
    let mut kt = vec![0f32; k.len()];
    for o in 0..g.co {
        for i in 0..g.ci {
            for t in 0..9 {
                kt[(i * g.co + o) * 9 + 8 - t] = k[(o * g.ci + i) * 9 + t];
            }
        }
    }
    forward(dz, &kt, None, &g.transposed())
}

/// The weight gradient `[co, ci, 3, 3]` for input `x` (`[n, ci, h, w]`) and output gradient
/// `dz` (`[n, co, ho, wo]`): per image `dz_i (co x hw) * im2col(x_i)^T (hw x ci*9)`, summed.
pub fn weight_grad(x: &[f32], dz: &[f32], g: &Geom) -> Vec<f32> {
    let (ho, wo) = g.out();
    let (img_in, img_out, kk, hw) = (g.ci * g.h * g.w, g.co * ho * wo, g.ci * 9, ho * wo);
    let len = g.co * kk;
    if g.n == 0 || hw == 0 {
        return vec![0f32; len];
    }
    let chunks = g.n.div_ceil(WGRAD_CHUNK);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f32; len];
            let mut col = vec![0f32; kk * hw];
            for i in c * WGRAD_CHUNK..((c + 1) * WGRAD_CHUNK).min(g.n) {
                im2col(&x[i * img_in..(i + 1) * img_in], g, &mut col);
                gemm(
                    (g.co, kk, hw),
                    &mut acc,
                    (kk as isize, 1),
                    i > c * WGRAD_CHUNK,
                    &dz[i * img_out..(i + 1) * img_out],
                    (hw as isize, 1),
                    &col,
                    (1, hw as isize),
                );
            }
            acc
        })
        .collect();
    let mut it = partials.into_iter();
    let mut total = it.next().expect("at least one chunk");
    for p in it {
        total.iter_mut().zip(&p).for_each(|(t, v)| *t += v);
    }
    total
}

/// The bias gradient `[co]`: `dz` (`[n, co, hw]`) summed over images and positions.
pub fn bias_grad(dz: &[f32], n: usize, co: usize) -> Vec<f32> {
    let hw = dz.len() / (n * co).max(1);
    let mut out = vec![0f32; co];
    for img in dz.chunks(co * hw.max(1)).take(n) {
        for (o, plane) in out.iter_mut().zip(img.chunks(hw.max(1))) {
            *o += super::norm::sum8(plane.len(), |i| plane[i]);
        }
    }
    out
}
