//! Federated runs over gRPC: `distillery serve` runs a scenario's server half and writes its
//! results folder; each `distillery client` process runs one client against it.

use super::continual::build_stream;
use super::federated::continual::StreamJob;
use super::federated::setup::client_streams;
use super::federated::{client_data, settings, FederatedJob, Transport};
use super::{load_data, RunContext, RunOptions, RunOutput};
use crate::device::{self, BackendJob};
use crate::error::{Error, Result};
use crate::fed::strategy::ClientState;
use crate::files::write_json_atomic;
use crate::scenario::{self, Kind, Loaded};
use burn::tensor::backend::AutodiffBackend;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

fn federated(path: &Path, what: &str) -> Result<Loaded> {
    let loaded = scenario::load(path)?;
    if !matches!(
        loaded.scenario.kind,
        Kind::Federated | Kind::FederatedContinual
    ) {
        return Err(Error::Other(format!(
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
    addr: std::net::SocketAddr,
    opts: &RunOptions,
    resume: Option<&Path>,
) -> Result<RunOutput> {
    let mut loaded = federated(path, "serve")?;
    if let Some(dir) = resume {
        let kept = super::resumable(dir)?;
        if kept.text != loaded.text {
            return Err(Error::Other(format!(
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
    let transport = Transport::Grpc(addr);
    let summary = match loaded.scenario.kind {
        Kind::FederatedContinual => device::dispatch(device, StreamJob { ctx, transport }),
        _ => device::dispatch(device, FederatedJob { ctx, transport }),
    }?;
    write_json_atomic(&dir.join("summary.json"), &summary)?;
    super::checkpoint::finished(&dir)?;
    Ok(RunOutput { dir, summary })
}

/// Runs client `id` of a federated scenario against the server at `url` until the server ends
/// the run; returns the number of tasks it did. Its caches (experts) go under `cache`.
pub fn client(path: &Path, url: &str, id: usize, cache: &Path) -> Result<usize> {
    let loaded = federated(path, "client")?;
    let f = loaded.scenario.federated_section();
    if id >= f.clients {
        return Err(Error::Other(format!(
            "client id {id}: the scenario has clients 0..{}",
            f.clients
        )));
    }
    let device = device::check(loaded.scenario.device)?;
    let split = load_data(&loaded)?;
    let job = ClientJob {
        loaded: &loaded,
        split: &split,
        url,
        id,
        cache,
    };
    device::dispatch(device, job)
}

struct ClientJob<'a> {
    loaded: &'a Loaded,
    split: &'a crate::data::Split,
    url: &'a str,
    id: usize,
    cache: &'a Path,
}

impl BackendJob for ClientJob<'_> {
    type Output = Result<usize>;

    fn run<B: AutodiffBackend>(self, device: B::Device, _backend: &str) -> Self::Output {
        let (loaded, split) = (self.loaded, self.split);
        let f = loaded.scenario.federated_section();
        let state = match loaded.scenario.kind {
            Kind::FederatedContinual => {
                let tasks = build_stream(&loaded.scenario, split).map_err(Error::Other)?;
                let mut slices = client_streams(loaded, &tasks)?;
                ClientState::streaming(self.id, slices.swap_remove(self.id))
            }
            _ => ClientState::new(self.id, client_data(loaded, split)?.swap_remove(self.id)),
        };
        let mut strategies = HashMap::new();
        for e in &f.strategies {
            let s = settings(loaded, split, self.cache.to_path_buf(), e)?;
            strategies.insert(e.label(), (e.kind, Arc::new(s)));
        }
        crate::fed::transport::grpc::run_client::<B>(
            self.url,
            state,
            strategies,
            crate::fed::transport::grpc::token(&f.token),
            f.max_message_bytes,
            device,
        )
    }
}
