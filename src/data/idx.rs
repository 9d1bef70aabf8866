//! MNIST-family IDX files (MNIST, Fashion-MNIST, KMNIST, USPS-as-IDX), gzip-compressed or raw.

use super::Dataset;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

const MAGIC_IMAGES: u32 = 0x0000_0803;
const MAGIC_LABELS: u32 = 0x0000_0801;

/// Reads a file whole, decompressing it if it starts with the gzip magic bytes.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decompress_if_gz(raw).map_err(|msg| Error::data(path, msg))
}

/// Decompresses `raw` if it is gzip, else returns it unchanged.
pub fn decompress_if_gz(raw: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("corrupt gzip stream: {e}"))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn header(bytes: &[u8], magic: u32, ndims: usize) -> std::result::Result<Vec<usize>, String> {
    let need = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(format!("truncated IDX header: {} bytes", bytes.len()));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    let found = word(0);
    if found != magic {
        return Err(format!(
            "wrong IDX magic number 0x{found:08x}, expected 0x{magic:08x} ({})",
            if magic == MAGIC_IMAGES {
                "uint8 images, 3 dims"
            } else {
                "uint8 labels, 1 dim"
            }
        ));
    }
    if bytes.len() < need {
        return Err(format!(
            "truncated IDX header: {} bytes, expected at least {need}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
    let body = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|b| b.checked_add(need).is_some())
        .ok_or_else(|| format!("header dimensions {dims:?} overflow"))?;
    if bytes.len() != need + body {
        return Err(format!(
            "size mismatch: header says {dims:?} ({body} data bytes) but the file holds {} data bytes{}",
            bytes.len() - need,
            if bytes.len() < need + body {
                " (truncated?)"
            } else {
                ""
            }
        ));
    }
    Ok(dims)
}

/// Parses IDX image bytes into (n, rows, cols, pixels as u8).
pub fn parse_images(bytes: &[u8]) -> std::result::Result<(usize, usize, usize, &[u8]), String> {
    let d = header(bytes, MAGIC_IMAGES, 3)?;
    Ok((d[0], d[1], d[2], &bytes[16..]))
}

/// Parses IDX label bytes.
pub fn parse_labels(bytes: &[u8]) -> std::result::Result<&[u8], String> {
    header(bytes, MAGIC_LABELS, 1)?;
    Ok(&bytes[8..])
}

/// Builds a dataset from already-decompressed IDX image and label bytes.
///
/// Pixels are divided by `max_value` (255 for MNIST, 16 for the digits set) to lie in [0, 1].
pub fn dataset_from_bytes(
    images: &[u8],
    labels: &[u8],
    max_value: f32,
    name: &str,
) -> std::result::Result<Dataset, (bool, String)> {
    let (n, rows, cols, pix) = parse_images(images).map_err(|m| (true, m))?;
    let lab = parse_labels(labels).map_err(|m| (false, m))?;
    if lab.len() != n {
        return Err((false, format!("{} labels for {n} images", lab.len())));
    }
    let num_classes = lab.iter().copied().max().map_or(0, |m| m as usize + 1);
    if num_classes > 256 {
        return Err((false, "more than 256 classes".into()));
    }
    Ok(Dataset {
        images: pix.iter().map(|&p| p as f32 / max_value).collect(),
        labels: lab.iter().map(|&y| y as usize).collect(),
        shape: [1, rows, cols],
        classes: super::class_names(name, num_classes.max(if name == "digits" { 10 } else { 0 })),
    })
}

/// Loads an IDX image file and its label file (each gzip or raw); pixels scaled by 1/255.
pub fn load(images: &Path, labels: &Path, name: &str) -> Result<Dataset> {
    let ib = read_maybe_gz(images)?;
    let lb = read_maybe_gz(labels)?;
    dataset_from_bytes(&ib, &lb, 255.0, name).map_err(|(img, msg)| {
        if img {
            Error::data(images, msg)
        } else {
            Error::data(labels, msg)
        }
    })
}

/// Encodes images (u8) and labels as IDX bytes (uncompressed); used by tests and tools.
pub fn encode(
    n: usize,
    rows: usize,
    cols: usize,
    pixels: &[u8],
    labels: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let mut im = Vec::with_capacity(16 + pixels.len());
    for w in [MAGIC_IMAGES, n as u32, rows as u32, cols as u32] {
        im.extend_from_slice(&w.to_be_bytes());
    }
    im.extend_from_slice(pixels);
    let mut lb = Vec::with_capacity(8 + labels.len());
    for w in [MAGIC_LABELS, n as u32] {
        lb.extend_from_slice(&w.to_be_bytes());
    }
    lb.extend_from_slice(labels);
    (im, lb)
}
