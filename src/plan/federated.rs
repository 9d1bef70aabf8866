//! A federated or federated-continual run resolved once: the `[federated]` section, each
//! strategy's settings (the same on server and clients), the engine's settings; and what the
//! clients are made of (a partition, or a slice of every task of a stream), with the checks
//! that catch settings that cannot work before any round.

use crate::data::partition::{class_counts, partition};
use crate::data::stream::Task;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::fed::engine::EngineConfig;
use crate::fed::protocol::Expect;
use crate::fed::strategy::{ContinualSettings, DistilSettings, ServerTraining, Settings};
use crate::fed::transport::in_process::ClientSide;
use crate::rng::step_seed;
use crate::scenario::{FederatedSection, Loaded, StrategyEntry};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A federated run's plan.
pub struct FedPlan {
    /// The `[federated]` section, defaults applied.
    pub section: FederatedSection,
    /// Each strategy's settings, in the scenario's order.
    pub settings: Vec<Arc<Settings>>,
    /// The round engine's settings.
    pub engine: EngineConfig,
}

impl FedPlan {
    /// The plan of `loaded` on `split`, its clients' caches (experts) under `cache`.
    pub fn new(loaded: &Loaded, split: &Split, cache: PathBuf) -> Result<Self> {
        let section = loaded.scenario.federated_section();
        let template = template(loaded, split, cache, &section)?;
        let settings = (section.strategies.iter())
            .map(|e| template.fill(loaded, &section, e).map(Arc::new))
            .collect::<Result<_>>()?;
        Ok(FedPlan {
            engine: engine_config(loaded, &section),
            section,
            settings,
        })
    }

    /// Each strategy's entry in the scenario beside its settings.
    pub fn strategies(&self) -> impl Iterator<Item = (&StrategyEntry, &Arc<Settings>)> {
        self.section.strategies.iter().zip(&self.settings)
    }

    /// How in-process clients expecting `expect` behave (encoding, faults, dropout).
    pub fn client_side(&self, expect: Expect) -> ClientSide {
        ClientSide {
            expect,
            quantization: self.section.quantization,
            faults: self.section.faults.clone(),
            dropout: self.section.dropout,
            seed: self.engine.seed,
        }
    }

    /// Refuses settings that cannot work on clients holding `data` (`what` names the data in
    /// the message, such as a task).
    pub fn check_clients(&self, data: &[Dataset], what: Option<usize>) -> Result<()> {
        for (e, st) in self.strategies() {
            if e.kind.distils() {
                check_clients(st, data).map_err(|e| match what {
                    Some(t) => Error::Setting(format!("task {t}: {e}")),
                    None => e,
                })?;
            }
        }
        Ok(())
    }
}

/// The settings of strategy `entry` of a scenario (the same on server and clients).
pub fn settings(
    loaded: &Loaded,
    split: &Split,
    cache: PathBuf,
    entry: &StrategyEntry,
) -> Result<Settings> {
    let f = loaded.scenario.federated_section();
    template(loaded, split, cache, &f)?.fill(loaded, &f, entry)
}

/// What every strategy of a run shares: settings whose method, label and stream part each
/// strategy fills in.
struct Template(Settings);

/// The sections every strategy's settings come from, read once.
fn template(
    loaded: &Loaded,
    split: &Split,
    cache: PathBuf,
    f: &FederatedSection,
) -> Result<Template> {
    let s = &loaded.scenario;
    let e = s.eval_section();
    let (_, dsa) = super::dsa(s, split)?;
    Ok(Template(Settings {
        spec: s.model_spec(split),
        seed: s.seed,
        rounds: f.rounds,
        quantization: f.quantization,
        dataset: split.cache_name(),
        classes: split.train.classes.clone(),
        shape: split.train.shape,
        label: String::new(),
        local: s.train_config(),
        server: ServerTraining {
            train: e.train_config(e.epochs),
            dsa: e.dsa.then(|| dsa.clone()),
        },
        distil: DistilSettings {
            method: loaded.method(),
            ipc: s.distill_section().run.ipc,
            dsa,
            experts: super::experts(loaded),
            cache,
            rho: f.rho as f32,
        },
        continual: None,
    }))
}

impl Template {
    /// The settings of strategy `entry`: its method, its label, and (stream strategies) the
    /// memories of `[continual]` and `f`.
    fn fill(
        &self,
        loaded: &Loaded,
        f: &FederatedSection,
        entry: &StrategyEntry,
    ) -> Result<Settings> {
        let mut st = self.0.clone();
        if let Some(m) = &entry.method {
            st.distil.method = loaded.method_config(m)?;
        }
        st.label = entry.label();
        if entry.kind.is_continual() {
            let c = loaded.scenario.continual_section();
            st.continual = Some(ContinualSettings {
                budget: c.budget(),
                protocol: c.protocol,
                replay_fraction: c.replay_fraction,
                client_budget: crate::cl::memory::Budget::Total(f.replay_memory_total),
                client_method: loaded.method_config(&f.replay_memory)?,
            });
        }
        Ok(st)
    }
}

/// Each client's sample indices into `data`'s labels, as the scenario's partition and `seed`
/// make them.
fn indices(f: &FederatedSection, labels: &[usize], k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    partition(labels, k, f.clients, &f.partition, seed)
        .map_err(|m| Error::Setting(format!("[federated] partition: {m}")))
}

/// Each client's sample indices into the training set.
pub fn client_indices(loaded: &Loaded, split: &Split) -> Result<Vec<Vec<usize>>> {
    let (f, k) = (
        loaded.scenario.federated_section(),
        split.train.num_classes(),
    );
    indices(&f, &split.train.labels, k, loaded.scenario.seed)
}

/// Each client's partition of the training set (global labels), as the scenario's seed makes it.
pub fn client_data(loaded: &Loaded, split: &Split) -> Result<Vec<Dataset>> {
    Ok(client_indices(loaded, split)?
        .iter()
        .map(|p| split.train.subset(p))
        .collect())
}

/// Each client's slice of each task (`slices[client][task]`): every task's training data
/// partitioned over the clients by the scenario's partition, seeded by the task. A class of a
/// task that no client holds is an error naming the partition.
pub fn client_streams(loaded: &Loaded, tasks: &[Task]) -> Result<Vec<Vec<Dataset>>> {
    let f = loaded.scenario.federated_section();
    let mut slices: Vec<Vec<Dataset>> = vec![Vec::new(); f.clients];
    for (t, task) in tasks.iter().enumerate() {
        let k = task.train.num_classes();
        let seed = step_seed(loaded.scenario.seed, t as u64);
        let parts = indices(&f, &task.train.labels, k, seed)
            .map_err(|e| Error::Setting(format!("task {t}: {e}")))?;
        let counts = class_counts(&task.train.labels, k, &parts);
        for &c in &task.classes {
            if counts.iter().all(|r| r.get(c).copied().unwrap_or(0) == 0) {
                return Err(Error::Setting(format!(
                    "federated.partition: no client holds class {c} of task {t}"
                )));
            }
        }
        for (client, p) in parts.iter().enumerate() {
            slices[client].push(task.train.subset(p));
        }
    }
    Ok(slices)
}

/// The engine settings of a scenario whose `[federated]` section is `f`.
fn engine_config(loaded: &Loaded, f: &FederatedSection) -> EngineConfig {
    let s = &loaded.scenario;
    EngineConfig {
        fraction: f.fraction,
        min_clients: f.min_clients,
        deadline: f.deadline_seconds.map(Duration::from_secs_f64),
        dropout: f.dropout,
        max_message_bytes: f.max_message_bytes,
        quantization: f.quantization,
        faults: f.faults.clone(),
        seed: s.seed,
        stop_at_accuracy: None,
    }
}

/// Settings that cannot work on these clients' data, found before any round: a
/// trajectory-matching client whose set would be smaller than `batch_syn`.
fn check_clients(s: &Settings, data: &[Dataset]) -> Result<()> {
    let Some(b) = s
        .distil
        .method
        .trajectory_matching()
        .and_then(|m| m.batch_syn)
    else {
        return Ok(());
    };
    for (id, d) in data.iter().enumerate() {
        let rich = d
            .class_counts()
            .iter()
            .filter(|&&n| n >= s.distil.ipc)
            .count();
        let n = rich * s.distil.ipc;
        if rich > 0 && n < b {
            return Err(Error::Setting(format!(
                "distill.batch_syn = {b}: client {id} makes {n} synthetic images (ipc {} for the {rich} classes it holds at least ipc images of), fewer than batch_syn",
                s.distil.ipc
            )));
        }
    }
    Ok(())
}

/// What private DM (`[distill] dp`) cost each client of strategy `kind` with settings `st` over
/// `rounds`: a client's sampling rate from the classes it distils (at least `ipc` images), its
/// steps the iterations of every round whose task reached it; None when the strategy does not
/// distil or its method is not private DM.
pub fn client_dp(
    kind: crate::fed::strategy::StrategyKind,
    st: &Settings,
    data: &[Dataset],
    rounds: &[crate::fed::engine::Round],
) -> Option<crate::dp::ClientsSpent> {
    if !kind.distils() {
        return None;
    }
    let (dp, batch_real) = st.distil.method.privacy()?;
    let per = data.iter().enumerate().filter_map(|(k, d)| {
        let worked = rounds
            .iter()
            .filter(|r| {
                r.clients.iter().any(|c| {
                    c.client == k && c.outcome != crate::fed::message::ClientOutcome::Unreachable
                })
            })
            .count();
        let q = crate::dp::max_rate(batch_real, &d.class_counts(), st.distil.ipc);
        (worked > 0 && q > 0.0).then_some((k, q, worked * st.distil.method.iterations()))
    });
    Some(dp.clients_spent(per))
}
