//! A continual run resolved once: the task stream, the learner's and the memory's training,
//! the DSA the learner uses, task-incremental heads, and the memory budget checked against the
//! stream's classes.

use crate::cl::harness::Harness;
use crate::cl::memory::Budget;
use crate::data::augment::Dsa;
use crate::data::stream::Task;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::scenario::{ClEntry, ContinualSection, Loaded};
use crate::train::{LrSchedule, TrainConfig};

/// A continual run's plan.
pub struct ContinualPlan {
    /// The `[continual]` section, defaults applied.
    pub section: ContinualSection,
    /// The task stream.
    pub tasks: Vec<Task>,
    /// The learner's training on each task (`[train]`).
    pub train: TrainConfig,
    /// GDumb's fresh network's training on the memory (`memory_epochs`, `[train]`'s optimiser).
    pub memory_train: TrainConfig,
    /// The run's DSA strategy.
    pub dsa: Dsa,
    /// The network every strategy starts from.
    pub spec: ModelSpec,
    /// Task-incremental heads: for each class, its task's classes.
    heads: Option<Vec<Vec<usize>>>,
    seed: u64,
    dataset: String,
}

/// The task stream `[continual]` asks for, cut from `split`; an error naming the scenario file
/// when it cannot be cut.
pub fn tasks(loaded: &Loaded, split: &Split) -> Result<Vec<Task>> {
    (loaded.scenario.stream(split))
        .map_err(|m| Error::Setting(format!("{}: [continual] tasks: {m}", loaded.path.display())))
}

/// `train`'s optimiser for `epochs` epochs, stepped down tenfold halfway (GDumb's memory
/// training, and the audit's networks trained on a memory).
pub fn memory_train(train: &TrainConfig, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        schedule: LrSchedule::Step {
            milestones: vec![epochs / 2 + 1],
            gamma: 0.1,
        },
        ..train.clone()
    }
}

/// Refuses a total memory `budget` that cannot hold one image for each of `tasks`' classes
/// (`whose` names the memory in the message).
pub fn check_budget(budget: Budget, tasks: &[Task], whose: &str) -> Result<()> {
    let slots: usize = tasks.iter().map(|t| t.classes.len()).sum();
    match budget {
        Budget::Total(t) if t < slots => Err(Error::Setting(format!(
            "continual.memory_total = {t}: {whose} needs at least one image for each of the stream's {slots} classes"
        ))),
        _ => Ok(()),
    }
}

impl ContinualPlan {
    /// The plan of `loaded` on `split`.
    pub fn new(loaded: &Loaded, split: &Split) -> Result<Self> {
        let s = &loaded.scenario;
        let c = s.continual_section();
        let tasks = tasks(loaded, split)?;
        let train = s.train_config();
        let memory_train = memory_train(&train, c.memory_epochs);
        if c.strategies.iter().any(|e| matches!(e, ClEntry::Memory(_))) {
            check_budget(c.budget(), &tasks, "the memory")?;
        }
        let heads = c.task_incremental.then(|| {
            let mut h = vec![Vec::new(); split.train.num_classes()];
            for t in &tasks {
                for &k in &t.classes {
                    h[k] = t.classes.clone();
                }
            }
            h
        });
        Ok(ContinualPlan {
            dsa: super::dsa(s, split)?.1,
            section: c,
            tasks,
            train,
            memory_train,
            spec: s.model_spec(split),
            heads,
            seed: s.seed,
            dataset: split.cache_name(),
        })
    }

    /// The harness every strategy of the run learns the stream in.
    pub fn harness(&self) -> Harness<'_> {
        let c = &self.section;
        Harness {
            tasks: &self.tasks,
            spec: self.spec.clone(),
            train: &self.train,
            memory_train: &self.memory_train,
            protocol: c.protocol,
            replay_fraction: c.replay_fraction,
            dsa: c.dsa.then_some(&self.dsa),
            heads: self.heads.clone(),
            budget: c.budget(),
            seed: self.seed,
            dataset: self.dataset.clone(),
        }
    }
}
