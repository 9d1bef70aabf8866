//! The crate's error type: every failure a user can cause says what and where.

use std::path::PathBuf;

/// Errors distillery reports to users.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file could not be read or parsed.
    #[error("{path}: {msg}")]
    Data {
        /// The file at fault.
        path: PathBuf,
        /// What was wrong with it.
        msg: String,
    },
    /// A scenario file is malformed or has an invalid value.
    #[error("{path}: {msg}")]
    Scenario {
        /// The scenario file.
        path: PathBuf,
        /// The field, the value and what was expected.
        msg: String,
    },
    /// The requested device is not available in this build or on this machine.
    #[error("device: {0}")]
    Device(String),
    /// Training produced a non-finite value or another numerical failure.
    #[error("numerics: {0}")]
    Numerics(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Any other failure, described in words.
    #[error("{0}")]
    Other(String),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A data error for `path`.
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// An I/O error for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
