//! The loop both federated run kinds share: every strategy of the scenario in turn, those a
//! checkpoint had finished taken back instead of run again, a checkpoint after each, and the
//! accuracy-against-bytes plot at the end.

use super::rounds::Clients;
use crate::error::Result;
use crate::experiment::RunContext;
use crate::files::write_atomic;
use crate::report::plot::lines_svg;
use burn::tensor::backend::AutodiffBackend;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a run kind makes of each of its strategies.
pub trait PerStrategy<B: AutodiffBackend> {
    /// A finished strategy, as the run's checkpoints keep it.
    type Done: Clone + Serialize + DeserializeOwned;

    /// Runs strategy `index` of the scenario over `clients`.
    fn run(
        &mut self,
        clients: &mut Clients<'_, Self::Done>,
        index: usize,
        device: &B::Device,
    ) -> Result<Self::Done>;

    /// Takes a finished strategy (just run, or kept by the checkpoint) into the run's results.
    fn take(&mut self, done: &Self::Done);
}

/// Runs `count` strategies through `per` from where `clients`' checkpoint left them, then lets
/// the remote clients go.
pub fn each_strategy<B: AutodiffBackend, P: PerStrategy<B>>(
    clients: &mut Clients<'_, P::Done>,
    per: &mut P,
    count: usize,
    device: &B::Device,
) -> Result<()> {
    for d in &clients.done {
        per.take(d);
    }
    for index in clients.done.len()..count {
        clients.current = index;
        let d = per.run(clients, index, device)?;
        per.take(&d);
        clients.done.push(d);
        clients.save(None)?;
    }
    drop(clients.remote.take());
    Ok(())
}

/// A strategy's curve: its label and (cumulative MB, accuracy) points.
pub type Series = (String, Vec<(f64, f64)>);

/// `accuracy_vs_bytes.svg`: each strategy's curve of `what` (the title's words), on an axis
/// named `axis`.
pub fn write_plot(
    ctx: &RunContext<'_>,
    (what, axis): (&str, &str),
    series: &[Series],
) -> Result<()> {
    let svg = lines_svg(
        &format!("{}: {what} against bytes exchanged", ctx.scenario().name),
        "cumulative MB (up + down)",
        axis,
        series,
    );
    write_atomic(&ctx.dir.join("accuracy_vs_bytes.svg"), svg.as_bytes())
}
