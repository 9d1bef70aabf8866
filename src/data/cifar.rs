//! CIFAR-10 and CIFAR-100 binary formats (the "binary version" files from the official page).

use super::Dataset;
use crate::error::{Error, Result};
use std::path::Path;

/// Which CIFAR variant a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// 1 label byte (0..9) then 3072 pixel bytes per record.
    Cifar10,
    /// 2 label bytes (coarse, fine 0..99) then 3072 pixel bytes; the fine label is used.
    Cifar100,
}

impl Variant {
    fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }

    /// Number of classes.
    pub fn num_classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }

    /// The dataset name used for normalisation constants.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Cifar10 => "cifar10",
            Variant::Cifar100 => "cifar100",
        }
    }
}

const PIXELS: usize = 3 * 32 * 32;

/// Parses CIFAR binary records into `out` (pixels scaled to [0, 1]).
pub fn parse_into(
    bytes: &[u8],
    variant: Variant,
    out: &mut Dataset,
) -> std::result::Result<(), String> {
    let rec = variant.label_bytes() + PIXELS;
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if !bytes.len().is_multiple_of(rec) {
        return Err(format!(
            "{} bytes is not a whole number of {rec}-byte {} records (truncated or not a CIFAR binary file?)",
            bytes.len(),
            variant.name()
        ));
    }
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let y = r[variant.label_bytes() - 1] as usize;
        if y >= variant.num_classes() {
            return Err(format!(
                "record {i}: label {y} out of range 0..{} (wrong variant?)",
                variant.num_classes()
            ));
        }
        out.labels.push(y);
        out.images
            .extend(r[variant.label_bytes()..].iter().map(|&p| p as f32 / 255.0));
    }
    Ok(())
}

/// No images yet, of `variant`'s shape and classes.
pub(crate) fn empty(variant: Variant) -> Dataset {
    Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        shape: [3, 32, 32],
        classes: super::class_names(variant.name(), variant.num_classes()),
    }
}

/// Loads and concatenates CIFAR binary files.
pub fn load(files: &[impl AsRef<Path>], variant: Variant) -> Result<Dataset> {
    let mut ds = empty(variant);
    for f in files {
        let f = f.as_ref();
        let bytes = super::idx::read_maybe_gz(f)?;
        parse_into(&bytes, variant, &mut ds).map_err(|m| Error::data(f, m))?;
    }
    Ok(ds)
}
