//! The privacy audit in each run kind ([`crate::audit`] does the measuring; the member split is
//! made when the data is loaded, [`crate::plan::hold_out`]): once a run's sets exist, their audit written to
//! `privacy.csv` (one row per set; federated: per client and set), `closest/<set>.png` (each
//! set's closest pairs) and the summary's `privacy`. [`distill`], [`federated`] and
//! [`continual`] adapt it to their kinds; [`job`] is `kind = "audit"` (a set made elsewhere; the
//! `distillery audit` command's scenario is built by [`crate::scenario::shortcut::audit`]).

pub mod continual;
pub mod distill;
pub mod federated;
pub mod job;

pub use job::AuditJob;

use super::RunContext;
use crate::audit::run::Files;
use crate::data::Dataset;
use crate::error::Result;

/// The run's non-members and where they come from (`held_out` or `test`).
pub fn nonmembers<'a>(ctx: &'a RunContext<'a>) -> (&'a Dataset, &'static str) {
    match ctx.heldout {
        Some(h) => (h, "held_out"),
        None => (&ctx.split.test, "test"),
    }
}

/// The audit's files in run `ctx`'s folder: `privacy.csv` (appended to when resuming) and
/// `closest/`.
pub fn files(ctx: &RunContext<'_>) -> Result<Files> {
    Files::new(&ctx.dir, ctx.csv("privacy.csv")?)
}
