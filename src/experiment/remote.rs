//! Federated runs over gRPC: `distillery serve` runs a scenario's server half and writes its
//! results folder; each `distillery client` process runs one or many of its clients against it.

use super::federated::continual::StreamJob;
use super::federated::{FederatedJob, Transport};
use super::{load_data, RunContext, RunOptions, RunOutput};
use crate::device::worker_threads;
use crate::device::{self, BackendJob};
use crate::error::{Error, Result};
use crate::fed::strategy::{ClientState, StrategyKind};
use crate::fed::transport::client::{run_clients, Connect};
use crate::fed::transport::grpc::{token, Listen};
use crate::fed::transport::ids::Shard;
use crate::fed::transport::kept::Store;
use crate::fed::transport::retry::Retry;
use crate::fed::transport::tls::ClientTls;
use crate::files::write_json_atomic;
use crate::plan::federated::{client_data, client_streams, FedPlan};
use crate::scenario::{self, Kind, Loaded};
use burn::tensor::backend::AutodiffBackend;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn federated(path: &Path, what: &str) -> Result<Loaded> {
    let loaded = scenario::load(path)?;
    if !matches!(
        loaded.scenario.kind,
        Kind::Federated | Kind::FederatedContinual
    ) {
        return Err(Error::Usage(format!(
            "{}: `{what}` runs kind = \"federated\" or \"federated_continual\" scenarios",
            path.display()
        )));
    }
    Ok(loaded)
}

/// Runs a federated scenario's server half over gRPC on `addr`; its clients are separate
/// `distillery client` processes. Writes a results folder as `run` does, or continues the one
/// in `resume` from its last round checkpoint (its scenario must be the one at `path`).
pub fn serve(
    path: &Path,
    listen: Listen,
    opts: &RunOptions,
    resume: Option<&Path>,
) -> Result<RunOutput> {
    let mut loaded = federated(path, "serve")?;
    if let Some(dir) = resume {
        let kept = super::resumable(dir)?;
        if kept.text != loaded.text {
            return Err(Error::Usage(format!(
                "{}: not the scenario of {} (its copy there differs); serve that one",
                path.display(),
                dir.display()
            )));
        }
        loaded = kept;
    }
    let device = device::check(loaded.scenario.device)?;
    let (split, heldout) = super::load_split(&loaded)?;
    let mut ctx = match resume {
        Some(dir) => RunContext::resumed(&loaded, &split, dir, opts),
        None => RunContext::create(&loaded, &split, opts)?,
    };
    ctx.heldout = heldout.as_ref();
    let dir = ctx.dir.clone();
    let transport = Transport::Grpc(listen);
    let summary = match loaded.scenario.kind {
        Kind::FederatedContinual => device::dispatch(device, StreamJob { ctx, transport }),
        _ => device::dispatch(device, FederatedJob { ctx, transport }),
    }?;
    write_json_atomic(&dir.join("summary.json"), &summary)?;
    crate::files::checkpoint::finished(&dir)?;
    crate::report::at_end(&dir, &loaded.scenario.report);
    Ok(RunOutput { dir, summary })
}

/// What `distillery client` was asked: the server, the ids it hosts, TLS, retries, workers.
#[derive(Clone, Debug)]
pub struct ClientRun {
    /// The server's URL.
    pub url: String,
    /// The client ids this process hosts.
    pub ids: Vec<usize>,
    /// Or the slice of the scenario's clients it hosts (its ids are then resolved from the
    /// scenario's client count).
    pub shard: Option<Shard>,
    /// What it trusts, when the server speaks TLS.
    pub tls: Option<ClientTls>,
    /// How long it retries an unreachable server.
    pub retry: Retry,
    /// Worker threads for the hosted clients' work (None: the scenario's `workers`, else one
    /// per core).
    pub workers: Option<usize>,
    /// Where each hosted client keeps its state across restarts (None: in memory only).
    pub state: Option<PathBuf>,
}

/// Runs the clients `run.ids` of a federated scenario in this process against the server at
/// `run.url` until the server ends the run; returns each id with the number of tasks it did.
/// Their caches (experts) go under `cache`.
pub fn client(path: &Path, run: &ClientRun, cache: &Path) -> Result<Vec<(usize, usize)>> {
    let loaded = federated(path, "client")?;
    let f = loaded.scenario.federated_section();
    let sharded;
    let run = match run.shard {
        Some(s) => {
            sharded = ClientRun {
                ids: s.ids(f.clients),
                ..run.clone()
            };
            if sharded.ids.is_empty() {
                return Err(Error::Usage(format!(
                    "--shard {}/{}: the scenario's {} clients leave this slice empty",
                    s.k, s.n, f.clients
                )));
            }
            &sharded
        }
        None => run,
    };
    if run.ids.is_empty() {
        return Err(Error::Usage("no client ids to run".into()));
    }
    if let Some(&id) = run.ids.iter().find(|&&id| id >= f.clients) {
        return Err(Error::Usage(format!(
            "client id {id}: the scenario has clients 0..{}",
            f.clients
        )));
    }
    let device = device::check(loaded.scenario.device)?;
    let split = load_data(&loaded)?;
    let job = ClientJob {
        loaded: &loaded,
        split: &split,
        run,
        cache,
    };
    device::dispatch(device, job)
}

/// Client `id`'s part, taken out of everyone's.
fn take<T>(parts: &mut [Option<T>], id: usize) -> Result<T> {
    parts
        .get_mut(id)
        .and_then(Option::take)
        .ok_or_else(|| Error::Usage(format!("client {id}: no partition for this id")))
}

struct ClientJob<'a> {
    loaded: &'a Loaded,
    split: &'a crate::data::Split,
    run: &'a ClientRun,
    cache: &'a Path,
}

impl BackendJob for ClientJob<'_> {
    type Output = Result<Vec<(usize, usize)>>;

    fn run<B: AutodiffBackend>(self, device: B::Device, _backend: &str) -> Self::Output {
        let (loaded, split, run) = (self.loaded, self.split, self.run);
        let plan = FedPlan::new(loaded, split, self.cache.to_path_buf())?;
        let f = &plan.section;
        let states: Vec<ClientState> = match loaded.scenario.kind {
            Kind::FederatedContinual => {
                let tasks = loaded.scenario.stream(split).map_err(Error::Usage)?;
                let mut slices: Vec<Option<_>> = client_streams(loaded, &tasks)?
                    .into_iter()
                    .map(Some)
                    .collect();
                run.ids
                    .iter()
                    .map(|&id| take(&mut slices, id).map(|s| ClientState::streaming(id, s)))
                    .collect::<Result<_>>()?
            }
            _ => {
                let mut parts: Vec<Option<_>> =
                    client_data(loaded, split)?.into_iter().map(Some).collect();
                run.ids
                    .iter()
                    .map(|&id| take(&mut parts, id).map(|d| ClientState::new(id, d)))
                    .collect::<Result<_>>()?
            }
        };
        let strategies: HashMap<_, _> = (plan.strategies())
            .map(|(e, st)| (e.label(), (e.kind, st.clone())))
            .collect();
        let conn = Connect {
            url: run.url.clone(),
            tls: run.tls.clone(),
            token: token(&f.token),
            retry: run.retry.clone(),
            max_message_bytes: f.max_message_bytes,
        };
        let workers = run.workers.or(f.workers).unwrap_or_else(worker_threads);
        let store = match &run.state {
            Some(dir) => Some(Store::new(dir, &loaded.text)?),
            None => {
                let keeps = f.strategies.iter().any(|e| {
                    matches!(
                        e.kind,
                        StrategyKind::DistilledIterative | StrategyKind::FedavgReplay
                    )
                });
                if keeps {
                    eprintln!(
                        "note: these clients keep state between rounds (FedDM's sets, a replay memory) in memory only; with --state DIR a restarted client process continues where it stopped"
                    );
                }
                None
            }
        };
        run_clients::<B>(&conn, states, strategies, (workers, store), device)
    }
}
