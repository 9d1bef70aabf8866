//! The continual learner's training and testing: minibatches of the current data mixed with
//! replayed memory at a fixed share, optional task-incremental heads (a logit mask per sample
//! from its task), and the row of the accuracy matrix after each task.

use crate::data::augment::Dsa;
use crate::data::stream::Task;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::layers::one_hot;
use crate::model::Model;
use crate::train::{
    batch_images, evaluate_among, logit_mask_row, train_step_masked, Sgd, TrainConfig,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::Rng;

/// How the learner trains on one task.
#[derive(Clone, Debug)]
pub struct Fit<'a> {
    /// Epochs over the current data, batch size, optimiser and schedule.
    pub train: &'a TrainConfig,
    /// Share of each minibatch drawn from the memory when there is one (0 to 1, exclusive).
    pub replay_fraction: f64,
    /// Per-sample DSA on every batch (None: none).
    pub dsa: Option<&'a Dsa>,
    /// Task-incremental heads: for each class, the classes of its task (None: one shared head).
    pub heads: Option<&'a [Vec<usize>]>,
}

impl Fit<'_> {
    /// (current, replayed) images per minibatch when replaying.
    pub fn batch_split(&self) -> (usize, usize) {
        let b = self.train.batch_size.max(2);
        let m = ((b as f64 * self.replay_fraction).round() as usize).clamp(1, b - 1);
        (b - m, m)
    }
}

fn stack<B: Backend>(
    a: &Dataset,
    ia: &[usize],
    b: &Dataset,
    ib: &[usize],
    device: &B::Device,
) -> (Tensor<B, 4>, Vec<usize>) {
    let mut labels: Vec<usize> = ia.iter().map(|&i| a.labels[i]).collect();
    let xa = batch_images::<B>(a, ia, device);
    if ib.is_empty() {
        return (xa, labels);
    }
    labels.extend(ib.iter().map(|&i| b.labels[i]));
    let xb = batch_images::<B>(b, ib, device);
    (Tensor::cat(vec![xa, xb], 0), labels)
}

/// Trains `model` on `current` for `fit.train.epochs` epochs; with a non-empty `replay`, each
/// minibatch holds [`Fit::batch_split`] current and replayed images (the memory cycles in a fresh
/// random order each time it runs out). Returns the last epoch's mean loss; a non-finite loss is
/// an error.
pub fn fit<AD: AutodiffBackend, R: Rng>(
    model: &mut Model<AD::InnerBackend>,
    current: &Dataset,
    replay: Option<&Dataset>,
    fit: &Fit<'_>,
    rng: &mut R,
    device: &AD::Device,
) -> Result<f64> {
    let k = model.spec.num_classes();
    let replay = replay.filter(|r| !r.is_empty() && fit.replay_fraction > 0.0);
    let (b_cur, b_mem) = match replay {
        Some(_) => fit.batch_split(),
        None => (fit.train.batch_size.max(1), 0),
    };
    let mut opt = Sgd::new(fit.train.momentum, fit.train.weight_decay);
    let mut order: Vec<usize> = (0..current.len()).collect();
    let mut mem_order: Vec<usize> = Vec::new();
    let mut last = 0.0;
    let empty = Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        shape: current.shape,
        classes: Vec::new(),
    };
    for epoch in 0..fit.train.epochs {
        if fit.train.resets_at(epoch) {
            opt.reset();
        }
        let lr = fit.train.lr_at(epoch);
        order.shuffle(rng);
        let mut total = 0.0;
        let mut batches = 0usize;
        for idx in order.chunks(b_cur) {
            let mut mem_idx = Vec::with_capacity(b_mem);
            if let Some(r) = replay {
                while mem_idx.len() < b_mem {
                    if mem_order.is_empty() {
                        mem_order = (0..r.len()).collect();
                        mem_order.shuffle(rng);
                    }
                    mem_idx.push(mem_order.pop().unwrap_or(0));
                }
            }
            let (x, labels) =
                stack::<AD::InnerBackend>(current, idx, replay.unwrap_or(&empty), &mem_idx, device);
            let x = match fit.dsa {
                Some(d) => d.augment(x, false, rng),
                None => x,
            };
            let mask = fit.heads.map(|heads| {
                let rows: Vec<f32> = labels
                    .iter()
                    .flat_map(|&y| logit_mask_row(&heads[y], k))
                    .collect();
                Tensor::<AD, 2>::from_data(TensorData::new(rows, [labels.len(), k]), device)
            });
            let y = one_hot::<AD>(&labels, k, device);
            let l = train_step_masked::<AD>(model, &mut opt, Tensor::from_inner(x), y, mask, lr);
            total += l.into_scalar().elem::<f64>();
            batches += 1;
        }
        last = total / batches.max(1) as f64;
        if !last.is_finite() {
            return Err(Error::Numerics(format!(
                "the continual learner's loss became {last} in epoch {} (lr {lr}): lower the learning rate",
                epoch + 1
            )));
        }
    }
    Ok(last)
}

/// Test accuracy of `model` on every task of the stream (a row of the accuracy matrix); with
/// `task_heads`, each task is tested with its own head (prediction among its classes).
pub fn accuracy_row<B: Backend>(
    model: &mut Model<B>,
    tasks: &[Task],
    task_heads: bool,
    device: &B::Device,
) -> Vec<f64> {
    tasks
        .iter()
        .map(|t| {
            let among = task_heads.then_some(t.classes.as_slice());
            evaluate_among(model, &t.test, 500, among, device).0
        })
        .collect()
}
