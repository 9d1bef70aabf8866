//! The `distillery` command line: parse arguments, call the library, print errors plainly;
//! log lines go to stderr through `tracing` (`RUST_LOG`).

/// mimalloc keeps freed memory for reuse: with glibc's allocator every large tensor was a fresh
/// mmap, and touching its pages cost more than some of the arithmetic (issue 23's profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use distillery::experiment::{self as runner, remote, RunOptions};
use distillery::fed::transport::grpc::Listen;
use distillery::fed::transport::retry::Retry;
use distillery::fed::transport::tls::{ClientTls, ServerTls};
use distillery::scenario::shortcut::{self, DistillArgs};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "distillery",
    version,
    about = "Dataset distillation for federated and continual learning"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Never download: a dataset missing from the data folder is an error that says where to
    /// put its files (also `DISTILLERY_OFFLINE=1`).
    #[arg(long, global = true)]
    offline: bool,
}

#[derive(Subcommand)]
enum DataCmd {
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
enum Cmd {
    /// Run a scenario file (results land in RESULTS/<name>-<timestamp>/), or resume a run.
    Run {
        /// The scenario (TOML).
        #[arg(required_unless_present = "resume")]
        file: Option<PathBuf>,
        /// Continue the interrupted run whose results folder is DIR from its last checkpoint.
        #[arg(long, value_name = "DIR", conflicts_with = "file")]
        resume: Option<PathBuf>,
        /// Folder that receives the run's results folder.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// No progress bar or per-evaluation lines.
        #[arg(long, short)]
        quiet: bool,
        /// Run on this device instead of the scenario's (`cpu`; `cuda` or `cuda-unfused` in a CUDA build).
        #[arg(long, value_enum, conflicts_with = "resume")]
        device: Option<distillery::device::DeviceKind>,
        /// Run with this seed instead of the scenario's (starting images, minibatches, evaluation
        /// nets; a `[experts] seed` in the file is kept, so seeds share one set of experts).
        #[arg(long, conflicts_with = "resume")]
        seed: Option<u64>,
    },
    /// Distil a dataset: builds a `distill` scenario from the flags and runs it.
    Distill {
        #[command(flatten)]
        args: DistillArgs,
        /// Write the scenario to this file instead of running it.
        #[arg(long, value_name = "FILE")]
        write_scenario: Option<PathBuf>,
        /// Folder that receives the run's results folder.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// No progress bar or per-evaluation lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Serve a federated scenario over gRPC: the server half runs here, clients connect with
    /// `distillery client` (results land in RESULTS/<name>-<timestamp>/).
    Serve {
        /// The scenario (TOML, kind = "federated").
        file: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: std::net::SocketAddr,
        /// Folder that receives the run's results folder.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// No per-round lines.
        #[arg(long, short)]
        quiet: bool,
        /// Continue the interrupted server run in this results folder from its last round.
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Serve TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM); needs --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Seconds to wait for every client to join (then the first round starts without the
        /// missing ones, which are named), and at the end for each to hear the run is over
        /// (at most 60).
        #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_seconds)]
        join_timeout: std::time::Duration,
    },
    /// Run one client, or many (--ids), of a federated scenario against a `distillery serve`
    /// server.
    Client {
        /// The same scenario file the server runs (the client computes its own partition).
        file: PathBuf,
        /// The server's URL (https:// with --tls-ca).
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// This client's id (0-based).
        #[arg(long, required_unless_present_any = ["ids", "shard"], conflicts_with_all = ["ids", "shard"])]
        id: Option<usize>,
        /// Host these clients in this process, each with its own partition and state: `0-99`,
        /// `3,5,7-9`.
        #[arg(long, value_name = "IDS", value_parser = parse_ids, conflicts_with = "shard")]
        ids: Option<Ids>,
        /// Host the K-th (0-based) of N equal slices of the scenario's clients: a scheduler's
        /// array index picks the slice (`$JOB_COMPLETION_INDEX/4`, `$SLURM_ARRAY_TASK_ID/4`).
        #[arg(long, value_name = "K/N", value_parser = remote::Shard::parse)]
        shard: Option<remote::Shard>,
        /// Trust the server certificate signed by this CA (PEM; a self-signed certificate is its
        /// own CA) and speak TLS.
        #[arg(long, value_name = "FILE")]
        tls_ca: Option<PathBuf>,
        /// The name the server's certificate must carry, when it is not the URL's host.
        #[arg(long, value_name = "NAME", requires = "tls_ca")]
        tls_domain: Option<String>,
        /// Keep retrying a server that cannot be reached (not up yet, restarting, lost) for up
        /// to this many seconds per outage, waits doubling from 0.25 s to 10 s; 0: no retries.
        #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
        retry_for: f64,
        /// Worker threads for the hosted clients' work (default: the scenario's `workers`, else
        /// one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Keep each hosted client's state (FedDM's sets, a replay memory, its last answer) in
        /// this folder after every task, so a restarted client process continues where it stopped.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Folder whose `experts/` and `scores/` cache what trajectory-matching clients need.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Check a device's numerics against the CPU's on the building blocks of distillation
    /// (convolution gradients, DSA, the ConvNet backward, one MTT step) at a run's shapes.
    Doctor {
        /// The device to check (`cpu`; `cuda` or `cuda-unfused` in a CUDA build).
        #[arg(long, value_enum, default_value = "cpu")]
        device: distillery::device::DeviceKind,
        /// Image shape, CxHxW.
        #[arg(long, default_value = "3x32x32", value_parser = parse_shape)]
        shape: [usize; 3],
        /// ConvNet width.
        #[arg(long, default_value_t = 128)]
        width: usize,
        /// Images per batch (the synthetic set of the MTT step).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Inner steps of the MTT step.
        #[arg(long, default_value_t = 2)]
        steps: usize,
    },
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
    /// Parse and validate a scenario without running it.
    Check {
        /// The scenario (TOML).
        file: PathBuf,
    },
}

/// Client ids as `--ids` gives them.
#[derive(Clone, Debug)]
struct Ids(Vec<usize>);

fn parse_ids(s: &str) -> Result<Ids, String> {
    remote::parse_ids(s).map(Ids)
}

fn parse_shape(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    <[usize; 3]>::try_from(v).map_err(|_| format!("{s:?}: expected CxHxW, such as 3x32x32"))
}

fn print_output(out: &runner::RunOutput) {
    for l in &out.summary.report {
        println!("{l}");
    }
    println!("results: {}", out.dir.display());
}

/// Logs to stderr at `RUST_LOG`'s levels (default: distillery's info lines, others' warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,distillery=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// A non-negative number of seconds, as a duration.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| std::time::Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds (0 or more)"))
}

fn data(cmd: DataCmd) -> distillery::Result<()> {
    use distillery::data::{commands, store::DataAccess};
    let access = DataAccess::from_env();
    match cmd {
        DataCmd::List => commands::list(&access).map(|t| print!("{t}")),
        DataCmd::Fetch { names } => commands::fetch_all(&names, &access).map(|t| print!("{t}")),
        DataCmd::Verify { names } => {
            let (text, ok) = commands::verify(&names, &access)?;
            print!("{text}");
            if ok {
                Ok(())
            } else {
                Err(distillery::Error::Other(
                    "some datasets are missing or do not match their checksums (above)".into(),
                ))
            }
        }
    }
}

fn report(
    dir: &std::path::Path,
    compare: bool,
    against: Option<String>,
    tensorboard: bool,
) -> distillery::Result<()> {
    use distillery::report::{html, tensorboard::export};
    let opts = html::IndexOptions { compare, against };
    // The events first, so the reports list their files.
    if tensorboard && dir.is_dir() {
        let runs = if dir.join("scenario.toml").is_file() {
            vec![dir.to_path_buf()]
        } else {
            html::index::finished_runs(dir)?
        };
        for run in runs {
            println!("wrote {}", export::write_events(&run)?.display());
        }
    }
    let written = html::report(dir, &opts)?;
    let unfinished = match written.unfinished {
        0 => String::new(),
        n => format!(", {n} unfinished"),
    };
    let runs = match written.runs {
        1 => "1 finished run".to_string(),
        n => format!("{n} finished runs"),
    };
    println!("wrote {} ({runs}{unfinished})", written.page.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if cli.offline {
        distillery::data::store::forbid_downloads();
    }
    if let Err(e) = distillery::files::checkpoint::install_stop_signals() {
        eprintln!("warning: {e}; Ctrl-C will end runs without a checkpoint");
    }
    let result = match cli.cmd {
        Cmd::Run {
            file,
            resume,
            results,
            quiet,
            device,
            seed,
        } => {
            let opts = RunOptions {
                results_root: results,
                quiet,
            };
            match (file, resume) {
                (_, Some(dir)) => runner::resume(&dir, &opts),
                (Some(f), None) => runner::run_file_on(&f, device, seed, &opts),
                (None, None) => unreachable!("clap requires one"),
            }
            .map(|out| print_output(&out))
        }
        Cmd::Distill {
            args,
            write_scenario,
            results,
            quiet,
        } => shortcut::distill_scenario(&args).and_then(|text| match write_scenario {
            Some(path) => std::fs::write(&path, &text)
                .map_err(|e| distillery::Error::io(&path, e))
                .map(|_| println!("wrote {}", path.display())),
            None => distillery::scenario::parse(&text, std::path::Path::new("distill.toml"))
                .and_then(|loaded| {
                    runner::run(
                        &loaded,
                        &RunOptions {
                            results_root: results,
                            quiet,
                        },
                    )
                })
                .map(|out| print_output(&out)),
        }),
        Cmd::Serve {
            file,
            addr,
            results,
            quiet,
            resume,
            tls_cert,
            tls_key,
            join_timeout,
        } => remote::serve(
            &file,
            Listen {
                addr,
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(cert, key)| ServerTls { cert, key }),
                join_timeout,
            },
            &RunOptions {
                results_root: results,
                quiet,
            },
            resume.as_deref(),
        )
        .map(|out| print_output(&out)),
        Cmd::Client {
            file,
            server,
            id,
            ids,
            shard,
            tls_ca,
            tls_domain,
            retry_for,
            workers,
            state,
            results,
        } => {
            let run = remote::ClientRun {
                url: server,
                ids: ids.map(|i| i.0).or(id.map(|i| vec![i])).unwrap_or_default(),
                shard,
                tls: tls_ca.map(|ca| ClientTls {
                    ca,
                    domain: tls_domain,
                }),
                retry: Retry::for_seconds(retry_for),
                workers,
                state,
            };
            remote::client(&file, &run, &results).map(|done| {
                for line in remote::done_lines(&done) {
                    println!("{line}");
                }
            })
        }
        Cmd::Doctor {
            device,
            shape,
            width,
            batch,
            steps,
        } => {
            let cfg = distillery::diagnostics::doctor::DoctorConfig {
                shape,
                width,
                batch,
                syn_steps: steps,
                seed: 0,
            };
            distillery::diagnostics::doctor::doctor(device, &cfg).and_then(|rows| {
                print!("{}", distillery::diagnostics::doctor::table(&rows));
                let bad = rows.iter().filter(|r| !r.ok()).count();
                if bad == 0 {
                    println!(
                        "all {} checks agree within {:e}",
                        rows.len(),
                        distillery::diagnostics::doctor::TOLERANCE
                    );
                    Ok(())
                } else {
                    Err(distillery::Error::Device(format!(
                        "{bad} of {} checks disagree by more than {:e} (marked above)",
                        rows.len(),
                        distillery::diagnostics::doctor::TOLERANCE
                    )))
                }
            })
        }
        Cmd::Compare {
            dirs,
            against,
            model,
        } => distillery::report::compare::compare(&dirs, &model, against.as_deref())
            .map(|text| print!("{text}")),
        Cmd::Data { cmd } => data(cmd),
        Cmd::Audit { args, results } => {
            distillery::scenario::shortcut::audit::audit_scenario(&args)
                .and_then(|text| {
                    distillery::scenario::parse(&text, std::path::Path::new("audit.toml"))
                })
                .and_then(|loaded| runner::run(&loaded, &RunOptions::quiet(results)))
                .map(|out| print_output(&out))
        }
        Cmd::Report {
            dir,
            compare,
            against,
            tensorboard,
        } => report(&dir, compare, against, tensorboard),
        Cmd::Check { file } => distillery::scenario::load(&file).map(|l| {
            let kind = serde_json::to_value(l.scenario.kind).unwrap_or_default();
            println!(
                "{}: ok ({} scenario \"{}\")",
                file.display(),
                kind.as_str().unwrap_or("?"),
                l.scenario.name
            )
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ distillery::Error::Interrupted(_)) => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
