//! Layer functions built only from ops whose backward is itself differentiable in burn 0.21
//! (so they work under nested autodiff): no module-level pooling, linear or batch-norm ops.

use burn::prelude::*;
use burn::tensor::module::{conv2d, conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

const EPS: f64 = 1e-5;

/// 3x3 convolution, stride 1, symmetric zero padding `pad`.
pub fn conv3x3<B: Backend>(
    x: Tensor<B, 4>,
    w: Tensor<B, 1>,
    b: Tensor<B, 1>,
    c_in: usize,
    c_out: usize,
    pad: usize,
) -> Tensor<B, 4> {
    if super::fast::applies(&x) {
        return super::fast::conv3x3(x, w, b, pad);
    }
    let w = w.reshape([c_out, c_in, 3, 3]);
    conv2d(
        x,
        w,
        Some(b),
        ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
    )
}

/// How a hand-written backward forms a 3x3 convolution's gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvGrads {
    /// Weight gradient as a conv2d on swapped batch/channel dims (a kernel the size of the
    /// image), input gradient as a conv_transpose2d: what burn's own backward does.
    #[default]
    Conv,
    /// Weight gradient as nine matmuls over shifted windows of the padded input, input gradient
    /// as a 3x3 conv2d with the flipped, transposed kernel: only ops a forward pass also uses.
    Matmul,
}

/// The weight gradient of [`conv3x3`] (`[c_out, c_in, 3, 3]`) for input `x`, output gradient `dz`
/// and padding `pad`, formed as `how` says.
pub fn conv3x3_weight_grad<B: Backend>(
    x: Tensor<B, 4>,
    dz: Tensor<B, 4>,
    pad: usize,
    how: ConvGrads,
) -> Tensor<B, 4> {
    if super::fast::applies(&x) {
        // The CPU fast path forms both the same way (im2col + gemm).
        return super::fast::conv3x3_weight_grad(x, dz, pad);
    }
    match how {
        ConvGrads::Conv => conv2d(
            x.swap_dims(0, 1),
            dz.swap_dims(0, 1),
            None,
            ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
        )
        .swap_dims(0, 1),
        ConvGrads::Matmul => conv3x3_weight_grad_taps(x, dz, pad),
    }
}

/// The input gradient of [`conv3x3`] with kernel `k` (`[c_out, c_in, 3, 3]`) for output gradient
/// `dz` and padding `pad`, formed as `how` says.
pub fn conv3x3_input_grad<B: Backend>(
    dz: Tensor<B, 4>,
    k: Tensor<B, 4>,
    pad: usize,
    how: ConvGrads,
) -> Tensor<B, 4> {
    if super::fast::applies(&dz) {
        return super::fast::conv3x3_input_grad(dz, k, pad);
    }
    match how {
        ConvGrads::Conv => conv_transpose2d(
            dz,
            k,
            None,
            ConvTransposeOptions::new([1, 1], [pad, pad], [0, 0], [1, 1], 1),
        ),
        ConvGrads::Matmul => conv2d(
            dz,
            k.swap_dims(0, 1).flip([2, 3]),
            None,
            ConvOptions::new([1, 1], [2 - pad, 2 - pad], [1, 1], 1),
        ),
    }
}

/// The weight gradient of [`conv3x3`] (`[c_out, c_in, 3, 3]`) for input `x` and output gradient
/// `dz`, as nine matmuls over shifted windows of the padded input: the same numbers as
/// `conv2d(x.swap_dims(0, 1), dz.swap_dims(0, 1))` without a convolution whose kernel is the
/// image's size (which GPU convolution kernels are not tuned for), at the cost of nine window copies.
pub fn conv3x3_weight_grad_taps<B: Backend>(
    x: Tensor<B, 4>,
    dz: Tensor<B, 4>,
    pad: usize,
) -> Tensor<B, 4> {
    let [n, ci, _, _] = x.dims();
    let [_, co, ho, wo] = dz.dims();
    let xp = x.pad((pad, pad, pad, pad), 0.0);
    let dzt = dz.swap_dims(0, 1).reshape([co, n * ho * wo]);
    let taps: Vec<Tensor<B, 3>> = (0..9)
        .map(|t| {
            let (ky, kx) = (t / 3, t % 3);
            let win = xp
                .clone()
                .slice([0..n, 0..ci, ky..ky + ho, kx..kx + wo])
                .swap_dims(0, 1)
                .reshape([ci, n * ho * wo]);
            dzt.clone().matmul(win.transpose()).reshape([co, ci, 1])
        })
        .collect();
    Tensor::cat(taps, 2).reshape([co, ci, 3, 3])
}

/// Fully connected layer: `x W^T + b` with `W` in PyTorch's `[out, in]` layout.
pub fn linear<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 1>,
    b: Tensor<B, 1>,
    d_in: usize,
    d_out: usize,
) -> Tensor<B, 2> {
    let w = w.reshape([d_out, d_in]);
    x.matmul(w.transpose()) + b.reshape([1, d_out])
}

/// Per-sample, per-channel normalisation (GroupNorm with one channel per group) with affine.
pub fn instance_norm<B: Backend>(
    x: Tensor<B, 4>,
    g: Tensor<B, 1>,
    b: Tensor<B, 1>,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let flat = x.reshape([n, c, h * w]);
    let mean = flat.clone().mean_dim(2);
    let centered = flat - mean;
    let var = centered.clone().powi_scalar(2).mean_dim(2);
    let xhat = centered / (var + EPS).sqrt();
    xhat.reshape([n, c, h, w]) * per_channel(g, n) + per_channel(b, n)
}

/// A per-channel vector `[c]` laid out as a contiguous `[n, c, 1, 1]` tensor, so multiplying or
/// adding it to `[n, c, h, w]` takes the CPU backend's per-row broadcast fast path (a `[1, c, 1, 1]`
/// view walks an element-by-element strided iterator, several times slower).
pub fn per_channel<B: Backend>(v: Tensor<B, 1>, n: usize) -> Tensor<B, 4> {
    let [c] = v.dims();
    v.reshape([1, c]).repeat_dim(0, n).reshape([n, c, 1, 1])
}

/// Layer norm over (C, H, W) per sample with element-wise affine of shape (C, H, W).
pub fn layer_norm<B: Backend>(x: Tensor<B, 4>, g: Tensor<B, 1>, b: Tensor<B, 1>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let flat = x.reshape([n, c * h * w]);
    let mean = flat.clone().mean_dim(1);
    let centered = flat - mean;
    let var = centered.clone().powi_scalar(2).mean_dim(1);
    let xhat = centered / (var + EPS).sqrt();
    (xhat * g.reshape([1, c * h * w]) + b.reshape([1, c * h * w])).reshape([n, c, h, w])
}

/// Batch norm with affine. Training uses batch statistics and updates the running mean and
/// (unbiased) variance with momentum 0.1, as PyTorch does; evaluation uses the running values.
pub fn batch_norm<B: Backend>(
    x: Tensor<B, 4>,
    g: Tensor<B, 1>,
    b: Tensor<B, 1>,
    running: &mut [Tensor<B, 1>],
    train: bool,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let (mean, var) = if train {
        let flat = x.clone().swap_dims(0, 1).reshape([c, n * h * w]);
        let mean = flat.clone().mean_dim(1);
        let var = (flat - mean.clone()).powi_scalar(2).mean_dim(1);
        let m = (n * h * w) as f64;
        let unbiased = var.clone().detach() * (m / (m - 1.0).max(1.0));
        running[0] = running[0].clone() * 0.9 + mean.clone().detach().reshape([c]) * 0.1;
        running[1] = running[1].clone() * 0.9 + unbiased.reshape([c]) * 0.1;
        (mean.reshape([1, c, 1, 1]), var.reshape([1, c, 1, 1]))
    } else {
        (
            running[0].clone().reshape([1, c, 1, 1]),
            running[1].clone().reshape([1, c, 1, 1]),
        )
    };
    let xhat = (x - mean) / (var + EPS).sqrt();
    xhat * g.reshape([1, c, 1, 1]) + b.reshape([1, c, 1, 1])
}

fn pool_blocks<B: Backend>(x: Tensor<B, 4>) -> (Tensor<B, 6>, [usize; 4]) {
    let [n, c, h, w] = x.dims();
    let (h2, w2) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.slice([0..n, 0..c, 0..h2 * 2, 0..w2 * 2])
    } else {
        x
    };
    (x.reshape([n, c, h2, 2, w2, 2]), [n, c, h2, w2])
}

/// 2x2 average pooling, stride 2 (odd trailing rows/columns dropped, as PyTorch's floor mode).
pub fn avg_pool2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let (b, out) = pool_blocks(x);
    b.mean_dim(5).mean_dim(3).reshape(out)
}

/// 2x2 max pooling, stride 2.
pub fn max_pool2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let (b, out) = pool_blocks(x);
    b.max_dim(5).max_dim(3).reshape(out)
}

/// Mean cross-entropy of `logits` against integer `labels` given as a one-hot matrix.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, onehot: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    (logp * onehot).sum().neg() / (n as f64)
}

/// A one-hot matrix for `labels` over `k` classes.
pub fn one_hot<B: Backend>(labels: &[usize], k: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut v = vec![0f32; labels.len() * k];
    for (i, &y) in labels.iter().enumerate() {
        v[i * k + y] = 1.0;
    }
    Tensor::from_data(TensorData::new(v, [labels.len(), k]), device)
}
