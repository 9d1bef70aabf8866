//! Dataset distillation: one [`Distiller`] trait for every method (DM, the selection baselines,
//! and later MTT and SelMatch), the [`SyntheticSet`] they produce, DSA, and the evaluation protocol.

pub mod coverage;
pub mod dm;
pub mod eval;
pub mod init;
pub mod mtt;
pub mod selmatch;
pub mod synthetic_set;
pub mod tensor_file;

use crate::data::{Dataset, Normalization};
use crate::error::Result;
use crate::model::ModelSpec;
use crate::train::{train, TrainConfig};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;

pub use dm::{Dm, DmConfig};
pub use init::InitKind;
pub use synthetic_set::{Provenance, SyntheticSet};

/// A method that turns a real training set into `ipc` images per class.
pub trait Distiller {
    /// The method's name (`dm`, `random`, `herding`, `kcenter`).
    fn name(&self) -> String;

    /// Builds the synthetic set from `data` (normalised), reporting progress through `ctx`.
    fn distill<B: AutodiffBackend>(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet>;
}

/// What a distiller reports after each optimisation step: the iteration (1-based), the loss and
/// a way to take a checkpoint (a copy of the current set and optimiser state). The answer says
/// whether to go on (a time budget, for one, stops a run early).
pub type OnIteration<'a> = dyn FnMut(usize, f64, &dyn Fn() -> Checkpoint) -> Result<Flow> + 'a;

/// What an optimising distiller does after reporting an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Take the next iteration.
    Continue,
    /// Stop here and return the set as it is (its provenance records the iterations taken).
    Stop,
}

/// The run's context: device, seed, provenance facts, progress callback and resume state.
pub struct Ctx<'a, B: AutodiffBackend> {
    /// Where tensors live.
    pub device: B::Device,
    /// The seed of every random choice.
    pub seed: u64,
    /// The dataset's short name (provenance).
    pub dataset: String,
    /// The normalisation the images live in (provenance, PNG rendering).
    pub normalization: Option<Normalization>,
    /// Called after every iteration of an optimising distiller.
    pub on_iteration: &'a mut OnIteration<'a>,
    /// A checkpoint to continue from instead of initialising.
    pub resume: Option<Checkpoint>,
}

impl<B: AutodiffBackend> Ctx<'_, B> {
    /// Provenance for a set made by `method` after `iterations` steps.
    pub fn provenance(
        &self,
        data: &Dataset,
        method: &str,
        ipc: usize,
        iterations: usize,
    ) -> Provenance {
        Provenance {
            method: method.to_string(),
            ipc,
            dataset: self.dataset.clone(),
            seed: self.seed,
            iterations,
            classes: data.classes.clone(),
            normalization: self.normalization.clone(),
        }
    }
}

/// A distiller's state mid-run: the set so far (`provenance.iterations` steps done) and the
/// image optimiser's momentum buffer (same layout as the images).
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The synthetic set after `set.provenance.iterations` iterations.
    pub set: SyntheticSet,
    /// Momentum buffer of the image optimiser.
    pub momentum: Vec<f32>,
    /// Momentum buffer of the step-size optimiser (trajectory matching; 0 otherwise).
    pub lr_momentum: f32,
}

impl Checkpoint {
    /// Writes the checkpoint as one safetensors file (the set plus a `momentum` tensor).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let [c, h, w] = self.set.shape;
        let extras = vec![
            (
                "momentum".to_string(),
                vec![self.set.len(), c, h, w],
                self.momentum.clone(),
            ),
            ("lr_momentum".to_string(), vec![1], vec![self.lr_momentum]),
        ];
        self.set.save_with(path, &extras)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let (set, extras) = SyntheticSet::load_with(path)?;
        let find = |name: &str| {
            extras
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, _, v)| v.clone())
        };
        let momentum = find("momentum").unwrap_or_else(|| vec![0.0; set.images.len()]);
        let lr_momentum = find("lr_momentum")
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
        if momentum.len() != set.images.len() {
            return Err(crate::Error::data(
                path,
                "the momentum tensor does not match the images",
            ));
        }
        Ok(Checkpoint {
            set,
            momentum,
            lr_momentum,
        })
    }
}

/// A selection baseline: `ipc` real images per class chosen at random, by herding or by
/// k-center in the embedding of a ConvNet (random init, or trained for `embed_epochs`).
#[derive(Clone, Debug)]
pub struct Selection {
    /// Random (`Real`), `Herding` or `Kcenter`.
    pub kind: InitKind,
    /// The embedding network.
    pub spec: ModelSpec,
    /// Epochs of training of the embedding net on the real data before selecting (0: random).
    pub embed_epochs: usize,
    /// Candidates per class (a random subset), to bound the embedding cost on large sets.
    pub pool: Option<usize>,
}

impl Selection {
    /// Indices into `data` of the selected images, grouped by class.
    pub fn indices<B: AutodiffBackend>(
        &self,
        data: &Dataset,
        ipc: usize,
        seed: u64,
        device: &B::Device,
    ) -> Result<Vec<usize>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x005e_1ec7);
        if matches!(self.kind, InitKind::Real | InitKind::Noise) {
            return Ok(init::select::<B::InnerBackend, _>(
                data, ipc, self.kind, None, None, &mut rng, device,
            ));
        }
        let mut model = self.spec.init::<B::InnerBackend, _>(&mut rng, device);
        if self.embed_epochs > 0 {
            let cfg = TrainConfig::reference(self.embed_epochs);
            train::<B, _>(
                &mut model,
                data,
                &cfg,
                None,
                &mut rng,
                device,
                || {},
                |_, _, _| Ok(()),
            )?;
        }
        Ok(init::select(
            data,
            ipc,
            self.kind,
            Some(&mut model),
            self.pool,
            &mut rng,
            device,
        ))
    }
}

impl Distiller for Selection {
    fn name(&self) -> String {
        self.kind.name().to_string()
    }

    fn distill<B: AutodiffBackend>(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        let idx = self.indices::<B>(data, ipc, ctx.seed, &ctx.device)?;
        let prov = ctx.provenance(data, &self.name(), ipc, 0);
        Ok(SyntheticSet::from_dataset(&data.subset(&idx), prov))
    }
}

/// The starting checkpoint of an optimising distiller: `ipc` images per class made by `init`
/// (noise, or a selection in the embedding of a random `spec` net over `pool` candidates), zero
/// momentum, provenance for `method`.
pub fn initial_checkpoint<B: AutodiffBackend>(
    data: &Dataset,
    ipc: usize,
    init: InitKind,
    spec: &ModelSpec,
    pool: Option<usize>,
    method: &str,
    ctx: &Ctx<'_, B>,
) -> Result<Checkpoint> {
    let start = match init {
        InitKind::Noise => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.seed ^ 0x0015e);
            init::noise(data, ipc, &mut rng)
        }
        kind => {
            let sel = Selection {
                kind,
                spec: spec.clone(),
                embed_epochs: 0,
                pool,
            };
            data.subset(&sel.indices::<B>(data, ipc, ctx.seed, &ctx.device)?)
        }
    };
    let set = SyntheticSet::from_dataset(&start, ctx.provenance(data, method, ipc, 0));
    let momentum = vec![0.0; set.images.len()];
    Ok(Checkpoint {
        set,
        momentum,
        lr_momentum: 0.0,
    })
}

/// The checkpoint an optimising distiller starts from: `ctx.resume` when there is one (checked
/// to hold `ipc` images per class of `data`'s shape), else `fresh(ctx)`. A class with fewer than
/// `ipc` training images is an error either way.
pub fn starting_checkpoint<B: AutodiffBackend>(
    data: &Dataset,
    ipc: usize,
    ctx: &mut Ctx<'_, B>,
    fresh: impl FnOnce(&Ctx<'_, B>) -> Result<Checkpoint>,
) -> Result<Checkpoint> {
    let counts = data.class_counts();
    if let Some(c) = counts.iter().position(|&n| n < ipc) {
        return Err(crate::Error::Other(format!(
            "class {c} ({}) has {} training images, fewer than ipc = {ipc}",
            data.classes[c], counts[c]
        )));
    }
    let n = counts.len() * ipc;
    match ctx.resume.take() {
        Some(ck) if ck.set.len() != n || ck.set.shape != data.shape => {
            Err(crate::Error::Other(format!(
                "the checkpoint holds {} images of shape {:?}; this run needs {n} of {:?}",
                ck.set.len(),
                ck.set.shape,
                data.shape
            )))
        }
        Some(ck) => Ok(ck),
        None => fresh(ctx),
    }
}

/// `set` after `iterations` steps, unless an optimiser drove a pixel to a non-finite value.
pub fn finished(mut set: SyntheticSet, iterations: usize) -> Result<SyntheticSet> {
    set.provenance.iterations = iterations;
    match set.images.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(crate::Error::Numerics(format!(
            "synthetic image value {i} became {}",
            set.images[i]
        ))),
        None => Ok(set),
    }
}
