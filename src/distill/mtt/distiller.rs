//! The MTT loop as a [`Distiller`]: from its starting images (the init, or a given selection
//! as SelMatch's), one matching iteration after another, images and step size updated by SGD with
//! momentum, with partial updates (a mask of the images that move) for SelMatch.

use super::check::check_step;
use super::experts::Experts;
use super::labels::LearnedLabels;
use super::{draw_iteration, step_with, MttConfig, Targets};
use crate::data::Dataset;
use crate::distill::{
    finished, initial_checkpoint, starting_checkpoint, Checkpoint, Ctx, Distiller, Event,
    SyntheticSet,
};
use crate::error::{Error, Result};
use crate::model::host;
use crate::train::events::Flow;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The MTT distiller over a set of expert trajectories.
#[derive(Clone, Debug)]
pub struct Mtt {
    /// Its settings, network and augmentation.
    pub cfg: MttConfig,
    /// The experts (each with at least `max_start_epoch - 1 + expert_epochs` epochs).
    pub experts: Experts,
    /// A device name: check the first iteration's step there against the CPU's (GPU runs), and
    /// go on with a gradient form that agrees ([`super::check`]). None: no check.
    pub check_device: Option<String>,
}

/// Where an MTT run starts and which images it moves (plain MTT: the init, all of them;
/// SelMatch: a selected window, the easier part of each class).
#[derive(Clone, Debug, Default)]
pub struct Start<'a> {
    /// Training-set indices of the starting images (grouped by class, `ipc` each), instead of
    /// the settings' init.
    pub images: Option<&'a [usize]>,
    /// Which images the matching updates; None: all of them. The loss is always computed on the
    /// whole set.
    pub trainable: Option<&'a [bool]>,
}

impl Mtt {
    /// Plain MTT over `experts`.
    pub fn new(cfg: MttConfig, experts: Experts) -> Self {
        Mtt {
            cfg,
            experts,
            check_device: None,
        }
    }

    fn check_experts(&self) -> Result<()> {
        let need = self.cfg.settings.epochs_needed();
        if self.experts.is_empty() {
            return Err(Error::Setting(
                "MTT needs at least one expert trajectory".into(),
            ));
        }
        if self.experts.epochs() < need {
            return Err(Error::Setting(format!(
                "the experts have {} epochs; max_start_epoch {} and expert_epochs {} need {need}",
                self.experts.epochs(),
                self.cfg.settings.max_start_epoch,
                self.cfg.settings.expert_epochs
            )));
        }
        Ok(())
    }

    /// The checkpoint a run starts from: `ctx.resume`, else `start.images` or the init.
    fn first_checkpoint<B: AutodiffBackend>(
        &self,
        data: &Dataset,
        ipc: usize,
        start: &Start<'_>,
        method: &str,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<Checkpoint> {
        let st = &self.cfg.settings;
        starting_checkpoint(data, ipc, ctx, |ctx| {
            let mut ck = match start.images {
                Some(idx) => {
                    let set = SyntheticSet::from_dataset(
                        &data.subset(idx),
                        ctx.provenance(data, method, ipc, 0),
                    );
                    let momentum = vec![0.0; set.images.len()];
                    Checkpoint {
                        set,
                        momentum,
                        lr_momentum: 0.0,
                        extras: Vec::new(),
                    }
                }
                None => initial_checkpoint(data, ipc, st.init, &self.cfg.spec, None, method, ctx)?,
            };
            ck.set.syn_lr = Some(st.lr_teacher as f32);
            Ok(ck)
        })
    }

    /// Runs the matching loop on `data` from `start`, naming the set `method`.
    pub fn run<B: AutodiffBackend>(
        &self,
        data: &Dataset,
        ipc: usize,
        start: &Start<'_>,
        method: &str,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        self.check_experts()?;
        let first = self.first_checkpoint(data, ipc, start, method, ctx)?;
        let done = first.set.provenance.iterations;
        let device = ctx.device.clone();
        let [c, h, w] = data.shape;
        let n = first.set.len();
        let labels = first.set.labels.clone();
        let shape = [n, c, h, w];
        let tensor = |v: &[f32]| {
            Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(v.to_vec(), shape), &device)
        };
        let mut images = tensor(&first.set.images);
        let mut mom = tensor(&first.momentum);
        let mask = update_mask::<B::InnerBackend>(start.trainable, n, &device)?;
        let mut syn_lr = first
            .set
            .syn_lr
            .unwrap_or(self.cfg.settings.lr_teacher as f32);
        let mut lr_mom = first.lr_momentum;
        let mut learned = LearnedLabels::start(&self.cfg, &self.experts, &first, &images)?;
        let mut cfg = self.cfg.clone();
        let st = cfg.settings.clone();
        let mut reached = st.iterations.max(done);
        for it in done..st.iterations {
            let d = draw_iteration(&cfg, self.experts.len(), n, (h, w), ctx.seed, it);
            let (from, to) = self
                .experts
                .pair(d.expert, d.start, d.start + st.expert_epochs)?;
            if let (Some(dev), true) = (&self.check_device, it == done) {
                let (found, form) =
                    check_step::<B>(&cfg, dev, (&from, &to), &d, &images, &labels, syn_lr)?;
                cfg = form;
                ctx.report(Event::DeviceChecked(&found))?;
            }
            let targets = match &learned {
                Some(l) => l.targets(),
                None => Targets::Hard(&labels),
            };
            let g = step_with::<B>(&cfg, (&from, &to), &d, images.clone(), targets, syn_lr);
            let (value, gx, glr) = (g.loss, g.images, g.syn_lr);
            if let (Some(l), Some(gy)) = (learned.as_mut(), g.labels) {
                l.update(gy);
            }
            if !value.is_finite() || !glr.is_finite() {
                return Err(Error::Numerics(format!(
                    "the MTT loss became {value} (syn_lr gradient {glr}) at iteration {}: lower lr_img or lr_lr",
                    it + 1
                )));
            }
            (images, mom) = image_update(images, mom, gx, mask.as_ref(), st.momentum, st.lr_img);
            lr_mom = lr_mom * st.momentum as f32 + glr;
            syn_lr -= st.lr_lr as f32 * lr_mom;
            let snapshot = || {
                let mut set = first.set.clone();
                set.images = host(images.clone());
                set.syn_lr = Some(syn_lr);
                set.soft_labels = learned.as_ref().map(LearnedLabels::soft);
                set.provenance.iterations = it + 1;
                Checkpoint {
                    set,
                    momentum: host(mom.clone()),
                    lr_momentum: lr_mom,
                    extras: learned
                        .as_ref()
                        .map(LearnedLabels::extras)
                        .unwrap_or_default(),
                }
            };
            let event = Event::Iteration {
                iteration: it + 1,
                loss: value,
                snapshot: &snapshot,
            };
            if ctx.report(event)? == Flow::Stop {
                reached = it + 1;
                break;
            }
        }
        let mut set = first.set;
        set.images = host(images);
        set.syn_lr = Some(syn_lr);
        if let Some(l) = &learned {
            set.soft_labels = Some(l.soft());
        }
        finished(set, reached)
    }
}

/// One momentum SGD step of the images on their gradient `gx`; returns the images and the
/// momentum. SelMatch's partial update: where `mask` is 0 the image gets no gradient, so it never
/// moves.
pub fn image_update<B: Backend>(
    images: Tensor<B, 4>,
    mom: Tensor<B, 4>,
    gx: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    momentum: f64,
    lr_img: f64,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let gx = match mask {
        Some(m) => gx * m.clone(),
        None => gx,
    };
    let mom = mom * momentum + gx;
    (images - mom.clone() * lr_img, mom)
}

/// The partial-update mask `[n, 1, 1, 1]` (1 where an image moves), None when all move.
pub fn update_mask<B: Backend>(
    trainable: Option<&[bool]>,
    n: usize,
    device: &B::Device,
) -> Result<Option<Tensor<B, 4>>> {
    match trainable {
        Some(t) if t.len() != n => Err(Error::Setting(format!(
            "{} update flags for {n} synthetic images",
            t.len()
        ))),
        Some(t) => {
            let v: Vec<f32> = t.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
            Ok(Some(Tensor::from_data(
                TensorData::new(v, [n, 1, 1, 1]),
                device,
            )))
        }
        None => Ok(None),
    }
}

impl<B: AutodiffBackend> Distiller<B> for Mtt {
    fn name(&self) -> &'static str {
        "mtt"
    }

    fn distill(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        self.run(data, ipc, &Start::default(), "mtt", ctx)
    }
}
