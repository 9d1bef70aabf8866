//! The report lines of privacy audits: every audited set's figures, and the clients' totals of
//! a federated run's audit.

use crate::audit::records::{ClientTotals, SetAudit};
use crate::audit::Audited;
use crate::report::mean_std;
use std::collections::BTreeMap;

/// The report's lines for audited sets: near-copies, distances, both attacks.
pub fn report_lines(sets: &BTreeMap<String, SetAudit>, from: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<18} {:>9} {:>10} {:>9} {:>10} {:>9} {:>10} {:>9}",
        "privacy",
        "copies px",
        "median px",
        "copies ft",
        "loss AUC",
        "TPR@1%",
        "advantage",
        "cal. AUC"
    )];
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    let num = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    for (name, s) in sets {
        let n = s.nearest.as_ref();
        lines.push(format!(
            "{name:<18} {:>9} {:>10} {:>9} {:>10.3} {:>9} {:>10.3} {:>9}",
            pct(n.map(|n| n.pixel.near_copy_share)),
            num(n.map(|n| n.pixel.median)),
            pct(n.map(|n| n.feature.near_copy_share)),
            s.attack.loss.auc,
            pct(Some(s.attack.loss.tpr_at_1pct_fpr)),
            s.attack.loss.advantage,
            num(s.attack.calibrated.map(|c| c.auc)),
        ));
    }
    lines.push(format!(
        "privacy: copies = images closer to a member than the members' own nearest-neighbour threshold; attacks on a network trained on each set, members against non-members from {}",
        match from {
            "held_out" => "held-out training images",
            _ => "the test set",
        }
    ));
    lines
}

/// The clients' figures of one set kind together.
pub fn totals(v: &[(usize, Option<usize>, Audited)]) -> ClientTotals {
    let recs: Vec<&SetAudit> = v.iter().map(|(_, _, d)| &d.record).collect();
    let pixel: Vec<f64> = v.iter().flat_map(|(_, _, d)| d.pixel.clone()).collect();
    let feature: Vec<f64> = v.iter().flat_map(|(_, _, d)| d.feature.clone()).collect();
    let images: usize = recs.iter().map(|r| r.images).sum();
    let copies = |f: &dyn Fn(&SetAudit) -> Option<usize>| -> Option<f64> {
        let n: Option<usize> = recs.iter().map(|r| f(r)).sum();
        n.map(|n| n as f64 / images.max(1) as f64)
    };
    let median = |d: &[f64]| (!d.is_empty()).then(|| crate::audit::nearest::quantile(d, 0.5));
    let mean =
        |f: &dyn Fn(&SetAudit) -> f64| mean_std(&recs.iter().map(|r| f(r)).collect::<Vec<_>>()).0;
    let max = |f: &dyn Fn(&SetAudit) -> f64| recs.iter().map(|r| f(r)).fold(f64::MIN, f64::max);
    let calibrated = recs.iter().all(|r| r.attack.calibrated.is_some());
    let cal = |r: &SetAudit| r.attack.calibrated.map_or(f64::NAN, |c| c.auc);
    ClientTotals {
        clients: recs.len(),
        images,
        pixel_near_copy_share: copies(&|r| r.nearest.as_ref().map(|n| n.pixel.near_copies)),
        feature_near_copy_share: copies(&|r| r.nearest.as_ref().map(|n| n.feature.near_copies)),
        pixel_median: median(&pixel),
        feature_median: median(&feature),
        test_acc_mean: mean(&|r| r.test_acc),
        loss_auc_mean: mean(&|r| r.attack.loss.auc),
        loss_auc_max: max(&|r| r.attack.loss.auc),
        loss_tpr_at_1pct_fpr_mean: mean(&|r| r.attack.loss.tpr_at_1pct_fpr),
        loss_advantage_mean: mean(&|r| r.attack.loss.advantage),
        calibrated_auc_mean: calibrated.then(|| mean(&cal)),
        calibrated_auc_max: calibrated.then(|| max(&cal)),
    }
}

/// The report's lines of the clients' totals.
pub fn client_lines(t: &BTreeMap<String, ClientTotals>, from: &str) -> Vec<String> {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    let num = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    let mut lines = vec![format!(
        "{:<24} {:>7} {:>9} {:>10} {:>13} {:>12} {:>13}",
        "privacy (per client)",
        "clients",
        "copies px",
        "median px",
        "loss AUC mean",
        "loss AUC max",
        "cal. AUC mean"
    )];
    for (k, c) in t {
        lines.push(format!(
            "{k:<24} {:>7} {:>9} {:>10} {:>13.3} {:>12.3} {:>13}",
            c.clients,
            pct(c.pixel_near_copy_share),
            num(c.pixel_median),
            c.loss_auc_mean,
            c.loss_auc_max,
            num(c.calibrated_auc_mean),
        ));
    }
    lines.push(format!(
        "privacy: each client's set against its own partition (members) and {} (non-members); per client in privacy.csv",
        match from {
            "held_out" => "held-out training images",
            _ => "the test set",
        }
    ));
    lines
}
