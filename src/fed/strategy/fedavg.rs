//! FedAvg (McMahan et al., 2017): every round the server sends the global weights, each selected
//! client trains them on its data (`[train]`, epochs per round) and sends them back, and the
//! server takes their sample-weighted mean.

use super::aggregate::weighted_mean;
use super::{host_weights, Accepted, ClientApp, ClientState, Settings, Strategy, StrategyKind};
use crate::error::{Error, Result};
use crate::fed::message::{Payload, Rejection, Task, Update};
use crate::model::Model;
use crate::rng::step_seed;
use crate::train::Training;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use std::sync::Arc;

/// The server half.
pub struct FedAvg<B: AutodiffBackend> {
    /// The run's settings.
    pub s: Arc<Settings>,
    /// The global model.
    pub global: Model<B::InnerBackend>,
}

impl<B: AutodiffBackend> Strategy<B> for FedAvg<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Fedavg
    }

    fn rounds(&self) -> usize {
        self.s.rounds
    }

    fn configure_round(&mut self, round: usize) -> Task {
        Task {
            round,
            seq: 0,
            strategy: StrategyKind::Fedavg,
            global: Some(host_weights(&self.global)),
        }
    }

    fn accept(&self, update: Update) -> std::result::Result<Accepted, Rejection> {
        match update.payload {
            Payload::Weights(_) if update.num_samples == 0 => Err(Rejection::NoSamples),
            Payload::Weights(w) => Ok(Accepted::Weights(w, update.num_samples)),
            Payload::Failed(e) => Err(Rejection::ClientFailed(e)),
            Payload::Set(_) => Err(Rejection::WrongPayload {
                strategy: StrategyKind::Fedavg.name(),
            }),
        }
    }

    fn aggregate(&mut self, _: usize, updates: Vec<Accepted>, device: &B::Device) -> Result<()> {
        let weights: Vec<_> = updates
            .iter()
            .filter_map(|u| match u {
                Accepted::Weights(w, n) => Some((w, *n)),
                Accepted::Set(_) => None,
            })
            .collect();
        if let Some(mean) = weighted_mean(&weights) {
            self.global =
                Model::from_host(self.s.spec.clone(), &mean.params, &mean.buffers, device);
        }
        Ok(())
    }

    fn global(&mut self) -> &mut Model<B::InnerBackend> {
        &mut self.global
    }

    fn client(&self) -> Arc<dyn ClientApp<B>> {
        Arc::new(LocalTraining { s: self.s.clone() })
    }
}

/// The client half: local training from the global weights.
pub struct LocalTraining {
    /// The run's settings.
    pub s: Arc<Settings>,
}

impl<B: AutodiffBackend> ClientApp<B> for LocalTraining {
    fn work(&self, task: &Task, state: &mut ClientState, device: &B::Device) -> Result<Update> {
        let s = &self.s;
        let w = task
            .global
            .as_ref()
            .ok_or_else(|| Error::Other("the round task carries no global model".into()))?;
        let mut model =
            Model::<B::InnerBackend>::from_host(s.spec.clone(), &w.params, &w.buffers, device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(
            s.seed,
            (state.id as u64) << 20 | task.round as u64,
        ));
        Training::<B>::new(&s.local, device).run(&mut model, &state.data, &mut rng)?;
        Ok(Update {
            client: state.id,
            round: task.round,
            num_samples: state.data.len() as u64,
            compute_seconds: 0.0,
            payload: Payload::Weights(host_weights(&model)),
        })
    }
}
