//! Aggregation as pure functions (as Flower keeps its weighted mean beside the strategies): the
//! sample-weighted mean of client weights, and the union of client sets.

use crate::data::Dataset;
use crate::distill::soft::one_hot_rows;
use crate::fed::message::SentSet;
use crate::fed::protocol::Weights;

/// The mean of `updates` (weights and the sample count each stands for) weighted by sample
/// count, parameters and buffers alike; None when there is none or no samples at all.
pub fn weighted_mean(updates: &[(&Weights, u64)]) -> Option<Weights> {
    let total: f64 = updates.iter().map(|(_, n)| *n as f64).sum();
    let first = updates.first()?.0;
    if total <= 0.0 {
        return None;
    }
    let zeros = |v: &[Vec<f32>]| v.iter().map(|t| vec![0f32; t.len()]).collect::<Vec<_>>();
    let mut acc = Weights {
        params: zeros(&first.params),
        buffers: zeros(&first.buffers),
    };
    for (w, n) in updates {
        let f = (*n as f64 / total) as f32;
        for (a, b) in acc
            .params
            .iter_mut()
            .chain(acc.buffers.iter_mut())
            .zip(w.params.iter().chain(&w.buffers))
        {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += f * y);
        }
    }
    Some(acc)
}

/// All images and labels of `sets`, in order (None when there is none).
pub fn union(sets: Vec<Dataset>) -> Option<Dataset> {
    let mut all: Option<Dataset> = None;
    for d in sets {
        match &mut all {
            Some(u) => {
                u.images.extend_from_slice(&d.images);
                u.labels.extend_from_slice(&d.labels);
            }
            None => all = Some(d),
        }
    }
    all
}

/// [`union`] of sets with their soft labels: when any set has soft labels, the union has them,
/// the rows of a set without them being its one-hot labels (the same loss as its hard labels).
pub fn union_soft(sets: Vec<SentSet>) -> Option<SentSet> {
    let any_soft = sets.iter().any(|s| s.soft_labels.is_some());
    let mut soft: Vec<f32> = Vec::new();
    let mut data = Vec::with_capacity(sets.len());
    for s in sets {
        if any_soft {
            match s.soft_labels {
                Some(p) => soft.extend_from_slice(&p),
                None => soft.extend(one_hot_rows(&s.data.labels, s.data.classes.len())),
            }
        }
        data.push(s.data);
    }
    Some(SentSet {
        data: union(data)?,
        soft_labels: any_soft.then_some(soft),
    })
}
