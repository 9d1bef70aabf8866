//! USPS as LIBSVM distributes it and torchvision reads it: bzip2-compressed text, one image per
//! line, `label index:value ...` with labels 1 to 10 (digits 0 to 9) and 256 values in [-1, 1]
//! (16 x 16 pixels, row-major). Pixels become bytes as torchvision makes them,
//! `uint8((v + 1) / 2 * 255)`, then [0, 1] like every other dataset.

use super::Dataset;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

const SIDE: usize = 16;

/// Parses LIBSVM text (already decompressed) into a dataset.
pub fn parse(text: &str) -> std::result::Result<Dataset, String> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |m: String| format!("line {}: {m}", i + 1);
        let mut fields = line.split_whitespace();
        let label: usize = fields
            .next()
            .and_then(|l| l.parse::<f64>().ok())
            .filter(|y| y.fract() == 0.0 && (1.0..=10.0).contains(y))
            .map(|y| y as usize - 1)
            .ok_or_else(|| at("the label is not a class from 1 to 10".into()))?;
        let mut pixels = [0u8; SIDE * SIDE];
        let mut seen = [false; SIDE * SIDE];
        for f in fields {
            let (k, v) = f
                .split_once(':')
                .ok_or_else(|| at(format!("{f:?} is not index:value")))?;
            let k: usize = k
                .parse()
                .ok()
                .filter(|k| (1..=SIDE * SIDE).contains(k))
                .ok_or_else(|| at(format!("index {k:?} is not from 1 to 256")))?;
            let v: f32 = v
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .ok_or_else(|| at(format!("value {v:?} is not a number")))?;
            // torchvision: ((v + 1) / 2 * 255).astype(uint8), which truncates toward zero.
            pixels[k - 1] = ((v + 1.0) / 2.0 * 255.0).clamp(0.0, 255.0) as u8;
            seen[k - 1] = true;
        }
        let missing = seen.iter().filter(|s| !**s).count();
        if missing > 0 {
            return Err(at(format!(
                "{missing} of the 256 pixels (16 x 16) have no value"
            )));
        }
        images.extend(pixels.iter().map(|&p| p as f32 / 255.0));
        labels.push(label);
    }
    Ok(Dataset {
        images,
        labels,
        shape: [1, SIDE, SIDE],
        classes: super::class_names("usps", 10),
    })
}

/// Loads a LIBSVM USPS file, bzip2-compressed (`usps.bz2`) or not.
pub fn load(path: &Path) -> Result<Dataset> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = if raw.starts_with(b"BZh") {
        let mut out = String::new();
        bzip2::read::BzDecoder::new(&raw[..])
            .read_to_string(&mut out)
            .map_err(|e| Error::data(path, format!("corrupt bzip2 stream or not text: {e}")))?;
        out
    } else {
        String::from_utf8(raw).map_err(|_| Error::data(path, "not text (nor bzip2)"))?
    };
    parse(&text).map_err(|m| Error::data(path, m))
}
