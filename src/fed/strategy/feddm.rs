//! FedDM (Xiong et al., CVPR 2023), as REFERENCE.md §3.2 describes it: every round the server
//! sends the global model, each client distils its data with DM around random perturbations of
//! it (radius `rho`, matching logits as well as features) from the set it sent last, and the
//! server continues training the global model on the union.

use super::client::Distilling;
use super::oneshot::train_on_sets;
use super::{accept_set, Accepted, ClientApp, Settings, Strategy, StrategyKind};
use crate::error::Result;
use crate::fed::message::{Rejection, Task, Update};
use crate::model::Model;
use crate::model::Weights;
use burn::tensor::backend::AutodiffBackend;
use std::sync::Arc;

/// The server half.
pub struct FedDm<B: AutodiffBackend> {
    /// The run's settings.
    pub s: Arc<Settings>,
    /// The global model.
    pub global: Model<B::InnerBackend>,
}

impl<B: AutodiffBackend> Strategy<B> for FedDm<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::DistilledIterative
    }

    fn rounds(&self) -> usize {
        self.s.rounds
    }

    fn configure_round(&mut self, round: usize) -> Task {
        Task {
            round,
            seq: 0,
            strategy: self.s.label.clone(),
            task: 0,
            global: Some(Weights::of(&self.global)),
        }
    }

    fn accept(&self, update: Update) -> std::result::Result<Accepted, Rejection> {
        accept_set(update, StrategyKind::DistilledIterative)
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: Vec<Accepted>,
        device: &B::Device,
    ) -> Result<()> {
        train_on_sets::<B>(&self.s, &mut self.global, round, updates, false, device)
    }

    fn global(&mut self) -> &mut Model<B::InnerBackend> {
        &mut self.global
    }

    fn client(&self) -> Arc<dyn ClientApp<B>> {
        Arc::new(Distilling {
            s: self.s.clone(),
            around: true,
        })
    }
}
