//! The figures of a membership score: the area under the ROC curve, the true-positive rate at a
//! fixed false-positive rate, and the membership advantage. Scores are "higher means member";
//! members are the positives. Tied scores move together (one threshold), so no figure depends on
//! the order of equal scores.

use serde::{Deserialize, Serialize};

/// An attack's figures over scored members (positives) and non-members (negatives).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocFigures {
    /// Area under the ROC curve: the chance a random member scores above a random non-member
    /// (ties count one half). 0.5: the attack learns nothing.
    pub auc: f64,
    /// The largest true-positive rate at a false-positive rate of at most 1%.
    pub tpr_at_1pct_fpr: f64,
    /// The largest true-positive rate at a false-positive rate of at most 0.1% (with fewer than
    /// 1000 non-members: at no false positive at all).
    pub tpr_at_0_1pct_fpr: f64,
    /// Membership advantage (Yeom et al.): the largest TPR - FPR over thresholds.
    pub advantage: f64,
}

impl RocFigures {
    /// The figures of `members`' and `nonmembers`' scores (NaN figures when either is empty).
    pub fn of(members: &[f64], nonmembers: &[f64]) -> RocFigures {
        let curve = roc_curve(members, nonmembers);
        RocFigures {
            auc: auc(members, nonmembers),
            tpr_at_1pct_fpr: tpr_at_fpr(&curve, 0.01),
            tpr_at_0_1pct_fpr: tpr_at_fpr(&curve, 0.001),
            advantage: curve
                .iter()
                .map(|&(f, t)| t - f)
                .fold(if curve.is_empty() { f64::NAN } else { 0.0 }, f64::max),
        }
    }
}

/// Sorted copy (ascending, total order).
fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// The Mann-Whitney AUC in O(n log n): for each member, the non-members strictly below it plus
/// half those equal to it, over all pairs.
pub fn auc(members: &[f64], nonmembers: &[f64]) -> f64 {
    if members.is_empty() || nonmembers.is_empty() {
        return f64::NAN;
    }
    let neg = sorted(nonmembers);
    let mut wins = 0f64;
    for &m in members {
        let below = neg.partition_point(|&x| x.total_cmp(&m).is_lt());
        let not_above = neg.partition_point(|&x| x.total_cmp(&m).is_le());
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    wins / (members.len() as f64 * nonmembers.len() as f64)
}

/// The ROC curve as (FPR, TPR) points, from (0, 0) (nothing called a member) down through every
/// distinct score to (1, 1); "member" means a score at or above the threshold.
pub fn roc_curve(members: &[f64], nonmembers: &[f64]) -> Vec<(f64, f64)> {
    if members.is_empty() || nonmembers.is_empty() {
        return Vec::new();
    }
    let (np, nn) = (members.len() as f64, nonmembers.len() as f64);
    let mut all: Vec<(f64, bool)> = members
        .iter()
        .map(|&s| (s, true))
        .chain(nonmembers.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut curve = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < all.len() {
        let s = all[i].0;
        while i < all.len() && all[i].0.total_cmp(&s).is_eq() {
            if all[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        curve.push((fp as f64 / nn, tp as f64 / np));
    }
    curve
}

/// The largest TPR among the curve's points whose FPR is at most `max_fpr`.
pub fn tpr_at_fpr(curve: &[(f64, f64)], max_fpr: f64) -> f64 {
    if curve.is_empty() {
        return f64::NAN;
    }
    curve
        .iter()
        .filter(|(f, _)| *f <= max_fpr + 1e-12)
        .map(|&(_, t)| t)
        .fold(0.0, f64::max)
}
