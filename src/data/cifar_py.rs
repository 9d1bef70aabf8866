//! CIFAR's "python version" batches, the files torchvision downloads (`cifar-10-batches-py/`,
//! `cifar-100-python/`): each a pickled dict whose `data` is a numpy uint8 array of N x 3072
//! (1024 red, 1024 green, 1024 blue bytes per image, rows in order) and whose `labels`
//! (CIFAR-10) or `fine_labels` (CIFAR-100) is a list of N class numbers. Read with serde-pickle
//! after [`super::pickle_guard`] has checked the file; shapes, sizes and labels are validated.

use super::cifar::Variant;
use super::Dataset;
use crate::error::{Error, Result};
use serde_pickle::{DeOptions, HashableValue, Value};
use std::path::Path;

const PIXELS: usize = 3 * 32 * 32;

/// The pixels (N x 3072 bytes) and labels of one pickled batch.
pub fn parse_batch(
    bytes: &[u8],
    variant: Variant,
) -> std::result::Result<(Vec<u8>, Vec<usize>), String> {
    super::pickle_guard::check(bytes)?;
    // keep_restore_state keeps numpy's reconstruction arguments, so a protocol 5 array (rebuilt
    // from a buffer by `_frombuffer`) is readable as well as the protocol 2 ones CIFAR ships.
    let value = serde_pickle::value_from_slice(bytes, DeOptions::new().keep_restore_state())
        .map_err(|e| format!("not a readable pickle: {e}"))?;
    let Value::Dict(dict) = value else {
        return Err("the pickle does not hold a dict (not a CIFAR python batch?)".into());
    };
    let get = |key: &str| {
        dict.get(&HashableValue::Bytes(key.as_bytes().to_vec()))
            .or_else(|| dict.get(&HashableValue::String(key.to_string())))
    };
    let data = get("data").ok_or("no `data` entry (not a CIFAR python batch?)")?;
    let label_key = match variant {
        Variant::Cifar10 => "labels",
        Variant::Cifar100 => "fine_labels",
    };
    let labels = get(label_key).ok_or_else(|| {
        format!(
            "no `{label_key}` entry (not a {} python batch?)",
            variant.name()
        )
    })?;
    let (rows, cols, pixels) = ndarray_u8(data)?;
    if cols != PIXELS {
        return Err(format!(
            "`data` is {rows} x {cols}, expected N x {PIXELS} (3 x 32 x 32 images)"
        ));
    }
    let Value::List(labels) = labels else {
        return Err(format!("`{label_key}` is not a list"));
    };
    if labels.len() != rows {
        return Err(format!(
            "{} labels for {rows} images in `data`",
            labels.len()
        ));
    }
    let k = variant.num_classes();
    let labels = labels
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::I64(y) if (0..k as i64).contains(y) => Ok(*y as usize),
            other => Err(format!(
                "label {i} is {other:?}, expected a class from 0 to {} (wrong variant?)",
                k - 1
            )),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((pixels, labels))
}

/// A two-dimensional numpy array of single bytes, as serde-pickle leaves it: the state tuple
/// `(version, shape, dtype, fortran_order, bytes)` of protocols 2-4, or `_frombuffer`'s
/// arguments `(bytes, dtype, shape, order)` of protocol 5.
fn ndarray_u8(v: &Value) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    let bad = || "`data` is not a numpy array of bytes".to_string();
    let Value::Tuple(t) = v else {
        return Err(bad());
    };
    let (shape, dtype, bytes, fortran) = match t.as_slice() {
        [Value::I64(_), shape, dtype, Value::Bool(f), Value::Bytes(b)] => (shape, dtype, b, *f),
        [Value::Bytes(b), dtype, shape, order] => (
            shape,
            dtype,
            b,
            !matches!(order, Value::String(s) if s == "C"),
        ),
        _ => return Err(bad()),
    };
    if fortran {
        return Err("`data` is stored in Fortran order; expected C order".into());
    }
    // numpy's dtype state: (version, byte order, ...); '|' is the order of one-byte types.
    match dtype {
        Value::Tuple(d) if matches!(d.get(1), Some(Value::String(o)) if o == "|") => {}
        Value::Tuple(d) if matches!(d.get(1), Some(Value::Bytes(o)) if o == b"|") => {}
        _ => return Err("`data` is not an array of single bytes (uint8)".into()),
    }
    let dims: Vec<usize> = match shape {
        Value::Tuple(s) => s
            .iter()
            .map(|d| match d {
                Value::I64(n) if *n >= 0 => Ok(*n as usize),
                _ => Err("`data` has a malformed shape".to_string()),
            })
            .collect::<std::result::Result<_, _>>()?,
        _ => return Err("`data` has a malformed shape".into()),
    };
    let [rows, cols] = dims[..] else {
        return Err(format!(
            "`data` has {} dimensions, expected 2 (N x {PIXELS})",
            dims.len()
        ));
    };
    let need = rows.checked_mul(cols).ok_or("`data`'s shape overflows")?;
    if bytes.len() != need {
        return Err(format!(
            "`data` is {rows} x {cols} but holds {} bytes (expected {need}; truncated or not uint8?)",
            bytes.len()
        ));
    }
    Ok((rows, cols, bytes.clone()))
}

/// Loads and concatenates pickled CIFAR batches (pixels scaled to [0, 1]).
pub fn load(files: &[impl AsRef<Path>], variant: Variant) -> Result<Dataset> {
    let mut ds = super::cifar::empty(variant);
    for f in files {
        let f = f.as_ref();
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        let (pixels, labels) = parse_batch(&bytes, variant).map_err(|m| Error::data(f, m))?;
        ds.images.extend(pixels.iter().map(|&p| p as f32 / 255.0));
        ds.labels.extend(labels);
    }
    Ok(ds)
}

/// Writes `pixels` (N x 3072) and `labels` as a CIFAR python batch the way the official files
/// are written (Python 2's protocol 2: byte strings, numpy's `_reconstruct`); for tests and
/// tools.
pub fn encode_batch(pixels: &[u8], labels: &[u8], variant: Variant) -> Vec<u8> {
    let n = labels.len();
    let mut p = vec![0x80, 2, b'}', b'('];
    let short = |p: &mut Vec<u8>, s: &[u8]| {
        p.push(b'U');
        p.push(s.len() as u8);
        p.extend_from_slice(s);
    };
    short(&mut p, b"data");
    p.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n");
    p.extend_from_slice(&[b'K', 0, 0x85]);
    short(&mut p, b"b");
    p.extend_from_slice(&[0x87, b'R', b'(', b'K', 1]);
    // Shape (n, 3072) as BININT and BININT2.
    p.push(b'J');
    p.extend_from_slice(&(n as u32).to_le_bytes());
    p.push(b'M');
    p.extend_from_slice(&(PIXELS as u16).to_le_bytes());
    p.push(0x86);
    p.extend_from_slice(b"cnumpy\ndtype\n");
    short(&mut p, b"u1");
    p.extend_from_slice(&[b'K', 0, b'K', 1, 0x87, b'R', b'(', b'K', 3]);
    short(&mut p, b"|");
    p.extend_from_slice(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89");
    p.push(b'T');
    p.extend_from_slice(&(pixels.len() as u32).to_le_bytes());
    p.extend_from_slice(pixels);
    p.extend_from_slice(b"tb");
    short(
        &mut p,
        match variant {
            Variant::Cifar10 => b"labels",
            Variant::Cifar100 => b"fine_labels",
        },
    );
    p.extend_from_slice(b"](");
    for &y in labels {
        p.extend_from_slice(&[b'K', y]);
    }
    p.extend_from_slice(b"eu.");
    p
}
