//! The loop both federated run kinds share: every strategy of the scenario in turn, those a
//! checkpoint had finished taken back instead of run again, a checkpoint after each.

use super::resume::Journal;
use super::rounds::Clients;
use crate::error::Result;
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
        clients: &mut Clients<'_>,
        journal: &mut Journal<Self::Done>,
        index: usize,
        device: &B::Device,
    ) -> Result<Self::Done>;

    /// Takes a finished strategy (just run, or kept by the checkpoint) into the run's results.
    fn take(&mut self, done: &Self::Done);
}

/// Runs `count` strategies through `per` from where `journal` left them, then lets the remote
/// clients go.
pub fn each_strategy<B: AutodiffBackend, P: PerStrategy<B>>(
    clients: &mut Clients<'_>,
    journal: &mut Journal<P::Done>,
    per: &mut P,
    count: usize,
    device: &B::Device,
) -> Result<()> {
    for d in &journal.done {
        per.take(d);
    }
    for index in journal.done.len()..count {
        journal.current = index;
        let d = per.run(clients, journal, index, device)?;
        per.take(&d);
        journal.done.push(d);
        journal.save(clients.ctx, None)?;
    }
    drop(clients.remote.take());
    Ok(())
}
