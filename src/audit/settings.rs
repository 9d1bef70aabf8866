//! The `[audit]` section: what every synthetic set a run makes gives away (on unless
//! `enabled = false`), and at what cost. Defaults are a small budget: one attacked network per
//! set, two reference networks, 200 scored members and non-members, a real-data baseline of at
//! most 1000 members trained 5 epochs.

use super::split::MemberRule;
use crate::error::{Problem, Problems};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[audit]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Audit the run's sets (benchmarks turn it off).
    pub enabled: bool,
    /// The share of each class of the training set the run may see (the members); the rest are
    /// held out as non-members. Absent (and no `members_per_class`): every training image is a
    /// member and the test set's images are the non-members.
    pub member_share: Option<f64>,
    /// Members per class instead of a share.
    pub members_per_class: Option<usize>,
    /// Members and non-members scored by the attacks (each; fewer when there are fewer).
    pub sample: usize,
    /// Reference networks of the calibrated attack, each trained on random real images that are
    /// neither scored member nor scored non-member (0: no calibrated attack).
    pub reference_nets: usize,
    /// Epochs of every network the audit trains on a set (attacked, random selection,
    /// reference); default: the run's protocol (`[eval] epochs`, continual: `memory_epochs`).
    pub epochs: Option<usize>,
    /// Epochs of the real-data baseline network on the members.
    pub baseline_epochs: usize,
    /// The real-data baseline trains on at most this many members (every scored member among
    /// them), bounding its cost on large training sets.
    pub baseline_images: usize,
    /// The near-copy threshold is this quantile of the real images' own nearest-neighbour
    /// distances.
    pub near_copy_quantile: f64,
    /// Real images whose nearest-neighbour distances set the threshold.
    pub threshold_sample: usize,
    /// Closest pairs drawn in each set's picture (0: none).
    pub pairs: usize,
    /// `kind = "audit"`: the synthetic set file to audit (relative to the scenario).
    pub set: Option<PathBuf>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            member_share: None,
            members_per_class: None,
            sample: 200,
            reference_nets: 2,
            epochs: None,
            baseline_epochs: 5,
            baseline_images: 1000,
            near_copy_quantile: 0.05,
            threshold_sample: 300,
            pairs: 10,
            set: None,
        }
    }
}

impl AuditSettings {
    /// Settings that audit nothing (`enabled = false`).
    pub fn off() -> Self {
        AuditSettings {
            enabled: false,
            ..Self::default()
        }
    }

    /// How members are chosen (None: all training images are members).
    pub fn member_rule(&self) -> Option<MemberRule> {
        match (self.member_share, self.members_per_class) {
            (Some(s), _) => Some(MemberRule::Share(s)),
            (None, Some(n)) => Some(MemberRule::PerClass(n)),
            (None, None) => None,
        }
    }

    /// The values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        if let Some(s) = self.member_share {
            p.require(
                s > 0.0 && s < 1.0,
                "member_share",
                s,
                "a share in (0, 1) (the rest are the non-members)",
            );
        }
        if let Some(n) = self.members_per_class {
            p.positive("members_per_class", n);
        }
        p.require(
            self.member_share.is_none() || self.members_per_class.is_none(),
            "members_per_class",
            self.members_per_class.unwrap_or(0),
            "either member_share or members_per_class, not both",
        );
        p.require(
            self.sample >= 2,
            "sample",
            self.sample,
            "at least 2 scored members and non-members",
        );
        if let Some(e) = self.epochs {
            p.positive("epochs", e);
        }
        p.positive("baseline_epochs", self.baseline_epochs);
        p.positive("baseline_images", self.baseline_images);
        p.require(
            self.near_copy_quantile > 0.0 && self.near_copy_quantile < 1.0,
            "near_copy_quantile",
            self.near_copy_quantile,
            "a quantile in (0, 1)",
        );
        p.require(
            self.threshold_sample >= 2,
            "threshold_sample",
            self.threshold_sample,
            "at least 2 real images",
        );
        p.require(
            self.pairs <= 100,
            "pairs",
            self.pairs,
            "at most 100 pairs in a picture",
        );
        p.into_vec()
    }
}
