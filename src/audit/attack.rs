//! The membership-inference attacks on a trained network: the loss-threshold attack (Yeom et
//! al. 2018: a low loss on an example says "member") and a calibrated variant in the style of
//! LiRA's offline attack (Carlini et al. 2022, fixed variance): each example's logit-scaled
//! confidence minus its mean under reference networks that never saw it, so examples that are
//! easy for any network stop looking like members.

use super::roc::RocFigures;
use crate::data::Dataset;
use crate::distill::selmatch::scores::logits;
use crate::model::Model;
use burn::prelude::Backend;
use serde::{Deserialize, Serialize};

/// A network's view of some examples: each one's cross-entropy loss and logit-scaled confidence
/// `log p_y - log(1 - p_y)` (computed stably from the logits).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    /// Cross-entropy of each example.
    pub loss: Vec<f64>,
    /// Logit-scaled confidence in each example's label.
    pub confidence: Vec<f64>,
}

/// Loss and logit-scaled confidence of one row of logits for label `y`.
pub fn example(logits: &[f32], y: usize) -> (f64, f64) {
    let z: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    let lse = |skip: Option<usize>| {
        let m = z
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != skip)
            .map(|(_, &v)| v)
            .fold(f64::NEG_INFINITY, f64::max);
        m + z
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != skip)
            .map(|(_, &v)| (v - m).exp())
            .sum::<f64>()
            .ln()
    };
    let loss = lse(None) - z[y];
    // log p / (1 - p) = z_y - logsumexp over the other classes.
    let conf = if z.len() > 1 {
        z[y] - lse(Some(y))
    } else {
        0.0
    };
    (loss, conf)
}

/// What `model` makes of every example of `data` (evaluation mode).
pub fn seen<B: Backend>(model: &mut Model<B>, data: &Dataset, device: &B::Device) -> Seen {
    let k = model.spec.num_classes();
    let l = logits(model, data, device);
    let (loss, confidence) = l
        .chunks_exact(k)
        .zip(&data.labels)
        .map(|(row, &y)| example(row, y))
        .unzip();
    Seen { loss, confidence }
}

/// Both attacks' figures on one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackFigures {
    /// The loss-threshold attack (score: minus the loss).
    pub loss: RocFigures,
    /// The calibrated attack (None without reference networks).
    pub calibrated: Option<RocFigures>,
}

/// The loss-threshold attack: members' and non-members' scores are minus their losses.
pub fn loss_attack(members: &Seen, nonmembers: &Seen) -> RocFigures {
    let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
    RocFigures::of(&neg(&members.loss), &neg(&nonmembers.loss))
}

/// The mean confidence of each example over the reference networks' views.
pub fn reference_mean(refs: &[Seen]) -> Vec<f64> {
    let n = refs.first().map_or(0, |r| r.confidence.len());
    (0..n)
        .map(|i| refs.iter().map(|r| r.confidence[i]).sum::<f64>() / refs.len() as f64)
        .collect()
}

/// The calibrated attack: each example's confidence under the target minus its mean under the
/// reference networks (`members_ref`, `nonmembers_ref` from [`reference_mean`]).
pub fn calibrated_attack(
    members: &Seen,
    nonmembers: &Seen,
    members_ref: &[f64],
    nonmembers_ref: &[f64],
) -> RocFigures {
    let score = |s: &Seen, r: &[f64]| -> Vec<f64> {
        s.confidence.iter().zip(r).map(|(c, m)| c - m).collect()
    };
    RocFigures::of(
        &score(members, members_ref),
        &score(nonmembers, nonmembers_ref),
    )
}
