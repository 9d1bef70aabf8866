//! Soft labels for any method's set. Every method takes the keys of [`SoftLabelSettings`]:
//! `soft_labels = "method"` (the default) keeps what the method makes (FRePo's learned labels,
//! none for the others), `"teacher"` relabels the set with a network trained on the real data the
//! method was given (SRe2L's and RDED's relabelling, one static distribution per image), `"none"`
//! drops them. The registry wraps the method's distiller in [`Relabelled`], so a run's set, a
//! federated client's and a continual memory's are relabelled alike.

use super::{Ctx, Distiller, SyntheticSet};
use crate::data::Dataset;
use crate::error::{Error, Problem, Problems, Result};
use crate::model::{Mode, ModelSpec};
use crate::train::{batch_images, TrainConfig, Training};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Where a set's soft labels come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftLabelSource {
    /// What the method makes: FRePo's learned labels; none for the other methods.
    #[default]
    Method,
    /// A teacher trained on the real data relabels every image.
    Teacher,
    /// No soft labels, even where the method learns them.
    None,
}

/// The soft-label keys every method takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SoftLabelSettings {
    /// `method`, `teacher` or `none`.
    pub soft_labels: SoftLabelSource,
    /// The teacher's softmax temperature (4: the usual KD temperature, Hinton et al. 2015 and
    /// the CRD benchmark; SRe2L's CIFAR relabelling uses 30).
    pub teacher_temperature: f64,
    /// Epochs the teacher trains on the real data (SGD lr 0.01, momentum 0.9, weight decay 5e-4,
    /// batch 64, lr x0.1 at half; no augmentation).
    pub teacher_epochs: usize,
}

impl Default for SoftLabelSettings {
    fn default() -> Self {
        SoftLabelSettings {
            soft_labels: SoftLabelSource::Method,
            teacher_temperature: 4.0,
            teacher_epochs: 30,
        }
    }
}

/// The keys of [`SoftLabelSettings`], which every method takes.
pub const KEYS: [&str; 3] = ["soft_labels", "teacher_temperature", "teacher_epochs"];

impl SoftLabelSettings {
    /// True for the defaults (left out of a method's serialisation, so summaries stay as they were).
    pub fn is_default(&self) -> bool {
        *self == SoftLabelSettings::default()
    }

    /// The values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        let t = self.teacher_temperature;
        p.require(
            t > 0.0 && t.is_finite(),
            "teacher_temperature",
            t,
            "a positive temperature",
        );
        if self.soft_labels == SoftLabelSource::Teacher {
            p.positive("teacher_epochs", self.teacher_epochs);
        }
        p.into_vec()
    }
}

/// A distiller whose sets get their soft labels by `settings` (see the module).
pub struct Relabelled<'a, B: AutodiffBackend> {
    /// The method's own distiller.
    pub inner: Box<dyn Distiller<B> + 'a>,
    /// Where the soft labels come from.
    pub settings: SoftLabelSettings,
    /// The teacher's network (sized for the data's classes).
    pub spec: ModelSpec,
}

impl<B: AutodiffBackend> Distiller<B> for Relabelled<'_, B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn distill(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        let mut set = self.inner.distill(data, ipc, ctx)?;
        match self.settings.soft_labels {
            SoftLabelSource::Method => {}
            SoftLabelSource::None => set.soft_labels = None,
            SoftLabelSource::Teacher => {
                let mut teacher = Teacher::<B>::train(data, &self.spec, &self.settings, ctx)?;
                set.soft_labels = Some(teacher.label(&set.to_dataset(), &ctx.device));
            }
        }
        Ok(set)
    }
}

/// A network trained on the real data, and the temperature it labels at.
pub struct Teacher<B: AutodiffBackend> {
    /// The trained network.
    pub model: crate::model::Model<B::InnerBackend>,
    /// Its softmax temperature.
    pub temperature: f64,
}

impl<B: AutodiffBackend> Teacher<B> {
    /// Trains a fresh `spec` network on `data` for `s.teacher_epochs` epochs (seeded from the
    /// context's seed), ticking the context's progress.
    pub fn train(
        data: &Dataset,
        spec: &ModelSpec,
        s: &SoftLabelSettings,
        ctx: &Ctx<'_, B>,
    ) -> Result<Self> {
        if spec.num_classes() != data.num_classes() {
            return Err(Error::Other(format!(
                "soft_labels = \"teacher\": the network has {} classes, the data {}",
                spec.num_classes(),
                data.num_classes()
            )));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.seed ^ 0x7eac_4e55);
        let mut model = spec.init::<B::InnerBackend, _>(&mut rng, &ctx.device);
        // The reference SGD protocol at batch 64: a client's few hundred images still get
        // several steps an epoch.
        let cfg = TrainConfig {
            batch_size: 64,
            ..TrainConfig::reference(s.teacher_epochs)
        };
        Training::<B>::new(&cfg, &ctx.device)
            .counted(&ctx.progress)
            .run(&mut model, data, &mut rng)?;
        Ok(Teacher {
            model,
            temperature: s.teacher_temperature,
        })
    }

    /// The teacher's distribution for every image of `set` (`len x classes`, row-major):
    /// softmax(logits / temperature), computed in f64 on the host.
    pub fn label(&mut self, set: &Dataset, device: &B::Device) -> Vec<f32> {
        let k = self.model.spec.num_classes();
        let idx: Vec<usize> = (0..set.len()).collect();
        let mut out = Vec::with_capacity(set.len() * k);
        for chunk in idx.chunks(500) {
            let x = batch_images::<B::InnerBackend>(set, chunk, device);
            let logits: Vec<f32> = self
                .model
                .forward(x, Mode::Eval)
                .into_data()
                .convert::<f32>()
                .into_vec()
                .unwrap_or_default();
            for row in logits.chunks(k) {
                out.extend(softmax_t(row, self.temperature));
            }
        }
        out
    }
}

/// softmax(z / t) of one row, in f64 (max-subtracted), as f32.
pub fn softmax_t(z: &[f32], t: f64) -> Vec<f32> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = z.iter().map(|&v| ((v as f64 - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| (v / s) as f32).collect()
}

/// Soft labels over local classes (`rows x local.len()`) as rows over `classes` global classes:
/// local column `j` goes to column `local[j]`, the others are zero.
pub fn globalise_soft(probs: &[f32], local: &[usize], classes: usize) -> Vec<f32> {
    let k = local.len().max(1);
    let mut out = Vec::with_capacity(probs.len() / k * classes);
    for row in probs.chunks(k) {
        let mut g = vec![0f32; classes];
        for (j, &p) in row.iter().enumerate() {
            g[local[j]] = p;
        }
        out.extend(g);
    }
    out
}

/// The one-hot rows of `labels` over `k` classes (a set without soft labels, as soft labels).
pub fn one_hot_rows(labels: &[usize], k: usize) -> Vec<f32> {
    let mut v = vec![0f32; labels.len() * k];
    for (i, &y) in labels.iter().enumerate() {
        v[i * k + y] = 1.0;
    }
    v
}
