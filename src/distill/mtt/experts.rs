//! Expert trajectories for trajectory matching (MTT): networks trained on the real data whose
//! parameters are saved after every epoch, one safetensors file per expert (`expert_<i>.safetensors`,
//! tensors `epoch<e>.<param>` for e = 0..=epochs) and a `manifest.json` describing the set. Training
//! is resumable: finished experts are kept and only missing ones are trained.

use crate::data::augment::Dsa;
use crate::data::Dataset;
use crate::distill::tensor_file::{self, f32_bytes};
use crate::distill::{Ctx, Event};
use crate::error::{Error, Problem, Problems, Result};
use crate::files::{write_atomic, write_json_atomic};
use crate::model::{Model, ModelSpec};
use crate::rng::step_seed;
use crate::train::{LrSchedule, TrainConfig, Training};
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
    /// A hash of the training images and labels ([`Dataset::fingerprint`]).
    #[serde(default)]
    pub fingerprint: String,
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
                return Err(Error::Checkpoint(format!(
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

/// The `[experts]` section: expert trajectories for MTT and SelMatch (defaults: the reference's
/// `buffer.py`, REFERENCE.md §1.7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpertSettings {
    /// Folder of the experts (relative to the scenario); default: the results root's
    /// `experts/<data, network and settings>`.
    pub dir: Option<PathBuf>,
    /// Number of experts.
    pub count: usize,
    /// Epochs each expert trains (snapshots after each).
    pub epochs: usize,
    /// Their learning rate (no momentum, no weight decay, as the reference).
    pub lr: f64,
    /// Their minibatch size.
    pub batch_size: usize,
    /// DSA while training them.
    pub dsa: bool,
    /// The seed they train from (default: the run's), so that runs with other seeds can reuse
    /// one set of experts, as the reference reuses its buffers.
    pub seed: Option<u64>,
}

impl Default for ExpertSettings {
    fn default() -> Self {
        ExpertSettings {
            dir: None,
            count: 100,
            epochs: 50,
            lr: 0.01,
            batch_size: 256,
            dsa: true,
            seed: None,
        }
    }
}

impl ExpertSettings {
    /// The seed the experts train from: theirs when set, else `run_seed`.
    pub fn seed_or(&self, run_seed: u64) -> u64 {
        self.seed.unwrap_or(run_seed)
    }

    /// Each expert's training: constant lr, no momentum, no weight decay.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: 0.0,
            weight_decay: 0.0,
            schedule: LrSchedule::Constant,
        }
    }

    /// The settings' values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.positive("count", self.count);
        p.positive("epochs", self.epochs);
        p.positive("batch_size", self.batch_size);
        p.require(
            self.lr > 0.0 && self.lr <= 100.0,
            "lr",
            self.lr,
            "a learning rate in (0, 100]",
        );
        p.into_vec()
    }

    /// Training steps `count` experts take on `n` images.
    pub fn steps(&self, n: usize) -> usize {
        self.count * self.epochs * n.div_ceil(self.batch_size.max(1))
    }
}

/// What experts for `data` are: the folder they live in and the manifest they must match.
#[derive(Clone, Debug)]
pub struct ExpertPlan {
    /// Their folder.
    pub dir: PathBuf,
    /// What they are made from.
    pub manifest: Manifest,
    /// How many.
    pub count: usize,
    /// Their augmentation.
    pub dsa: Option<Dsa>,
}

impl ExpertPlan {
    /// The experts `settings` describe for `data` (named `dataset`) on network `spec` with the run
    /// seed `seed`: in `settings.dir` when given (resolved by the caller), else in
    /// `<cache>/experts/` under a name made of the data's name and fingerprint, the network and
    /// the settings, so every run (a client's, a task's) with the same data and settings reuses them.
    pub fn new(
        settings: &ExpertSettings,
        data: &Dataset,
        dataset: &str,
        spec: &ModelSpec,
        dsa: &Dsa,
        seed: u64,
        cache: &Path,
    ) -> Self {
        let seed = settings.seed_or(seed);
        let fingerprint = format!("{:016x}", data.fingerprint());
        let dir = settings.dir.clone().unwrap_or_else(|| {
            let t = &settings;
            let name = format!(
                "{dataset}-{}-{}-e{}-lr{}-b{}{}-s{seed}",
                &fingerprint[..8],
                spec_tag(spec),
                t.epochs,
                t.lr,
                t.batch_size,
                if t.dsa { "-dsa" } else { "" },
            );
            cache.join("experts").join(name.to_lowercase())
        });
        ExpertPlan {
            dir,
            manifest: Manifest {
                spec: spec.clone(),
                dataset: dataset.to_string(),
                fingerprint,
                train_images: data.len(),
                train: settings.train_config(),
                dsa: settings.dsa.then(|| dsa.name()),
                seed,
            },
            count: settings.count,
            dsa: settings.dsa.then(|| dsa.clone()),
        }
    }

    /// The experts, trained first where missing (each reported as an event when done).
    pub fn prepare<B: AutodiffBackend>(
        &self,
        data: &Dataset,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<Experts> {
        train_experts(data, self, ctx)?;
        Ok(Experts::Files {
            dir: self.dir.clone(),
            spec: self.manifest.spec.clone(),
            epochs: self.manifest.train.epochs,
            count: self.count,
        })
    }
}

/// A short name of a network for cache folders: `convnet-w128-d3-instance-avg`, `mlp-h128`.
pub fn spec_tag(spec: &ModelSpec) -> String {
    match spec {
        ModelSpec::ConvNet(c) => format!(
            "convnet-w{}-d{}-{:?}-{:?}",
            c.width, c.depth, c.norm, c.pooling
        )
        .to_lowercase(),
        ModelSpec::Mlp(m) => format!("mlp-h{}", m.hidden),
        ModelSpec::ResNet18(_) => "resnet18".into(),
    }
}

/// Trains the experts `0..plan.count` missing from `plan.dir` (creating it and its manifest) on
/// the worker threads, each saved as soon as it is done, then reports each new one in order. A
/// folder whose manifest differs is refused.
pub fn train_experts<B: AutodiffBackend>(
    data: &Dataset,
    plan: &ExpertPlan,
    ctx: &mut Ctx<'_, B>,
) -> Result<()> {
    let (dir, manifest) = (&plan.dir, &plan.manifest);
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
        let v = serde_json::to_value(manifest).map_err(|e| Error::Encode(e.to_string()))?;
        write_json_atomic(&mpath, &v)?;
    }
    let epochs = manifest.train.epochs;
    let missing: Vec<usize> = (0..plan.count)
        .filter(|&i| !Trajectory::is_complete(&manifest.spec, epochs, &expert_path(dir, i)))
        .collect();
    let device = ctx.device.clone();
    let progress = ctx.progress.clone();
    // Experts are independent: they train on the worker threads, each from its own seed.
    let results = crate::device::par_map(missing.len(), |j| -> Result<usize> {
        let i = missing[j];
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(step_seed(manifest.seed ^ 0xe4be, i as u64));
        let mut model: Model<B::InnerBackend> = manifest.spec.init(&mut rng, &device);
        let mut params = vec![model.to_host().0];
        Training::<B>::new(&manifest.train, &device)
            .augmented(plan.dsa.as_ref())
            .counted(&progress)
            .run_observed(&mut model, data, &mut rng, |_, _, m| {
                params.push(m.to_host().0);
                Ok(())
            })?;
        Trajectory { params }.save(&manifest.spec, &expert_path(dir, i))?;
        Ok(i)
    });
    for r in results {
        ctx.report(Event::ExpertTrained {
            index: r?,
            count: plan.count,
        })?;
    }
    Ok(())
}
