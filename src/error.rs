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
    /// The run stopped at a checkpoint because it was asked to (Ctrl-C, SIGTERM).
    #[error("interrupted: the run stopped at its checkpoint; continue it with `distillery run --resume {dir}` (a server: `distillery serve FILE --resume {dir}`)", dir = .0.display())]
    Interrupted(PathBuf),
    /// A checkpoint or client state file that cannot be used (corrupt, of another run, or its
    /// results folder changed since): the run can start over without it.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Settings that cannot work together, found as a run starts (mend the scenario).
    #[error("{0}")]
    Setting(String),
    /// A request the command cannot serve: a missing folder, an unknown name, a wrong kind.
    #[error("{0}")]
    Usage(String),
    /// The network or the other side failed: a connection, TLS, a call that gave up, a peer
    /// that broke the protocol (worth retrying once the other side is up).
    #[error("{0}")]
    Transport(String),
    /// A value that could not be encoded in its file or message format.
    #[error("{0}")]
    Encode(String),
    /// Any other failure, described in words.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The process exit status that tells a script what kind of failure this is: 2 for a
    /// scenario, setting or usage to mend, 3 for a transport failure worth retrying, 130 for
    /// an interrupted run that can resume, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Scenario { .. } | Error::Setting(_) | Error::Usage(_) => 2,
            Error::Transport(_) => 3,
            Error::Interrupted(_) => 130,
            _ => 1,
        }
    }
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

/// A setting whose value cannot work: its key, the value as given and what was expected. The
/// scenario reader turns these into messages naming the file, the section and the line.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The key, as written in its section.
    pub key: String,
    /// The value, as given.
    pub value: String,
    /// What was expected instead.
    pub expected: String,
}

/// Collects [`Problem`]s with the checks most settings need.
#[derive(Clone, Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem with `key`.
    pub fn fail(&mut self, key: &str, value: impl std::fmt::Display, expected: &str) {
        self.0.push(Problem {
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        });
    }

    /// Records a problem unless `ok`.
    pub fn require(&mut self, ok: bool, key: &str, value: impl std::fmt::Display, expected: &str) {
        if !ok {
            self.fail(key, value, expected);
        }
    }

    /// A positive count.
    pub fn positive(&mut self, key: &str, v: usize) {
        self.require(v > 0, key, v, "a positive integer");
    }

    /// A positive, finite learning rate or step size.
    pub fn rate(&mut self, key: &str, v: f64) {
        self.require(v > 0.0 && v.is_finite(), key, v, "a positive learning rate");
    }

    /// A momentum in [0, 1).
    pub fn momentum(&mut self, key: &str, v: f64) {
        self.require((0.0..1.0).contains(&v), key, v, "a momentum in [0, 1)");
    }

    /// An SGD learning rate, momentum and weight decay (`lr`, `momentum`, `weight_decay`).
    pub fn sgd(&mut self, lr: f64, momentum: f64, weight_decay: f64) {
        self.require(
            lr > 0.0 && lr <= 100.0,
            "lr",
            lr,
            "a learning rate in (0, 100]",
        );
        self.momentum("momentum", momentum);
        self.require(
            (0.0..=1.0).contains(&weight_decay),
            "weight_decay",
            weight_decay,
            "a weight decay in [0, 1]",
        );
    }

    /// Adds problems found elsewhere.
    pub fn extend(&mut self, more: Vec<Problem>) {
        self.0.extend(more);
    }

    /// The problems found.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}
