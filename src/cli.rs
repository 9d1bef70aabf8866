//! The command line's grammar (clap): the subcommands, their flags and the parsers of flag
//! values. `main.rs` dispatches on it; nothing here runs anything.

use clap::{Parser, Subcommand};
use distillery::fed::transport::ids;
use distillery::scenario::shortcut::DistillArgs;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "distillery",
    version,
    about = "Dataset distillation for federated and continual learning"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// Never download: a dataset missing from the data folder is an error that says where to
    /// put its files (also `DISTILLERY_OFFLINE=1`).
    #[arg(long, global = true)]
    pub offline: bool,
}

#[derive(Subcommand)]
pub enum DataCmd {
    /// Every dataset known by name: its size, licence, folder, whether it is there, its URL.
    List,
    /// Download datasets into the data folder (checked against their pinned checksums).
    Fetch {
        /// Dataset names (`distillery data list`), or `all`.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Check the data folder's files against their pinned checksums and SHA256SUMS.
    Verify {
        /// Dataset names (default: every dataset in the data folder).
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a scenario file (results land in RESULTS/<name>-<timestamp>/), or resume a run.
    Run(RunArgs),
    /// Distil a dataset: builds a `distill` scenario from the flags and runs it.
    Distill(DistillCmd),
    /// Serve a federated scenario over gRPC: the server half runs here, clients connect with
    /// `distillery client` (results land in RESULTS/<name>-<timestamp>/).
    Serve(ServeArgs),
    /// Run one client, or many (--ids), of a federated scenario against a `distillery serve`
    /// server.
    Client(ClientArgs),
    /// Check a device's numerics against the CPU's on the building blocks of distillation
    /// (convolution gradients, DSA, the ConvNet backward, one MTT step) at a run's shapes.
    Doctor(DoctorArgs),
    /// Compare methods across finished runs, paired by seed (runs at one seed share their
    /// starting images and evaluation nets): per-seed accuracy, mean over seeds, paired t-test.
    Compare {
        /// Finished run folders (each with a summary.json), for example `results/mnist-mtt-ipc1-*`.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Pair every other method against this one (for example `dm` or `random`).
        #[arg(long)]
        against: Option<String>,
        /// The evaluation model whose accuracies to compare.
        #[arg(long, default_value = "convnet")]
        model: String,
    },
    /// Datasets by name in the data folder (`DISTILLERY_DATA`, else the platform cache folder's
    /// `distillery/`): list, fetch, verify.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Audit a synthetic set made elsewhere against the data it came from: nearest-real
    /// distances and membership inference (builds a `kind = "audit"` scenario and runs it).
    Audit {
        #[command(flatten)]
        args: distillery::scenario::shortcut::audit::AuditArgs,
        /// Folder that receives the run's results folder.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Write report.html for a finished run (DIR is its results folder), or for every run in
    /// DIR and one page over them all (DIR/report.html).
    Report {
        /// A results folder, or the folder that holds many (for example `results/`).
        dir: PathBuf,
        /// Also pair the distill runs' methods by seed, as `distillery compare` does.
        #[arg(long)]
        compare: bool,
        /// With --compare: pair every other method against this one (for example `random`).
        #[arg(long, requires = "compare")]
        against: Option<String>,
        /// Also write each run's TensorBoard event file (`tensorboard --logdir DIR`).
        #[arg(long)]
        tensorboard: bool,
    },
    /// Write the fidelity table: each distill scenario of DIR (such as scenarios/paper) beside
    /// the published figure its [published] table names, from the last finished run of exactly
    /// that scenario under --results; --run first runs the scenarios that have none.
    Fidelity {
        /// The folder of scenarios, one per row.
        dir: PathBuf,
        /// Where their runs are (and go, with --run).
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// The Markdown file to write.
        #[arg(long, default_value = "docs/fidelity.md")]
        out: PathBuf,
        /// Run each scenario that has no finished run first (it may take hours: each row's
        /// budget is in its file).
        #[arg(long)]
        run: bool,
    },
    /// Parse and validate a scenario without running it.
    Check {
        /// The scenario (TOML).
        file: PathBuf,
    },
}

/// Client ids as `--ids` gives them.
#[derive(Clone, Debug)]
pub struct Ids(pub Vec<usize>);

/// `--ids` as clap reads it.
fn parse_ids(s: &str) -> Result<Ids, String> {
    ids::parse_ids(s).map(Ids)
}

/// `--shape CxHxW`.
fn parse_shape(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    <[usize; 3]>::try_from(v).map_err(|_| format!("{s:?}: expected CxHxW, such as 3x32x32"))
}

/// A non-negative number of seconds, as a duration.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| std::time::Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds (0 or more)"))
}

/// The flags of `distillery run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The scenario (TOML).
    #[arg(required_unless_present = "resume")]
    pub file: Option<PathBuf>,
    /// Continue the interrupted run whose results folder is DIR from its last checkpoint.
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    pub resume: Option<PathBuf>,
    /// Folder that receives the run's results folder.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// No progress bar or per-evaluation lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run on this device instead of the scenario's (`cpu`; `cuda`, `cuda-unfused` in a CUDA build; `wgpu`, `wgpu-unfused` in a wgpu build).
    #[arg(long, value_enum, conflicts_with = "resume")]
    pub device: Option<distillery::device::DeviceKind>,
    /// Run with this seed instead of the scenario's (starting images, minibatches, evaluation
    /// nets; a `[experts] seed` in the file is kept, so seeds share one set of experts).
    #[arg(long, conflicts_with = "resume")]
    pub seed: Option<u64>,
}

/// The flags of `distillery distill`.
#[derive(clap::Args)]
pub struct DistillCmd {
    #[command(flatten)]
    pub args: DistillArgs,
    /// Write the scenario to this file instead of running it.
    #[arg(long, value_name = "FILE")]
    pub write_scenario: Option<PathBuf>,
    /// Folder that receives the run's results folder.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// No progress bar or per-evaluation lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The flags of `distillery serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The scenario (TOML, kind = "federated").
    pub file: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub addr: std::net::SocketAddr,
    /// Folder that receives the run's results folder.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// No per-round lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Continue the interrupted server run in this results folder from its last round.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds to wait for every client to join (then the first round starts without the
    /// missing ones, which are named), and at the end for each to hear the run is over
    /// (at most 60).
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_seconds)]
    pub join_timeout: std::time::Duration,
}

/// The flags of `distillery client`.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// The same scenario file the server runs (the client computes its own partition).
    pub file: PathBuf,
    /// The server's URL (https:// with --tls-ca).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// This client's id (0-based).
    #[arg(long, required_unless_present_any = ["ids", "shard"], conflicts_with_all = ["ids", "shard"])]
    pub id: Option<usize>,
    /// Host these clients in this process, each with its own partition and state: `0-99`,
    /// `3,5,7-9`.
    #[arg(long, value_name = "IDS", value_parser = parse_ids, conflicts_with = "shard")]
    pub ids: Option<Ids>,
    /// Host the K-th (0-based) of N equal slices of the scenario's clients: a scheduler's
    /// array index picks the slice (`$JOB_COMPLETION_INDEX/4`, `$SLURM_ARRAY_TASK_ID/4`).
    #[arg(long, value_name = "K/N", value_parser = ids::Shard::parse)]
    pub shard: Option<ids::Shard>,
    /// Trust the server certificate signed by this CA (PEM; a self-signed certificate is its
    /// own CA) and speak TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the URL's host.
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_domain: Option<String>,
    /// Keep retrying a server that cannot be reached (not up yet, restarting, lost) for up
    /// to this many seconds per outage, waits doubling from 0.25 s to 10 s; 0: no retries.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub retry_for: f64,
    /// Worker threads for the hosted clients' work (default: the scenario's `workers`, else
    /// one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Keep each hosted client's state (FedDM's sets, a replay memory, its last answer) in
    /// this folder after every task, so a restarted client process continues where it stopped.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Folder whose `experts/` and `scores/` cache what trajectory-matching clients need.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

/// The flags of `distillery doctor`.
#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The device to check (`cpu`; `cuda`, `cuda-unfused` in a CUDA build; `wgpu`, `wgpu-unfused` in a wgpu build).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: distillery::device::DeviceKind,
    /// Image shape, CxHxW.
    #[arg(long, default_value = "3x32x32", value_parser = parse_shape)]
    pub shape: [usize; 3],
    /// ConvNet width.
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// Images per batch (the synthetic set of the MTT step).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Inner steps of the MTT step.
    #[arg(long, default_value_t = 2)]
    pub steps: usize,
}
