//! A fast path for the ConvNet's hot layers on the CPU backend: hand-written kernels
//! ([`conv`], [`norm`]) behind burn autodiff ops with hand-written backward passes.
//!
//! The layer functions stay generic over the backend; they ask [`applies`] whether a tensor lives
//! on `Flex` or `Autodiff<Flex>` (found by type id, so no signature changes) and then take this
//! path. Every op's backward is first order: it runs on `Flex` and is not itself tracked, so the
//! nested-autodiff unroll (`Autodiff<Autodiff<Flex>>`), which needs backward passes that are
//! differentiable, never matches and keeps burn's own ops. The hand-written MTT backward needs only
//! one level: its convolution gradients are ops here too ([`conv3x3_weight_grad`],
//! [`conv3x3_input_grad`]), each one's backward formed from the three convolution kernels.

pub mod conv;
pub mod norm;
mod ops;
pub mod pool;
#[cfg(test)]
mod tests;

use burn::backend::autodiff::Autodiff;
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use conv::Geom;
use std::any::{Any, TypeId};

/// The tracked CPU backend the fast ops have a backward pass for.
type Ad = Autodiff<Flex>;

/// Which of the fast path's backends `B` is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// `Flex`: no gradients.
    Plain,
    /// `Autodiff<Flex>`: first-order gradients.
    Tracked,
}

fn lane<B: Backend>() -> Option<Lane> {
    let id = TypeId::of::<B>();
    if id == TypeId::of::<Flex>() {
        Some(Lane::Plain)
    } else if id == TypeId::of::<Ad>() {
        Some(Lane::Tracked)
    } else {
        None
    }
}

/// Whether the fast path handles `x` (an `f32` tensor on `Flex` or `Autodiff<Flex>`), unless
/// `DISTILLERY_GENERIC_OPS` is set (burn's ops everywhere, for comparisons).
pub fn applies<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    lane::<B>().is_some()
        && x.dtype() == DType::F32
        && !*OFF.get_or_init(|| std::env::var_os("DISTILLERY_GENERIC_OPS").is_some())
}

/// Moves a value to the type it is known (by [`lane`]) to have.
fn cast<S: 'static, T: 'static>(s: S) -> T {
    *(Box::new(s) as Box<dyn Any>)
        .downcast::<T>()
        .unwrap_or_else(|_| unreachable!("the lane was checked"))
}

/// The primitive of a `Flex` float tensor, contiguous.
fn raw<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    contiguous(t.into_primitive().tensor())
}

fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.layout().is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a contiguous `f32` primitive.
fn values(t: &FlexTensor) -> &[f32] {
    let (a, b) = t.layout().contiguous_offsets().expect("contiguous");
    &t.storage::<f32>()[a..b]
}

fn flex(v: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(v),
        Layout::contiguous(shape.to_vec().into()),
        DType::F32,
    )
}

fn wrap<const D: usize>(t: FlexTensor) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

/// A 3x3, stride-1 convolution with bias (`w` flat `[co * ci * 9]`, `b` `[co]`), padding `pad`.
pub fn conv3x3<B: Backend>(
    x: Tensor<B, 4>,
    w: Tensor<B, 1>,
    b: Tensor<B, 1>,
    pad: usize,
) -> Tensor<B, 4> {
    match lane::<B>().expect("applies") {
        Lane::Plain => {
            let (x, w, b) = (raw::<4>(cast(x)), raw::<1>(cast(w)), raw::<1>(cast(b)));
            let out = ops::conv_forward(&x, &w, Some(&b), pad as isize);
            cast(wrap::<4>(out))
        }
        Lane::Tracked => cast(ops::tracked_conv(cast(x), cast(w), cast(b), pad)),
    }
}

/// The weight gradient `[co, ci, 3, 3]` of a 3x3 convolution of `x` with padding `pad` for the
/// output gradient `dz`.
pub fn conv3x3_weight_grad<B: Backend>(
    x: Tensor<B, 4>,
    dz: Tensor<B, 4>,
    pad: usize,
) -> Tensor<B, 4> {
    match lane::<B>().expect("applies") {
        Lane::Plain => {
            let (x, dz) = (raw::<4>(cast(x)), raw::<4>(cast(dz)));
            cast(wrap::<4>(ops::wgrad(&x, &dz, pad as isize)))
        }
        Lane::Tracked => cast(ops::tracked_wgrad(cast(x), cast(dz), pad)),
    }
}

/// The input gradient of a 3x3 convolution with kernel `k` (`[co, ci, 3, 3]`) and padding `pad`
/// for the output gradient `dz`.
pub fn conv3x3_input_grad<B: Backend>(
    dz: Tensor<B, 4>,
    k: Tensor<B, 4>,
    pad: usize,
) -> Tensor<B, 4> {
    match lane::<B>().expect("applies") {
        Lane::Plain => {
            let (dz, k) = (raw::<4>(cast(dz)), raw::<4>(cast(k)));
            cast(wrap::<4>(ops::xgrad(&dz, &k, pad as isize)))
        }
        Lane::Tracked => cast(ops::tracked_xgrad(cast(dz), cast(k), pad)),
    }
}

/// `avg_pool2(relu(instance_norm(z) * g + b))`: a ConvNet block's tail in one op (planes of at
/// least 2 x 2).
pub fn norm_relu_pool<B: Backend>(
    z: Tensor<B, 4>,
    g: Tensor<B, 1>,
    b: Tensor<B, 1>,
) -> Tensor<B, 4> {
    match lane::<B>().expect("applies") {
        Lane::Plain => {
            let (z, g, b) = (raw::<4>(cast(z)), raw::<1>(cast(g)), raw::<1>(cast(b)));
            let [n, c, h, w] = dims4(&z);
            let (out, _) = norm::forward(values(&z), (n, c, h, w), values(&g), values(&b), false);
            cast(wrap::<4>(flex(out, &[n, c, h / 2, w / 2])))
        }
        Lane::Tracked => cast(ops::tracked_norm(cast(z), cast(g), cast(b))),
    }
}

/// The geometry of a convolution of `x` by a kernel with `co` output channels.
fn geom(x: [usize; 4], co: usize, pad: isize) -> Geom {
    Geom {
        n: x[0],
        ci: x[1],
        co,
        h: x[2],
        w: x[3],
        pad,
    }
}

/// `avg_pool2(relu(y))` (planes of at least 2 x 2).
pub fn relu_pool<B: Backend>(y: Tensor<B, 4>) -> Tensor<B, 4> {
    match lane::<B>().expect("applies") {
        Lane::Plain => cast(wrap::<4>(ops::relu_pool_fwd(&raw::<4>(cast(y))))),
        Lane::Tracked => cast(ops::tracked_relu_pool(cast(y))),
    }
}

/// The gradient with respect to `y` of [`relu_pool`] for the pooled gradient `dp`; itself
/// differentiable in `dp` on `Autodiff<Flex>` (its derivative in `y` is zero).
pub fn relu_pool_backward<B: Backend>(dp: Tensor<B, 4>, y: Tensor<B, 4>) -> Tensor<B, 4> {
    match lane::<B>().expect("applies") {
        Lane::Plain => {
            let (dp, y) = (raw::<4>(cast(dp)), raw::<4>(cast(y)));
            cast(wrap::<4>(ops::relu_pool_bwd(&dp, &y)))
        }
        Lane::Tracked => cast(ops::tracked_relu_pool_bwd(cast(dp), cast(y))),
    }
}

/// The instance norm's input gradient `inv * (dxh - mean(dxh) - xhat * mean(dxh * xhat))` with
/// `dxh = dy * g` per plane, for `xhat` (`[n, c, h, w]`), `inv` (`[n, c, 1, 1]`) and the scale `g`
/// (`[c]`); differentiable in all four on `Autodiff<Flex>`.
pub fn instance_norm_input_grad<B: Backend>(
    dy: Tensor<B, 4>,
    xhat: Tensor<B, 4>,
    inv: Tensor<B, 4>,
    g: Tensor<B, 1>,
) -> Tensor<B, 4> {
    match lane::<B>().expect("applies") {
        Lane::Plain => {
            let (dy, xhat) = (raw::<4>(cast(dy)), raw::<4>(cast(xhat)));
            let (inv, g) = (raw::<4>(cast(inv)), raw::<1>(cast(g)));
            cast(wrap::<4>(ops::norm_grad(&dy, &xhat, &inv, &g)))
        }
        Lane::Tracked => cast(ops::tracked_norm_grad(
            cast(dy),
            cast(xhat),
            cast(inv),
            cast(g),
        )),
    }
}

/// The instance norm's normalised input `(z - mean) / std` (`[n, c, h, w]`) and `1/std`
/// (`[n, c, 1, 1]`) per plane of `z`, each differentiable in `z` on `Autodiff<Flex>`.
pub fn instance_norm_parts<B: Backend>(z: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
    match lane::<B>().expect("applies") {
        Lane::Plain => {
            let (x, i) = ops::norm_parts(&raw::<4>(cast(z)));
            (cast(wrap::<4>(x)), cast(wrap::<4>(i)))
        }
        Lane::Tracked => {
            let (x, i) = ops::tracked_norm_parts(cast(z));
            (cast(x), cast(i))
        }
    }
}
