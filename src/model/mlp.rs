//! The reference MLP: flatten -> 128 -> ReLU -> 128 -> ReLU -> classes.

use super::layers::linear;
use super::{Init, ParamInfo};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// MLP hyper-parameters and input shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpSpec {
    /// Input channels, height, width.
    pub input: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Width of the two hidden layers (128 in the reference).
    pub hidden: usize,
}

impl MlpSpec {
    fn dims(&self) -> [usize; 4] {
        [
            self.input.iter().product(),
            self.hidden,
            self.hidden,
            self.num_classes,
        ]
    }

    /// Parameters: three (weight, bias) pairs.
    pub fn params(&self) -> Vec<ParamInfo> {
        let d = self.dims();
        (0..3)
            .flat_map(|i| {
                [
                    ParamInfo {
                        name: format!("fc{i}.weight"),
                        shape: vec![d[i + 1], d[i]],
                        init: Init::FanIn(d[i]),
                    },
                    ParamInfo {
                        name: format!("fc{i}.bias"),
                        shape: vec![d[i + 1]],
                        init: Init::FanIn(d[i]),
                    },
                ]
            })
            .collect()
    }

    /// The last hidden layer's activations.
    pub fn embed<B: Backend>(&self, params: &[Tensor<B, 1>], x: Tensor<B, 4>) -> Tensor<B, 2> {
        let d = self.dims();
        let [n, ..] = x.dims();
        let mut h = x.reshape([n, d[0]]);
        for i in 0..2 {
            h = relu(linear(
                h,
                params[2 * i].clone(),
                params[2 * i + 1].clone(),
                d[i],
                d[i + 1],
            ));
        }
        h
    }

    /// Class logits.
    pub fn forward<B: Backend>(&self, params: &[Tensor<B, 1>], x: Tensor<B, 4>) -> Tensor<B, 2> {
        let d = self.dims();
        linear(
            self.embed(params, x),
            params[4].clone(),
            params[5].clone(),
            d[2],
            d[3],
        )
    }
}
