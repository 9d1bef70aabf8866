//! Result writers: CSV rows appended and flushed as a run goes, JSON summaries written atomically.

pub mod compare;
pub mod plot;

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A CSV file that gets one row at a time, flushed to disk after each row.
pub struct CsvLog {
    path: PathBuf,
    w: csv::Writer<File>,
}

impl CsvLog {
    /// Creates `path` and writes the header row.
    pub fn create(path: &Path, header: &[&str]) -> Result<Self> {
        let f = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut log = CsvLog {
            path: path.to_path_buf(),
            w: csv::Writer::from_writer(f),
        };
        log.row(header)?;
        Ok(log)
    }

    /// Opens `path` for appending (a resumed run); creates it with `header` when missing.
    pub fn append(path: &Path, header: &[&str]) -> Result<Self> {
        if !path.exists() {
            return Self::create(path, header);
        }
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(CsvLog {
            path: path.to_path_buf(),
            w: csv::Writer::from_writer(f),
        })
    }

    /// Appends one row and flushes it.
    pub fn row<S: AsRef<str>>(&mut self, fields: &[S]) -> Result<()> {
        let io = |e: std::io::Error| Error::io(&self.path, e);
        self.w
            .write_record(fields.iter().map(|f| f.as_ref()))
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        self.w.flush().map_err(io)
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
pub fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Other(e.to_string()))?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// Mean and (population) standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
    (m, v.sqrt())
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
