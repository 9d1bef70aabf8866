//! One-shot distilled federated learning (DOSFL-style): each client distils its data once with
//! the scenario's method and sends the set; the server trains a fresh network on the union.

use super::aggregate::union_soft;
use super::client::Distilling;
use super::{accept_set, Accepted, ClientApp, Settings, Strategy, StrategyKind};
use crate::error::Result;
use crate::fed::message::{Rejection, Task, Update};
use crate::model::Model;
use crate::rng::step_seed;
use crate::train::{SoftTargets, Training};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use std::sync::Arc;

/// The server half.
pub struct OneShot<B: AutodiffBackend> {
    /// The run's settings.
    pub s: Arc<Settings>,
    /// The global model.
    pub global: Model<B::InnerBackend>,
}

/// Trains `global` (a fresh network when `fresh`) on the union of the accepted sets, with the
/// server's protocol, seeded by the round.
pub fn train_on_sets<B: AutodiffBackend>(
    s: &Settings,
    global: &mut Model<B::InnerBackend>,
    round: usize,
    updates: Vec<Accepted>,
    fresh: bool,
    device: &B::Device,
) -> Result<()> {
    let sets = updates
        .into_iter()
        .filter_map(|u| match u {
            Accepted::Set(d) => Some(d),
            Accepted::Weights(..) => None,
        })
        .collect();
    let Some(all) = union_soft(sets) else {
        return Ok(());
    };
    // Soft labels sent are soft labels used: the KD loss at temperature 1 (soft cross-entropy
    // against the sent distributions; one-hot rows for sets sent without them).
    let soft = all.soft_labels.as_deref().map(|probs| SoftTargets {
        probs,
        temperature: 1.0,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(s.seed ^ 0x5e7e, round as u64));
    if fresh {
        *global = s.spec.init::<B::InnerBackend, _>(&mut rng, device);
    }
    Training::<B>::new(&s.server.train, device)
        .soft(soft)
        .augmented(s.server.dsa.as_ref())
        .run(global, &all.data, &mut rng)
}

impl<B: AutodiffBackend> Strategy<B> for OneShot<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::DistilledOneshot
    }

    fn rounds(&self) -> usize {
        1
    }

    fn configure_round(&mut self, round: usize) -> Task {
        Task {
            round,
            seq: 0,
            strategy: self.s.label.clone(),
            task: 0,
            global: None,
        }
    }

    fn accept(&self, update: Update) -> std::result::Result<Accepted, Rejection> {
        accept_set(update, StrategyKind::DistilledOneshot)
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: Vec<Accepted>,
        device: &B::Device,
    ) -> Result<()> {
        train_on_sets::<B>(&self.s, &mut self.global, round, updates, true, device)
    }

    fn global(&mut self) -> &mut Model<B::InnerBackend> {
        &mut self.global
    }

    fn client(&self) -> Arc<dyn ClientApp<B>> {
        Arc::new(Distilling {
            s: self.s.clone(),
            around: false,
        })
    }
}
