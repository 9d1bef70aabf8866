//! distillery: a simulator for federated and continual learning built on dataset distillation.
//!
//! Everything a user can do is a scenario file (see [`scenario`]); the [`runner`] turns a
//! validated scenario into a run whose results land in `results/<name>-<timestamp>/`.

pub mod cl;
pub mod data;
pub mod device;
pub mod distill;
pub mod doctor;
pub mod error;
pub mod fed;
pub mod model;
pub mod report;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod shortcut;
pub mod train;

pub use error::{Error, Result};
