//! `kind = "federated"`: partition the training set over the clients, then run every strategy of
//! the scenario (clients in this process, or remote `distillery client`s over gRPC), writing
//! `partition.csv/.svg`, `comm.csv` (every message's bytes), `clients.csv` (what each selected
//! client did each round, its bytes and compute time), `metrics.csv` (accuracy and bytes per
//! round) and `accuracy_vs_bytes.svg`. `kind = "federated_continual"` is [`continual`].

pub mod continual;
pub mod rounds;
pub mod setup;

use super::RunContext;
use crate::data::Dataset;
use crate::device::{worker_threads, BackendJob};
use crate::error::Result;
use crate::fed::strategy::{ClientState, Settings, StrategyKind};
use crate::fed::transport::grpc::{token, GrpcServer, Listen};
use crate::fed::transport::in_process::WorkerPool;
use crate::files::write_atomic;
use crate::report::plot::lines_svg;
use crate::report::records::{FederatedOutcome, Outcome, Summary};
use burn::tensor::backend::AutodiffBackend;
use rounds::{curve, record, report_header, report_line, Clients, Logs};
pub use setup::{client_data, settings, write_partition};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Where the clients run.
pub enum Transport {
    /// Tokio tasks in this process.
    InProcess,
    /// Remote processes that connect to a gRPC server listening so.
    Grpc(Listen),
}

impl Transport {
    /// `in_process` or `grpc`.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::InProcess => "in_process",
            Transport::Grpc(_) => "grpc",
        }
    }

    /// The gRPC server this transport needs (None in process).
    pub fn server(&self, f: &crate::scenario::FederatedSection) -> Result<Option<GrpcServer>> {
        match self {
            Transport::InProcess => Ok(None),
            Transport::Grpc(l) => GrpcServer::start(
                l.addr,
                l.tls.as_ref(),
                f.clients,
                token(&f.token),
                f.max_message_bytes,
            )
            .map(Some),
        }
    }
}

/// A federated run.
pub struct FederatedJob<'a> {
    /// The run.
    pub ctx: RunContext<'a>,
    /// Where its clients run.
    pub transport: Transport,
}

impl BackendJob for FederatedJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let s = ctx.scenario();
        let f = s.federated_section();
        let parts = setup::client_indices(ctx.loaded, ctx.split)?;
        write_partition(ctx, &parts)?;
        let data: Vec<Dataset> = parts.iter().map(|p| ctx.split.train.subset(p)).collect();
        let cache = ctx.opts.results_root.clone();
        let settings: Vec<Arc<Settings>> = f
            .strategies
            .iter()
            .map(|e| setup::settings(ctx.loaded, ctx.split, cache.clone(), e).map(Arc::new))
            .collect::<Result<_>>()?;
        for (e, st) in f.strategies.iter().zip(&settings) {
            if e.kind.distils() {
                setup::check_clients(st, &data)?;
            }
        }
        let mut clients = Clients {
            ctx,
            states: data
                .iter()
                .enumerate()
                .map(|(id, d)| ClientState::new(id, d.clone()))
                .collect(),
            logs: Logs {
                comm: ctx.csv("comm.csv")?,
                clients: ctx.csv("clients.csv")?,
                metrics: ctx.csv("metrics.csv")?,
            },
            pool: Arc::new(WorkerPool::new(f.workers.unwrap_or_else(worker_threads))),
            remote: self.transport.server(&f)?,
            seq: 0,
        };
        let mut oneshot_acc: Option<f64> = None;
        let mut results = BTreeMap::new();
        let mut series = Vec::new();
        let mut report = vec![report_header()];
        for (entry, st) in f.strategies.iter().zip(settings) {
            let label = entry.label();
            if results.contains_key(&label) {
                continue;
            }
            let t0 = Instant::now();
            let stop_at = (entry.kind == StrategyKind::Fedavg && f.fedavg_until_oneshot)
                .then_some(oneshot_acc)
                .flatten();
            let mut run = clients.start::<B>(entry.kind, st, &device)?;
            let rounds = clients.rounds::<B>(&mut run, (0, &ctx.split.test), stop_at, &device)?;
            let rec = record(&rounds, stop_at, t0.elapsed().as_secs_f64());
            if entry.kind == StrategyKind::DistilledOneshot && entry.method.is_none() {
                oneshot_acc = rec.final_accuracy;
            }
            report.push(report_line(&label, &rec));
            series.push((label.clone(), curve(&rounds)));
            results.insert(label, rec);
        }
        drop(clients.remote.take());
        let svg = lines_svg(
            &format!("{}: global test accuracy against bytes exchanged", s.name),
            "cumulative MB (up + down)",
            "test accuracy",
            &series,
        );
        write_atomic(&ctx.dir.join("accuracy_vs_bytes.svg"), svg.as_bytes())?;
        report.push(format!(
            "bytes: encoded protobuf message lengths (tensors as {}), up and down, all clients; client s: seconds of compute the clients reported",
            f.quantization.name()
        ));
        let outcome = FederatedOutcome {
            clients: f.clients,
            partition: f.partition.clone(),
            client_sizes: data.iter().map(Dataset::len).collect(),
            quantization: f.quantization.name().into(),
            transport: self.transport.name().into(),
            strategies: results,
        };
        Ok(ctx.summary(backend, report, Outcome::Federated(outcome)))
    }
}
