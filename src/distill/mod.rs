//! Dataset distillation: one [`Distiller`] trait for every method (DM, MTT, SelMatch and the
//! selection baselines), each configured by one [`MethodConfig`] and built by the [`registry`];
//! the [`SyntheticSet`] they produce, the evaluation protocol and the coverage diagnostic.

pub mod coverage;
pub mod dc;
pub mod dm;
pub mod eval;
pub mod expand;
pub mod frepo;
pub mod init;
pub mod method;
pub mod mtt;
pub mod registry;
pub mod select;
pub mod selmatch;
pub mod set;
pub mod soft;
pub mod tensor_file;

use crate::data::{Dataset, Normalization};
use crate::error::Result;
use crate::model::ModelSpec;
use crate::train::events::{Flow, Observer, Progress};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;

pub use dm::{Dm, DmConfig, DmSettings};
pub use init::InitKind;
pub use method::MethodConfig;
pub use select::{Selection, SelectionSettings};
pub use set::{Provenance, SyntheticSet};

/// A method that turns a real training set into `ipc` images per class on backend `B`.
pub trait Distiller<B: AutodiffBackend> {
    /// The method's name (`dm`, `mtt`, `selmatch`, `random`, `herding`, `kcenter`).
    fn name(&self) -> &'static str;

    /// Builds the synthetic set from `data` (normalised), reporting progress through `ctx`.
    fn distill(&mut self, data: &Dataset, ipc: usize, ctx: &mut Ctx<'_, B>)
        -> Result<SyntheticSet>;
}

/// What a distiller reports while it works.
pub enum Event<'a> {
    /// An optimising distiller finished iteration `iteration` (1-based) with this loss;
    /// `snapshot` copies the current set and optimiser state (a checkpoint).
    Iteration {
        /// The iteration just done (1-based).
        iteration: usize,
        /// Its loss.
        loss: f64,
        /// The state after it.
        snapshot: &'a dyn Fn() -> Checkpoint,
    },
    /// SelMatch trained networks on one candidate window.
    WindowScored {
        /// The window start.
        beta: f64,
        /// Each network's test accuracy.
        accs: &'a [f64],
    },
    /// SelMatch chose its window (difficulty scores and search took `seconds`).
    WindowChosen {
        /// The chosen start.
        beta: f64,
        /// Windows tried (0 when `beta` was given).
        tried: usize,
        /// Seconds spent choosing.
        seconds: f64,
    },
    /// Expert trajectory `index` (of `count`) is trained and saved.
    ExpertTrained {
        /// Which expert.
        index: usize,
        /// How many the run has.
        count: usize,
    },
    /// A GPU run checked its first trajectory-matching step against the CPU.
    DeviceChecked(&'a mtt::check::StepCheck),
}

/// The observer a distiller reports to.
pub type DistillObserver<'a> = dyn for<'e> Observer<Event<'e>> + 'a;

/// One distillation's context: device, seed, provenance facts, who hears its events, the step
/// counter, and a checkpoint to resume from.
pub struct Ctx<'a, B: AutodiffBackend> {
    /// Where tensors live.
    pub device: B::Device,
    /// The seed of every random choice.
    pub seed: u64,
    /// The dataset's short name (provenance).
    pub dataset: String,
    /// The normalisation the images live in (provenance, PNG rendering).
    pub normalization: Option<Normalization>,
    /// Hears every [`Event`] (None: nobody listens).
    pub observer: Option<&'a mut DistillObserver<'a>>,
    /// Ticked after every network training step (experts, windows).
    pub progress: Progress,
    /// A checkpoint to continue from instead of initialising.
    pub resume: Option<Checkpoint>,
}

impl<'a, B: AutodiffBackend> Ctx<'a, B> {
    /// A context whose events nobody hears (federated clients, continual memories, tests).
    pub fn quiet(device: B::Device, seed: u64, dataset: &str) -> Self {
        Ctx {
            device,
            seed,
            dataset: dataset.to_string(),
            normalization: None,
            observer: None,
            progress: Progress::hidden(),
            resume: None,
        }
    }

    /// Reports `event`.
    pub fn report(&mut self, event: Event<'_>) -> Result<Flow> {
        match self.observer.as_mut() {
            Some(o) => o.notify(event),
            None => Ok(Flow::Continue),
        }
    }

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
            expand: 1,
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
    /// A method's further state (FRePo's optimiser moments and model pool), named tensors.
    pub extras: set::Extras,
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
        let extras = extras
            .into_iter()
            .chain(self.extras.iter().cloned())
            .collect();
        self.set.save_with(path, &extras)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let (set, extras) = SyntheticSet::load_with(path)?;
        let find = |name: &str| set::find_extra(&extras, name).map(|(_, v)| v);
        let momentum =
            find("momentum").map_or_else(|| vec![0.0; set.images.len()], <[f32]>::to_vec);
        let lr_momentum = find("lr_momentum")
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
        if momentum.len() != set.images.len() {
            return Err(crate::Error::data(
                path,
                "the momentum tensor does not match the images",
            ));
        }
        let extras = extras
            .into_iter()
            .filter(|(n, _, _)| n != "momentum" && n != "lr_momentum")
            .collect();
        Ok(Checkpoint {
            set,
            momentum,
            lr_momentum,
            extras,
        })
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
                settings: SelectionSettings {
                    embed_epochs: 0,
                    pool,
                    labels: Default::default(),
                },
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
        extras: Vec::new(),
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
        return Err(crate::Error::Setting(format!(
            "class {c} ({}) has {} training images, fewer than ipc = {ipc}",
            data.classes[c], counts[c]
        )));
    }
    let n = counts.len() * ipc;
    match ctx.resume.take() {
        Some(ck) if ck.set.len() != n || ck.set.shape != data.shape => {
            Err(crate::Error::Setting(format!(
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
