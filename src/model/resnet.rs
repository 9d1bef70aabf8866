//! ResNet-18 with batch norm and the CIFAR stem (a 3x3 stride-1 convolution, no max pooling), the
//! network SelMatch reports its headline results on (`ResNet18BN` of the reference utils):
//! four stages of two basic blocks, `width`, 2x, 4x, 8x channels, stride 2 from the second stage,
//! 1x1 projection shortcuts where the shape changes, global average pooling, a linear classifier.

use super::layers::{batch_norm, linear};
use super::{classifier_params, Init, Mode, ParamInfo};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use serde::{Deserialize, Serialize};

/// ResNet-18 (BN, CIFAR stem) for `input` images and `num_classes` classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetSpec {
    /// Channels, height, width of the input.
    pub input: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Channels of the first stage (64 in ResNet-18).
    pub width: usize,
}

/// One basic block's shape: input and output channels, stride, projection shortcut or not.
#[derive(Clone, Copy, Debug)]
struct BlockShape {
    c_in: usize,
    c_out: usize,
    stride: usize,
    project: bool,
}

impl ResNetSpec {
    /// ResNet-18 at the reference width (64).
    pub fn reference(input: [usize; 3], num_classes: usize) -> Self {
        ResNetSpec {
            input,
            num_classes,
            width: 64,
        }
    }

    fn blocks(&self) -> Vec<BlockShape> {
        let mut out = Vec::new();
        let mut c_in = self.width;
        for stage in 0..4 {
            let c_out = self.width << stage;
            for j in 0..2 {
                let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                out.push(BlockShape {
                    c_in,
                    c_out,
                    stride,
                    project: stride != 1 || c_in != c_out,
                });
                c_in = c_out;
            }
        }
        out
    }

    /// The features before the classifier (8 x width, after global average pooling).
    pub fn feature_dim(&self) -> usize {
        self.width * 8
    }

    /// Parameters in order: stem conv, stem BN (scale, shift); per block conv1, bn1, conv2, bn2,
    /// [shortcut conv, shortcut bn]; classifier weight and bias. Convolutions have no bias.
    pub fn params(&self) -> Vec<ParamInfo> {
        let mut out = Vec::new();
        let conv = |out: &mut Vec<ParamInfo>, name: String, co: usize, ci: usize, k: usize| {
            out.push(ParamInfo {
                name,
                shape: vec![co, ci, k, k],
                init: Init::FanIn(ci * k * k),
            });
        };
        let bn = |out: &mut Vec<ParamInfo>, name: String, c: usize| {
            out.push(ParamInfo {
                name: format!("{name}.weight"),
                shape: vec![c],
                init: Init::Ones,
            });
            out.push(ParamInfo {
                name: format!("{name}.bias"),
                shape: vec![c],
                init: Init::Zeros,
            });
        };
        conv(
            &mut out,
            "conv1.weight".into(),
            self.width,
            self.input[0],
            3,
        );
        bn(&mut out, "bn1".into(), self.width);
        for (i, b) in self.blocks().iter().enumerate() {
            let p = format!("layer{}.{}", i / 2 + 1, i % 2);
            conv(&mut out, format!("{p}.conv1.weight"), b.c_out, b.c_in, 3);
            bn(&mut out, format!("{p}.bn1"), b.c_out);
            conv(&mut out, format!("{p}.conv2.weight"), b.c_out, b.c_out, 3);
            bn(&mut out, format!("{p}.bn2"), b.c_out);
            if b.project {
                conv(
                    &mut out,
                    format!("{p}.shortcut.0.weight"),
                    b.c_out,
                    b.c_in,
                    1,
                );
                bn(&mut out, format!("{p}.shortcut.1"), b.c_out);
            }
        }
        out.extend(classifier_params(self.feature_dim(), self.num_classes));
        out
    }

    /// Running mean and variance of every batch norm, in parameter order.
    pub fn buffers(&self) -> Vec<Vec<f32>> {
        let mut channels = vec![self.width];
        for b in self.blocks() {
            channels.extend([b.c_out, b.c_out]);
            if b.project {
                channels.push(b.c_out);
            }
        }
        channels
            .into_iter()
            .flat_map(|c| [vec![0.0; c], vec![1.0; c]])
            .collect()
    }

    /// The globally pooled features.
    pub fn embed<B: Backend>(
        &self,
        params: &[Tensor<B, 1>],
        buffers: &mut [Tensor<B, 1>],
        x: Tensor<B, 4>,
        mode: Mode,
    ) -> Tensor<B, 2> {
        let train = mode == Mode::Train;
        // Walk the parameters and running statistics in `params()` order.
        let mut cursor = 0usize;
        let mut param = || {
            cursor += 1;
            params[cursor - 1].clone()
        };
        let mut bufs = buffers.chunks_mut(2);
        let mut bn = |x: Tensor<B, 4>, param: &mut dyn FnMut() -> Tensor<B, 1>| {
            let (g, b) = (param(), param());
            batch_norm(x, g, b, bufs.next().expect("running statistics"), train)
        };
        let cv = |x: Tensor<B, 4>,
                  param: &mut dyn FnMut() -> Tensor<B, 1>,
                  co: usize,
                  ci: usize,
                  k: usize,
                  stride: usize| {
            conv2d(
                x,
                param().reshape([co, ci, k, k]),
                None,
                ConvOptions::new([stride, stride], [k / 2, k / 2], [1, 1], 1),
            )
        };
        let mut x = cv(x, &mut param, self.width, self.input[0], 3, 1);
        x = relu(bn(x, &mut param));
        for b in self.blocks() {
            let y = cv(x.clone(), &mut param, b.c_out, b.c_in, 3, b.stride);
            let y = relu(bn(y, &mut param));
            let y = cv(y, &mut param, b.c_out, b.c_out, 3, 1);
            let y = bn(y, &mut param);
            let short = if b.project {
                let s = cv(x, &mut param, b.c_out, b.c_in, 1, b.stride);
                bn(s, &mut param)
            } else {
                x
            };
            x = relu(y + short);
        }
        let [n, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([n, c])
    }

    /// Class logits.
    pub fn forward<B: Backend>(
        &self,
        params: &[Tensor<B, 1>],
        buffers: &mut [Tensor<B, 1>],
        x: Tensor<B, 4>,
        mode: Mode,
    ) -> Tensor<B, 2> {
        let f = self.embed(params, buffers, x, mode);
        let n = params.len();
        linear(
            f,
            params[n - 2].clone(),
            params[n - 1].clone(),
            self.feature_dim(),
            self.num_classes,
        )
    }
}
