//! What every run kind's audit does with an [`Auditor`]: audit a set (or a random selection
//! like it) and the real data, writing each one's row of `privacy.csv` and its closest-pairs
//! picture, and describe the audit's setup.

use super::records::{AuditSetup, PrivacyRow, SetAudit};
use super::{AuditSettings, Audited, Auditor};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::files::CsvLog;
use burn::tensor::backend::AutodiffBackend;
use std::path::{Path, PathBuf};

/// Where an audit's files go: `privacy.csv` and the `closest/` pictures.
pub struct Files {
    csv: CsvLog<PrivacyRow>,
    closest: PathBuf,
}

impl Files {
    /// Rows to `csv` (a run's `privacy.csv`), pictures to `dir/closest/`.
    pub fn new(dir: &Path, csv: CsvLog<PrivacyRow>) -> Result<Self> {
        let closest = dir.join("closest");
        std::fs::create_dir_all(&closest).map_err(|e| Error::io(&closest, e))?;
        Ok(Files { csv, closest })
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
