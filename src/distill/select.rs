//! The selection baselines as a [`Distiller`]: `ipc` real images per class chosen at random, by
//! herding or by k-center in the embedding of a ConvNet (random init, or trained first).

use super::init::{self, InitKind};
use super::{Ctx, Distiller, SyntheticSet};
use crate::data::Dataset;
use crate::distill::soft::SoftLabelSettings;
use crate::error::{Problem, Problems, Result};
use crate::model::ModelSpec;
use crate::train::{TrainConfig, Training};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The settings of `method = "random" | "herding" | "kcenter"`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectionSettings {
    /// Candidates per class embedded by herding / k-center (all of the class when absent), to
    /// bound the embedding cost on large sets.
    pub pool: Option<usize>,
    /// Epochs the embedding net trains on the real data first (0: random init).
    pub embed_epochs: usize,
    /// Soft labels (`soft_labels`, `teacher_temperature`, `teacher_epochs`): the keys every
    /// method takes ([`crate::distill::soft`]).
    #[serde(flatten, skip_serializing_if = "SoftLabelSettings::is_default")]
    pub labels: SoftLabelSettings,
}

impl SelectionSettings {
    /// The settings' values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        if let Some(n) = self.pool {
            p.positive("pool", n);
        }
        p.into_vec()
    }
}

/// A selection baseline.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Random (`Real`), `Herding` or `Kcenter`.
    pub kind: InitKind,
    /// The embedding network.
    pub spec: ModelSpec,
    /// Pool and embedding epochs.
    pub settings: SelectionSettings,
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
        if self.settings.embed_epochs > 0 {
            let cfg = TrainConfig::reference(self.settings.embed_epochs);
            Training::<B>::new(&cfg, device).run(&mut model, data, &mut rng)?;
        }
        Ok(init::select(
            data,
            ipc,
            self.kind,
            Some(&mut model),
            self.settings.pool,
            &mut rng,
            device,
        ))
    }
}

impl<B: AutodiffBackend> Distiller<B> for Selection {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn distill(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        let idx = self.indices::<B>(data, ipc, ctx.seed, &ctx.device)?;
        let prov = ctx.provenance(data, self.kind.name(), ipc, 0);
        Ok(SyntheticSet::from_dataset(&data.subset(&idx), prov))
    }
}
