//! `distillery audit SET.safetensors --data D`: the `kind = "audit"` scenario that audits a set
//! made elsewhere against the data it came from (every training image a member, the test set the
//! non-members).

use super::data_table;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use toml_edit::{value, DocumentMut, Item, Table};

/// The flags of `distillery audit`.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditArgs {
    /// The synthetic set to audit (a `.safetensors` written by distillery).
    pub set: PathBuf,
    /// The data it was made from: `digits` (embedded), a dataset name (`mnist`, ...), an
    /// MNIST-style folder of IDX files, or a CIFAR binary folder.
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// ConvNet width of the networks trained on the set.
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// ConvNet depth.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Epochs of each network trained on the set (the attacked one, the random selection's and
    /// the reference networks).
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    /// Members and non-members the attacks score (each).
    #[arg(long, default_value_t = 200)]
    pub sample: usize,
    /// Reference networks of the calibrated attack (0: none).
    #[arg(long, default_value_t = 2)]
    pub reference_nets: usize,
    /// Run seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where tensors live.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::device::DeviceKind,
}

/// The scenario text `distillery audit` runs.
pub fn audit_scenario(a: &AuditArgs) -> Result<String> {
    if !a.set.is_file() {
        return Err(Error::Usage(format!(
            "{}: no such set file (expected a .safetensors written by distillery)",
            a.set.display()
        )));
    }
    let set = std::path::absolute(&a.set).map_err(|e| Error::io(&a.set, e))?;
    let stem: String = Path::new(&set)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "set".into())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut doc = DocumentMut::new();
    doc.decor_mut()
        .set_prefix("# Written by `distillery audit`.\n");
    doc["name"] = value(format!("audit-{stem}"));
    doc["kind"] = value("audit");
    doc["seed"] = value(a.seed as i64);
    doc["device"] = value(a.device.name());
    doc["data"] = Item::Table(data_table(&a.data)?);
    let mut model = Table::new();
    model["arch"] = value("convnet");
    model["width"] = value(a.width as i64);
    model["depth"] = value(a.depth as i64);
    doc["model"] = Item::Table(model);
    let mut eval = Table::new();
    eval["epochs"] = value(a.epochs as i64);
    doc["eval"] = Item::Table(eval);
    let mut audit = Table::new();
    audit["set"] = value(set.to_string_lossy().into_owned());
    audit["sample"] = value(a.sample as i64);
    audit["reference_nets"] = value(a.reference_nets as i64);
    doc["audit"] = Item::Table(audit);
    Ok(doc.to_string())
}
