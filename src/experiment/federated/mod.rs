//! `kind = "federated"`: partition the training set over the clients, then run every strategy of
//! the scenario (clients in this process, or remote `distillery client`s over gRPC), writing
//! `partition.csv/.svg`, `comm.csv` (every message's bytes), `clients.csv` (what each selected
//! client did each round, its bytes and compute time), `metrics.csv` (accuracy and bytes per
//! round) and `accuracy_vs_bytes.svg`. `kind = "federated_continual"` is [`continual`].

pub mod continual;
pub mod each;
pub mod resume;
pub mod rounds;

use super::audit::federated::Federated;
use super::RunContext;
use crate::data::Dataset;
use crate::device::BackendJob;
use crate::error::Result;
use crate::fed::strategy::recording::recording;
use crate::fed::strategy::{ClientState, StrategyKind};
use crate::fed::transport::grpc::{token, GrpcServer, Listen};
use crate::plan::federated::{client_dp, client_indices, FedPlan};
use crate::report::federated::{
    curve, dp_line, record, report_header, report_line, write_partition, write_plot, Series,
};
use crate::report::records::{FederatedOutcome, Outcome, StrategyRecord, Summary};
use crate::scenario::{FederatedSection, Kind};
use burn::tensor::backend::AutodiffBackend;
use each::{each_strategy, PerStrategy};
use resume::Journal;
use rounds::Clients;
use std::collections::BTreeMap;
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
    pub fn server(&self, f: &FederatedSection) -> Result<Option<GrpcServer>> {
        match self {
            Transport::InProcess => Ok(None),
            Transport::Grpc(l) => {
                GrpcServer::start(l, f.clients, token(&f.token), f.max_message_bytes).map(Some)
            }
        }
    }
}

/// A strategy a federated run has finished, as its checkpoint keeps it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Finished {
    label: String,
    record: StrategyRecord,
    curve: Vec<(f64, f64)>,
    oneshot: bool,
}

/// A federated run's strategies: what each needs, and what the finished ones come to.
struct Strategies<'r, B: AutodiffBackend> {
    ctx: &'r RunContext<'r>,
    plan: &'r FedPlan,
    data: &'r [Dataset],
    audit: Federated<'r, B>,
    /// The one-shot accuracy FedAvg may stop at.
    oneshot_acc: Option<f64>,
    results: BTreeMap<String, StrategyRecord>,
    series: Vec<Series>,
    report: Vec<String>,
}

impl<B: AutodiffBackend> PerStrategy<B> for Strategies<'_, B> {
    type Done = Finished;

    fn run(
        &mut self,
        clients: &mut Clients<'_>,
        journal: &mut Journal<Finished>,
        index: usize,
        device: &B::Device,
    ) -> Result<Finished> {
        let (entry, st) = (
            &self.plan.section.strategies[index],
            self.plan.settings[index].clone(),
        );
        let label = entry.label();
        let t0 = Instant::now();
        let stop_at = (entry.kind == StrategyKind::Fedavg
            && self.plan.section.fedavg_until_oneshot)
            .then_some(self.oneshot_acc)
            .flatten();
        let mut run = clients.start::<B, _>(journal, entry.kind, st.clone(), device)?;
        // The server's decoded sets, kept for the privacy audit (and in checkpoints).
        journal.sent = match self.audit.wants(entry.kind) {
            true => {
                let (kept, sent) = recording(run.strategy, std::mem::take(&mut run.kept_sent));
                run.strategy = kept;
                Some(sent)
            }
            false => None,
        };
        let test = (0, &self.ctx.split.test);
        clients.rounds::<B, _>(journal, &mut run, test, stop_at, device)?;
        let rounds = &run.past.rounds;
        let mut rec = record(rounds, stop_at, t0.elapsed().as_secs_f64());
        rec.dp = client_dp(entry.kind, &st, self.data, rounds);
        if let Some(sent) = journal.sent.take() {
            self.audit.strategy(&label, &sent, device)?;
            journal.audit = Some(self.audit.kept());
        }
        Ok(Finished {
            label,
            record: rec,
            curve: curve(rounds),
            oneshot: entry.kind == StrategyKind::DistilledOneshot && entry.method.is_none(),
        })
    }

    fn take(&mut self, d: &Finished) {
        if d.oneshot {
            self.oneshot_acc = d.record.final_accuracy;
        }
        self.report.push(report_line(&d.label, &d.record));
        self.report.extend(dp_line(&d.label, &d.record));
        self.series.push((d.label.clone(), d.curve.clone()));
        self.results.insert(d.label.clone(), d.record.clone());
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
        let plan = FedPlan::new(ctx.loaded, ctx.split, ctx.opts.results_root.clone())?;
        let f = &plan.section;
        let resumed = ctx.resume_state(Kind::Federated)?;
        let parts = client_indices(ctx.loaded, ctx.split)?;
        write_partition((&ctx.dir, &ctx.scenario().name), ctx.split, &parts)?;
        let data: Vec<Dataset> = parts.iter().map(|p| ctx.split.train.subset(p)).collect();
        plan.check_clients(&data, None)?;
        let states = (data.iter().enumerate())
            .map(|(id, d)| ClientState::new(id, d.clone()))
            .collect();
        let remote = self.transport.server(f)?;
        let mut journal = Journal::new(Kind::Federated, resumed);
        let mut clients = Clients::new((ctx, &plan), states, "metrics.csv", remote)?;
        let mut audit = Federated::<B>::new(ctx, &parts);
        if let Some(kept) = journal.audit.clone() {
            audit.restore(kept);
        }
        let mut per = Strategies {
            ctx,
            plan: &plan,
            data: &data,
            audit,
            oneshot_acc: None,
            results: BTreeMap::new(),
            series: Vec::new(),
            report: vec![report_header()],
        };
        let count = f.strategies.len();
        each_strategy::<B, _>(&mut clients, &mut journal, &mut per, count, &device)?;
        let what = ("global test accuracy", "test accuracy");
        write_plot((&ctx.dir, &ctx.scenario().name), what, &per.series)?;
        let mut report = per.report;
        report.push(format!(
            "bytes: encoded protobuf message lengths (tensors as {}), up and down, all clients; client s: seconds of compute the clients reported",
            f.quantization.name()
        ));
        let privacy = per.audit.finish(&device)?.map(|(record, lines)| {
            report.extend(lines);
            record
        });
        let outcome = FederatedOutcome {
            clients: f.clients,
            partition: f.partition.clone(),
            client_sizes: data.iter().map(Dataset::len).collect(),
            quantization: f.quantization.name().into(),
            transport: self.transport.name().into(),
            strategies: per.results,
        };
        let mut summary = ctx.summary(backend, report, Outcome::Federated(outcome));
        summary.privacy = privacy;
        Ok(summary)
    }
}
