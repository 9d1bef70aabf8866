//! A remote client's state on disk (`distillery client --state DIR`). After each task, and before
//! its answer is sent, what the client keeps for each strategy (FedDM's set, a replay memory, the
//! task of the stream it is at) and the answer itself go to `DIR/client-<id>.msgpack`, written
//! atomically. A client process restarted on the same folder continues from there: the task it
//! answered last is answered again with the same bytes (the server may never have got them, and
//! a repeated submission replaces the first), a later task starts from the kept state, exactly
//! as if the process had not stopped. The file names its scenario by the SHA-256 of its text, so
//! a folder left by another scenario is refused rather than mixed in.

use crate::error::{Error, Result};
use crate::fed::pb;
use crate::fed::strategy::{ClientState, Kept};
use crate::files::write_atomic;
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where a client process keeps its clients' state.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    scenario: String,
}

/// One client's file.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// SHA-256 (hex) of the scenario's text.
    scenario: String,
    /// The client's id.
    client: usize,
    /// The task (its sequence number) answered last.
    seq: u32,
    /// That answer, as encoded for the wire.
    update: Vec<u8>,
    /// What the client keeps, by strategy label.
    kept: BTreeMap<String, Kept>,
}

/// A client's state as its file left it.
pub struct Restored {
    /// Each strategy's client state (by label).
    pub states: HashMap<String, ClientState>,
    /// The task answered last and the answer.
    pub last: (u32, pb::ClientUpdate),
}

impl Store {
    /// The store in `dir` (made if missing) for the scenario whose text is `text`.
    pub fn new(dir: &Path, text: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let scenario = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Store {
            dir: dir.to_path_buf(),
            scenario,
        })
    }

    /// Client `id`'s file.
    pub fn path(&self, id: usize) -> PathBuf {
        self.dir.join(format!("client-{id}.msgpack"))
    }

    /// Client `first.id`'s state from its file (each strategy's state is `first` with what was
    /// kept put back), or None when it has no file yet.
    pub fn load(&self, first: &ClientState) -> Result<Option<Restored>> {
        let path = self.path(first.id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let bad = |why: String| Error::Checkpoint(format!("{}: {why}", path.display()));
        let saved: Saved = rmp_serde::from_slice(&bytes)
            .map_err(|e| bad(format!("not a client state file ({e})")))?;
        if saved.scenario != self.scenario {
            return Err(bad(
                "it was written for another scenario (the scenario file's text differs); use a fresh --state folder"
                    .into(),
            ));
        }
        if saved.client != first.id {
            return Err(bad(format!(
                "it holds client {}'s state, not client {}'s",
                saved.client, first.id
            )));
        }
        let update = pb::ClientUpdate::decode(saved.update.as_slice())
            .map_err(|e| bad(format!("its last answer does not decode ({e})")))?;
        let states = saved
            .kept
            .into_iter()
            .map(|(label, kept)| {
                let mut s = first.clone();
                kept.restore(&mut s);
                (label, s)
            })
            .collect();
        Ok(Some(Restored {
            states,
            last: (saved.seq, update),
        }))
    }

    /// Writes client `id`'s state: task `seq` answered with `update`, then `states`.
    pub fn save(
        &self,
        id: usize,
        seq: u32,
        update: &pb::ClientUpdate,
        states: &HashMap<String, ClientState>,
    ) -> Result<()> {
        let saved = Saved {
            scenario: self.scenario.clone(),
            client: id,
            seq,
            update: update.encode_to_vec(),
            kept: states
                .iter()
                .map(|(k, s)| (k.clone(), Kept::of(s)))
                .collect(),
        };
        let bytes = rmp_serde::to_vec_named(&saved)
            .map_err(|e| Error::Checkpoint(format!("client {id}'s state: {e}")))?;
        write_atomic(&self.path(id), &bytes)
    }
}
