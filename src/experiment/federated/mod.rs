//! `kind = "federated"`: partition the training set over the clients, then run every strategy of
//! the scenario (clients in this process, or remote `distillery client`s over gRPC), writing
//! `partition.csv/.svg`, `comm.csv` (every message's bytes), `clients.csv` (what each selected
//! client did each round, its bytes and compute time), `metrics.csv` (accuracy and bytes per
//! round) and `accuracy_vs_bytes.svg`. `kind = "federated_continual"` is [`continual`].

pub mod continual;
pub mod resume;
pub mod rounds;
pub mod setup;

use super::RunContext;
use crate::data::Dataset;
use crate::device::BackendJob;
use crate::error::{Error, Result};
use crate::fed::strategy::{ClientState, Settings, StrategyKind};
use crate::fed::transport::grpc::{token, GrpcServer, Listen};
use crate::files::checkpoint::STATE_FILE;
use crate::files::write_atomic;
use crate::report::plot::lines_svg;
use crate::report::records::{FederatedOutcome, Outcome, StrategyRecord, Summary};
use burn::tensor::backend::AutodiffBackend;
use resume::FedState;
use rounds::{curve, record, report_header, report_line, Clients};
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
            Transport::Grpc(l) => {
                GrpcServer::start(l, f.clients, token(&f.token), f.max_message_bytes).map(Some)
            }
        }
    }
}

/// The kind a federated run's checkpoints are of.
const KIND: &str = "federated";

/// A strategy a federated run has finished, as its checkpoint keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Finished {
    index: usize,
    label: String,
    record: StrategyRecord,
    curve: Vec<(f64, f64)>,
    oneshot: bool,
}

/// The report's line of what strategy `label`'s private clients spent, when they are private.
fn dp_line(label: &str, r: &StrategyRecord) -> Option<String> {
    r.dp.as_ref().map(|d| {
        format!(
            "{label}: differentially private clients: epsilon at most {:.3} at delta {:e} ({} clients; per client in the summary)",
            d.epsilon_max,
            d.settings.delta,
            d.clients.len()
        )
    })
}

/// What a federated run has to show so far: the one-shot accuracy FedAvg may stop at, each
/// finished strategy's record, curve and report lines, and the strategy to run next.
struct SoFar {
    oneshot_acc: Option<f64>,
    results: BTreeMap<String, StrategyRecord>,
    series: Vec<(String, Vec<(f64, f64)>)>,
    report: Vec<String>,
    next: usize,
}

impl Default for SoFar {
    fn default() -> Self {
        SoFar {
            oneshot_acc: None,
            results: BTreeMap::new(),
            series: Vec::new(),
            report: vec![report_header()],
            next: 0,
        }
    }
}

impl SoFar {
    /// The strategies checkpoint `st` had finished, and where it continues.
    fn resume(&mut self, ctx: &RunContext<'_>, st: &FedState) -> Result<()> {
        for v in &st.done {
            let d: Finished = serde_json::from_value(v.clone()).map_err(|e| {
                Error::Checkpoint(format!("{}: {e}", ctx.dir.join(STATE_FILE).display()))
            })?;
            if d.oneshot {
                self.oneshot_acc = d.record.final_accuracy;
            }
            self.report.push(report_line(&d.label, &d.record));
            self.report.extend(dp_line(&d.label, &d.record));
            self.series.push((d.label.clone(), d.curve));
            self.results.insert(d.label, d.record);
            self.next = d.index + 1;
        }
        self.next = st.ongoing.as_ref().map_or(self.next, |o| o.strategy);
        Ok(())
    }
}

/// `accuracy_vs_bytes.svg`: each strategy's global test accuracy against the bytes so far.
fn write_plot(ctx: &RunContext<'_>, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let svg = lines_svg(
        &format!(
            "{}: global test accuracy against bytes exchanged",
            ctx.scenario().name
        ),
        "cumulative MB (up + down)",
        "test accuracy",
        series,
    );
    write_atomic(&ctx.dir.join("accuracy_vs_bytes.svg"), svg.as_bytes())
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
        let resumed: Option<FedState> = ctx.resume_state(KIND)?;
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
        let mut clients = Clients::new(
            ctx,
            data.iter()
                .enumerate()
                .map(|(id, d)| ClientState::new(id, d.clone()))
                .collect(),
            (KIND, "metrics.csv"),
            self.transport.server(&f)?,
        )?;
        let mut so_far = SoFar::default();
        if let Some(st) = resumed {
            so_far.resume(ctx, &st)?;
            (clients.done, clients.seq, clients.resumed) = (st.done, st.seq, st.ongoing);
            clients.audit = st.audit;
        }
        let SoFar {
            mut oneshot_acc,
            mut results,
            mut series,
            mut report,
            next,
        } = so_far;
        let mut audit = super::audit::federated::Federated::<B>::new(ctx, &parts);
        if let Some(kept) = clients.audit.clone() {
            audit.restore(kept);
        }
        for (index, (entry, st)) in f.strategies.iter().zip(settings).enumerate() {
            let label = entry.label();
            if index < next || results.contains_key(&label) {
                continue;
            }
            let t0 = Instant::now();
            let stop_at = (entry.kind == StrategyKind::Fedavg && f.fedavg_until_oneshot)
                .then_some(oneshot_acc)
                .flatten();
            clients.current = index;
            let kept_sets = match &clients.resumed {
                Some(o) if o.strategy == index => o.sent.clone(),
                _ => BTreeMap::new(),
            };
            let mut run = clients.start::<B>(entry.kind, st.clone(), &device)?;
            // The server's decoded sets, kept for the privacy audit (and in checkpoints).
            clients.sent = match audit.wants(entry.kind) {
                true => {
                    let (kept, sent) = super::audit::federated::recording(run.strategy, kept_sets);
                    run.strategy = kept;
                    Some(sent)
                }
                false => None,
            };
            clients.rounds::<B>(&mut run, (0, &ctx.split.test), stop_at, &device)?;
            let rounds = &run.past.rounds;
            let mut rec = record(rounds, stop_at, t0.elapsed().as_secs_f64());
            rec.dp = setup::client_dp(entry.kind, &st, &data, rounds);
            let oneshot = entry.kind == StrategyKind::DistilledOneshot && entry.method.is_none();
            if oneshot {
                oneshot_acc = rec.final_accuracy;
            }
            report.push(report_line(&label, &rec));
            report.extend(dp_line(&label, &rec));
            if let Some(sent) = clients.sent.take() {
                audit.strategy(&label, &sent, &device)?;
                clients.audit = Some(audit.kept());
            }
            series.push((label.clone(), curve(rounds)));
            let done = Finished {
                index,
                label: label.clone(),
                record: rec.clone(),
                curve: curve(rounds),
                oneshot,
            };
            clients
                .done
                .push(serde_json::to_value(&done).map_err(|e| Error::Other(e.to_string()))?);
            results.insert(label, rec);
            clients.save(None)?;
        }
        drop(clients.remote.take());
        write_plot(ctx, &series)?;
        report.push(format!(
            "bytes: encoded protobuf message lengths (tensors as {}), up and down, all clients; client s: seconds of compute the clients reported",
            f.quantization.name()
        ));
        let privacy = audit.finish(&device)?.map(|(record, lines)| {
            report.extend(lines);
            record
        });
        let outcome = FederatedOutcome {
            clients: f.clients,
            partition: f.partition.clone(),
            client_sizes: data.iter().map(Dataset::len).collect(),
            quantization: f.quantization.name().into(),
            transport: self.transport.name().into(),
            strategies: results,
        };
        let mut summary = ctx.summary(backend, report, Outcome::Federated(outcome));
        summary.privacy = privacy;
        Ok(summary)
    }
}
