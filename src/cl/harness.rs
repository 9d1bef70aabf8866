//! The task loop of a continual learner: for one strategy, train task after task (fine-tuning,
//! joint training, or replay from a memory that a method's sets fill after each task), and test
//! on every task after each one: the rows of the accuracy matrix.

use super::learner::{accuracy_row, fit, Fit};
use super::memory::{Budget, Memory};
use crate::data::augment::Dsa;
use crate::data::stream::Task;
use crate::data::{globalise, localise, Dataset};
use crate::distill::registry::{self, Env};
use crate::distill::{Ctx, MethodConfig};
use crate::error::{Error, Result};
use crate::model::Weights;
use crate::model::{Model, ModelSpec};
use crate::rng::step_seed;
use crate::train::TrainConfig;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How the continual learner uses its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// One network trained task after task on the task's data mixed with replayed memory.
    Streaming,
    /// After each task a fresh network trains on the whole memory only (GDumb; the DM paper's
    /// continual protocol, REFERENCE.md §4.1).
    Gdumb,
}

/// How a strategy learns.
pub enum Learner<'a> {
    /// No memory: train on each task in turn (streaming whatever the protocol).
    Finetune,
    /// All data seen so far (a fresh network per task under GDumb).
    Joint,
    /// A memory filled after each task by `method`'s sets of that task's data.
    Memory {
        /// The method.
        method: &'a MethodConfig,
        /// What it needs (its network is sized to each task's classes).
        env: &'a Env<'a>,
    },
}

/// A stream and how every strategy learns it.
pub struct Harness<'a> {
    /// The tasks.
    pub tasks: &'a [Task],
    /// The network every strategy starts from (the same initial weights).
    pub spec: ModelSpec,
    /// The learner's training on each task.
    pub train: &'a TrainConfig,
    /// GDumb: the fresh network's training on the memory.
    pub memory_train: &'a TrainConfig,
    /// Streaming or GDumb.
    pub protocol: Protocol,
    /// Share of each minibatch replayed (streaming).
    pub replay_fraction: f64,
    /// Per-sample DSA while the learner trains.
    pub dsa: Option<&'a Dsa>,
    /// Task-incremental heads: for each class, its task's classes.
    pub heads: Option<Vec<Vec<usize>>>,
    /// The memory budget.
    pub budget: Budget,
    /// The run's seed.
    pub seed: u64,
    /// The dataset's name (provenance of the memory's sets).
    pub dataset: String,
}

/// Where a strategy's stream stands after a task: all a checkpoint needs to continue it.
#[derive(Clone, Serialize, Deserialize)]
pub struct StreamPoint {
    /// The next task.
    pub next_task: usize,
    /// The learner's weights.
    pub weights: Weights,
    /// The training stream, where it is.
    pub rng: ChaCha12Rng,
    /// The memory.
    pub memory: Memory,
    /// The accuracy matrix's rows so far.
    pub rows: Vec<Vec<f64>>,
    /// Seconds filling the memory so far.
    pub fill_seconds: f64,
}

/// What the loop reports after each task.
pub struct TaskDone<'a> {
    /// The task just trained on.
    pub task: usize,
    /// Accuracy on every task now.
    pub row: &'a [f64],
    /// The learner's last training loss.
    pub loss: f64,
    /// The memory now.
    pub memory: &'a Memory,
    /// Where the stream stands (for a checkpoint).
    pub point: StreamPoint,
}

/// One strategy's stream: the accuracy matrix's rows, the final memory, and the seconds spent
/// filling it.
pub struct Learned {
    /// Row i: accuracy on every task after task i.
    pub rows: Vec<Vec<f64>>,
    /// The memory at the end.
    pub memory: Memory,
    /// Seconds filling the memory.
    pub fill_seconds: f64,
}

impl Harness<'_> {
    /// The network every strategy starts from.
    pub fn initial<B: AutodiffBackend>(&self, device: &B::Device) -> Model<B::InnerBackend> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(self.seed, 0x1417));
        self.spec.init::<B::InnerBackend, _>(&mut rng, device)
    }

    /// The untrained network's accuracy on each task (forward transfer's baseline).
    pub fn baseline<B: AutodiffBackend>(&self, device: &B::Device) -> Vec<f64> {
        accuracy_row(
            &mut self.initial::<B>(device),
            self.tasks,
            self.heads.is_some(),
            device,
        )
    }

    /// Adds task `t`'s images to `memory` (as many per class as its new slots get).
    fn fill<B: AutodiffBackend>(
        &self,
        learner: &Learner<'_>,
        memory: &mut Memory,
        t: usize,
        device: &B::Device,
    ) -> Result<()> {
        let Learner::Memory { method, env } = learner else {
            return Ok(());
        };
        let chooser = Chooser {
            method,
            env,
            spec: &self.spec,
            seed: step_seed(self.seed, t as u64),
            dataset: &self.dataset,
        };
        let task = &self.tasks[t];
        remember::<B>(memory, &chooser, t, &task.train, &task.classes, device)
    }

    /// Runs the stream with `learner` (from `from` when a checkpoint left it there), calling
    /// `on_task` after each task.
    pub fn run<B: AutodiffBackend>(
        &self,
        learner: &Learner<'_>,
        device: &B::Device,
        from: Option<StreamPoint>,
        mut on_task: impl FnMut(TaskDone<'_>) -> Result<()>,
    ) -> Result<Learned> {
        let first = self.tasks.first().map(|t| &t.train);
        let (shape, classes) =
            first.map_or(([1, 1, 1], Vec::new()), |d| (d.shape, d.classes.clone()));
        let mut model = self.initial::<B>(device);
        // The same stream as StdRng's (ChaCha12), which can say where it is.
        let mut rng = ChaCha12Rng::seed_from_u64(step_seed(self.seed, 0x5eed));
        let mut memory = Memory::new(self.budget, shape, classes.clone());
        let mut seen = Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            shape,
            classes,
        };
        let mut rows = Vec::new();
        let mut fill_seconds = 0.0;
        let mut next = 0;
        if let Some(p) = from {
            p.weights
                .restore(&mut model, device)
                .map_err(Error::Checkpoint)?;
            (rng, memory, rows, fill_seconds) = (p.rng, p.memory, p.rows, p.fill_seconds);
            next = p.next_task;
        }
        let step = Fit {
            train: self.train,
            replay_fraction: self.replay_fraction,
            dsa: self.dsa,
            heads: self.heads.as_deref(),
        };
        for (t, task) in self.tasks.iter().enumerate() {
            if t < next {
                if matches!(learner, Learner::Joint) {
                    seen.images.extend_from_slice(&task.train.images);
                    seen.labels.extend_from_slice(&task.train.labels);
                }
                continue;
            }
            let mut state = Learning {
                model: &mut model,
                rng: &mut rng,
                memory: &mut memory,
                seen: &mut seen,
                fill_seconds: &mut fill_seconds,
            };
            let loss = self.learn_task::<B>(learner, t, &mut state, &step, device)?;
            let row = accuracy_row(&mut model, self.tasks, self.heads.is_some(), device);
            rows.push(row.clone());
            let point = StreamPoint {
                next_task: t + 1,
                weights: Weights::of(&model),
                rng: rng.clone(),
                memory: memory.clone(),
                rows: rows.clone(),
                fill_seconds,
            };
            on_task(TaskDone {
                task: t,
                row: &row,
                loss,
                memory: &memory,
                point,
            })?;
        }
        Ok(Learned {
            rows,
            memory,
            fill_seconds,
        })
    }

    /// Learns task `t` as `learner` does under the run's protocol, moving `state` on; the
    /// training loss.
    fn learn_task<B: AutodiffBackend>(
        &self,
        learner: &Learner<'_>,
        t: usize,
        st: &mut Learning<'_, B>,
        step: &Fit<'_>,
        device: &B::Device,
    ) -> Result<f64> {
        let task = &self.tasks[t];
        let mut timed_fill = |memory: &mut Memory| -> Result<()> {
            let ts = Instant::now();
            self.fill::<B>(learner, memory, t, device)?;
            *st.fill_seconds += ts.elapsed().as_secs_f64();
            Ok(())
        };
        let (model, rng) = (&mut *st.model, &mut *st.rng);
        match (learner, self.protocol) {
            (Learner::Finetune, _) => fit::<B, _>(model, &task.train, None, step, rng, device),
            (Learner::Joint, protocol) => {
                st.seen.images.extend_from_slice(&task.train.images);
                st.seen.labels.extend_from_slice(&task.train.labels);
                if protocol == Protocol::Gdumb {
                    *model = self.initial::<B>(device);
                }
                fit::<B, _>(model, st.seen, None, step, rng, device)
            }
            (Learner::Memory { .. }, Protocol::Streaming) => {
                let replay = st.memory.dataset();
                let l = fit::<B, _>(model, &task.train, Some(&replay), step, rng, device)?;
                timed_fill(st.memory)?;
                Ok(l)
            }
            (Learner::Memory { .. }, Protocol::Gdumb) => {
                timed_fill(st.memory)?;
                *model = self.initial::<B>(device);
                let fresh = Fit {
                    train: self.memory_train,
                    ..step.clone()
                };
                fit::<B, _>(model, &st.memory.dataset(), None, &fresh, rng, device)
            }
        }
    }
}

/// What a stream's learning moves on task by task.
struct Learning<'s, B: AutodiffBackend> {
    model: &'s mut Model<B::InnerBackend>,
    rng: &'s mut ChaCha12Rng,
    memory: &'s mut Memory,
    seen: &'s mut Dataset,
    fill_seconds: &'s mut f64,
}

/// What makes a memory's images: a method with what it needs, the network it is sized from,
/// the seed of this fill, the dataset's name.
pub struct Chooser<'a> {
    /// The method.
    pub method: &'a MethodConfig,
    /// What it needs (its network is replaced by `spec` sized to the task's classes).
    pub env: &'a Env<'a>,
    /// The network.
    pub spec: &'a ModelSpec,
    /// The seed of this fill.
    pub seed: u64,
    /// The dataset's name (provenance).
    pub dataset: &'a str,
}

/// Adds task `t`'s images of `classes` (from `data`, labels global) to `memory`: as many per class
/// as the new slots get, made by `chooser`'s method from the task's images alone.
pub fn remember<B: AutodiffBackend>(
    memory: &mut Memory,
    chooser: &Chooser<'_>,
    t: usize,
    data: &Dataset,
    classes: &[usize],
    device: &B::Device,
) -> Result<()> {
    let n_new = classes.len();
    let shares = memory.shares_with(n_new);
    let ipc = shares[shares.len() - n_new..]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    if ipc == 0 || classes.is_empty() {
        return Ok(());
    }
    let local = localise(data, classes);
    let mut env = chooser.env.clone();
    env.spec = chooser.spec.with_classes(classes.len());
    let mut ctx = Ctx::<B>::quiet(device.clone(), chooser.seed, chooser.dataset);
    let set = registry::distil(chooser.method, &local, ipc, &env, &mut ctx)?;
    let chosen = globalise(&set.to_dataset(), classes, &data.classes);
    memory.add(t, &chosen).map_err(Error::Setting)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    #[test]
    fn chacha12_is_the_stream_of_std_rng() {
        let mut a = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = super::ChaCha12Rng::seed_from_u64(7);
        let xs: Vec<u64> = (0..64).map(|_| a.random()).collect();
        let ys: Vec<u64> = (0..64).map(|_| b.random()).collect();
        assert_eq!(xs, ys);
    }
}
