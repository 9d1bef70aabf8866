//! A hand-written backward pass for the ConvNet (instance norm or none, average pooling or none),
//! groundwork for trajectory matching: the parameter gradient of the mean cross-entropy, built
//! from ordinary differentiable ops, so an unrolled inner loop can run on one level of autodiff
//! (BURN_NOTES.md "Hand-written backward"). Tests compare it with autodiff's gradient.

pub use super::layers::ConvGrads;
use super::layers::{
    avg_pool2, conv3x3, conv3x3_input_grad, conv3x3_weight_grad, linear, per_channel,
};
use super::{ConvNetSpec, Norm, Pooling};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};

const EPS: f64 = 1e-5;

/// What the forward pass keeps of one block for the backward pass.
struct Block<B: Backend> {
    input: Tensor<B, 4>,
    /// Pre-activation after the norm (ReLU mask source).
    y: Tensor<B, 4>,
    /// Normalised conv output and 1/std, for instance norm.
    norm: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
}

/// True when [`loss_and_grads`] supports `spec` (instance norm or none; avg pooling or none).
pub fn supports(spec: &ConvNetSpec) -> bool {
    matches!(spec.norm, Norm::Instance | Norm::None)
        && matches!(spec.pooling, Pooling::Avg | Pooling::None)
}

fn avg_pool2_backward<B: Backend>(d: Tensor<B, 4>, h: usize, w: usize) -> Tensor<B, 4> {
    let [n, c, h2, w2] = d.dims();
    let up = d
        .reshape([n, c, h2, 1, w2, 1])
        .repeat_dim(3, 2)
        .repeat_dim(5, 2)
        .reshape([n, c, 2 * h2, 2 * w2])
        * 0.25;
    // Floor mode drops a trailing odd row/column: it gets no gradient.
    up.pad((0, w - 2 * w2, 0, h - 2 * h2), 0.0)
}

/// Whether ReLU + 2x2 average pooling of `y` and its backward take the CPU fast path (one op
/// each, saving only `y`, instead of a mask, a repeat and a pad per block).
fn fused_pool<B: Backend>(spec: &ConvNetSpec, y: &Tensor<B, 4>) -> bool {
    let [_, _, h, w] = y.dims();
    spec.pooling == Pooling::Avg && h >= 2 && w >= 2 && super::fast::applies(y)
}

/// Instance norm of conv output `z` with scale `gamma` and shift `beta`: the output, and the
/// normalised input with 1/std that its backward needs.
fn instance_norm<B: Backend>(
    z: Tensor<B, 4>,
    gamma: &Tensor<B, 1>,
    beta: &Tensor<B, 1>,
) -> (Tensor<B, 4>, (Tensor<B, 4>, Tensor<B, 4>)) {
    let [n, c, h, w] = z.dims();
    let (xhat, inv) = if super::fast::applies(&z) {
        super::fast::instance_norm_parts(z)
    } else {
        let flat = z.reshape([n, c, h * w]);
        let centered = flat.clone() - flat.mean_dim(2);
        let inv = (centered.clone().powi_scalar(2).mean_dim(2) + EPS)
            .sqrt()
            .recip();
        let xhat = (centered * inv.clone()).reshape([n, c, h, w]);
        (xhat, inv.reshape([n, c, 1, 1]))
    };
    let y = xhat.clone() * per_channel(gamma.clone(), n) + per_channel(beta.clone(), n);
    (y, (xhat, inv))
}

/// The backward of [`instance_norm`] for output gradient `dy`: the input's gradient, then
/// gamma's and beta's.
fn instance_norm_backward<B: Backend>(
    dy: Tensor<B, 4>,
    xhat: Tensor<B, 4>,
    inv: Tensor<B, 4>,
    gamma: &Tensor<B, 1>,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let [n, c, _, _] = dy.dims();
    let per_c = |t: Tensor<B, 4>| t.sum_dim(3).sum_dim(2).sum_dim(0).reshape([c]);
    let dgamma = per_c(dy.clone() * xhat.clone());
    let dbeta = per_c(dy.clone());
    let dz = if super::fast::applies(&dy) {
        super::fast::instance_norm_input_grad(dy, xhat, inv, gamma.clone())
    } else {
        let dxhat = dy * per_channel(gamma.clone(), n);
        let m1 = dxhat.clone().mean_dim(3).mean_dim(2);
        let m2 = (dxhat.clone() * xhat.clone()).mean_dim(3).mean_dim(2);
        (dxhat - m1 - xhat * m2) * inv
    };
    (dz, dgamma, dbeta)
}

/// The classifier on the last block's output `a`: the mean cross-entropy against `onehot`,
/// the gradients of its weight and bias, and the gradient of `a`.
#[allow(clippy::type_complexity)]
fn classifier<B: Backend>(
    spec: &ConvNetSpec,
    params: &[Tensor<B, 1>],
    a: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
) -> (Tensor<B, 1>, (Tensor<B, 1>, Tensor<B, 1>), Tensor<B, 4>) {
    let pooled_shape = a.dims();
    let [n, c, h, w] = pooled_shape;
    let f = a.reshape([n, c * h * w]);
    let (fd, kc) = (spec.feature_dim(), spec.num_classes);
    let logits = linear(f.clone(), params[0].clone(), params[1].clone(), fd, kc);
    let logp = burn::tensor::activation::log_softmax(logits.clone(), 1);
    let loss = (logp * onehot.clone()).sum().neg() / (n as f64);
    let dlogits = (softmax(logits, 1) - onehot) / (n as f64);
    let wmat = params[0].clone().reshape([kc, fd]);
    let dw = dlogits.clone().transpose().matmul(f).reshape([kc * fd]);
    let db = dlogits.clone().sum_dim(0).reshape([kc]);
    (loss, (dw, db), dlogits.matmul(wmat).reshape(pooled_shape))
}

/// Mean cross-entropy of the ConvNet on `x` (train mode) against one-hot `onehot`, and its
/// gradient with respect to every parameter (in [`ConvNetSpec::params`] order), computed by a
/// hand-written backward. `None` when the architecture is not supported (see [`supports`]).
pub fn loss_and_grads<B: Backend>(
    spec: &ConvNetSpec,
    params: &[Tensor<B, 1>],
    x: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
) -> Option<(Tensor<B, 1>, Vec<Tensor<B, 1>>)> {
    loss_and_grads_with(spec, params, x, onehot, ConvGrads::Conv)
}

/// [`loss_and_grads`] with the convolution gradients formed as `how` says (same numbers).
pub fn loss_and_grads_with<B: Backend>(
    spec: &ConvNetSpec,
    params: &[Tensor<B, 1>],
    x: Tensor<B, 4>,
    onehot: Tensor<B, 2>,
    how: ConvGrads,
) -> Option<(Tensor<B, 1>, Vec<Tensor<B, 1>>)> {
    if !supports(spec) {
        return None;
    }
    let k = if spec.norm == Norm::None { 2 } else { 4 };
    let mut blocks = Vec::with_capacity(spec.depth);
    let mut a = x;
    let mut c_in = spec.input[0];
    for d in 0..spec.depth {
        let p = &params[d * k..(d + 1) * k];
        let z = conv3x3(
            a.clone(),
            p[0].clone(),
            p[1].clone(),
            c_in,
            spec.width,
            spec.padding(d),
        );
        let (y, norm) = match spec.norm {
            Norm::Instance => {
                let (y, parts) = instance_norm(z, &p[2], &p[3]);
                (y, Some(parts))
            }
            _ => (z, None),
        };
        let fused = fused_pool(spec, &y);
        let next = match spec.pooling {
            Pooling::Avg if fused => super::fast::relu_pool(y.clone()),
            Pooling::Avg => avg_pool2(relu(y.clone())),
            _ => relu(y.clone()),
        };
        blocks.push(Block { input: a, y, norm });
        a = next;
        c_in = spec.width;
    }
    let last = spec.depth * k;
    let mut grads: Vec<Option<Tensor<B, 1>>> = vec![None; params.len()];
    let (loss, (dw, db), mut da) = classifier(spec, &params[last..], a, onehot);
    (grads[last], grads[last + 1]) = (Some(dw), Some(db));
    let c_in_of = |d: usize| if d == 0 { spec.input[0] } else { spec.width };
    for d in (0..spec.depth).rev() {
        let b = blocks.pop().expect("one per block");
        let p = &params[d * k..(d + 1) * k];
        let [_, c, h, w] = b.y.dims();
        let dy = if fused_pool(spec, &b.y) {
            super::fast::relu_pool_backward(da, b.y)
        } else {
            let dr = match spec.pooling {
                Pooling::Avg => avg_pool2_backward(da, h, w),
                _ => da,
            };
            dr * b.y.greater_elem(0.0).float()
        };
        let dz = match b.norm {
            Some((xhat, inv)) => {
                let (dz, dgamma, dbeta) = instance_norm_backward(dy, xhat, inv, &p[2]);
                (grads[d * k + 2], grads[d * k + 3]) = (Some(dgamma), Some(dbeta));
                dz
            }
            None => dy,
        };
        let pad = spec.padding(d);
        let ci = c_in_of(d);
        let dw = conv3x3_weight_grad(b.input, dz.clone(), pad, how);
        grads[d * k] = Some(dw.reshape([c * ci * 9]));
        grads[d * k + 1] = Some(dz.clone().sum_dim(3).sum_dim(2).sum_dim(0).reshape([c]));
        if d > 0 {
            da = conv3x3_input_grad(dz, p[0].clone().reshape([c, ci, 3, 3]), pad, how);
        } else {
            da = dz; // the input images need no gradient
        }
    }
    Some((
        loss,
        grads
            .into_iter()
            .map(|g| g.expect("every parameter"))
            .collect(),
    ))
}
