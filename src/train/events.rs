//! Progress and control as events, in the spirit of burn-train's event processors: loops report
//! what happened to an [`Observer`], which answers whether to go on; [`Progress`] counts steps
//! for a progress bar from any thread; a [`Schedule`] says which periodic actions an iteration
//! makes due, so every distillation loop shares one policy.

use crate::error::Result;

/// What a loop does after reporting an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop here and return what there is (a time budget, for one, stops a run early).
    Stop,
}

/// Hears the events of type `E` a loop reports and says whether it goes on.
pub trait Observer<E> {
    /// Called once per event.
    fn notify(&mut self, event: E) -> Result<Flow>;
}

impl<E, F: FnMut(E) -> Result<Flow>> Observer<E> for F {
    fn notify(&mut self, event: E) -> Result<Flow> {
        self(event)
    }
}

/// An observer that hears nothing and always goes on.
pub struct Silent;

impl<E> Observer<E> for Silent {
    fn notify(&mut self, _: E) -> Result<Flow> {
        Ok(Flow::Continue)
    }
}

pub use crate::progress::Progress;

/// When a distillation loop's periodic actions fall due (every count in iterations).
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The last iteration.
    pub iterations: usize,
    /// Log the loss every this many iterations.
    pub log_every: usize,
    /// Save a checkpoint every this many iterations.
    pub checkpoint_every: usize,
    /// Evaluate the set every this many (0: never mid-run).
    pub eval_every: usize,
    /// Measure its coverage every this many (0: never mid-run).
    pub coverage_every: usize,
    /// Stop after the first iteration that ends this many seconds into the distillation.
    pub max_seconds: Option<f64>,
}

/// What falls due after one iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Write the loss.
    pub log: bool,
    /// Save a checkpoint.
    pub checkpoint: bool,
    /// Evaluate the set.
    pub evaluate: bool,
    /// Measure the set's coverage.
    pub coverage: bool,
    /// The time budget is spent: stop after this iteration.
    pub budget_reached: bool,
}

impl Schedule {
    /// What is due after iteration `it` (1-based) when `spent` seconds of distillation have
    /// passed. Checkpoints and mid-run measurements only come before the last iteration: the
    /// final set is saved, measured and evaluated anyway.
    pub fn due(&self, it: usize, spent: f64) -> Due {
        let budget_reached = it < self.iterations && self.max_seconds.is_some_and(|t| spent >= t);
        let last = it == self.iterations || budget_reached;
        let every = |n: usize| n > 0 && it.is_multiple_of(n) && !last;
        Due {
            log: it.is_multiple_of(self.log_every.max(1)) || last,
            checkpoint: every(self.checkpoint_every),
            evaluate: every(self.eval_every),
            coverage: every(self.coverage_every),
            budget_reached,
        }
    }
}
