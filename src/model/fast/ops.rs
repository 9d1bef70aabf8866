//! The fast kernels as `Flex` primitives and as `Autodiff<Flex>` ops with backward passes.

use super::conv;
use super::norm::{self, Saved};
use super::pool;
use super::{contiguous, dims4, flex, geom, values, Ad};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::prelude::*;
use burn::tensor::backend::BackendTypes;
use burn::tensor::TensorPrimitive;

/// A tracked primitive (burn keeps its type name private).
type AutodiffTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// The forward convolution of `x` (`[n, ci, h, w]`) by `w` (`co * ci * 9` values, any shape).
pub fn conv_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    pad: isize,
) -> FlexTensor {
    let d = dims4(x);
    let g = geom(d, values(w).len() / (d[1] * 9), pad);
    let (ho, wo) = g.out();
    let out = conv::forward(values(x), values(w), b.map(values), &g);
    flex(out, &[g.n, g.co, ho, wo])
}

/// The weight gradient `[co, ci, 3, 3]` for input `x` and output gradient `dz`.
pub fn wgrad(x: &FlexTensor, dz: &FlexTensor, pad: isize) -> FlexTensor {
    let g = geom(dims4(x), dims4(dz)[1], pad);
    flex(
        conv::weight_grad(values(x), values(dz), &g),
        &[g.co, g.ci, 3, 3],
    )
}

/// The input gradient for output gradient `dz` and kernel `k` (`[co, ci, 3, 3]`).
pub fn xgrad(dz: &FlexTensor, k: &FlexTensor, pad: isize) -> FlexTensor {
    let [n, co, ho, wo] = dims4(dz);
    let ci = dims4(k)[1];
    let (h, w) = (
        (ho as isize - 2 * pad + 2) as usize,
        (wo as isize - 2 * pad + 2) as usize,
    );
    let g = geom([n, ci, h, w], co, pad);
    flex(conv::input_grad(values(dz), values(k), &g), &[n, ci, h, w])
}

fn prim<const D: usize>(t: Tensor<Ad, D>) -> AutodiffTensor {
    t.into_primitive().tensor()
}

fn tensor<const D: usize>(t: AutodiffTensor) -> Tensor<Ad, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Registers a gradient for a parent that needs one (a macro: the node type is private to burn).
macro_rules! give {
    ($grads:expr, $parent:expr, $value:expr) => {
        if let Some(node) = $parent {
            $grads.register::<Flex>(node.id, $value);
        }
    };
}

/// A convolution with bias: `x`, the flat kernel and the bias are the parents.
#[derive(Debug)]
struct ConvOp;

impl Backward<Flex, 3> for ConvOp {
    type State = (FlexTensor, FlexTensor, isize);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw, pb] = &ops.parents;
        let dz = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, w, pad) = ops.state;
        let g = geom(dims4(&x), dims4(&dz)[1], pad);
        give!(
            grads,
            px,
            flex(conv::input_grad(values(&dz), values(&w), &g), &shape(&x))
        );
        give!(
            grads,
            pw,
            flex(conv::weight_grad(values(&x), values(&dz), &g), &shape(&w))
        );
        give!(
            grads,
            pb,
            flex(conv::bias_grad(values(&dz), g.n, g.co), &[g.co])
        );
    }
}

/// [`ConvOp`] on tracked tensors.
pub fn tracked_conv(
    x: Tensor<Ad, 4>,
    w: Tensor<Ad, 1>,
    b: Tensor<Ad, 1>,
    pad: usize,
) -> Tensor<Ad, 4> {
    let (x, w, b) = (prim(x), prim(w), prim(b));
    let (xr, wr, br) = (
        contiguous(x.primitive.clone()),
        contiguous(w.primitive.clone()),
        contiguous(b.primitive.clone()),
    );
    let out = conv_forward(&xr, &wr, Some(&br), pad as isize);
    let nodes = [x.node.clone(), w.node.clone(), b.node.clone()];
    tensor(
        match ConvOp
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xr, wr, pad as isize), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    )
}

/// The weight gradient as an op of `x` and `dz`.
#[derive(Debug)]
struct WGradOp;

impl Backward<Flex, 2> for WGradOp {
    type State = (FlexTensor, FlexTensor, isize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pdz] = &ops.parents;
        let gk = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, dz, pad) = ops.state;
        give!(grads, px, xgrad(&dz, &gk, pad));
        give!(grads, pdz, conv_forward(&x, &gk, None, pad));
    }
}

/// [`WGradOp`] on tracked tensors.
pub fn tracked_wgrad(x: Tensor<Ad, 4>, dz: Tensor<Ad, 4>, pad: usize) -> Tensor<Ad, 4> {
    let (x, dz) = (prim(x), prim(dz));
    let (xr, dzr) = (
        contiguous(x.primitive.clone()),
        contiguous(dz.primitive.clone()),
    );
    let out = wgrad(&xr, &dzr, pad as isize);
    let nodes = [x.node.clone(), dz.node.clone()];
    tensor(
        match WGradOp
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xr, dzr, pad as isize), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    )
}

/// The input gradient as an op of `dz` and the 4-D kernel.
#[derive(Debug)]
struct XGradOp;

impl Backward<Flex, 2> for XGradOp {
    type State = (FlexTensor, FlexTensor, isize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pdz, pk] = &ops.parents;
        let gx = contiguous(grads.consume::<Flex>(&ops.node));
        let (dz, k, pad) = ops.state;
        give!(grads, pdz, conv_forward(&gx, &k, None, pad));
        give!(grads, pk, wgrad(&gx, &dz, pad));
    }
}

/// [`XGradOp`] on tracked tensors.
pub fn tracked_xgrad(dz: Tensor<Ad, 4>, k: Tensor<Ad, 4>, pad: usize) -> Tensor<Ad, 4> {
    let (dz, k) = (prim(dz), prim(k));
    let (dzr, kr) = (
        contiguous(dz.primitive.clone()),
        contiguous(k.primitive.clone()),
    );
    let out = xgrad(&dzr, &kr, pad as isize);
    let nodes = [dz.node.clone(), k.node.clone()];
    tensor(
        match XGradOp
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((dzr, kr, pad as isize), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    )
}

/// Instance norm, ReLU and 2x2 average pooling: `z`, the scale and the shift are the parents.
#[derive(Debug)]
struct NormOp;

impl Backward<Flex, 3> for NormOp {
    type State = (Saved, FlexTensor, FlexTensor, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pz, pg, pb] = &ops.parents;
        let dp = contiguous(grads.consume::<Flex>(&ops.node));
        let (saved, g, b, [n, c, h, w]) = ops.state;
        let (dz, dg, db) =
            norm::backward(values(&dp), &saved, (n, c, h, w), values(&g), values(&b));
        give!(grads, pz, flex(dz, &[n, c, h, w]));
        give!(grads, pg, flex(dg, &shape(&g)));
        give!(grads, pb, flex(db, &shape(&b)));
    }
}

/// [`NormOp`] on tracked tensors.
pub fn tracked_norm(z: Tensor<Ad, 4>, g: Tensor<Ad, 1>, b: Tensor<Ad, 1>) -> Tensor<Ad, 4> {
    let (z, g, b) = (prim(z), prim(g), prim(b));
    let (zr, gr, br) = (
        contiguous(z.primitive.clone()),
        contiguous(g.primitive.clone()),
        contiguous(b.primitive.clone()),
    );
    let [n, c, h, w] = dims4(&zr);
    let nodes = [z.node.clone(), g.node.clone(), b.node.clone()];
    let prep = NormOp
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful();
    let keep = matches!(prep, OpsKind::Tracked(_));
    let (out, saved) = norm::forward(values(&zr), (n, c, h, w), values(&gr), values(&br), keep);
    let out = flex(out, &[n, c, h / 2, w / 2]);
    tensor(match prep {
        OpsKind::Tracked(prep) => prep.finish((saved.expect("kept"), gr, br, [n, c, h, w]), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    })
}

/// ReLU and 2x2 average pooling: `y` is the parent (and the state).
#[derive(Debug)]
struct ReluPoolOp;

impl Backward<Flex, 1> for ReluPoolOp {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [py] = &ops.parents;
        let dp = contiguous(grads.consume::<Flex>(&ops.node));
        let y = ops.state;
        give!(grads, py, relu_pool_bwd(&dp, &y));
    }
}

/// `avg_pool2(relu(y))` as a primitive.
pub fn relu_pool_fwd(y: &FlexTensor) -> FlexTensor {
    let [n, c, h, w] = dims4(y);
    flex(
        pool::forward(values(y), None, n * c, (h, w)),
        &[n, c, h / 2, w / 2],
    )
}

/// Its gradient with respect to `y` for the pooled gradient `dp`, as a primitive.
pub fn relu_pool_bwd(dp: &FlexTensor, y: &FlexTensor) -> FlexTensor {
    let [n, c, h, w] = dims4(y);
    flex(
        pool::backward(values(dp), values(y), n * c, (h, w)),
        &[n, c, h, w],
    )
}

/// [`ReluPoolOp`] on tracked tensors.
pub fn tracked_relu_pool(y: Tensor<Ad, 4>) -> Tensor<Ad, 4> {
    let y = prim(y);
    let yr = contiguous(y.primitive.clone());
    let out = relu_pool_fwd(&yr);
    tensor(
        match ReluPoolOp
            .prepare::<NoCheckpointing>([y.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(yr, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    )
}

/// The backward of ReLU + pooling as an op of the pooled gradient `dp` and `y`; linear in `dp`,
/// and of zero derivative in `y` (the mask is piecewise constant), so `y` gets no gradient.
#[derive(Debug)]
struct ReluPoolBwdOp;

impl Backward<Flex, 2> for ReluPoolBwdOp {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pdp, _] = &ops.parents;
        let g = contiguous(grads.consume::<Flex>(&ops.node));
        let y = ops.state;
        let [n, c, h, w] = dims4(&y);
        give!(
            grads,
            pdp,
            flex(
                pool::forward(values(&y), Some(values(&g)), n * c, (h, w)),
                &[n, c, h / 2, w / 2]
            )
        );
    }
}

/// [`ReluPoolBwdOp`] on tracked tensors.
pub fn tracked_relu_pool_bwd(dp: Tensor<Ad, 4>, y: Tensor<Ad, 4>) -> Tensor<Ad, 4> {
    let (dp, y) = (prim(dp), prim(y));
    let (dpr, yr) = (
        contiguous(dp.primitive.clone()),
        contiguous(y.primitive.clone()),
    );
    let out = relu_pool_bwd(&dpr, &yr);
    let nodes = [dp.node.clone(), y.node.clone()];
    tensor(
        match ReluPoolBwdOp
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(yr, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    )
}

/// The instance norm's input gradient as an op of `dy`, `xhat`, `inv` (`[n, c, 1, 1]`) and the
/// scale `g` (`[c]`).
#[derive(Debug)]
struct NormGradOp;

impl Backward<Flex, 4> for NormGradOp {
    type State = [FlexTensor; 4];

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pdy, px, pinv, pg] = &ops.parents;
        let gz = contiguous(grads.consume::<Flex>(&ops.node));
        let [dy, xhat, inv, g] = ops.state;
        let hw = values(&dy).len() / values(&inv).len();
        let v = (values(&dy), values(&xhat), values(&inv), values(&g));
        let (ddy, dx, dinv, dg) = norm::input_grad_vjp(values(&gz), v, hw);
        give!(grads, pdy, flex(ddy, &shape(&dy)));
        give!(grads, px, flex(dx, &shape(&xhat)));
        give!(grads, pinv, flex(dinv, &shape(&inv)));
        give!(grads, pg, flex(dg, &shape(&g)));
    }
}

/// [`NormGradOp`]'s value as a primitive.
pub fn norm_grad(
    dy: &FlexTensor,
    xhat: &FlexTensor,
    inv: &FlexTensor,
    g: &FlexTensor,
) -> FlexTensor {
    let hw = values(dy).len() / values(inv).len().max(1);
    flex(
        norm::input_grad(values(dy), values(xhat), values(inv), values(g), hw),
        &shape(dy),
    )
}

/// [`NormGradOp`] on tracked tensors.
pub fn tracked_norm_grad(
    dy: Tensor<Ad, 4>,
    xhat: Tensor<Ad, 4>,
    inv: Tensor<Ad, 4>,
    g: Tensor<Ad, 1>,
) -> Tensor<Ad, 4> {
    let ts = [prim(dy), prim(xhat), prim(inv), prim(g)];
    let raws = ts.clone().map(|t| contiguous(t.primitive));
    let out = norm_grad(&raws[0], &raws[1], &raws[2], &raws[3]);
    let nodes = ts.map(|t| t.node);
    tensor(
        match NormGradOp
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(raws, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    )
}

/// The normalised input of the instance norm as an op of `z`; its backward is the norm's input
/// gradient with a unit scale.
#[derive(Debug)]
struct XhatOp;

impl Backward<Flex, 1> for XhatOp {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pz] = &ops.parents;
        let gx = contiguous(grads.consume::<Flex>(&ops.node));
        let (xhat, inv) = ops.state;
        let c = dims4(&xhat)[1];
        give!(
            grads,
            pz,
            norm_grad(&gx, &xhat, &inv, &flex(vec![1.0; c], &[c]))
        );
    }
}

/// `1/std` per plane of the instance norm as an op of `z`.
#[derive(Debug)]
struct InvOp;

impl Backward<Flex, 1> for InvOp {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pz] = &ops.parents;
        let gi = contiguous(grads.consume::<Flex>(&ops.node));
        let (xhat, inv) = ops.state;
        let hw = values(&xhat).len() / values(&inv).len().max(1);
        give!(
            grads,
            pz,
            flex(
                norm::inv_vjp(values(&gi), values(&xhat), values(&inv), hw),
                &shape(&xhat)
            )
        );
    }
}

/// `(xhat, inv)` of `z` (`[n, c, h, w]`; inv `[n, c, 1, 1]`) as primitives.
pub fn norm_parts(z: &FlexTensor) -> (FlexTensor, FlexTensor) {
    let [n, c, h, w] = dims4(z);
    let (xhat, inv) = norm::parts(values(z), h * w);
    (flex(xhat, &[n, c, h, w]), flex(inv, &[n, c, 1, 1]))
}

/// [`XhatOp`] and [`InvOp`] on a tracked `z`.
pub fn tracked_norm_parts(z: Tensor<Ad, 4>) -> (Tensor<Ad, 4>, Tensor<Ad, 4>) {
    let z = prim(z);
    let (xhat, inv) = norm_parts(&contiguous(z.primitive.clone()));
    let state = (xhat.clone(), inv.clone());
    let x = match XhatOp
        .prepare::<NoCheckpointing>([z.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state.clone(), xhat),
        OpsKind::UnTracked(prep) => prep.finish(xhat),
    };
    let i = match InvOp
        .prepare::<NoCheckpointing>([z.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, inv),
        OpsKind::UnTracked(prep) => prep.finish(inv),
    };
    (tensor(x), tensor(i))
}
