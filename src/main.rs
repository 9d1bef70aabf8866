//! The `distillery` command line: parse arguments, call the library, print errors plainly.

use clap::{Parser, Subcommand};
use distillery::runner::{self, RunOptions};
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
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario file; results land in RESULTS/<name>-<timestamp>/.
    Run {
        /// The scenario (TOML).
        file: PathBuf,
        /// Folder that receives the run's results folder.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// No progress bar or per-evaluation lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Parse and validate a scenario without running it.
    Check {
        /// The scenario (TOML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run {
            file,
            results,
            quiet,
        } => runner::run_file(
            &file,
            &RunOptions {
                results_root: results,
                quiet,
            },
        )
        .map(|out| {
            let acc = out.summary["test_acc_mean"].as_f64().unwrap_or(f64::NAN);
            let std = out.summary["test_acc_std"].as_f64().unwrap_or(f64::NAN);
            println!("test accuracy {acc:.4} ± {std:.4}");
            println!("results: {}", out.dir.display());
        }),
        Cmd::Check { file } => distillery::scenario::load(&file).map(|l| {
            println!(
                "{}: ok ({:?} scenario \"{}\")",
                file.display(),
                l.scenario.kind,
                l.scenario.name
            )
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
