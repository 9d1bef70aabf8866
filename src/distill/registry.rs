//! The registry: the only place a distiller is built. It turns a [`MethodConfig`] into a ready
//! [`Distiller`] for whatever dataset it is handed (a run's training set, a client's partition, a
//! task's data), with what the method needs: MTT's and SelMatch's expert trajectories (trained on
//! that data where missing, cached by the data's fingerprint, the network and the settings),
//! SelMatch's difficulty scores (cached likewise) and window search.

use super::dc::{Dc, DcConfig};
use super::dm::{Around, Dm, DmConfig};
use super::frepo::{Frepo, FrepoConfig};
use super::init::InitKind;
use super::method::MethodConfig;
use super::mtt::experts::{spec_tag, ExpertPlan, ExpertSettings};
use super::mtt::{Mtt, MttConfig, MttSettings};
use super::select::Selection;
use super::selmatch::scores;
use super::selmatch::window::WindowSearch;
use super::selmatch::{SelMatch, SelMatchSettings};
use super::soft::{Relabelled, SoftLabelSource};
use super::{Ctx, Distiller, SyntheticSet};
use crate::data::augment::Dsa;
use crate::data::Dataset;
use crate::error::Result;
use crate::model::ModelSpec;
use crate::train::TrainConfig;
use burn::tensor::backend::AutodiffBackend;
use std::path::PathBuf;

/// What a distiller may need besides its settings and data.
#[derive(Clone, Debug)]
pub struct Env<'a> {
    /// The network (sized for the data's classes).
    pub spec: ModelSpec,
    /// The augmentation strategy (used by the methods whose settings ask for DSA).
    pub dsa: Dsa,
    /// Expert trajectories' settings.
    pub experts: ExpertSettings,
    /// The folder under which experts and difficulty scores are cached (`experts/`, `scores/`).
    pub cache: PathBuf,
    /// How SelMatch scores candidate windows (None: its `beta` must be given).
    pub window: Option<WindowSearch<'a>>,
    /// On a GPU: the device trajectory matching checks its first step on (None on the CPU).
    pub check_device: Option<String>,
    /// FedDM: DM embeds around these weights instead of fresh networks.
    pub around: Option<Around>,
}

impl<'a> Env<'a> {
    /// An environment for network `spec` and DSA strategy `dsa`, caching under `cache`.
    pub fn new(spec: ModelSpec, dsa: Dsa, experts: ExpertSettings, cache: PathBuf) -> Self {
        Env {
            spec,
            dsa,
            experts,
            cache,
            window: None,
            check_device: None,
            around: None,
        }
    }

    /// The experts these settings describe for `data`.
    pub fn expert_plan(&self, data: &Dataset, dataset: &str, seed: u64) -> ExpertPlan {
        ExpertPlan::new(
            &self.experts,
            data,
            dataset,
            &self.spec,
            &self.dsa,
            seed,
            &self.cache,
        )
    }
}

/// A ready distiller for `data`: `method` with what it needs, made now (experts trained and
/// scores computed where not cached, each reported through `ctx`), relabelled by its
/// `soft_labels` setting ([`super::soft`]).
pub fn build<'a, B: AutodiffBackend>(
    method: &MethodConfig,
    data: &Dataset,
    env: &Env<'a>,
    ctx: &mut Ctx<'_, B>,
) -> Result<Box<dyn Distiller<B> + 'a>> {
    let selection = |kind: InitKind, settings| -> Box<dyn Distiller<B> + 'a> {
        Box::new(Selection {
            kind,
            spec: env.spec.clone(),
            settings,
        })
    };
    let inner: Box<dyn Distiller<B> + 'a> = match method {
        MethodConfig::Dm(s) => {
            let mut cfg = DmConfig::new(s.clone(), env.spec.clone(), &env.dsa);
            cfg.around = env.around.clone();
            Box::new(Dm { cfg })
        }
        MethodConfig::Mtt(s) => Box::new(mtt(s, data, env, ctx)?),
        MethodConfig::Dc(s) => Box::new(Dc {
            cfg: DcConfig::new(s.clone(), env.spec.clone(), &env.dsa),
        }),
        MethodConfig::Frepo(s) => Box::new(Frepo {
            cfg: FrepoConfig::new(s.clone(), env.spec.clone(), &env.dsa),
        }),
        MethodConfig::Selmatch(s) => Box::new(selmatch(s, data, env, ctx)?),
        MethodConfig::Random(s) => selection(InitKind::Real, s.clone()),
        MethodConfig::Herding(s) => selection(InitKind::Herding, s.clone()),
        MethodConfig::Kcenter(s) => selection(InitKind::Kcenter, s.clone()),
    };
    let labels = method.labels();
    Ok(match labels.soft_labels {
        SoftLabelSource::Method => inner,
        _ => Box::new(Relabelled {
            inner,
            settings: labels.clone(),
            spec: env.spec.clone(),
        }),
    })
}

/// Builds `method` for `data` and makes its `ipc` images per class.
pub fn distil<B: AutodiffBackend>(
    method: &MethodConfig,
    data: &Dataset,
    ipc: usize,
    env: &Env<'_>,
    ctx: &mut Ctx<'_, B>,
) -> Result<SyntheticSet> {
    let mut d = build(method, data, env, ctx)?;
    d.distill(data, ipc, ctx)
}

fn mtt<B: AutodiffBackend>(
    s: &MttSettings,
    data: &Dataset,
    env: &Env<'_>,
    ctx: &mut Ctx<'_, B>,
) -> Result<Mtt> {
    let experts = env
        .expert_plan(data, &ctx.dataset, ctx.seed)
        .prepare(data, ctx)?;
    let mut m = Mtt::new(
        MttConfig::new(s.clone(), env.spec.clone(), &env.dsa),
        experts,
    );
    m.check_device = env.check_device.clone().filter(|_| s.check_device);
    Ok(m)
}

fn selmatch<'a, B: AutodiffBackend>(
    s: &SelMatchSettings,
    data: &Dataset,
    env: &Env<'a>,
    ctx: &mut Ctx<'_, B>,
) -> Result<SelMatch<'a>> {
    let mtt = mtt(&s.mtt, data, env, ctx)?;
    let scores = match &s.scores_csv {
        Some(p) => scores::load_csv(p, data.len())?,
        None => {
            let file = format!(
                "{}-{:08x}-{}-{}-e{}-s{}.csv",
                ctx.dataset,
                data.fingerprint() >> 32,
                s.difficulty.name(),
                spec_tag(&env.spec),
                s.difficulty_epochs,
                ctx.seed
            );
            let path = env.cache.join("scores").join(file);
            let cfg = TrainConfig::reference(s.difficulty_epochs);
            let (spec, device, seed) = (&env.spec, ctx.device.clone(), ctx.seed);
            scores::cached(&path, data.len(), || {
                scores::compute::<B>(data, spec, s.difficulty, &cfg, seed, &device, |_| {})
            })?
        }
    };
    let search = env.window.clone().map(|mut w| {
        if let Some(e) = s.window_epochs {
            w.eval.train = w.eval_settings.train_config(e);
        }
        w.eval.repeats = s.window_repeats.max(1);
        w
    });
    Ok(SelMatch {
        mtt,
        settings: s.clone(),
        scores,
        search,
    })
}
