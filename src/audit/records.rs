//! The privacy audit's records: `summary.json`'s `privacy` (how the audit was set up, each set's
//! figures, federated totals over clients) and the rows of `privacy.csv` (one per audited set;
//! in federated runs one per client and set).

use crate::audit::attack::AttackFigures;
use crate::audit::nearest::Distances;
use crate::audit::settings::AuditSettings;
use crate::files::Fixed;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `summary.json`'s `privacy`: the audit of every set the run made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyAudit {
    /// How members, non-members, networks and thresholds were chosen.
    pub setup: AuditSetup,
    /// Each set audited, by name: the methods' sets (distill), memories (continual), and the
    /// baselines `real_data` (a network trained on the members) and `random` (a random
    /// selection of the same size).
    #[serde(default)]
    pub sets: BTreeMap<String, SetAudit>,
    /// Federated runs: per strategy and baseline, the clients' figures together (each client's
    /// are in `privacy.csv`).
    #[serde(default)]
    pub clients: BTreeMap<String, ClientTotals>,
    /// Seconds the audit took.
    pub seconds: f64,
}

/// The audit's setup as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditSetup {
    /// The `[audit]` section.
    pub settings: AuditSettings,
    /// Where the non-members came from: `held_out` (training images the run never saw) or
    /// `test` (the test set).
    pub nonmembers_from: String,
    /// Members (the training images the run saw).
    pub members: usize,
    /// Non-members available.
    pub nonmembers: usize,
    /// Distinct non-members scored by the attacks (over every client).
    pub scored_nonmembers: usize,
    /// Epochs of each network trained on a set.
    pub epochs: usize,
    /// Reference networks of the calibrated attack, and the real images per class each saw.
    pub reference_nets: usize,
    /// Images per class of each reference network's random training set.
    pub reference_images_per_class: usize,
    /// What distances are measured in.
    pub distance: String,
}

/// One set's audit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetAudit {
    /// Images in the set (the real-data baseline: images its network trained on).
    pub images: usize,
    /// Test accuracy of the attacked network.
    pub test_acc: f64,
    /// Nearest-real distances (None for the real-data baseline, which is the real data).
    pub nearest: Option<NearestReal>,
    /// Members scored by the attacks.
    pub scored_members: usize,
    /// Non-members scored against them (federated: class-matched to the client's members).
    pub scored_nonmembers: usize,
    /// The attacks on a network trained on the set.
    pub attack: AttackFigures,
}

/// Nearest-real distances in both spaces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NearestReal {
    /// In the (normalised) pixel space.
    pub pixel: Distances,
    /// In the coverage network's feature space.
    pub feature: Distances,
}

/// A federated set kind over the clients that sent one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientTotals {
    /// Clients audited.
    pub clients: usize,
    /// Images over all their sets.
    pub images: usize,
    /// Share of those images that are pixel-space near-copies (each of its client's data).
    pub pixel_near_copy_share: Option<f64>,
    /// Share that are feature-space near-copies.
    pub feature_near_copy_share: Option<f64>,
    /// Median pixel distance to the nearest real image of its client, all images pooled.
    pub pixel_median: Option<f64>,
    /// Median feature distance, pooled.
    pub feature_median: Option<f64>,
    /// Mean test accuracy of the attacked networks.
    pub test_acc_mean: f64,
    /// Mean loss-threshold AUC over clients.
    pub loss_auc_mean: f64,
    /// The largest client's loss-threshold AUC.
    pub loss_auc_max: f64,
    /// Mean TPR at 1% FPR of the loss-threshold attack.
    pub loss_tpr_at_1pct_fpr_mean: f64,
    /// Mean membership advantage of the loss-threshold attack.
    pub loss_advantage_mean: f64,
    /// Mean calibrated AUC (None without reference networks).
    pub calibrated_auc_mean: Option<f64>,
    /// The largest calibrated AUC.
    pub calibrated_auc_max: Option<f64>,
}

/// `privacy.csv`: one audited set (federated: of one client).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrivacyRow {
    /// The set: a method, a memory strategy, a federated strategy, `real_data` or `random`.
    pub set: String,
    /// The client (federated runs).
    pub client: Option<usize>,
    /// The round its set was sent in (federated runs).
    pub round: Option<usize>,
    /// Images.
    pub images: usize,
    /// Test accuracy of the attacked network.
    pub test_acc: Fixed<6>,
    /// Median pixel distance to the nearest real image.
    pub pixel_median: Option<Fixed<6>>,
    /// The smallest.
    pub pixel_min: Option<Fixed<6>>,
    /// The pixel near-copy threshold.
    pub pixel_threshold: Option<Fixed<6>>,
    /// Share of pixel near-copies.
    pub pixel_near_copies: Option<Fixed<6>>,
    /// Median feature distance to the nearest real image.
    pub feature_median: Option<Fixed<6>>,
    /// The feature near-copy threshold.
    pub feature_threshold: Option<Fixed<6>>,
    /// Share of feature near-copies.
    pub feature_near_copies: Option<Fixed<6>>,
    /// Members scored.
    pub scored_members: usize,
    /// Non-members scored.
    pub scored_nonmembers: usize,
    /// Loss-threshold attack: AUC.
    pub loss_auc: Fixed<6>,
    /// TPR at 1% FPR.
    pub loss_tpr_1pct: Fixed<6>,
    /// TPR at 0.1% FPR.
    pub loss_tpr_0_1pct: Fixed<6>,
    /// Membership advantage.
    pub loss_advantage: Fixed<6>,
    /// Calibrated attack: AUC.
    pub calibrated_auc: Option<Fixed<6>>,
    /// TPR at 1% FPR.
    pub calibrated_tpr_1pct: Option<Fixed<6>>,
    /// TPR at 0.1% FPR.
    pub calibrated_tpr_0_1pct: Option<Fixed<6>>,
    /// Membership advantage.
    pub calibrated_advantage: Option<Fixed<6>>,
}

impl PrivacyRow {
    /// The row of `audit` of set `set` (client and round for federated sets).
    pub fn of(set: &str, client: Option<usize>, round: Option<usize>, audit: &SetAudit) -> Self {
        let n = audit.nearest.as_ref();
        let f = |v: Option<f64>| v.map(Fixed);
        let (l, c) = (&audit.attack.loss, audit.attack.calibrated.as_ref());
        PrivacyRow {
            set: set.to_string(),
            client,
            round,
            images: audit.images,
            test_acc: Fixed(audit.test_acc),
            pixel_median: f(n.map(|n| n.pixel.median)),
            pixel_min: f(n.map(|n| n.pixel.min)),
            pixel_threshold: f(n.map(|n| n.pixel.threshold)),
            pixel_near_copies: f(n.map(|n| n.pixel.near_copy_share)),
            feature_median: f(n.map(|n| n.feature.median)),
            feature_threshold: f(n.map(|n| n.feature.threshold)),
            feature_near_copies: f(n.map(|n| n.feature.near_copy_share)),
            scored_members: audit.scored_members,
            scored_nonmembers: audit.scored_nonmembers,
            loss_auc: Fixed(l.auc),
            loss_tpr_1pct: Fixed(l.tpr_at_1pct_fpr),
            loss_tpr_0_1pct: Fixed(l.tpr_at_0_1pct_fpr),
            loss_advantage: Fixed(l.advantage),
            calibrated_auc: f(c.map(|c| c.auc)),
            calibrated_tpr_1pct: f(c.map(|c| c.tpr_at_1pct_fpr)),
            calibrated_tpr_0_1pct: f(c.map(|c| c.tpr_at_0_1pct_fpr)),
            calibrated_advantage: f(c.map(|c| c.advantage)),
        }
    }
}
