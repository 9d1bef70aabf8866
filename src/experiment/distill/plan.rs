//! A distill run's context beside its plan ([`crate::plan::distill`]), which the run's parts
//! (making sets, the observer, the audit) share.

use crate::error::Result;
use crate::experiment::RunContext;
use crate::plan::distill::DistillPlan;
use std::ops::Deref;

/// A distill run's context beside its plan (whose fields it reads through).
pub struct Plan<'a> {
    /// The run.
    pub ctx: &'a RunContext<'a>,
    plan: DistillPlan<'a>,
}

impl<'a> Plan<'a> {
    /// The plan of run `ctx`.
    pub fn new(ctx: &'a RunContext<'a>) -> Result<Self> {
        let plan = DistillPlan::new(ctx.loaded, ctx.split)?;
        Ok(Plan { ctx, plan })
    }
}

impl<'a> Deref for Plan<'a> {
    type Target = DistillPlan<'a>;

    fn deref(&self) -> &DistillPlan<'a> {
        &self.plan
    }
}
