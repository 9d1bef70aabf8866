//! CLI shortcuts that build a scenario (everything a user can do is a scenario): `distillery
//! distill --method dm --ipc 10 --data PATH` writes the `distill` scenario it then runs.

use crate::error::{Error, Result};
use std::path::Path;

/// The flags of `distillery distill`.
#[derive(Clone, Debug, clap::Args)]
pub struct DistillArgs {
    /// dm, mtt, random, herding or kcenter.
    #[arg(long, default_value = "dm")]
    pub method: String,
    /// Images per class.
    #[arg(long, default_value_t = 10)]
    pub ipc: usize,
    /// `digits` (embedded), an MNIST-style folder of IDX files, or a CIFAR binary folder.
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// Distillation iterations (default: the method's reference, dm 20000, mtt 5000).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Real images per class per iteration (reference: 256).
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
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
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

/// The `[data]` table for `--data`: the embedded digits, an IDX folder or a CIFAR folder.
fn data_table(data: &str) -> Result<String> {
    if data == "digits" {
        return Ok("source = \"digits\"\n".into());
    }
    let dir = Path::new(data);
    if !dir.is_dir() {
        return Err(Error::Other(format!(
            "--data {data}: expected `digits` or a folder of MNIST IDX files or CIFAR binary files"
        )));
    }
    let abs = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let q = |s: &str| format!("{s:?}");
    let files = [
        find(
            &abs,
            &["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
        ),
        find(
            &abs,
            &["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"],
        ),
        find(&abs, &["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]),
        find(&abs, &["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"]),
    ];
    if let [Some(a), Some(b), Some(c), Some(d)] = &files {
        let name = if data.to_lowercase().contains("fashion") {
            "fashion_mnist"
        } else {
            "mnist"
        };
        return Ok(format!(
            "source = \"idx\"\nname = \"{name}\"\ntrain_images = {}\ntrain_labels = {}\ntest_images = {}\ntest_labels = {}\n",
            q(a), q(b), q(c), q(d)
        ));
    }
    let d = q(&abs.to_string_lossy());
    if abs.join("data_batch_1.bin").is_file() {
        return Ok(format!("source = \"cifar10\"\ndir = {d}\n"));
    }
    if abs.join("train.bin").is_file() {
        return Ok(format!("source = \"cifar100\"\ndir = {d}\n"));
    }
    Err(Error::Other(format!(
        "--data {data}: found neither MNIST IDX files (train-images-idx3-ubyte[.gz], ...) nor CIFAR binary files (data_batch_1.bin or train.bin)"
    )))
}

/// The scenario text `distillery distill` runs.
pub fn distill_scenario(a: &DistillArgs) -> Result<String> {
    let data = data_table(&a.data)?;
    let tag = Path::new(&a.data)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>();
    Ok(format!(
        "# Written by `distillery distill`.\n\
         name = \"{m}-{tag}-ipc{ipc}\"\n\
         kind = \"distill\"\n\
         seed = {seed}\n\
         device = {device:?}\n\n\
         [data]\n{data}\n\
         [model]\narch = \"convnet\"\nwidth = {w}\ndepth = {depth}\n\n\
         [distill]\nmethod = {m:?}\nipc = {ipc}\n{it}batch_real = {br}\n\n\
         [eval]\nepochs = {ee}\nrepeats = {r}\n",
        m = a.method,
        ipc = a.ipc,
        seed = a.seed,
        device = a.device,
        w = a.width,
        depth = a.depth,
        it = a
            .iterations
            .map(|n| format!("iterations = {n}\n"))
            .unwrap_or_default(),
        br = a.batch_real,
        ee = a.eval_epochs,
        r = a.repeats,
    ))
}
