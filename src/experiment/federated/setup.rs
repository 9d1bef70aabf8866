//! What a federated run is made of before its rounds: each strategy's settings, each client's
//! data (a partition, or a slice of every task of a stream), the engine's settings, the
//! partition's files, and the checks that catch settings that cannot work before any round.

use crate::cl::harness::Protocol;
use crate::data::partition::{class_counts, counts_csv, partition};
use crate::data::stream::Task;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::experiment::RunContext;
use crate::fed::engine::EngineConfig;
use crate::fed::strategy::{ContinualSettings, Settings};
use crate::files::write_atomic;
use crate::report::plot::heatmap_svg;
use crate::rng::step_seed;
use crate::scenario::{FederatedSection, Loaded, StrategyEntry};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The settings of strategy `entry` of a scenario (the same on server and clients).
pub fn settings(
    loaded: &Loaded,
    split: &Split,
    cache: PathBuf,
    entry: &StrategyEntry,
) -> Result<Settings> {
    let s = &loaded.scenario;
    let f = s.federated_section();
    let d = s.distill_section();
    let e = s.eval_section();
    let dsa_name = d
        .run
        .dsa_strategy
        .clone()
        .unwrap_or_else(|| super::super::context::default_strategy(&split.name).to_string());
    let dsa = crate::data::augment::Dsa::new(&dsa_name).map_err(Error::Setting)?;
    let mut experts = s.experts_section();
    experts.dir = experts.dir.map(|p| loaded.resolve(&p));
    let method = match &entry.method {
        Some(m) => loaded.method_config(m)?,
        None => loaded.method(),
    };
    let continual = match entry.kind.is_continual() {
        true => {
            let c = s.continual_section();
            Some(ContinualSettings {
                budget: c.budget(),
                protocol: c.protocol,
                replay_fraction: c.replay_fraction,
                client_budget: crate::cl::memory::Budget::Total(f.replay_memory_total),
                client_method: loaded.method_config(&f.replay_memory)?,
            })
        }
        false => None,
    };
    Ok(Settings {
        spec: s.model_spec(split),
        seed: s.seed,
        rounds: f.rounds,
        quantization: f.quantization,
        local: s.train_config(),
        server: e.train_config(e.epochs),
        server_dsa: e.dsa.then(|| dsa.clone()),
        dsa,
        ipc: d.run.ipc,
        method,
        experts,
        cache,
        rho: f.rho as f32,
        dataset: split.cache_name(),
        classes: split.train.classes.clone(),
        shape: split.train.shape,
        label: entry.label(),
        continual,
    })
}

/// Each client's sample indices into `data`'s labels, as the scenario's partition and `seed`
/// make them.
fn indices(loaded: &Loaded, labels: &[usize], k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    let f = loaded.scenario.federated_section();
    partition(labels, k, f.clients, &f.partition, seed)
        .map_err(|m| Error::Setting(format!("[federated] partition: {m}")))
}

/// Every strategy's settings, in the scenario's order.
pub fn all_settings(ctx: &RunContext<'_>, f: &FederatedSection) -> Result<Vec<Arc<Settings>>> {
    let cache = ctx.opts.results_root.clone();
    (f.strategies.iter())
        .map(|e| settings(ctx.loaded, ctx.split, cache.clone(), e).map(Arc::new))
        .collect()
}

/// Each client's sample indices into the training set.
pub fn client_indices(loaded: &Loaded, split: &Split) -> Result<Vec<Vec<usize>>> {
    let k = split.train.num_classes();
    indices(loaded, &split.train.labels, k, loaded.scenario.seed)
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
        let parts = indices(loaded, &task.train.labels, k, seed)
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

/// The engine settings of a scenario.
pub fn engine_config(loaded: &Loaded) -> EngineConfig {
    let s = &loaded.scenario;
    let f = s.federated_section();
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
pub fn check_clients(s: &Settings, data: &[Dataset]) -> Result<()> {
    let Some(b) = s.method.trajectory_matching().and_then(|m| m.batch_syn) else {
        return Ok(());
    };
    for (id, d) in data.iter().enumerate() {
        let rich = d.class_counts().iter().filter(|&&n| n >= s.ipc).count();
        let n = rich * s.ipc;
        if rich > 0 && n < b {
            return Err(Error::Setting(format!(
                "distill.batch_syn = {b}: client {id} makes {n} synthetic images (ipc {} for the {rich} classes it holds at least ipc images of), fewer than batch_syn",
                s.ipc
            )));
        }
    }
    Ok(())
}

/// The protocol of a stream's server memory, for the report.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Gdumb => "gdumb",
        Protocol::Streaming => "streaming",
    }
}

/// `partition.csv`, and (up to 100 clients) the heatmap of samples per client and class.
pub fn write_partition(ctx: &RunContext<'_>, parts: &[Vec<usize>]) -> Result<()> {
    let split = ctx.split;
    let counts = class_counts(&split.train.labels, split.train.num_classes(), parts);
    write_atomic(
        &ctx.dir.join("partition.csv"),
        counts_csv(&counts).as_bytes(),
    )?;
    if parts.len() > 100 {
        return Ok(());
    }
    let shares: Vec<Vec<f64>> = counts
        .iter()
        .map(|r| {
            let n = r.iter().sum::<usize>().max(1) as f64;
            r.iter().map(|&c| c as f64 / n).collect()
        })
        .collect();
    let texts: Vec<Vec<String>> = counts
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    let names: Vec<String> = (0..parts.len()).map(|c| format!("client {c}")).collect();
    let svg = heatmap_svg(
        &format!("{}: samples per client and class", ctx.scenario().name),
        "client",
        "class",
        &names,
        &split.train.classes,
        &shares,
        Some(&texts),
    );
    write_atomic(&ctx.dir.join("partition.svg"), svg.as_bytes())
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
    let (dp, batch_real) = st.method.privacy()?;
    let per = data.iter().enumerate().filter_map(|(k, d)| {
        let worked = rounds
            .iter()
            .filter(|r| {
                r.clients.iter().any(|c| {
                    c.client == k && c.outcome != crate::fed::message::ClientOutcome::Unreachable
                })
            })
            .count();
        let q = crate::dp::max_rate(batch_real, &d.class_counts(), st.ipc);
        (worked > 0 && q > 0.0).then_some((k, q, worked * st.method.iterations()))
    });
    Some(dp.clients_spent(per))
}
