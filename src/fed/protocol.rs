//! The wire: tensors, weights and synthetic sets to and from protobuf (proto/distillery.proto),
//! with optional quantization (f16, or u8 with a per-tensor scale and offset); the typed messages
//! ([`super::message`]) encoded to the bytes that are counted and sent, and decoded with the checks
//! a server applies to whatever a client sends before it touches its own state.

pub use super::message::Weights;
use super::message::{Payload, Rejection, SentSet, Task, Update};
use super::pb;
use crate::data::Dataset;
use prost::Message;
use serde::{Deserialize, Serialize};

/// How tensors travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    /// 4 bytes per value, exact.
    #[default]
    F32,
    /// 2 bytes per value (IEEE half precision).
    F16,
    /// 1 byte per value: min + (max - min) / 255 * byte, per tensor.
    U8,
}

impl Quantization {
    /// The name used in results.
    pub fn name(self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::U8 => "u8",
        }
    }
}

/// Encodes `values` of `shape` as a wire tensor.
pub fn encode_tensor(values: &[f32], shape: &[usize], q: Quantization) -> pb::Tensor {
    let shape: Vec<u32> = shape.iter().map(|&d| d as u32).collect();
    match q {
        Quantization::F32 => pb::Tensor {
            shape,
            encoding: pb::Encoding::F32 as i32,
            scale: 0.0,
            offset: 0.0,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        },
        Quantization::F16 => pb::Tensor {
            shape,
            encoding: pb::Encoding::F16 as i32,
            scale: 0.0,
            offset: 0.0,
            data: values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        },
        Quantization::U8 => {
            let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (lo, hi) = if lo.is_finite() && hi.is_finite() {
                (lo, hi)
            } else {
                (0.0, 0.0)
            };
            let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
            pb::Tensor {
                shape,
                encoding: pb::Encoding::U8 as i32,
                scale,
                offset: lo,
                data: values
                    .iter()
                    .map(|&v| {
                        if v.is_finite() {
                            ((v - lo) / scale).round().clamp(0.0, 255.0) as u8
                        } else {
                            0
                        }
                    })
                    .collect(),
            }
        }
    }
}

/// The values and shape of a wire tensor; errors say what is wrong with it.
pub fn decode_tensor(t: &pb::Tensor) -> Result<(Vec<f32>, Vec<usize>), String> {
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    let (width, enc) = match pb::Encoding::try_from(t.encoding) {
        Ok(pb::Encoding::F32) => (4, pb::Encoding::F32),
        Ok(pb::Encoding::F16) => (2, pb::Encoding::F16),
        Ok(pb::Encoding::U8) => (1, pb::Encoding::U8),
        Err(_) => return Err(format!("unknown tensor encoding {}", t.encoding)),
    };
    let bytes = n
        .checked_mul(width)
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    if t.data.len() != bytes {
        return Err(format!(
            "shape {shape:?} needs {bytes} bytes of {enc:?}, got {}",
            t.data.len()
        ));
    }
    let values: Vec<f32> = match enc {
        pb::Encoding::F32 => t
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        pb::Encoding::F16 => t
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        pb::Encoding::U8 => t
            .data
            .iter()
            .map(|&b| t.offset + t.scale * b as f32)
            .collect(),
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("value {} at index {i} is not finite", values[i]));
    }
    Ok((values, shape))
}

/// Encodes weights; each tensor is sent flat (its shape is fixed by the architecture).
pub fn encode_weights(w: &Weights, q: Quantization) -> pb::Weights {
    pb::Weights {
        params: w
            .params
            .iter()
            .map(|p| encode_tensor(p, &[p.len()], q))
            .collect(),
        buffers: w
            .buffers
            .iter()
            .map(|b| encode_tensor(b, &[b.len()], Quantization::F32))
            .collect(),
    }
}

/// Decodes weights and checks them against the expected `like` (same count and sizes).
pub fn decode_weights(w: &pb::Weights, like: &Weights) -> Result<Weights, String> {
    let part =
        |ts: &[pb::Tensor], want: &[Vec<f32>], what: &str| -> Result<Vec<Vec<f32>>, String> {
            if ts.len() != want.len() {
                return Err(format!(
                    "{} {what} tensors, expected {}",
                    ts.len(),
                    want.len()
                ));
            }
            ts.iter()
                .zip(want)
                .enumerate()
                .map(|(i, (t, w))| {
                    let (v, _) = decode_tensor(t).map_err(|e| format!("{what} {i}: {e}"))?;
                    if v.len() != w.len() {
                        return Err(format!(
                            "{what} {i} has {} values, expected {}",
                            v.len(),
                            w.len()
                        ));
                    }
                    Ok(v)
                })
                .collect()
        };
    Ok(Weights {
        params: part(&w.params, &like.params, "parameter")?,
        buffers: part(&w.buffers, &like.buffers, "buffer")?,
    })
}

/// Encodes a synthetic set (images NCHW, labels).
pub fn encode_set(d: &Dataset, syn_lr: Option<f32>, q: Quantization) -> pb::SyntheticSet {
    encode_soft_set(d, None, syn_lr, q)
}

/// Encodes a synthetic set with its soft labels (`[n, classes]`, in the same encoding as the
/// images) when it has them.
pub fn encode_soft_set(
    d: &Dataset,
    soft: Option<&[f32]>,
    syn_lr: Option<f32>,
    q: Quantization,
) -> pb::SyntheticSet {
    let [c, h, w] = d.shape;
    pb::SyntheticSet {
        images: Some(encode_tensor(&d.images, &[d.len(), c, h, w], q)),
        labels: d.labels.iter().map(|&y| y as u32).collect(),
        syn_lr,
        soft_labels: soft.map(|p| encode_tensor(p, &[d.len(), d.classes.len()], q)),
    }
}

/// Decodes a synthetic set and checks it: images of `shape`, one label per image, labels below
/// the number of `classes`, finite values.
pub fn decode_set(
    s: &pb::SyntheticSet,
    shape: [usize; 3],
    classes: &[String],
) -> Result<Dataset, String> {
    Ok(decode_soft_set(s, shape, classes)?.data)
}

/// [`decode_set`] with the soft labels, checked: `[n, classes]`, finite, none below zero.
pub fn decode_soft_set(
    s: &pb::SyntheticSet,
    shape: [usize; 3],
    classes: &[String],
) -> Result<SentSet, String> {
    let soft_labels = match &s.soft_labels {
        None => None,
        Some(t) => {
            let (v, dims) = decode_tensor(t).map_err(|e| format!("soft labels: {e}"))?;
            if dims != [s.labels.len(), classes.len()] {
                return Err(format!(
                    "soft labels of shape {dims:?}, expected [{}, {}]",
                    s.labels.len(),
                    classes.len()
                ));
            }
            if let Some(p) = v.iter().find(|&&p| p < 0.0) {
                return Err(format!("a soft label of {p}, below zero"));
            }
            Some(v)
        }
    };
    let t = s.images.as_ref().ok_or("a synthetic set without images")?;
    let (images, dims) = decode_tensor(t)?;
    if dims.len() != 4 || dims[1..] != shape[..] {
        return Err(format!(
            "images of shape {dims:?}, expected [n, {}, {}, {}]",
            shape[0], shape[1], shape[2]
        ));
    }
    if s.labels.len() != dims[0] {
        return Err(format!("{} labels for {} images", s.labels.len(), dims[0]));
    }
    if let Some(y) = s.labels.iter().find(|&&y| y as usize >= classes.len()) {
        return Err(format!("label {y} outside 0..{}", classes.len()));
    }
    if let Some(lr) = s.syn_lr {
        if !lr.is_finite() || lr <= 0.0 {
            return Err(format!("step size {lr} is not a positive number"));
        }
    }
    let data = Dataset {
        images,
        labels: s.labels.iter().map(|&y| y as usize).collect(),
        shape,
        classes: classes.to_vec(),
    };
    Ok(SentSet { data, soft_labels })
}

/// The exact number of bytes a message takes on the wire (its protobuf encoding).
pub fn wire_len<M: Message>(m: &M) -> usize {
    m.encoded_len()
}

/// What the server expects of updates: weights of the network's shapes, sets of images of
/// `shape` with labels below the number of `classes`.
#[derive(Clone, Debug)]
pub struct Expect {
    /// Zero weights of the network's shapes.
    pub weights: Weights,
    /// Image shape.
    pub shape: [usize; 3],
    /// Class names.
    pub classes: Vec<String>,
}

/// The bytes of `task` (tensors quantised by `q`).
pub fn encode_task(task: &Task, q: Quantization) -> Vec<u8> {
    task_message(task, q).encode_to_vec()
}

/// `task` as its protobuf message.
pub fn task_message(task: &Task, q: Quantization) -> pb::RoundTask {
    pb::RoundTask {
        round: task.round as u32,
        strategy: task.strategy.clone(),
        global: task.global.as_ref().map(|w| encode_weights(w, q)),
        done: false,
        seq: task.seq,
        task: task.task as u32,
    }
}

/// A task from its protobuf message (the global model checked against `expect`).
pub fn task_from(m: &pb::RoundTask, expect: &Expect) -> Result<Task, String> {
    let global = match &m.global {
        Some(w) => Some(decode_weights(w, &expect.weights)?),
        None => None,
    };
    Ok(Task {
        round: m.round as usize,
        seq: m.seq,
        strategy: m.strategy.clone(),
        task: m.task as usize,
        global,
    })
}

/// `update` as its protobuf message (tensors quantised by `q`).
pub fn update_message(update: &Update, q: Quantization) -> pb::ClientUpdate {
    let payload = match &update.payload {
        Payload::Weights(w) => pb::client_update::Payload::Weights(encode_weights(w, q)),
        Payload::Set(d) => pb::client_update::Payload::Synthetic(encode_soft_set(
            &d.data,
            d.soft_labels.as_deref(),
            None,
            q,
        )),
        Payload::Failed(why) => pb::client_update::Payload::Error(why.clone()),
    };
    pb::ClientUpdate {
        client_id: update.client as u32,
        round: update.round as u32,
        num_samples: update.num_samples,
        payload: Some(payload),
        compute_seconds: update.compute_seconds,
    }
}

/// The update in `bytes` from client `client` for `round`, checked: the size limit, the
/// encoding, who and which round it says it is, and its payload against `expect`.
pub fn decode_update(
    bytes: &[u8],
    client: usize,
    round: usize,
    limit: usize,
    expect: &Expect,
) -> Result<Update, Rejection> {
    if bytes.len() > limit {
        return Err(Rejection::Oversize {
            bytes: bytes.len(),
            limit,
        });
    }
    let u = pb::ClientUpdate::decode(bytes).map_err(|e| Rejection::Undecodable(e.to_string()))?;
    if u.client_id as usize != client || u.round as usize != round {
        return Err(Rejection::Mislabelled {
            client: u.client_id,
            round: u.round,
        });
    }
    let payload = match &u.payload {
        None => return Err(Rejection::NoPayload),
        Some(pb::client_update::Payload::Error(e)) => {
            return Err(Rejection::ClientFailed(e.clone()))
        }
        Some(pb::client_update::Payload::Weights(w)) => {
            Payload::Weights(decode_weights(w, &expect.weights).map_err(Rejection::Invalid)?)
        }
        Some(pb::client_update::Payload::Synthetic(s)) => {
            let set = decode_soft_set(s, expect.shape, &expect.classes);
            Payload::Set(set.map_err(Rejection::Invalid)?)
        }
    };
    Ok(Update {
        client,
        round,
        num_samples: u.num_samples,
        compute_seconds: if u.compute_seconds.is_finite() {
            u.compute_seconds.max(0.0)
        } else {
            0.0
        },
        payload,
    })
}
