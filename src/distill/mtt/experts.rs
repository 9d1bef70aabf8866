//! Expert trajectories for trajectory matching (MTT): networks trained on the real data whose
//! parameters are saved after every epoch, one safetensors file per expert (`expert_<i>.safetensors`,
//! tensors `epoch<e>.<param>` for e = 0..=epochs) and a `manifest.json` describing the set. Training
//! is resumable: finished experts are kept and only missing ones are trained.

use crate::data::augment::Dsa;
use crate::data::Dataset;
use crate::distill::tensor_file::{self, f32_bytes};
use crate::error::{Error, Result};
use crate::model::{Model, ModelSpec};
use crate::report::{write_atomic, write_json_atomic};
use crate::rng::step_seed;
use crate::train::{train, TrainConfig};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a folder of experts was made from; runs reuse a folder only when this matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The network every expert trains.
    pub spec: ModelSpec,
    /// The dataset's short name.
    pub dataset: String,
    /// Training images the experts saw.
    pub train_images: usize,
    /// Expert training settings (reference: 50 epochs, lr 0.01, no momentum, no weight decay,
    /// batch 256); each file holds `train.epochs + 1` parameter sets.
    pub train: TrainConfig,
    /// The DSA strategy used while training them, if any.
    pub dsa: Option<String>,
    /// The seed expert `i` derives from (with `i`).
    pub seed: u64,
}

/// One network's parameters as host vectors, in [`ModelSpec::params`] order.
pub type Params = Vec<Vec<f32>>;

/// One expert's parameters after each epoch: `params[e][p]` is parameter `p` after `e` epochs.
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    /// Parameter sets, the initial one first.
    pub params: Vec<Params>,
}

/// The file of expert `i` in `dir`.
pub fn expert_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("expert_{i:04}.safetensors"))
}

/// The tensor names and shapes of epoch `e` of a `spec` network.
fn epoch_tensors(spec: &ModelSpec, e: usize) -> Vec<(String, Vec<usize>)> {
    spec.params()
        .into_iter()
        .map(|p| (format!("epoch{e}.{}", p.name), p.shape))
        .collect()
}

impl Trajectory {
    /// Encodes the trajectory for `spec` as safetensors bytes.
    pub fn encode(&self, spec: &ModelSpec) -> Result<Vec<u8>> {
        let mut owned: Vec<tensor_file::Owned> = Vec::new();
        for (e, set) in self.params.iter().enumerate() {
            let names = epoch_tensors(spec, e);
            if set.len() != names.len() {
                return Err(Error::Other(format!(
                    "epoch {e} has {} parameters, the network has {}",
                    set.len(),
                    names.len()
                )));
            }
            for ((name, shape), v) in names.into_iter().zip(set) {
                owned.push((name, Dtype::F32, shape, f32_bytes(v)));
            }
        }
        let epochs = self.params.len().saturating_sub(1).to_string();
        tensor_file::encode(&owned, Some(("epochs", epochs)))
    }

    /// Writes the trajectory to `path` atomically.
    pub fn save(&self, spec: &ModelSpec, path: &Path) -> Result<()> {
        write_atomic(path, &self.encode(spec)?)
    }

    /// Reads the trajectory of a `spec` network with `epochs` epochs from `path`.
    pub fn load(spec: &ModelSpec, epochs: usize, path: &Path) -> Result<Self> {
        let wanted: Vec<usize> = (0..=epochs).collect();
        Ok(Trajectory {
            params: Self::load_epochs(spec, &wanted, path)?,
        })
    }

    /// Reads only the parameter sets after the given epochs (seeking to them, so a large file
    /// costs only what is asked for).
    pub fn load_epochs(spec: &ModelSpec, epochs: &[usize], path: &Path) -> Result<Vec<Params>> {
        epochs
            .iter()
            .map(|&e| tensor_file::read_f32(path, &epoch_tensors(spec, e)))
            .collect()
    }

    /// True when `path` holds all `epochs + 1` parameter sets of a `spec` network (header only).
    pub fn is_complete(spec: &ModelSpec, epochs: usize, path: &Path) -> bool {
        let names: Vec<String> = (0..=epochs)
            .flat_map(|e| epoch_tensors(spec, e).into_iter().map(|(n, _)| n))
            .collect();
        tensor_file::has_tensors(path, &names)
    }
}

/// Where MTT gets its experts: in memory, or read from a folder as needed (a full set of
/// reference experts does not fit in memory: 100 x 51 snapshots of ConvNet-3 are 6.5 GB).
#[derive(Clone, Debug)]
pub enum Experts {
    /// Trajectories held in memory.
    Loaded(Vec<Trajectory>),
    /// `count` expert files of `epochs` epochs of a `spec` network in `dir`.
    Files {
        /// The folder.
        dir: PathBuf,
        /// Their network.
        spec: ModelSpec,
        /// Epochs per expert.
        epochs: usize,
        /// How many.
        count: usize,
    },
}

impl Experts {
    /// Number of experts.
    pub fn len(&self) -> usize {
        match self {
            Experts::Loaded(v) => v.len(),
            Experts::Files { count, .. } => *count,
        }
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Epochs of the shortest expert.
    pub fn epochs(&self) -> usize {
        match self {
            Experts::Loaded(v) => v
                .iter()
                .map(|t| t.params.len().saturating_sub(1))
                .min()
                .unwrap_or(0),
            Experts::Files { epochs, .. } => *epochs,
        }
    }

    /// Expert `i`'s parameters after epochs `a` and `b`.
    pub fn pair(&self, i: usize, a: usize, b: usize) -> Result<(Params, Params)> {
        match self {
            Experts::Loaded(v) => Ok((v[i].params[a].clone(), v[i].params[b].clone())),
            Experts::Files { dir, spec, .. } => {
                let mut two = Trajectory::load_epochs(spec, &[a, b], &expert_path(dir, i))?;
                let second = two.pop().expect("two epochs");
                Ok((two.pop().expect("two epochs"), second))
            }
        }
    }
}

/// Trains the experts `0..count` missing from `dir` (creating it and its manifest) on the worker
/// threads, each saved as soon as it is done, then calls `on_expert(i)` for each new one in order.
/// A folder whose manifest differs is refused.
#[allow(clippy::too_many_arguments)]
pub fn train_experts<B: AutodiffBackend>(
    data: &Dataset,
    manifest: &Manifest,
    dsa: Option<&Dsa>,
    count: usize,
    dir: &Path,
    device: &B::Device,
    on_step: impl Fn() + Sync,
    mut on_expert: impl FnMut(usize) -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mpath = dir.join("manifest.json");
    if mpath.exists() {
        let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let found: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::data(&mpath, format!("not an experts manifest ({e})")))?;
        if &found != manifest {
            return Err(Error::data(
                &mpath,
                "these experts were trained with other settings (network, data, epochs, optimiser or seed); use another folder",
            ));
        }
    } else {
        let v = serde_json::to_value(manifest).map_err(|e| Error::Other(e.to_string()))?;
        write_json_atomic(&mpath, &v)?;
    }
    let epochs = manifest.train.epochs;
    let missing: Vec<usize> = (0..count)
        .filter(|&i| !Trajectory::is_complete(&manifest.spec, epochs, &expert_path(dir, i)))
        .collect();
    // Experts are independent: they train on the worker threads, each from its own seed.
    let results = crate::device::par_map(missing.len(), |j| -> Result<usize> {
        let i = missing[j];
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(step_seed(manifest.seed ^ 0xe4be, i as u64));
        let mut model: Model<B::InnerBackend> = manifest.spec.init(&mut rng, device);
        let mut params = vec![model.to_host().0];
        train::<B, _>(
            &mut model,
            data,
            &manifest.train,
            dsa,
            &mut rng,
            device,
            &on_step,
            |_, _, m| {
                params.push(m.to_host().0);
                Ok(())
            },
        )?;
        Trajectory { params }.save(&manifest.spec, &expert_path(dir, i))?;
        Ok(i)
    });
    for r in results {
        on_expert(r?)?;
    }
    Ok(())
}
