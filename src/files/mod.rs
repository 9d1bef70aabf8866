//! Result files: CSV rows appended and flushed as a run goes (typed: one struct per row, its
//! fields the columns), and files written atomically (a temporary file, synced, then renamed).

pub mod checkpoint;

use crate::error::{Error, Result};
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// A CSV file of rows of type `R`, one flushed to disk at a time.
pub struct CsvLog<R> {
    path: PathBuf,
    w: csv::Writer<File>,
    row: PhantomData<R>,
}

/// The column names of rows of type `R` (its fields, in order).
pub fn header<R: Serialize + Default>() -> Vec<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if w.serialize(R::default()).is_err() {
        return Vec::new();
    }
    let bytes = w.into_inner().unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let first = text.lines().next().unwrap_or_default();
    first.split(',').map(str::to_string).collect()
}

impl<R: Serialize + Default> CsvLog<R> {
    /// Creates `path` with the header row.
    pub fn create(path: &Path) -> Result<Self> {
        let f = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(f);
        let csv_err = |e: csv::Error| Error::io(path, std::io::Error::other(e));
        w.write_record(header::<R>()).map_err(csv_err)?;
        w.flush().map_err(|e| Error::io(path, e))?;
        Ok(CsvLog {
            path: path.to_path_buf(),
            w,
            row: PhantomData,
        })
    }

    /// Opens `path` for appending (a resumed run); creates it with the header when missing.
    pub fn append(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Self::create(path);
        }
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(CsvLog {
            path: path.to_path_buf(),
            w: csv::WriterBuilder::new().has_headers(false).from_writer(f),
            row: PhantomData,
        })
    }

    /// Appends one row and flushes it.
    pub fn row(&mut self, row: &R) -> Result<()> {
        self.w
            .serialize(row)
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        self.w.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes `bytes` to `path` through a temporary file (synced) and a rename, so a reader never
/// sees a half-written file and an interrupted write leaves the previous one intact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes `value` as pretty JSON to `path` atomically ([`write_atomic`]).
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Encode(e.to_string()))?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// A number in a CSV cell with a fixed number of decimals (`Fixed::<6>(0.5)` is `0.500000`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Fixed<const D: usize>(pub f64);

impl<const D: usize> Serialize for Fixed<D> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:.*}", D, self.0))
    }
}

impl<'de, const D: usize> serde::Deserialize<'de> for Fixed<D> {
    fn deserialize<De: serde::Deserializer<'de>>(d: De) -> std::result::Result<Self, De::Error> {
        let s = String::deserialize(d)?;
        s.trim()
            .parse()
            .map(Fixed)
            .map_err(serde::de::Error::custom)
    }
}

/// A number in a CSV cell as Rust prints it (`0.01`, `1`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Plain(pub f64);

impl Serialize for Plain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Plain {
    fn deserialize<De: serde::Deserializer<'de>>(d: De) -> std::result::Result<Self, De::Error> {
        let s = String::deserialize(d)?;
        s.trim()
            .parse()
            .map(Plain)
            .map_err(serde::de::Error::custom)
    }
}

/// The current UTC time as `YYYYMMDD-HHMMSS`.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The files in `dir` (not below it) whose names `keep` accepts, sorted.
pub fn files_where(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && keep(&name_of(p)))
        .collect();
    out.sort();
    Ok(out)
}

/// The files in `dir` (not below it) whose names end in `ext`, sorted.
pub fn files_ending(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    files_where(dir, |n| n.ends_with(ext))
}

/// The files in `dir` (not below it) whose names start with `prefix`, sorted.
pub fn files_named(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    files_where(dir, |n| n.starts_with(prefix))
}

/// The file name of `p` as text (empty for none).
pub fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
