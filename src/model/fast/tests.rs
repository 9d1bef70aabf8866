//! The fast ops against burn's own ops (values and first-order gradients), on odd shapes and
//! both paddings the ConvNet uses.

use super::Ad;
use crate::model::layers::{avg_pool2, instance_norm};
use burn::backend::flex::Flex;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use rand::{Rng, SeedableRng};

fn rand_t<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn close<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (crate::model::host(a), crate::model::host(b));
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * scale, "{what}[{i}]: {x} vs {y}");
    }
}

const SHAPES: [([usize; 4], usize, usize); 3] = [
    ([3, 2, 5, 7], 4, 1),
    ([2, 1, 6, 6], 3, 3),
    ([4, 3, 4, 5], 2, 1),
];

fn opts(pad: usize) -> ConvOptions<2> {
    ConvOptions::new([1, 1], [pad, pad], [1, 1], 1)
}

#[test]
fn convolution_and_its_gradients_match_burn() {
    for (i, &(x_shape, co, pad)) in SHAPES.iter().enumerate() {
        let s = i as u64 * 10;
        let ci = x_shape[1];
        let x = rand_t::<Ad, 4>(x_shape, s).require_grad();
        let w = rand_t::<Ad, 1>([co * ci * 9], s + 1).require_grad();
        let b = rand_t::<Ad, 1>([co], s + 2).require_grad();
        let fast = super::conv3x3(x.clone(), w.clone(), b.clone(), pad);
        let burn = conv2d(
            x.clone(),
            w.clone().reshape([co, ci, 3, 3]),
            Some(b.clone()),
            opts(pad),
        );
        close(fast.clone(), burn.clone(), "conv");
        let r = rand_t::<Ad, 4>(burn.dims(), s + 3);
        let gf = (fast * r.clone()).sum().backward();
        let gb = (burn * r).sum().backward();
        close(x.grad(&gf).unwrap(), x.grad(&gb).unwrap(), "dx");
        for (t, name) in [(&w, "dw"), (&b, "db")] {
            close(t.grad(&gf).unwrap(), t.grad(&gb).unwrap(), name);
        }
        let (x, w, b) = (x.inner(), w.inner(), b.inner());
        let plain = super::conv3x3(x.clone(), w.clone(), b.clone(), pad);
        let burn = conv2d(x, w.reshape([co, ci, 3, 3]), Some(b), opts(pad));
        close(plain, burn, "plain conv");
    }
}

#[test]
fn convolution_gradient_ops_and_their_gradients_match_burn() {
    for (i, &(x_shape, co, pad)) in SHAPES.iter().enumerate() {
        let s = 100 + i as u64 * 10;
        let [n, ci, h, w] = x_shape;
        let (ho, wo) = (h + 2 * pad - 2, w + 2 * pad - 2);
        let x = rand_t::<Ad, 4>(x_shape, s).require_grad();
        let dz = rand_t::<Ad, 4>([n, co, ho, wo], s + 1).require_grad();
        let k = rand_t::<Ad, 4>([co, ci, 3, 3], s + 2).require_grad();
        // Weight gradient.
        let fast = super::conv3x3_weight_grad(x.clone(), dz.clone(), pad);
        let burn = conv2d(
            x.clone().swap_dims(0, 1),
            dz.clone().swap_dims(0, 1),
            None,
            opts(pad),
        )
        .swap_dims(0, 1);
        close(fast.clone(), burn.clone(), "wgrad");
        let r = rand_t::<Ad, 4>([co, ci, 3, 3], s + 3);
        let (gf, gb) = (
            (fast * r.clone()).sum().backward(),
            (burn * r).sum().backward(),
        );
        close(x.grad(&gf).unwrap(), x.grad(&gb).unwrap(), "wgrad/dx");
        close(dz.grad(&gf).unwrap(), dz.grad(&gb).unwrap(), "wgrad/ddz");
        // Input gradient, from a fresh leaf (reusing the one above, burn's side got no gradient).
        let dz = Tensor::<Ad, 4>::from_inner(dz.inner()).require_grad();
        let fast = super::conv3x3_input_grad(dz.clone(), k.clone(), pad);
        let t = ConvTransposeOptions::new([1, 1], [pad, pad], [0, 0], [1, 1], 1);
        let burn = conv_transpose2d(dz.clone(), k.clone(), None, t);
        close(fast.clone(), burn.clone(), "xgrad");
        let r = rand_t::<Ad, 4>(x_shape, s + 4);
        let (gf, gb) = (
            (fast * r.clone()).sum().backward(),
            (burn * r).sum().backward(),
        );
        close(dz.grad(&gf).unwrap(), dz.grad(&gb).unwrap(), "xgrad/ddz");
        close(k.grad(&gf).unwrap(), k.grad(&gb).unwrap(), "xgrad/dk");
    }
}

#[test]
fn fused_norm_relu_pool_and_its_gradients_match_burn() {
    for (i, shape) in [[3, 4, 6, 6], [2, 3, 5, 7], [1, 2, 2, 3]]
        .into_iter()
        .enumerate()
    {
        let s = 200 + i as u64 * 10;
        let c = shape[1];
        let z = rand_t::<Ad, 4>(shape, s).require_grad();
        let g = rand_t::<Ad, 1>([c], s + 1).require_grad();
        let b = rand_t::<Ad, 1>([c], s + 2).require_grad();
        let fast = super::norm_relu_pool(z.clone(), g.clone(), b.clone());
        let burn = avg_pool2(relu(instance_norm(z.clone(), g.clone(), b.clone())));
        close(fast.clone(), burn.clone(), "norm");
        let r = rand_t::<Ad, 4>(burn.dims(), s + 3);
        let (gf, gb) = (
            (fast * r.clone()).sum().backward(),
            (burn * r).sum().backward(),
        );
        close(z.grad(&gf).unwrap(), z.grad(&gb).unwrap(), "norm/dz");
        close(g.grad(&gf).unwrap(), g.grad(&gb).unwrap(), "norm/dg");
        close(b.grad(&gf).unwrap(), b.grad(&gb).unwrap(), "norm/db");
        let (z, g, b): (Tensor<Flex, 4>, _, _) = (z.inner(), g.inner(), b.inner());
        let plain = super::norm_relu_pool(z.clone(), g.clone(), b.clone());
        close(plain, avg_pool2(relu(instance_norm(z, g, b))), "plain norm");
    }
}

#[test]
fn relu_pool_pair_and_norm_input_grad_match_burn_formulas() {
    use crate::model::layers::per_channel;
    for (i, shape) in [[3, 4, 6, 6], [2, 3, 5, 7]].into_iter().enumerate() {
        let s = 300 + i as u64 * 10;
        let [n, c, h, w] = shape;
        let y = rand_t::<Ad, 4>(shape, s).require_grad();
        let dp = rand_t::<Ad, 4>([n, c, h / 2, w / 2], s + 1).require_grad();
        // ReLU + pooling and its backward (burn: avg_pool2(relu(y)); repeat, pad and mask).
        close(
            super::relu_pool(y.clone()),
            avg_pool2(relu(y.clone())),
            "relu_pool",
        );
        let fast = super::relu_pool_backward(dp.clone(), y.clone());
        let up = dp
            .clone()
            .reshape([n, c, h / 2, 1, w / 2, 1])
            .repeat_dim(3, 2)
            .repeat_dim(5, 2);
        let up = up.reshape([n, c, h / 2 * 2, w / 2 * 2]) * 0.25;
        let burn = up.pad((0, w % 2, 0, h % 2), 0.0) * y.clone().greater_elem(0.0).float();
        close(fast.clone(), burn.clone(), "relu_pool_backward");
        let r = rand_t::<Ad, 4>(shape, s + 2);
        let (gf, gb) = (
            (fast * r.clone()).sum().backward(),
            (burn * r).sum().backward(),
        );
        close(
            dp.grad(&gf).unwrap(),
            dp.grad(&gb).unwrap(),
            "relu_pool_backward/ddp",
        );
        // The norm's input gradient, differentiable in all four inputs.
        let dy = rand_t::<Ad, 4>(shape, s + 3).require_grad();
        let xhat = rand_t::<Ad, 4>(shape, s + 4).require_grad();
        let inv = (rand_t::<Ad, 4>([n, c, 1, 1], s + 5) + 2.0).require_grad();
        let g = rand_t::<Ad, 1>([c], s + 6).require_grad();
        let fast =
            super::instance_norm_input_grad(dy.clone(), xhat.clone(), inv.clone(), g.clone());
        let dxhat = dy.clone() * per_channel(g.clone(), n);
        let m1 = dxhat.clone().mean_dim(3).mean_dim(2);
        let m2 = (dxhat.clone() * xhat.clone()).mean_dim(3).mean_dim(2);
        let burn = (dxhat - m1 - xhat.clone() * m2) * inv.clone();
        close(fast.clone(), burn.clone(), "norm_input_grad");
        let r = rand_t::<Ad, 4>(shape, s + 7);
        let (gf, gb) = (
            (fast * r.clone()).sum().backward(),
            (burn * r).sum().backward(),
        );
        close(
            dy.grad(&gf).unwrap(),
            dy.grad(&gb).unwrap(),
            "norm_input_grad/ddy",
        );
        close(
            xhat.grad(&gf).unwrap(),
            xhat.grad(&gb).unwrap(),
            "norm_input_grad/dxhat",
        );
        close(
            inv.grad(&gf).unwrap(),
            inv.grad(&gb).unwrap(),
            "norm_input_grad/dinv",
        );
        close(
            g.grad(&gf).unwrap(),
            g.grad(&gb).unwrap(),
            "norm_input_grad/dg",
        );
    }
}

#[test]
fn norm_parts_and_their_gradients_match_burn() {
    for (i, shape) in [[3, 4, 6, 6], [2, 3, 5, 7]].into_iter().enumerate() {
        let s = 400 + i as u64 * 10;
        let [n, c, h, w] = shape;
        let z = rand_t::<Ad, 4>(shape, s).require_grad();
        let (xf, if_) = super::instance_norm_parts(z.clone());
        let flat = z.clone().reshape([n, c, h * w]);
        let centered = flat.clone() - flat.mean_dim(2);
        let ib = (centered.clone().powi_scalar(2).mean_dim(2) + 1e-5)
            .sqrt()
            .recip();
        let xb = (centered * ib.clone()).reshape(shape);
        let ib = ib.reshape([n, c, 1, 1]);
        close(xf.clone(), xb.clone(), "xhat");
        close(if_.clone(), ib.clone(), "inv");
        let (r1, r2) = (
            rand_t::<Ad, 4>(shape, s + 1),
            rand_t::<Ad, 4>([n, c, 1, 1], s + 2),
        );
        let gf = ((xf * r1.clone()).sum() + (if_ * r2.clone()).sum()).backward();
        let gb = ((xb * r1).sum() + (ib * r2).sum()).backward();
        close(z.grad(&gf).unwrap(), z.grad(&gb).unwrap(), "parts/dz");
    }
}
