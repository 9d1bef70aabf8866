//! CLI shortcuts that build a scenario (everything a user can do is a scenario): `distillery
//! distill --method dm --ipc 10 --data NAME|PATH` writes the `distill` scenario it then runs.

pub mod audit;

use crate::error::{Error, Result};
use std::path::Path;
use toml_edit::{value, DocumentMut, Item, Table};

/// The flags of `distillery distill`.
#[derive(Clone, Debug, clap::Args)]
pub struct DistillArgs {
    /// The method: dm, mtt, selmatch, random, herding or kcenter (its reference settings).
    #[arg(long, default_value = "dm", value_parser = method_name)]
    pub method: String,
    /// Images per class.
    #[arg(long, default_value_t = 10)]
    pub ipc: usize,
    /// `digits` (embedded), a dataset name (`mnist`, `cifar10`, ...: `distillery data list`), an
    /// MNIST-style folder of IDX files, or a CIFAR binary folder.
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// Distillation iterations (default: the method's reference: dm 20000, mtt 5000, selmatch 10000).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// DM: real images per class per iteration (reference: 256).
    #[arg(long, default_value_t = 256)]
    pub batch_real: usize,
    /// Epochs each evaluation network trains (reference: 1000).
    #[arg(long, default_value_t = 1000)]
    pub eval_epochs: usize,
    /// Evaluation networks per set (reference: 5).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// ConvNet width (reference: 128).
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// ConvNet depth (reference: 3).
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Run seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where tensors live.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: crate::device::DeviceKind,
}

/// `name` if it names a method.
fn method_name(name: &str) -> std::result::Result<String, String> {
    match crate::distill::MethodConfig::defaults(name) {
        Some(_) => Ok(name.to_string()),
        None => Err(format!(
            "expected one of {}",
            crate::distill::MethodConfig::names().join(", ")
        )),
    }
}

fn find(dir: &Path, stems: &[&str]) -> Option<String> {
    for s in stems {
        for ext in ["", ".gz"] {
            let p = dir.join(format!("{s}{ext}"));
            if p.is_file() {
                return Some(p.to_string_lossy().into_owned());
            }
        }
    }
    None
}

/// The `[data]` table for `--data`: the embedded digits, an IDX folder, a CIFAR folder, or a
/// dataset by name (read from the data folder, fetched there when missing).
pub(crate) fn data_table(data: &str) -> Result<Table> {
    let mut t = Table::new();
    if data == "digits" {
        t["source"] = value("digits");
        return Ok(t);
    }
    let dir = Path::new(data);
    if !dir.is_dir() {
        if crate::data::catalog::find(data).is_some() {
            t["source"] = value(data);
            return Ok(t);
        }
        return Err(Error::Usage(format!(
            "--data {data}: expected `digits`, a dataset name ({}) or a folder of MNIST IDX files or CIFAR binary files",
            crate::data::catalog::names().join(", ")
        )));
    }
    let abs = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let files = [
        (
            "train_images",
            &["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
        ),
        (
            "train_labels",
            &["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"],
        ),
        (
            "test_images",
            &["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"],
        ),
        (
            "test_labels",
            &["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"],
        ),
    ]
    .map(|(key, stems)| (key, find(&abs, stems)));
    if files.iter().all(|(_, f)| f.is_some()) {
        t["source"] = value("idx");
        let fashion = data.to_lowercase().contains("fashion");
        t["name"] = value(if fashion { "fashion_mnist" } else { "mnist" });
        for (key, f) in files {
            t[key] = value(f.unwrap_or_default());
        }
        return Ok(t);
    }
    let d = abs.to_string_lossy().into_owned();
    if abs.join("data_batch_1.bin").is_file() {
        t["source"] = value("cifar10");
    } else if abs.join("train.bin").is_file() {
        t["source"] = value("cifar100");
    } else {
        return Err(Error::Usage(format!(
            "--data {data}: found neither MNIST IDX files (train-images-idx3-ubyte[.gz], ...) nor CIFAR binary files (data_batch_1.bin or train.bin)"
        )));
    }
    t["dir"] = value(d);
    Ok(t)
}

/// A table of `pairs`.
fn table<const N: usize>(pairs: [(&str, Item); N]) -> Table {
    let mut t = Table::new();
    for (k, v) in pairs {
        t[k] = v;
    }
    t
}

/// The scenario text `distillery distill` runs.
pub fn distill_scenario(a: &DistillArgs) -> Result<String> {
    let tag: String = Path::new(&a.data)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut doc = DocumentMut::new();
    doc.decor_mut()
        .set_prefix("# Written by `distillery distill`.\n");
    doc["name"] = value(format!("{}-{tag}-ipc{}", a.method, a.ipc));
    doc["kind"] = value("distill");
    doc["seed"] = value(a.seed as i64);
    doc["device"] = value(a.device.name());
    doc["data"] = Item::Table(data_table(&a.data)?);
    doc["model"] = Item::Table(table([
        ("arch", value("convnet")),
        ("width", value(a.width as i64)),
        ("depth", value(a.depth as i64)),
    ]));
    let mut distill = table([("method", value(&a.method)), ("ipc", value(a.ipc as i64))]);
    if let Some(n) = a.iterations {
        distill["iterations"] = value(n as i64);
    }
    if a.method == "dm" {
        distill["batch_real"] = value(a.batch_real as i64);
    }
    doc["distill"] = Item::Table(distill);
    doc["eval"] = Item::Table(table([
        ("epochs", value(a.eval_epochs as i64)),
        ("repeats", value(a.repeats as i64)),
    ]));
    Ok(doc.to_string())
}
