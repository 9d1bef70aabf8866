//! TensorBoard event files, written by hand: TFRecord framing (u64 length, masked CRC-32C of
//! the length, the data, masked CRC-32C of the data) around `Event` protobufs holding
//! `Summary` values (scalars as `simple_value`, images as PNG `Image`s). [`export`] turns a
//! results folder's CSV rows and set pictures into one such file.

pub mod export;

use crate::error::{Error, Result};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `tensorflow.Event` (the fields written here).
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Seconds since the epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The step (iteration, round, task).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `brain.Event:2` in a file's first event.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// The values logged at this step.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// Its values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `tensorflow.Summary.Value`: a scalar or an image under a tag.
#[derive(Clone, PartialEq, Message)]
pub struct Value {
    /// The series' name.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    /// An image.
    #[prost(message, optional, tag = "4")]
    pub image: Option<Image>,
}

/// `tensorflow.Summary.Image`: an encoded (PNG) picture.
#[derive(Clone, PartialEq, Message)]
pub struct Image {
    /// Pixels high.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Pixels wide.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The PNG bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// CRC-32C (Castagnoli), bit by bit over a 256-entry table.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82f6_3b78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// TFRecord's masked CRC: rotated right by 15 and offset, so CRCs of CRCs stay distinct.
pub fn masked_crc(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, the data's masked CRC.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The records of a TFRecord file, each checked against its CRCs.
pub fn read_records(bytes: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 12)
            .ok_or(format!("a record header cut short at byte {at}"))?;
        let len_bytes = &head[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        if u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) != masked_crc(len_bytes) {
            return Err(format!(
                "the length CRC of the record at byte {at} is wrong"
            ));
        }
        let data = bytes
            .get(at + 12..at + 12 + len)
            .ok_or(format!("the record at byte {at} is cut short"))?;
        let crc = bytes
            .get(at + 12 + len..at + 16 + len)
            .ok_or(format!("the record at byte {at} has no data CRC"))?;
        if u32::from_le_bytes(crc.try_into().expect("4 bytes")) != masked_crc(data) {
            return Err(format!("the data CRC of the record at byte {at} is wrong"));
        }
        out.push(data.to_vec());
        at += 16 + len;
    }
    Ok(out)
}

/// An event file being written: events are kept in order and written at [`EventFile::finish`].
pub struct EventFile {
    path: PathBuf,
    bytes: Vec<u8>,
    wall_time: f64,
}

impl EventFile {
    /// A new file `dir/events.out.tfevents.<seconds>.distillery`, its events stamped `wall_time`.
    pub fn new(dir: &Path, wall_time: f64) -> EventFile {
        let path = dir.join(format!(
            "events.out.tfevents.{}.distillery",
            wall_time as u64
        ));
        let mut f = EventFile {
            path,
            bytes: Vec::new(),
            wall_time,
        };
        f.push(Event {
            wall_time,
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        });
        f
    }

    fn push(&mut self, e: Event) {
        self.bytes.extend(record(&e.encode_to_vec()));
    }

    /// Logs `value` under `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f64) {
        self.values(
            step,
            vec![Value {
                tag: tag.into(),
                simple_value: Some(value as f32),
                image: None,
            }],
        );
    }

    /// Logs the PNG `png` under `tag` at `step` (its size read from its header).
    pub fn image(&mut self, tag: &str, step: i64, png: &[u8]) -> std::result::Result<(), String> {
        let ihdr = png
            .get(16..24)
            .filter(|_| png.starts_with(b"\x89PNG\r\n\x1a\n"))
            .ok_or("not a PNG")?;
        let dim = |b: &[u8]| i32::from_be_bytes(b.try_into().expect("4 bytes"));
        let colorspace = match png.get(25) {
            Some(0) => 1,
            Some(4) => 2,
            Some(6) => 4,
            _ => 3,
        };
        self.values(
            step,
            vec![Value {
                tag: tag.into(),
                simple_value: None,
                image: Some(Image {
                    height: dim(&ihdr[4..8]),
                    width: dim(&ihdr[..4]),
                    colorspace,
                    encoded_image_string: png.to_vec(),
                }),
            }],
        );
        Ok(())
    }

    fn values(&mut self, step: i64, value: Vec<Value>) {
        let wall_time = self.wall_time;
        self.push(Event {
            wall_time,
            step,
            file_version: None,
            summary: Some(Summary { value }),
        });
    }

    /// Writes the file; returns its path.
    pub fn finish(self) -> Result<PathBuf> {
        let mut f = std::fs::File::create(&self.path).map_err(|e| Error::io(&self.path, e))?;
        f.write_all(&self.bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
}
