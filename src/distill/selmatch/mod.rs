//! SelMatch (Lee et al., ICML 2024) as a [`Distiller`]: trajectory matching ([`crate::distill::mtt`])
//! from a window of real images chosen by difficulty (selection-based initialisation), with
//! partial updates (only the easier `alpha` fraction of each class is distilled; the harder rest,
//! D_select, stays real), and the flags that make evaluation use combined augmentation.

pub mod difficulty;
pub mod scores;
pub mod window;

use crate::data::Dataset;
use crate::distill::mtt::distiller::Start;
use crate::distill::mtt::{Mtt, MttSettings};
use crate::distill::{Ctx, Distiller, Event, SyntheticSet};
use crate::error::{Error, Problem, Problems, Result};
use burn::tensor::backend::AutodiffBackend;
use difficulty::window_select;
use scores::ScoreKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;
use window::{distilled_mask, search_beta, WindowSearch};

/// SelMatch's settings, as a `[distill]` table with `method = "selmatch"` gives them: the
/// trajectory-matching settings (defaults: SelMatch's `distill.py`, REFERENCE.md §1.9) and the
/// window's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelMatchSettings {
    /// The trajectory matching (also what an `mtt` baseline beside SelMatch runs with).
    #[serde(flatten)]
    pub mtt: MttSettings,
    /// The fraction of each class's images that is distilled (the easier ones).
    pub alpha: f64,
    /// The window start (skip `floor(ipc * beta)` hardest per class); absent: search
    /// `beta_grid` and keep the window whose images train the best network.
    pub beta: Option<f64>,
    /// The window starts the search tries.
    pub beta_grid: Vec<f64>,
    /// Networks trained on each candidate window.
    pub window_repeats: usize,
    /// Epochs those networks train (default: the evaluation's).
    pub window_epochs: Option<usize>,
    /// Difficulty scores computed in-house: `forgetting` or `el2n`.
    pub difficulty: ScoreKind,
    /// Epochs of the training run that scores difficulty.
    pub difficulty_epochs: usize,
    /// Precomputed scores instead (CSV `index,score`, higher is harder), relative to the scenario.
    pub scores_csv: Option<PathBuf>,
}

impl Default for SelMatchSettings {
    fn default() -> Self {
        SelMatchSettings {
            mtt: MttSettings {
                iterations: 10000,
                syn_steps: 55,
                expert_epochs: 2,
                max_start_epoch: 80,
                lr_img: 1000.0,
                lr_lr: 1e-5,
                lr_teacher: 0.001,
                batch_syn: Some(125),
                ..MttSettings::default()
            },
            alpha: 0.5,
            beta: None,
            beta_grid: (0..10).map(|i| i as f64 / 10.0).collect(),
            window_repeats: 1,
            window_epochs: None,
            difficulty: ScoreKind::Forgetting,
            difficulty_epochs: 10,
            scores_csv: None,
        }
    }
}

impl SelMatchSettings {
    /// The settings' values that cannot work (`expert_epochs`: the experts' epochs).
    pub fn problems(&self, expert_epochs: usize) -> Vec<Problem> {
        let mut p = Problems::default();
        p.extend(self.mtt.problems(expert_epochs));
        p.require(
            (0.0..=1.0).contains(&self.alpha),
            "alpha",
            self.alpha,
            "a fraction in [0, 1]",
        );
        let betas_ok = self
            .beta
            .iter()
            .chain(&self.beta_grid)
            .all(|b| b.is_finite() && *b >= 0.0);
        p.require(
            betas_ok,
            "beta_grid",
            format!("{:?} / {:?}", self.beta, self.beta_grid),
            "non-negative window starts (multiples of ipc)",
        );
        p.require(
            self.beta.is_some() || !self.beta_grid.is_empty(),
            "beta_grid",
            "[]",
            "a beta or a non-empty grid",
        );
        p.positive("window_repeats", self.window_repeats);
        if let Some(e) = self.window_epochs {
            p.positive("window_epochs", e);
        }
        if self.scores_csv.is_none() {
            p.positive("difficulty_epochs", self.difficulty_epochs);
        }
        p.into_vec()
    }
}

/// The SelMatch distiller: MTT over experts, difficulty scores of the training set it is given,
/// and (when `beta` is not fixed) the window search.
pub struct SelMatch<'a> {
    /// The trajectory matching.
    pub mtt: Mtt,
    /// The window's settings.
    pub settings: SelMatchSettings,
    /// Each training sample's difficulty (higher is harder).
    pub scores: Vec<f64>,
    /// How candidate windows are scored (None: `beta` must be given).
    pub search: Option<WindowSearch<'a>>,
}

impl SelMatch<'_> {
    /// The window's training-set indices (grouped by class, hardest first): at the given `beta`,
    /// or at the best start of the grid, each candidate reported as it is scored.
    fn window<B: AutodiffBackend>(
        &self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<Vec<usize>> {
        let t0 = Instant::now();
        let k = data.num_classes();
        let (beta, tried) = match (self.settings.beta, &self.search) {
            (Some(b), _) => (b, 0),
            (None, None) => {
                return Err(Error::Setting(
                    "distill.beta: SelMatch here has no held-out images to search windows on; give a fixed window start".into(),
                ))
            }
            (None, Some(search)) => {
                let grid = &self.settings.beta_grid;
                let (best, all) =
                    search_beta(&data.labels, &self.scores, k, ipc, grid, |beta, idx| {
                        let accs = search.score::<B>(data, idx, ctx.seed, &ctx.device)?;
                        ctx.report(Event::WindowScored { beta, accs: &accs })?;
                        Ok(accs)
                    })?;
                (best, all.len())
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        ctx.report(Event::WindowChosen {
            beta,
            tried,
            seconds,
        })?;
        window_select(&data.labels, &self.scores, k, ipc, beta)
            .map_err(|e| Error::Setting(format!("SelMatch window at beta {beta}: {e}")))
    }
}

impl<B: AutodiffBackend> Distiller<B> for SelMatch<'_> {
    fn name(&self) -> &'static str {
        "selmatch"
    }

    fn distill(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        // A checkpoint already holds the window's images: a resumed run skips the search.
        let window = match ctx.resume {
            Some(_) => None,
            None => Some(self.window(data, ipc, ctx)?),
        };
        let trainable = distilled_mask(data.num_classes(), ipc, self.settings.alpha);
        let start = Start {
            images: window.as_deref(),
            trainable: Some(&trainable),
        };
        let mut set = self.mtt.run(data, ipc, &start, "selmatch", ctx)?;
        // Selected (never updated) images, recorded for combined augmentation.
        set.fixed = Some(trainable.iter().map(|&t| !t).collect());
        Ok(set)
    }
}
