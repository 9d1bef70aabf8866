//! The privacy audit in each run kind ([`crate::audit`] does the measuring): the member split
//! made when the data is loaded, then, once a run's sets exist, their audit written to
//! `privacy.csv` (one row per set; federated: per client and set), `closest/<set>.png` (each
//! set's closest pairs) and the summary's `privacy`. [`distill`], [`federated`] and
//! [`continual`] adapt it to their kinds; [`job`] is `kind = "audit"` (a set made elsewhere; the
//! `distillery audit` command's scenario is built by [`crate::scenario::shortcut::audit`]).

pub mod continual;
pub mod distill;
pub mod federated;
pub mod job;

pub use job::AuditJob;

use super::RunContext;
use crate::audit::records::{AuditSetup, PrivacyRow, SetAudit};
use crate::audit::split::membership;
use crate::audit::{AuditSettings, Audited, Auditor};
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::files::CsvLog;
use crate::scenario::Scenario;
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `split` with its training set cut to the audit's members when `[audit]` asks for a member
/// split (seeded by the run's seed), and the held-out rest; `split` as it is otherwise.
pub fn hold_out(mut split: Split, s: &Scenario) -> (Split, Option<Dataset>) {
    let Some(rule) = s.audit_if_on().and_then(|a| a.member_rule()) else {
        return (split, None);
    };
    let (members, rest) = membership(&split.train.labels, rule, s.seed);
    let held = split.train.subset(&rest);
    split.train = split.train.subset(&members);
    (split, Some(held))
}

/// The run's non-members and where they come from (`held_out` or `test`).
pub fn nonmembers<'a>(ctx: &'a RunContext<'a>) -> (&'a Dataset, &'static str) {
    match ctx.heldout {
        Some(h) => (h, "held_out"),
        None => (&ctx.split.test, "test"),
    }
}

/// Where an audit's files go: `privacy.csv` and the `closest/` pictures.
pub struct Files {
    csv: CsvLog<PrivacyRow>,
    closest: PathBuf,
}

impl Files {
    /// `privacy.csv` and `closest/` in the run's folder.
    pub fn new(ctx: &RunContext<'_>) -> Result<Self> {
        let closest = ctx.dir.join("closest");
        std::fs::create_dir_all(&closest).map_err(|e| Error::io(&closest, e))?;
        Ok(Files {
            csv: ctx.csv("privacy.csv")?,
            closest,
        })
    }

    /// The picture of set `name`'s closest pairs.
    pub fn picture(&self, name: &str) -> PathBuf {
        self.closest.join(format!("{name}.png"))
    }

    /// Writes the row of `audit` of set `set` (of `client` in `round`, federated).
    pub fn row(
        &mut self,
        set: &str,
        client: Option<usize>,
        round: Option<usize>,
        audit: &SetAudit,
    ) -> Result<()> {
        self.csv.row(&PrivacyRow::of(set, client, round, audit))
    }
}

/// The setup record of an audit by `a` of `members` against `nonmembers` (from `from`).
pub fn setup<AD: AutodiffBackend>(
    settings: &AuditSettings,
    a: &Auditor<'_, AD>,
    (members, nonmembers, from): (usize, usize, &str),
    ref_per_class: usize,
) -> AuditSetup {
    AuditSetup {
        settings: settings.clone(),
        nonmembers_from: from.to_string(),
        members,
        nonmembers,
        scored_nonmembers: a.scored_nonmembers(),
        epochs: a.protocol().sets.train.epochs,
        reference_nets: settings.reference_nets,
        reference_images_per_class: ref_per_class,
        distance: "Euclidean; pixel: in the normalised space the sets live in; feature: in the coverage network's embedding (trained on the members)".into(),
    }
}

/// Audits `set` named `name` against scope `scope` by the protocol, or as a random selection
/// like it (`random`), writing its row and picture; returns its audit.
pub fn audit_one<AD: AutodiffBackend>(
    a: &mut Auditor<'_, AD>,
    files: &mut Files,
    (name, scope): (&str, usize),
    set: &Dataset,
    norm: Option<crate::data::Normalization>,
    random: bool,
) -> Result<Audited> {
    let pic = files.picture(name);
    let done = match random {
        true => a.random(scope, set, Some((&pic, norm)))?,
        false => {
            let cfg = a.protocol().sets.clone();
            a.set(scope, set, &cfg, Some((&pic, norm)))?
        }
    };
    files.row(name, None, None, &done.record)?;
    Ok(done)
}

/// The real-data baseline of scope `scope` (a network trained on its members), its row
/// written (as `client`'s in a federated run).
pub fn audit_real<AD: AutodiffBackend>(
    a: &mut Auditor<'_, AD>,
    files: &mut Files,
    (scope, client): (usize, Option<usize>),
) -> Result<Audited> {
    let real = a.real_data(scope)?;
    files.row("real_data", client, None, &real.record)?;
    Ok(real)
}

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
