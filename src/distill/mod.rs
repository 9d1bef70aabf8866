//! Dataset distillation: the pieces the distillers share.

pub mod augment;
