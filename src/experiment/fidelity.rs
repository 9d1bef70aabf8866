//! `distillery fidelity DIR`: runs the scenarios of DIR that have no finished run yet (when
//! asked), then writes the fidelity table ([`crate::report::fidelity`]).

use super::{run, RunOptions};
use crate::error::Result;
use crate::files::write_atomic;
use crate::report::fidelity::{markdown, rows, scenarios, Runs};
use std::path::Path;

/// Writes the table of `dir`'s scenarios to `out` from the runs under `opts.results_root`,
/// first running each scenario without a finished run when `run_missing`; returns the rows
/// measured and the rows in all.
pub fn write_table(
    dir: &Path,
    opts: &RunOptions,
    out: &Path,
    run_missing: bool,
) -> Result<(usize, usize)> {
    let root = &opts.results_root;
    let list = scenarios(dir)?;
    let mut runs = Runs::scan(root)?;
    if run_missing {
        let missing: Vec<_> = list
            .iter()
            .filter(|(_, l)| runs.last(l).is_none())
            .collect();
        for (file, loaded) in &missing {
            if !opts.quiet {
                eprintln!("fidelity: running {}", file.display());
            }
            run(loaded, opts)?;
        }
        if !missing.is_empty() {
            runs = Runs::scan(root)?;
        }
    }
    let rows = rows(list, &runs)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| crate::error::Error::io(parent, e))?;
    }
    write_atomic(out, markdown(&rows, (dir, root)).as_bytes())?;
    let measured = rows.iter().filter(|r| r.summary.is_some()).count();
    Ok((measured, rows.len()))
}
