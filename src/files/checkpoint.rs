//! What every run kind's checkpoints share: the byte length of each CSV file a checkpoint covers
//! (a resumed run cuts its CSVs back to them, so no row is written twice), the file a run's
//! state is kept in (written atomically, the CSV lengths inside it), the journal of CSV lengths
//! for checkpoints written elsewhere (distill sets), and Ctrl-C.

use super::{write_atomic, write_json_atomic};
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Byte length of each CSV file of a results folder, by file name.
pub type CsvLengths = BTreeMap<String, u64>;

/// The file a federated or continual run keeps its state in.
pub const STATE_FILE: &str = "checkpoint.msgpack";
/// The journal of CSV lengths at each distill checkpoint.
pub const JOURNAL_FILE: &str = "csv-journal.json";
/// Version of the checkpoint layout (a checkpoint of another version is refused).
const VERSION: u32 = 1;
/// Journal entries kept: a kill between an entry and its checkpoint leaves the one before.
const KEEP: usize = 3;

/// The length of every `*.csv` file directly in `dir`.
pub fn csv_lengths(dir: &Path) -> Result<CsvLengths> {
    let mut out = CsvLengths::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".csv") {
            let len = e.metadata().map_err(|x| Error::io(e.path(), x))?.len();
            out.insert(name, len);
        }
    }
    Ok(out)
}

/// Cuts each CSV file of `dir` back to its length in `lengths` and removes those it does not
/// list (written after the checkpoint; the resumed run writes them again).
pub fn rewind(dir: &Path, lengths: &CsvLengths) -> Result<()> {
    for (name, now) in csv_lengths(dir)? {
        let path = dir.join(&name);
        match lengths.get(&name) {
            Some(&len) if len > now => {
                return Err(Error::Checkpoint(format!(
                    "{}: {len} bytes at the checkpoint but {now} now; the results folder was changed since",
                    path.display()
                )))
            }
            Some(&len) => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                f.set_len(len).map_err(|e| Error::io(&path, e))?;
            }
            None => std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?,
        }
    }
    Ok(())
}

/// A checkpoint as it is stored: the layout, the run kind, the CSV lengths, the state.
#[derive(Serialize, Deserialize)]
struct Envelope<S> {
    format: String,
    version: u32,
    kind: String,
    csv: CsvLengths,
    state: S,
}

/// Writes `state` of a `kind` run as `dir/checkpoint.msgpack` (atomically), with the CSV
/// lengths it covers.
pub fn save_state<S: Serialize>(dir: &Path, kind: &str, state: &S) -> Result<()> {
    let env = Envelope {
        format: "distillery-checkpoint".into(),
        version: VERSION,
        kind: kind.into(),
        csv: csv_lengths(dir)?,
        state,
    };
    let path = dir.join(STATE_FILE);
    let bytes = rmp_serde::to_vec_named(&env)
        .map_err(|e| Error::Encode(format!("{}: cannot encode: {e}", path.display())))?;
    write_atomic(&path, &bytes)
}

/// The state of a `kind` run in `dir/checkpoint.msgpack` and the CSV lengths it covers (None
/// when there is none); a file that is not such a checkpoint is an error naming it.
pub fn load_state<S: DeserializeOwned>(dir: &Path, kind: &str) -> Result<Option<(S, CsvLengths)>> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let corrupt = |why: String| {
        Error::Checkpoint(format!(
            "{}: not a usable checkpoint ({why}); the CSVs beside it are untouched: delete it to resume from the start",
            path.display()
        ))
    };
    let env: Envelope<S> = rmp_serde::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if env.format != "distillery-checkpoint" || env.version != VERSION {
        return Err(corrupt(format!(
            "layout {:?} version {}, expected distillery-checkpoint version {VERSION}",
            env.format, env.version
        )));
    }
    if env.kind != kind {
        return Err(corrupt(format!(
            "a checkpoint of a {} run, this run is {kind}",
            env.kind
        )));
    }
    Ok(Some((env.state, env.csv)))
}

/// One journal entry: a checkpoint's name and the CSV lengths it covers.
#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    mark: String,
    csv: CsvLengths,
}

#[derive(Default, Serialize, Deserialize)]
struct Journal {
    entries: Vec<Entry>,
}

fn read_journal(dir: &Path) -> Result<Option<Journal>> {
    let path = dir.join(JOURNAL_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Checkpoint(format!("{}: not a CSV journal: {e}", path.display())))
}

/// Records the CSV lengths of checkpoint `mark` in `dir`'s journal; called before the
/// checkpoint itself is written.
pub fn journal(dir: &Path, mark: &str) -> Result<()> {
    let mut j = read_journal(dir)?.unwrap_or_default();
    j.entries.push(Entry {
        mark: mark.into(),
        csv: csv_lengths(dir)?,
    });
    let excess = j.entries.len().saturating_sub(KEEP);
    j.entries.drain(..excess);
    write_json_atomic(&dir.join(JOURNAL_FILE), &j)
}

/// The CSV lengths the journal of `dir` recorded for checkpoint `mark` (None: the run resumes
/// from its start, so no rows are kept). Err when the journal lacks the mark.
pub fn journaled(dir: &Path, mark: Option<&str>) -> Result<CsvLengths> {
    let Some(mark) = mark else {
        return Ok(CsvLengths::new());
    };
    let j = read_journal(dir)?.unwrap_or_default();
    j.entries
        .iter()
        .rev()
        .find(|e| e.mark == mark)
        .map(|e| e.csv.clone())
        .ok_or_else(|| {
            Error::Checkpoint(format!(
                "{}: no CSV lengths recorded for the checkpoint {mark:?}",
                dir.join(JOURNAL_FILE).display()
            ))
        })
}

/// Removes `dir`'s checkpoint once its summary is written (a finished run does not resume, and
/// a federated checkpoint can be large; the small CSV journal stays).
pub fn finished(dir: &Path) -> Result<()> {
    let p = dir.join(STATE_FILE);
    match p.exists() {
        true => std::fs::remove_file(&p).map_err(|e| Error::io(&p, e)),
        false => Ok(()),
    }
}

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn stop_flag() -> &'static Arc<AtomicBool> {
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes SIGINT and SIGTERM ask the run to stop at its next checkpoint; a second one ends the
/// process at once (exit status 130).
pub fn install_stop_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = stop_flag();
    for sig in [SIGINT, SIGTERM] {
        // Registered first: when the flag is already set, the second signal exits.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            .map_err(|e| Error::Other(format!("cannot handle signal {sig}: {e}")))?;
    }
    Ok(())
}

/// True once a stop was asked for (a signal, or [`request_stop`]).
pub fn stop_requested() -> bool {
    stop_flag().load(Ordering::SeqCst)
}

/// Asks the run to stop at its next checkpoint (what SIGINT does).
pub fn request_stop() {
    stop_flag().store(true, Ordering::SeqCst);
}

/// Err([`Error::Interrupted`]) for `dir` when a stop was asked for.
pub fn stop_point(dir: &Path) -> Result<()> {
    match stop_requested() {
        true => Err(Error::Interrupted(PathBuf::from(dir))),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewind_cuts_to_the_journaled_lengths_and_drops_later_files() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.csv"), d.path().join("b.csv"));
        std::fs::write(&a, "x,y\n1,2\n").unwrap();
        journal(d.path(), "first").unwrap();
        std::fs::write(&a, "x,y\n1,2\n3,4\n").unwrap();
        std::fs::write(&b, "z\n").unwrap();
        journal(d.path(), "second").unwrap();
        let first = journaled(d.path(), Some("first")).unwrap();
        assert_eq!(first.get("a.csv"), Some(&8));
        rewind(d.path(), &first).unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "x,y\n1,2\n");
        assert!(!b.exists());
        assert!(journaled(d.path(), Some("third")).is_err());
        assert!(journaled(d.path(), None).unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        save_state(d.path(), "continual", &vec![1u32, 2, 3]).unwrap();
        let (v, _): (Vec<u32>, _) = load_state(d.path(), "continual").unwrap().unwrap();
        assert_eq!(v, vec![1, 2, 3]);
        assert!(load_state::<Vec<u32>>(d.path(), "federated").is_err());
        let p = d.path().join(STATE_FILE);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&p, &bytes).unwrap();
        let e = load_state::<Vec<u32>>(d.path(), "continual").unwrap_err();
        assert!(e.to_string().contains(STATE_FILE), "{e}");
    }
}
