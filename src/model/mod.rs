//! Networks of the dataset-distillation literature, written as pure functions of an explicit
//! parameter list (so the same code trains normally, unrolls for trajectory matching and averages
//! for FedAvg).
//!
//! A [`ModelSpec`] fixes the architecture; [`Model`] holds its parameters (flattened 1-D tensors,
//! reshaped inside the forward pass) and its buffers (batch-norm running statistics).

pub mod backward;
pub mod convnet;
pub mod fast;
pub mod layers;
pub mod mlp;
pub mod resnet;
pub mod weights;

pub use weights::Weights;

use burn::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A tensor's values as `f32` on the host, in row-major order.
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float data")
}

pub use convnet::ConvNetSpec;
pub use mlp::MlpSpec;
pub use resnet::ResNetSpec;

/// Normalisation layer after each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// Per-channel instance norm with affine parameters (`GroupNorm(C, C)`, the reference default).
    Instance,
    /// Batch norm with affine parameters and running statistics.
    Batch,
    /// Layer norm over (C, H, W) with element-wise affine parameters.
    Layer,
    /// No normalisation.
    None,
}

/// Spatial pooling after each block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// 2x2 average pooling, stride 2 (the reference default).
    Avg,
    /// 2x2 max pooling, stride 2.
    Max,
    /// No pooling.
    None,
}

/// An architecture and the input it takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelSpec {
    /// The ConvNet of the DC/DSA/DM/MTT papers.
    ConvNet(ConvNetSpec),
    /// A 3-layer perceptron.
    Mlp(MlpSpec),
    /// ResNet-18 with batch norm and the CIFAR stem.
    ResNet18(ResNetSpec),
}

/// Shape and initialisation of one parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// A stable name (`conv0.weight`, `classifier.bias`, ...).
    pub name: String,
    /// The logical shape (PyTorch layout).
    pub shape: Vec<usize>,
    /// How to initialise it.
    pub init: Init,
}

/// Parameter initialisation rules (PyTorch's defaults for each layer type).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] (PyTorch conv/linear weights and biases).
    FanIn(usize),
    /// All ones (norm scales).
    Ones,
    /// All zeros (norm shifts).
    Zeros,
}

/// The linear classifier's weight `[classes, features]` and bias, PyTorch's initialisation.
pub fn classifier_params(features: usize, classes: usize) -> Vec<ParamInfo> {
    vec![
        ParamInfo {
            name: "classifier.weight".into(),
            shape: vec![classes, features],
            init: Init::FanIn(features),
        },
        ParamInfo {
            name: "classifier.bias".into(),
            shape: vec![classes],
            init: Init::FanIn(features),
        },
    ]
}

/// Whether a forward pass trains (batch statistics) or evaluates (running statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: batch norm uses and updates batch statistics.
    Train,
    /// Evaluation: batch norm uses running statistics.
    Eval,
}

/// A network's parameters and buffers on backend `B`.
#[derive(Clone, Debug)]
pub struct Model<B: Backend> {
    /// The architecture.
    pub spec: ModelSpec,
    /// Parameters, each flattened to 1-D, in [`ModelSpec::params`] order.
    pub params: Vec<Tensor<B, 1>>,
    /// Buffers (batch-norm running mean and variance per norm layer), empty for other nets.
    pub buffers: Vec<Tensor<B, 1>>,
}

impl ModelSpec {
    /// Each parameter's number of values, in [`ModelSpec::params`] order.
    pub fn param_lens(&self) -> Vec<usize> {
        (self.params().iter())
            .map(|p| p.shape.iter().product())
            .collect()
    }

    /// The parameters this architecture has, in order.
    pub fn params(&self) -> Vec<ParamInfo> {
        match self {
            ModelSpec::ConvNet(s) => s.params(),
            ModelSpec::Mlp(s) => s.params(),
            ModelSpec::ResNet18(s) => s.params(),
        }
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params()
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }

    /// Initial buffers (running means zero, variances one), as host vectors.
    pub fn buffers(&self) -> Vec<Vec<f32>> {
        match self {
            ModelSpec::ConvNet(s) => s.buffers(),
            ModelSpec::Mlp(_) => Vec::new(),
            ModelSpec::ResNet18(s) => s.buffers(),
        }
    }

    /// Initial buffers as tensors on `device`.
    pub fn buffer_tensors<B: Backend>(&self, device: &B::Device) -> Vec<Tensor<B, 1>> {
        self.buffers()
            .into_iter()
            .map(|v| {
                let n = v.len();
                Tensor::from_data(TensorData::new(v, [n]), device)
            })
            .collect()
    }

    /// The same architecture with a head of `k` classes.
    pub fn with_classes(&self, k: usize) -> ModelSpec {
        let mut s = self.clone();
        match &mut s {
            ModelSpec::ConvNet(c) => c.num_classes = k,
            ModelSpec::Mlp(m) => m.num_classes = k,
            ModelSpec::ResNet18(r) => r.num_classes = k,
        }
        s
    }

    /// Number of classes the net predicts.
    pub fn num_classes(&self) -> usize {
        match self {
            ModelSpec::ConvNet(s) => s.num_classes,
            ModelSpec::Mlp(s) => s.num_classes,
            ModelSpec::ResNet18(s) => s.num_classes,
        }
    }

    /// Draws fresh parameters as host vectors with PyTorch's default initialisation.
    pub fn init_host<R: Rng>(&self, rng: &mut R) -> Vec<Vec<f32>> {
        self.params()
            .iter()
            .map(|p| {
                let n: usize = p.shape.iter().product();
                match p.init {
                    Init::FanIn(fan_in) => {
                        let b = 1.0 / (fan_in as f32).sqrt();
                        (0..n).map(|_| rng.random_range(-b..b)).collect()
                    }
                    Init::Ones => vec![1.0; n],
                    Init::Zeros => vec![0.0; n],
                }
            })
            .collect()
    }

    /// A freshly initialised model on `device`.
    pub fn init<B: Backend, R: Rng>(&self, rng: &mut R, device: &B::Device) -> Model<B> {
        Model::from_host(self.clone(), &self.init_host(rng), &self.buffers(), device)
    }
}

impl<B: Backend> Model<B> {
    /// Builds a model from host parameter and buffer vectors.
    pub fn from_host(
        spec: ModelSpec,
        params: &[Vec<f32>],
        buffers: &[Vec<f32>],
        device: &B::Device,
    ) -> Self {
        let t =
            |v: &Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v.clone(), [v.len()]), device);
        Model {
            spec,
            params: params.iter().map(t).collect(),
            buffers: buffers.iter().map(t).collect(),
        }
    }

    /// Copies parameters and buffers to host vectors.
    pub fn to_host(&self) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let h = |t: &Tensor<B, 1>| t.to_data().convert::<f32>().into_vec::<f32>().unwrap();
        (
            self.params.iter().map(h).collect(),
            self.buffers.iter().map(h).collect(),
        )
    }

    /// Logits for a batch of NCHW images. In [`Mode::Train`] batch-norm buffers are updated.
    pub fn forward(&mut self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 2> {
        forward(&self.spec, &self.params, &mut self.buffers, x, mode)
    }

    /// The embedding before the classifier (2048 features for ConvNet-3 on 28x28 or 32x32).
    pub fn embed(&mut self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 2> {
        embed(&self.spec, &self.params, &mut self.buffers, x, mode)
    }
}

/// Logits of the net `spec` with explicit `params` (functional form, differentiable in `params`).
pub fn forward<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    buffers: &mut [Tensor<B, 1>],
    x: Tensor<B, 4>,
    mode: Mode,
) -> Tensor<B, 2> {
    match spec {
        ModelSpec::ConvNet(s) => s.forward(params, buffers, x, mode),
        ModelSpec::Mlp(s) => s.forward(params, x),
        ModelSpec::ResNet18(s) => s.forward(params, buffers, x, mode),
    }
}

/// The features before the classifier, functional form.
pub fn embed<B: Backend>(
    spec: &ModelSpec,
    params: &[Tensor<B, 1>],
    buffers: &mut [Tensor<B, 1>],
    x: Tensor<B, 4>,
    mode: Mode,
) -> Tensor<B, 2> {
    match spec {
        ModelSpec::ConvNet(s) => s.embed(params, buffers, x, mode),
        ModelSpec::Mlp(s) => s.embed(params, x),
        ModelSpec::ResNet18(s) => s.embed(params, buffers, x, mode),
    }
}
