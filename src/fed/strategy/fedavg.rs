//! FedAvg (McMahan et al., 2017): every round the server sends the global weights, each selected
//! client trains them on its data (`[train]`, epochs per round) and sends them back, and the
//! server takes their sample-weighted mean. On a task stream the clients train on their slice of
//! the current task (`fedavg_finetune`), or also replay a memory of their own past tasks under a
//! per-client budget (`fedavg_replay`).

use super::aggregate::weighted_mean;
use super::{
    Accepted, ClientApp, ClientState, ContinualSettings, Settings, Strategy, StrategyKind,
};
use crate::cl::harness::{remember, Chooser};
use crate::cl::learner::{fit, Fit};
use crate::cl::memory::Memory;
use crate::error::{Error, Result};
use crate::fed::message::{Payload, Rejection, Task, Update};
use crate::model::Model;
use crate::model::Weights;
use crate::rng::step_seed;
use crate::train::Training;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use std::sync::Arc;

/// The server half (the same for all three kinds: only the clients differ).
pub struct FedAvg<B: AutodiffBackend> {
    /// `fedavg`, `fedavg_finetune` or `fedavg_replay`.
    pub kind: StrategyKind,
    /// The run's settings.
    pub s: Arc<Settings>,
    /// The global model.
    pub global: Model<B::InnerBackend>,
    /// The task of the stream.
    pub task: usize,
}

impl<B: AutodiffBackend> Strategy<B> for FedAvg<B> {
    fn kind(&self) -> StrategyKind {
        self.kind
    }

    fn rounds(&self) -> usize {
        self.s.rounds
    }

    fn begin_task(&mut self, task: usize) {
        self.task = task;
    }

    fn configure_round(&mut self, round: usize) -> Task {
        Task {
            round,
            seq: 0,
            strategy: self.s.label.clone(),
            task: self.task,
            global: Some(Weights::of(&self.global)),
        }
    }

    fn accept(&self, update: Update) -> std::result::Result<Accepted, Rejection> {
        match update.payload {
            Payload::Weights(_) if update.num_samples == 0 => Err(Rejection::NoSamples),
            Payload::Weights(w) => Ok(Accepted::Weights(w, update.num_samples)),
            Payload::Failed(e) => Err(Rejection::ClientFailed(e)),
            Payload::Set(_) => Err(Rejection::WrongPayload {
                strategy: self.kind.name().into(),
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
        Arc::new(LocalTraining {
            s: self.s.clone(),
            replay: self.kind == StrategyKind::FedavgReplay,
        })
    }
}

/// The client half: local training from the global weights (with replay of its own memory).
pub struct LocalTraining {
    /// The run's settings.
    pub s: Arc<Settings>,
    /// Keep a memory of past tasks and replay it (fedavg_replay).
    pub replay: bool,
}

impl LocalTraining {
    /// Adds each task the client has passed to its memory.
    fn remember_passed<B: AutodiffBackend>(
        &self,
        c: &ContinualSettings,
        state: &mut ClientState,
        passed: Vec<(usize, crate::data::Dataset)>,
        device: &B::Device,
    ) -> Result<()> {
        let s = &self.s;
        let memory = state
            .memory
            .get_or_insert_with(|| Memory::new(c.client_budget, s.shape, s.classes.clone()));
        let env = s.distil.env(s.spec.clone());
        for (t, slice) in passed {
            let classes: Vec<usize> = slice
                .class_counts()
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(k, _)| k)
                .collect();
            let chooser = Chooser {
                method: &c.client_method,
                env: &env,
                spec: &s.spec,
                seed: step_seed(s.seed ^ 0x3e30, (state.id as u64) << 20 | t as u64),
                dataset: &s.dataset,
            };
            remember::<B>(memory, &chooser, t, &slice, &classes, device)?;
        }
        Ok(())
    }
}

impl<B: AutodiffBackend> ClientApp<B> for LocalTraining {
    fn work(&self, task: &Task, state: &mut ClientState, device: &B::Device) -> Result<Update> {
        let s = &self.s;
        let passed = state.enter(task.task);
        if let (true, Some(c)) = (self.replay, &s.continual) {
            self.remember_passed::<B>(c, state, passed, device)?;
        }
        let w = task
            .global
            .as_ref()
            .ok_or_else(|| Error::Transport("the round task carries no global model".into()))?;
        let mut model =
            Model::<B::InnerBackend>::from_host(s.spec.clone(), &w.params, &w.buffers, device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(
            s.seed,
            (state.id as u64) << 20 | (task.task as u64) << 40 | task.round as u64,
        ));
        let replay = state
            .memory
            .as_ref()
            .map(Memory::dataset)
            .filter(|m| !m.is_empty());
        match (replay, &s.continual) {
            (Some(mem), Some(c)) => {
                let fit_cfg = Fit {
                    train: &s.local,
                    replay_fraction: c.replay_fraction,
                    dsa: None,
                    heads: None,
                };
                fit::<B, _>(
                    &mut model,
                    &state.data,
                    Some(&mem),
                    &fit_cfg,
                    &mut rng,
                    device,
                )?;
            }
            _ => Training::<B>::new(&s.local, device).run(&mut model, &state.data, &mut rng)?,
        }
        Ok(Update {
            client: state.id,
            round: task.round,
            num_samples: state.data.len() as u64,
            compute_seconds: 0.0,
            payload: Payload::Weights(Weights::of(&model)),
        })
    }
}
