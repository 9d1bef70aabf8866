//! The ConvNet of the DC/DSA/DM/MTT reference code (`networks.py`): `depth` blocks of
//! conv3x3 -> norm -> ReLU -> 2x2 pool, then one linear classifier.

use super::layers::{avg_pool2, batch_norm, conv3x3, instance_norm, layer_norm, linear, max_pool2};
use super::{classifier_params, Init, Mode, Norm, ParamInfo, Pooling};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// ConvNet hyper-parameters and input shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvNetSpec {
    /// Input channels, height, width.
    pub input: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Channels of every conv layer (128 in the reference).
    pub width: usize,
    /// Number of conv blocks (3 in the reference).
    pub depth: usize,
    /// Normalisation after each conv.
    pub norm: Norm,
    /// Pooling after each block.
    pub pooling: Pooling,
}

impl ConvNetSpec {
    /// The reference ConvNet-3 (width 128, instance norm, average pooling) for `input`.
    pub fn reference(input: [usize; 3], num_classes: usize) -> Self {
        ConvNetSpec {
            input,
            num_classes,
            width: 128,
            depth: 3,
            norm: Norm::Instance,
            pooling: Pooling::Avg,
        }
    }

    /// Padding of conv `d`: 3 on the first conv for 28x28 one-channel input (so MNIST maps
    /// 28 -> 32 like CIFAR, as the reference does), 1 otherwise.
    pub fn padding(&self, d: usize) -> usize {
        if d == 0 && self.input[0] == 1 && self.input[1] == 28 && self.input[2] == 28 {
            3
        } else {
            1
        }
    }

    /// Feature-map shape (C, H, W) after each block.
    pub fn block_shapes(&self) -> Vec<[usize; 3]> {
        let [_, mut h, mut w] = self.input;
        (0..self.depth)
            .map(|d| {
                let p = self.padding(d);
                h = h + 2 * p - 2;
                w = w + 2 * p - 2;
                let conv = [self.width, h, w];
                if self.pooling != Pooling::None {
                    h /= 2;
                    w /= 2;
                }
                conv
            })
            .collect()
    }

    /// Size of the embedding fed to the classifier.
    pub fn feature_dim(&self) -> usize {
        match self.block_shapes().last() {
            Some(&[c, h, w]) if self.pooling != Pooling::None => c * (h / 2) * (w / 2),
            Some(&[c, h, w]) => c * h * w,
            None => self.input.iter().product(),
        }
    }

    /// Parameters in order: per block conv weight, conv bias, [norm scale, norm shift]; classifier.
    pub fn params(&self) -> Vec<ParamInfo> {
        let mut out = Vec::new();
        let mut c_in = self.input[0];
        for (d, shape) in self.block_shapes().into_iter().enumerate() {
            let fan_in = c_in * 9;
            out.push(ParamInfo {
                name: format!("conv{d}.weight"),
                shape: vec![self.width, c_in, 3, 3],
                init: Init::FanIn(fan_in),
            });
            out.push(ParamInfo {
                name: format!("conv{d}.bias"),
                shape: vec![self.width],
                init: Init::FanIn(fan_in),
            });
            let norm_shape = match self.norm {
                Norm::Instance | Norm::Batch => Some(vec![self.width]),
                Norm::Layer => Some(shape.to_vec()),
                Norm::None => None,
            };
            if let Some(s) = norm_shape {
                out.push(ParamInfo {
                    name: format!("norm{d}.weight"),
                    shape: s.clone(),
                    init: Init::Ones,
                });
                out.push(ParamInfo {
                    name: format!("norm{d}.bias"),
                    shape: s,
                    init: Init::Zeros,
                });
            }
            c_in = self.width;
        }
        out.extend(classifier_params(self.feature_dim(), self.num_classes));
        out
    }

    /// Batch-norm running mean and variance per block (none for other norms).
    pub fn buffers(&self) -> Vec<Vec<f32>> {
        if self.norm != Norm::Batch {
            return Vec::new();
        }
        (0..self.depth)
            .flat_map(|_| [vec![0.0; self.width], vec![1.0; self.width]])
            .collect()
    }

    fn per_block(&self) -> usize {
        if self.norm == Norm::None {
            2
        } else {
            4
        }
    }

    /// The flattened features before the classifier.
    pub fn embed<B: Backend>(
        &self,
        params: &[Tensor<B, 1>],
        buffers: &mut [Tensor<B, 1>],
        x: Tensor<B, 4>,
        mode: Mode,
    ) -> Tensor<B, 2> {
        let k = self.per_block();
        let mut x = x;
        let mut c_in = self.input[0];
        for d in 0..self.depth {
            let p = &params[d * k..(d + 1) * k];
            x = conv3x3(
                x,
                p[0].clone(),
                p[1].clone(),
                c_in,
                self.width,
                self.padding(d),
            );
            let [_, _, h, w] = x.dims();
            if self.norm == Norm::Instance
                && self.pooling == Pooling::Avg
                && h >= 2
                && w >= 2
                && super::fast::applies(&x)
            {
                // The CPU fast path: norm, ReLU and pooling in one pass (and one backward pass).
                x = super::fast::norm_relu_pool(x, p[2].clone(), p[3].clone());
                c_in = self.width;
                continue;
            }
            x = match self.norm {
                Norm::Instance => instance_norm(x, p[2].clone(), p[3].clone()),
                Norm::Layer => layer_norm(x, p[2].clone(), p[3].clone()),
                Norm::Batch => batch_norm(
                    x,
                    p[2].clone(),
                    p[3].clone(),
                    &mut buffers[2 * d..2 * d + 2],
                    mode == Mode::Train,
                ),
                Norm::None => x,
            };
            x = relu(x);
            x = match self.pooling {
                Pooling::Avg => avg_pool2(x),
                Pooling::Max => max_pool2(x),
                Pooling::None => x,
            };
            c_in = self.width;
        }
        let [n, c, h, w] = x.dims();
        x.reshape([n, c * h * w])
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
        let last = self.depth * self.per_block();
        linear(
            f,
            params[last].clone(),
            params[last + 1].clone(),
            self.feature_dim(),
            self.num_classes,
        )
    }
}
