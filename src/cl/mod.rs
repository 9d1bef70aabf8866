//! Continual learning: the replay memory, the learner's training with replay, and the
//! forgetting metrics over the accuracy matrix (task streams are in [`crate::data::stream`]).

pub mod harness;
pub mod learner;
pub mod memory;
pub mod metrics;
