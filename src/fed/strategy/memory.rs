//! `distilled_memory`, federated continual learning with distilled memories: after each task
//! every client distils its slice of the task once (the scenario's method, `ipc` images per class
//! it holds) and sends the set; the server keeps the sets in a global memory under its budget and
//! trains the global model on it: a fresh network on the whole memory (GDumb), or the global
//! model on the new sets with the memory replayed (streaming).

use super::client::Distilling;
use super::{accept_set, Accepted, ClientApp, Settings, Strategy, StrategyKind};
use crate::cl::harness::Protocol;
use crate::cl::learner::{fit, Fit};
use crate::cl::memory::Memory;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::fed::message::{Rejection, Task, Update};
use crate::model::Model;
use crate::rng::step_seed;
use crate::train::Training;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use std::sync::Arc;

/// The server half.
pub struct DistilledMemory<B: AutodiffBackend> {
    /// The run's settings.
    pub s: Arc<Settings>,
    /// The global model.
    pub global: Model<B::InnerBackend>,
    /// The sets kept so far.
    pub memory: Memory,
    /// The task of the stream.
    pub task: usize,
}

impl<B: AutodiffBackend> DistilledMemory<B> {
    /// An empty memory under the run's budget, and `global`.
    pub fn new(s: Arc<Settings>, global: Model<B::InnerBackend>) -> Self {
        let budget = s
            .continual
            .as_ref()
            .map_or(crate::cl::memory::Budget::PerClass(10), |c| c.budget);
        let memory = Memory::new(budget, s.shape, s.classes.clone());
        DistilledMemory {
            s,
            global,
            memory,
            task: 0,
        }
    }
}

/// The images of `sets` grouped by class, each class's images taken from the clients in turn
/// (so a memory slot cut to its share keeps some of every client's images).
pub fn interleave(sets: &[Dataset], shape: [usize; 3], classes: &[String]) -> Dataset {
    let mut out = Dataset::empty(shape);
    out.classes = classes.to_vec();
    let per: Vec<Vec<Vec<usize>>> = sets.iter().map(Dataset::class_indices).collect();
    for k in 0..classes.len() {
        let lists: Vec<&Vec<usize>> = per.iter().filter_map(|c| c.get(k)).collect();
        let longest = lists.iter().map(|l| l.len()).max().unwrap_or(0);
        for i in 0..longest {
            for (set, list) in sets.iter().zip(&per) {
                if let Some(&j) = list.get(k).and_then(|l| l.get(i)) {
                    out.images.extend_from_slice(set.image(j));
                    out.labels.push(k);
                }
            }
        }
    }
    out
}

impl<B: AutodiffBackend> Strategy<B> for DistilledMemory<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::DistilledMemory
    }

    fn rounds(&self) -> usize {
        1
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
            global: None,
        }
    }

    fn accept(&self, update: Update) -> std::result::Result<Accepted, Rejection> {
        accept_set(update, StrategyKind::DistilledMemory)
    }

    fn aggregate(&mut self, _: usize, updates: Vec<Accepted>, device: &B::Device) -> Result<()> {
        let s = &self.s;
        let sets: Vec<Dataset> = updates
            .into_iter()
            .filter_map(|u| match u {
                // The memory keeps images and hard labels (soft labels are not kept).
                Accepted::Set(d) => Some(d.data),
                Accepted::Weights(..) => None,
            })
            .collect();
        let new = interleave(&sets, s.shape, &s.classes);
        let c = s.continual.as_ref().ok_or_else(|| {
            Error::Setting("distilled_memory runs on a task stream ([continual])".into())
        })?;
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(step_seed(s.seed ^ 0x5e7e, self.task as u64));
        let train = Training::<B>::new(&s.server.train, device).augmented(s.server.dsa.as_ref());
        match c.protocol {
            Protocol::Gdumb => {
                self.memory.add(self.task, &new).map_err(Error::Setting)?;
                self.global = s.spec.init::<B::InnerBackend, _>(&mut rng, device);
                train.run(&mut self.global, &self.memory.dataset(), &mut rng)
            }
            Protocol::Streaming => {
                let replay = self.memory.dataset();
                let cfg = Fit {
                    train: &s.server.train,
                    replay_fraction: c.replay_fraction,
                    dsa: s.server.dsa.as_ref(),
                    heads: None,
                };
                fit::<B, _>(
                    &mut self.global,
                    &new,
                    Some(&replay),
                    &cfg,
                    &mut rng,
                    device,
                )?;
                self.memory.add(self.task, &new).map_err(Error::Setting)
            }
        }
    }

    fn global(&mut self) -> &mut Model<B::InnerBackend> {
        &mut self.global
    }

    fn memory_images(&self) -> usize {
        self.memory.len()
    }

    fn memory(&self) -> Option<&Memory> {
        Some(&self.memory)
    }

    fn set_memory(&mut self, memory: Memory) {
        self.memory = memory;
    }

    fn client(&self) -> Arc<dyn ClientApp<B>> {
        Arc::new(Distilling {
            s: self.s.clone(),
            around: false,
        })
    }
}
