//! IDM's pool of partially trained embedding networks ([`ModelPoolSettings`]): the networks, their
//! optimisers and last training accuracies, how they join, train and are chosen, and their state
//! as checkpoint tensors (so a resumed run continues with the same networks).

use super::settings::ModelPoolSettings;
use crate::data::Dataset;
use crate::distill::set::{find_extra, row_pieces, Extras};
use crate::error::{Error, Result};
use crate::model::backward::loss_and_grads;
use crate::model::layers::one_hot;
use crate::model::{forward, host, Mode, Model, ModelSpec};
use crate::train::{batch_images, train_step, Sgd};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::index::sample;
use rand::Rng;

/// The networks the reference starts its pool with.
const START: usize = 3;

/// Checkpoint tensor names: parameters, momentum, buffers (`[nets, len]`) and accuracies.
const NAMES: [&str; 4] = [
    "dm_pool_params",
    "dm_pool_momentum",
    "dm_pool_buffers",
    "dm_pool_accuracy",
];

/// One pool network with its optimiser and its accuracy (percent) on the last real batch it
/// trained on, measured before that step (0 before any training).
pub struct PoolNet<B: Backend> {
    /// The network.
    pub model: Model<B>,
    opt: Sgd<B>,
    /// Training accuracy in percent, the class-aware term's weight.
    pub accuracy: f64,
}

/// The pool.
pub struct Pool<B: Backend> {
    /// Its networks, oldest first.
    pub nets: Vec<PoolNet<B>>,
    settings: ModelPoolSettings,
    spec: ModelSpec,
}

impl<B: Backend> Pool<B> {
    /// A pool of the reference's three fresh networks.
    pub fn new<R: Rng>(
        settings: &ModelPoolSettings,
        spec: &ModelSpec,
        rng: &mut R,
        device: &B::Device,
    ) -> Self {
        let mut pool = Pool {
            nets: Vec::new(),
            settings: settings.clone(),
            spec: spec.clone(),
        };
        for _ in 0..START {
            pool.push(spec.init::<B, _>(rng, device));
        }
        pool
    }

    fn push(&mut self, model: Model<B>) {
        if self.nets.len() == self.settings.size.max(1) {
            self.nets.remove(0);
        }
        let s = &self.settings;
        self.nets.push(PoolNet {
            model,
            opt: Sgd::new(s.momentum, s.weight_decay),
            accuracy: 0.0,
        });
    }

    /// Iteration `it`'s turn: a fresh network joins when `it` is a multiple of `add_every`; then
    /// the index of the network to match with, drawn uniformly.
    pub fn choose<R: Rng>(&mut self, it: usize, rng: &mut R, device: &B::Device) -> usize {
        if it.is_multiple_of(self.settings.add_every.max(1)) {
            let m = self.spec.init::<B, _>(rng, device);
            self.push(m);
        }
        rng.random_range(0..self.nets.len())
    }

    /// Trains `train_nets` distinct networks drawn at random for `train_steps` SGD steps each on
    /// batches of `batch` real images from all classes (no augmentation, as the reference).
    pub fn train<AD, R>(&mut self, data: &Dataset, rng: &mut R, device: &B::Device) -> Result<()>
    where
        AD: AutodiffBackend<InnerBackend = B>,
        R: Rng,
    {
        let s = self.settings.clone();
        let k = self.spec.num_classes();
        let chosen = sample(rng, self.nets.len(), s.train_nets.min(self.nets.len()));
        for i in chosen {
            let net = &mut self.nets[i];
            for step in 0..s.train_steps {
                let idx: Vec<usize> = sample(rng, data.len(), s.batch.min(data.len())).into_vec();
                let x = batch_images::<B>(data, &idx, device);
                let labels: Vec<usize> = idx.iter().map(|&j| data.labels[j]).collect();
                if step + 1 == s.train_steps {
                    net.accuracy = accuracy(&net.model, x.clone(), &labels);
                }
                let y = one_hot::<B>(&labels, k, device);
                let v = sgd_step::<AD>(net, x, y, s.lr);
                if !v.is_finite() {
                    return Err(Error::Numerics(format!(
                        "a model-pool network's training loss became {v}: lower model_pool.lr"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The pool as checkpoint tensors.
    pub fn to_extras(&self) -> Extras {
        let n = self.nets.len();
        let flat = |f: &dyn Fn(&PoolNet<B>) -> Vec<Vec<f32>>| -> (usize, Vec<f32>) {
            let rows: Vec<Vec<f32>> = self.nets.iter().map(|p| f(p).concat()).collect();
            (rows.first().map_or(0, Vec::len), rows.concat())
        };
        let (pl, params) = flat(&|p| p.model.params.iter().cloned().map(host).collect());
        let (_, momentum) = flat(&|p| match p.opt.buffers_to_host() {
            Some(b) => b,
            None => p
                .model
                .params
                .iter()
                .map(|t| vec![0.0; t.dims()[0]])
                .collect(),
        });
        let (bl, buffers) = flat(&|p| p.model.buffers.iter().cloned().map(host).collect());
        let acc = self.nets.iter().map(|p| p.accuracy as f32).collect();
        vec![
            (NAMES[0].into(), vec![n, pl], params),
            (NAMES[1].into(), vec![n, pl], momentum),
            (NAMES[2].into(), vec![n, bl], buffers),
            (NAMES[3].into(), vec![n], acc),
        ]
    }

    /// The pool a checkpoint's tensors hold; an error naming what is missing or misshapen.
    pub fn from_extras(
        extras: &Extras,
        settings: &ModelPoolSettings,
        spec: &ModelSpec,
        device: &B::Device,
    ) -> Result<Self> {
        let get = |name: &str| {
            find_extra(extras, name).ok_or_else(|| {
                Error::Setting(format!(
                    "the checkpoint has no `{name}`: it was not made with [distill.model_pool]"
                ))
            })
        };
        let (ps, params) = get(NAMES[0])?;
        let (_, momentum) = get(NAMES[1])?;
        let (_, buffers) = get(NAMES[2])?;
        let (_, acc) = get(NAMES[3])?;
        let lens = spec.param_lens();
        let blens: Vec<usize> = spec.buffers().iter().map(Vec::len).collect();
        let (pl, bl) = (lens.iter().sum::<usize>(), blens.iter().sum::<usize>());
        let n = acc.len();
        if ps != [n, pl] || momentum.len() != n * pl || buffers.len() != n * bl {
            return Err(Error::Setting(format!(
                "the checkpoint's model pool has shape {ps:?}; this network needs [{n}, {pl}]"
            )));
        }
        let nets = (0..n)
            .map(|i| {
                let p = row_pieces(params, i, &lens);
                let b = row_pieces(buffers, i, &blens);
                let mut opt = Sgd::new(settings.momentum, settings.weight_decay);
                opt.set_buffers(Some(&row_pieces(momentum, i, &lens)), device);
                PoolNet {
                    model: Model::from_host(spec.clone(), &p, &b, device),
                    opt,
                    accuracy: acc[i] as f64,
                }
            })
            .collect();
        Ok(Pool {
            nets,
            settings: settings.clone(),
            spec: spec.clone(),
        })
    }
}

/// One SGD step of `net` on `(x, y)`, by the hand-written ConvNet backward where it applies
/// (the same gradient, faster), else by autodiff; the batch loss.
fn sgd_step<AD: AutodiffBackend>(
    net: &mut PoolNet<AD::InnerBackend>,
    x: Tensor<AD::InnerBackend, 4>,
    y: Tensor<AD::InnerBackend, 2>,
    lr: f64,
) -> f64 {
    if let ModelSpec::ConvNet(c) = &net.model.spec {
        if let Some((loss, g)) = loss_and_grads(c, &net.model.params, x.clone(), y.clone()) {
            net.opt.step(&mut net.model.params, g, lr);
            return loss.into_scalar().elem::<f64>();
        }
    }
    let loss = train_step::<AD>(
        &mut net.model,
        &mut net.opt,
        Tensor::from_inner(x),
        Tensor::from_inner(y),
        lr,
    );
    loss.into_scalar().elem::<f64>()
}

/// Percent of `labels` the network's train-mode logits on `x` get right.
fn accuracy<B: Backend>(model: &Model<B>, x: Tensor<B, 4>, labels: &[usize]) -> f64 {
    let mut bufs = model.buffers.clone();
    let logits = forward(&model.spec, &model.params, &mut bufs, x, Mode::Train);
    let pred: Vec<i64> = logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .into_vec()
        .unwrap_or_default();
    let right = pred
        .iter()
        .zip(labels)
        .filter(|(&p, &y)| p as usize == y)
        .count();
    100.0 * right as f64 / labels.len().max(1) as f64
}
