//! The `distillery` command line: parse arguments, call the library, print errors plainly;
//! log lines go to stderr through `tracing` (`RUST_LOG`).

/// mimalloc keeps freed memory for reuse: with glibc's allocator every large tensor was a fresh
/// mmap, and touching its pages cost more than some of the arithmetic (issue 23's profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use clap::Parser;
use cli::{Cli, Cmd, DataCmd};
use distillery::experiment::{self as runner, remote, RunOptions};
use distillery::fed::transport::grpc::Listen;
use distillery::fed::transport::retry::Retry;
use distillery::fed::transport::tls::{ClientTls, ServerTls};
use distillery::scenario::shortcut;
use std::process::ExitCode;

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
                Err(distillery::Error::Usage(
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
    let result = dispatch(cli.cmd);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ distillery::Error::Interrupted(_)) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs the command.
fn dispatch(cmd: Cmd) -> distillery::Result<()> {
    match cmd {
        Cmd::Run(a) => run(a),
        Cmd::Distill(a) => distill(a),
        Cmd::Serve(a) => serve(a),
        Cmd::Client(a) => client(a),
        Cmd::Doctor(a) => doctor(a),
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
        Cmd::Fidelity {
            dir,
            results,
            out,
            run,
        } => {
            let opts = RunOptions {
                results_root: results,
                quiet: false,
            };
            runner::fidelity::write_table(&dir, &opts, &out, run)
                .map(|(m, n)| println!("wrote {} ({m} of {n} rows measured)", out.display()))
        }
        Cmd::Check { file } => distillery::scenario::load(&file).map(|l| {
            let kind = serde_json::to_value(l.scenario.kind).unwrap_or_default();
            println!(
                "{}: ok ({} scenario \"{}\")",
                file.display(),
                kind.as_str().unwrap_or("?"),
                l.scenario.name
            )
        }),
    }
}

/// Runs or resumes a scenario.
fn run(a: cli::RunArgs) -> distillery::Result<()> {
    let cli::RunArgs {
        file,
        resume,
        results,
        quiet,
        device,
        seed,
    } = a;
    {
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
}

/// Distils from flags, or writes the scenario they make.
fn distill(a: cli::DistillCmd) -> distillery::Result<()> {
    let cli::DistillCmd {
        args,
        write_scenario,
        results,
        quiet,
    } = a;
    shortcut::distill_scenario(&args).and_then(|text| match write_scenario {
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
    })
}

/// Serves a federated scenario to remote clients.
fn serve(a: cli::ServeArgs) -> distillery::Result<()> {
    let cli::ServeArgs {
        file,
        addr,
        results,
        quiet,
        resume,
        tls_cert,
        tls_key,
        join_timeout,
    } = a;
    remote::serve(
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
    .map(|out| print_output(&out))
}

/// Runs clients of a federated scenario against a server.
fn client(a: cli::ClientArgs) -> distillery::Result<()> {
    let cli::ClientArgs {
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
    } = a;
    {
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
            for line in distillery::fed::transport::ids::done_lines(&done) {
                println!("{line}");
            }
        })
    }
}

/// Checks a device's numerics against the CPU's.
fn doctor(a: cli::DoctorArgs) -> distillery::Result<()> {
    let cli::DoctorArgs {
        device,
        shape,
        width,
        batch,
        steps,
    } = a;
    {
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
}
