//! The safetensors plumbing shared by synthetic sets and expert trajectories: building a file
//! from named tensors, reading f32 values, and reading only some tensors of a large file.

use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// A tensor to write: name, dtype, shape, little-endian bytes.
pub type Owned = (String, Dtype, Vec<usize>, Vec<u8>);

/// Little-endian bytes of `v`.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The f32 values of little-endian bytes.
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Serialises `tensors` with `meta` (keep it to one entry: safetensors writes a map's entries in
/// hash order, and the same content must always encode to the same bytes).
pub fn encode(tensors: &[Owned], meta: Option<(&str, String)>) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, dt, shape, bytes)| {
            TensorView::new(*dt, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Encode(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = meta.map(|(k, v)| HashMap::from([(k.to_string(), v)]));
    safetensors::serialize(views, meta).map_err(|e| Error::Encode(format!("safetensors: {e}")))
}

/// A tensor's entry in a file header.
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

/// The header of a safetensors file: its length and the tensors' entries (read without the data).
fn header(f: &mut std::fs::File) -> std::result::Result<(u64, HashMap<String, Entry>), String> {
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| "not a safetensors file (too short)".to_string())?;
    let n = u64::from_le_bytes(n);
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    if n > size.saturating_sub(8) || n > 100_000_000 {
        return Err("not a safetensors file (bad header length)".into());
    }
    let mut text = vec![0u8; n as usize];
    f.read_exact(&mut text).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| format!("not a safetensors file (header: {e})"))?;
    let mut out = HashMap::new();
    for (name, v) in json.as_object().into_iter().flatten() {
        if name == "__metadata__" {
            continue;
        }
        let offs: Vec<u64> = serde_json::from_value(v["data_offsets"].clone())
            .map_err(|_| format!("tensor `{name}`: bad data_offsets"))?;
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone())
            .map_err(|_| format!("tensor `{name}`: bad shape"))?;
        if offs.len() != 2
            || offs[0] > offs[1]
            || offs[1].checked_add(8 + n).is_none_or(|end| end > size)
        {
            return Err(format!(
                "tensor `{name}` lies outside the file (truncated?)"
            ));
        }
        out.insert(
            name.clone(),
            Entry {
                dtype: v["dtype"].as_str().unwrap_or_default().to_string(),
                shape,
                start: 8 + n + offs[0],
                end: 8 + n + offs[1],
            },
        );
    }
    Ok((8 + n, out))
}

/// True when `path` is a readable safetensors file whose header lists every name in `names`
/// within the file's size (a cheap completeness check: no tensor data is read).
pub fn has_tensors(path: &Path, names: &[String]) -> bool {
    std::fs::File::open(path)
        .ok()
        .and_then(|mut f| header(&mut f).ok())
        .is_some_and(|(_, h)| names.iter().all(|n| h.contains_key(n)))
}

/// Reads the f32 tensors `names` (with their expected shapes) from `path`, seeking to each one
/// rather than reading the whole file. Errors name the tensor and what is wrong.
pub fn read_f32(path: &Path, names: &[(String, Vec<usize>)]) -> Result<Vec<Vec<f32>>> {
    let run = || -> std::result::Result<Vec<Vec<f32>>, String> {
        let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let (_, h) = header(&mut f)?;
        names
            .iter()
            .map(|(name, shape)| {
                let e = h.get(name).ok_or_else(|| {
                    format!(
                        "missing tensor `{name}` (an expert of another network or fewer epochs?)"
                    )
                })?;
                let want = shape.iter().product::<usize>() as u64 * 4;
                if e.dtype != "F32" || &e.shape != shape || e.end - e.start != want {
                    return Err(format!(
                        "`{name}` is {} {:?}, expected F32 {shape:?}",
                        e.dtype, e.shape
                    ));
                }
                let mut buf = vec![0u8; want as usize];
                f.seek(SeekFrom::Start(e.start))
                    .and_then(|_| f.read_exact(&mut buf))
                    .map_err(|err| format!("`{name}`: {err}"))?;
                let v = f32_values(&buf);
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(format!("`{name}` holds a non-finite value at index {i}"));
                }
                Ok(v)
            })
            .collect()
    };
    run().map_err(|m| Error::data(path, m))
}
