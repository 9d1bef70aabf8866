//! distillery: a simulator for federated and continual learning built on dataset distillation.
//!
//! Everything a user can do is a scenario file (see [`scenario`]); [`experiment`] turns a
//! validated scenario into a run whose results land in `results/<name>-<timestamp>/`. Methods
//! are configured once ([`distill::MethodConfig`]) and built by one registry
//! ([`distill::registry`]) for distill runs, federated clients and continual memories alike.

pub mod audit;
pub mod cl;
pub mod data;
pub mod device;
pub mod diagnostics;
pub mod distill;
pub mod dp;
pub mod error;
pub mod experiment;
pub mod fed;
pub mod files;
pub mod model;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod train;

pub use error::{Error, Result};
