//! Aggregation as pure functions (as Flower keeps its weighted mean beside the strategies): the
//! sample-weighted mean of client weights, and the union of client sets.

use crate::data::Dataset;
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
