//! `kind = "federated"`: partition the training set over the clients, then run every strategy of
//! the scenario (clients in this process, or remote `distillery client`s over gRPC), writing
//! `partition.csv/.svg`, `comm.csv` (every message's bytes), `clients.csv` (what each selected
//! client did each round), `metrics.csv` (accuracy and bytes per round) and
//! `accuracy_vs_bytes.svg`.

use super::distill::{dm_config, dsa_of, eval_train_config};
use super::model_spec;
use crate::data::partition::{class_counts, counts_csv, partition};
use crate::data::{Dataset, Split};
use crate::device::{worker_threads, BackendJob};
use crate::error::{Error, Result};
use crate::fed::engine::{run_rounds, EngineConfig, InProcess, Logs, Transport, WorkerPool};
use crate::fed::strategy::{build, ClientState, Settings, StrategyKind};
use crate::report::plot::{heatmap_svg, lines_svg};
use crate::report::{write_atomic, CsvLog};
use crate::scenario::{Loaded, Scenario};
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the clients run.
pub enum Clients {
    /// Tokio tasks in this process.
    InProcess,
    /// Remote processes that connect to a gRPC server at this address.
    Grpc(std::net::SocketAddr),
}

pub(super) struct FederatedJob<'a> {
    pub loaded: &'a Loaded,
    pub split: &'a Split,
    pub dir: &'a Path,
    pub quiet: bool,
    pub clients: Clients,
}

/// The settings the strategies share, from a scenario (the same on server and clients).
pub fn settings(s: &Scenario, split: &Split) -> Result<Settings> {
    let f = s.federated_section();
    let d = s.distill_section();
    let e = s.eval_section();
    let spec = model_spec(s, split);
    let (_, dsa) = dsa_of(&d, &split.name)?;
    Ok(Settings {
        spec: spec.clone(),
        seed: s.seed,
        rounds: f.rounds,
        quantization: f.quantization,
        local: s.train_config(),
        server: eval_train_config(&e),
        dsa: e.dsa.then(|| dsa.clone()),
        ipc: f.ipc,
        distiller: f.distiller,
        dm: dm_config(&d, d.iterations.unwrap_or(1000), spec, &dsa),
        rho: f.rho as f32,
        embed_epochs: d.embed_epochs,
        dataset: split.cache_name(),
        classes: split.train.classes.clone(),
        shape: split.train.shape,
    })
}

/// Each client's sample indices into the training set, as the scenario's seed makes them.
fn client_indices(s: &Scenario, split: &Split) -> Result<Vec<Vec<usize>>> {
    let f = s.federated_section();
    partition(
        &split.train.labels,
        split.train.num_classes(),
        f.clients,
        &f.partition,
        s.seed,
    )
    .map_err(|m| Error::Other(format!("[federated] partition: {m}")))
}

/// Each client's partition of the training set (global labels), as the scenario's seed makes it.
pub fn client_data(s: &Scenario, split: &Split) -> Result<Vec<Dataset>> {
    Ok(client_indices(s, split)?
        .iter()
        .map(|p| split.train.subset(p))
        .collect())
}

/// The engine settings of a scenario.
pub fn engine_config(s: &Scenario) -> EngineConfig {
    let f = s.federated_section();
    EngineConfig {
        fraction: f.fraction,
        min_clients: f.min_clients,
        deadline: f.deadline_seconds.map(Duration::from_secs_f64),
        dropout: f.dropout,
        max_message_bytes: f.max_message_bytes,
        faults: f.faults.clone(),
        seed: s.seed,
        stop_at_accuracy: None,
    }
}

const METRICS: &[&str] = &[
    "strategy",
    "round",
    "test_acc",
    "bytes_up",
    "bytes_down",
    "cumulative_bytes",
    "selected",
    "accepted",
    "elapsed_s",
];

impl BackendJob for FederatedJob<'_> {
    type Output = Result<serde_json::Value>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let s = &self.loaded.scenario;
        let f = s.federated_section();
        let split = self.split;
        let parts = client_indices(s, split)?;
        let data: Vec<Dataset> = parts.iter().map(|p| split.train.subset(p)).collect();
        let counts = class_counts(&split.train.labels, split.train.num_classes(), &parts);
        write_atomic(
            &self.dir.join("partition.csv"),
            counts_csv(&counts).as_bytes(),
        )?;
        if f.clients <= 100 {
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
            write_atomic(
                &self.dir.join("partition.svg"),
                heatmap_svg(
                    &format!("{}: samples per client and class", s.name),
                    "client",
                    "class",
                    &(0..f.clients)
                        .map(|c| format!("client {c}"))
                        .collect::<Vec<_>>(),
                    &split.train.classes,
                    &shares,
                    Some(&texts),
                )
                .as_bytes(),
            )?;
        }
        let settings = Arc::new(settings(s, split)?);
        let mut comm = CsvLog::create(
            &self.dir.join("comm.csv"),
            &["strategy", "round", "client", "direction", "bytes"],
        )?;
        let mut clients_log = CsvLog::create(
            &self.dir.join("clients.csv"),
            &["strategy", "round", "client", "outcome", "reason"],
        )?;
        let mut metrics = CsvLog::create(&self.dir.join("metrics.csv"), METRICS)?;
        let quiet = self.quiet;
        let print = move |line: String| {
            if !quiet {
                eprintln!("{line}");
            }
        };
        let pool = Arc::new(WorkerPool::new(f.workers.unwrap_or_else(worker_threads)));
        let started = Instant::now();
        let mut remote = match &self.clients {
            Clients::InProcess => None,
            Clients::Grpc(addr) => Some(crate::fed::grpc::GrpcServer::start(
                *addr,
                f.clients,
                crate::fed::grpc::token(&f.token),
                f.max_message_bytes,
            )?),
        };
        let mut oneshot_acc: Option<f64> = None;
        let mut seq = 0u32;
        let mut results = serde_json::Map::new();
        let mut series = Vec::new();
        let mut report = vec![format!(
            "{:<20} {:>7} {:>9} {:>12} {:>12} {:>12}",
            "strategy", "rounds", "accuracy", "MB up", "MB down", "MB total"
        )];
        for &kind in &f.strategies {
            if results.contains_key(kind.name()) {
                continue;
            }
            let t0 = Instant::now();
            let mut strategy = build::<B>(kind, settings.clone(), &device);
            let mut cfg = engine_config(s);
            if kind == StrategyKind::Fedavg && f.fedavg_until_oneshot {
                cfg.stop_at_accuracy = oneshot_acc;
            }
            let mut in_process;
            let transport: &mut dyn Transport = match remote.as_mut() {
                Some(r) => r,
                None => {
                    let states = data
                        .iter()
                        .enumerate()
                        .map(|(id, d)| ClientState {
                            id,
                            data: d.clone(),
                            syn: None,
                        })
                        .collect();
                    in_process = InProcess::start::<B>(
                        states,
                        strategy.client(),
                        pool.clone(),
                        &cfg,
                        device.clone(),
                    )?;
                    &mut in_process
                }
            };
            let mut logs = Logs {
                comm: &mut comm,
                clients: &mut clients_log,
                metrics: &mut metrics,
                print: &print,
            };
            let rec = run_rounds::<B>(
                strategy.as_mut(),
                transport,
                f.clients,
                &cfg,
                &split.test,
                &mut logs,
                &mut seq,
                &device,
            )?;
            let (up, down) = rec.totals();
            let last = rec.rounds.last().map(|r| r.1);
            if kind == StrategyKind::DistilledOneshot {
                oneshot_acc = last;
            }
            let accepted = rec.clients.iter().filter(|c| c.2 == "accepted").count();
            let refused: Vec<_> = rec
                .clients
                .iter()
                .filter(|c| c.2 != "accepted")
                .map(|(r, c, what, why)| json!({"round": r, "client": c, "outcome": what, "reason": why}))
                .collect();
            report.push(format!(
                "{:<20} {:>7} {:>9} {:>12.3} {:>12.3} {:>12.3}",
                kind.name(),
                rec.rounds.len(),
                last.map_or("-".into(), |a| format!("{a:.4}")),
                up as f64 / 1e6,
                down as f64 / 1e6,
                (up + down) as f64 / 1e6
            ));
            series.push((
                kind.name().to_string(),
                rec.rounds
                    .iter()
                    .map(|&(_, a, u, d)| ((u + d) as f64 / 1e6, a))
                    .collect::<Vec<_>>(),
            ));
            results.insert(
                kind.name().into(),
                json!({
                    "final_accuracy": last,
                    "accuracy_per_round": rec.rounds.iter().map(|r| r.1).collect::<Vec<_>>(),
                    "rounds": rec.rounds.len(),
                    "bytes_up": up,
                    "bytes_down": down,
                    "bytes_total": up + down,
                    "accepted_updates": accepted,
                    "not_accepted": refused,
                    "stopped_at_accuracy": cfg.stop_at_accuracy,
                    "seconds": t0.elapsed().as_secs_f64(),
                }),
            );
        }
        drop(remote);
        write_atomic(
            &self.dir.join("accuracy_vs_bytes.svg"),
            lines_svg(
                &format!("{}: global test accuracy against bytes exchanged", s.name),
                "cumulative MB (up + down)",
                "test accuracy",
                &series,
            )
            .as_bytes(),
        )?;
        report.push(format!(
            "bytes: encoded protobuf message lengths (tensors as {}), up and down, all clients",
            f.quantization.name()
        ));
        Ok(json!({
            "name": s.name,
            "kind": "federated",
            "backend": backend,
            "dataset": split.name,
            "seed": s.seed,
            "clients": f.clients,
            "partition": f.partition,
            "client_sizes": data.iter().map(Dataset::len).collect::<Vec<_>>(),
            "quantization": f.quantization.name(),
            "transport": match self.clients { Clients::InProcess => "in_process", Clients::Grpc(_) => "grpc" },
            "strategies": results,
            "wall_seconds": started.elapsed().as_secs_f64(),
            "report": report,
        }))
    }
}
