//! Continual learning: task streams, memories and the forgetting metrics (in progress; the
//! metrics come first).

pub mod metrics;
