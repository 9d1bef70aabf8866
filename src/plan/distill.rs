//! A distill (or experts) run resolved once from the scenario: its `[distill]` and `[experts]`
//! sections, the architectures sets are evaluated on, the evaluation protocol, the data and the
//! methods.

use crate::data::augment::Preset;
use crate::data::{Dataset, Split};
use crate::distill::eval::{Architecture, EvalConfig, EvalSettings};
use crate::distill::mtt::experts::ExpertSettings;
use crate::distill::selmatch::window::WindowSearch;
use crate::distill::{MethodConfig, SyntheticSet};
use crate::error::Result;
use crate::model::{ConvNetSpec, ModelSpec};
use crate::scenario::{DistillSection, Kind, Loaded};

/// What every method of a run shares: the architectures, the evaluation protocol, the data.
pub struct DistillPlan<'a> {
    /// The `[distill]` section, defaults applied.
    pub distill: DistillSection,
    /// The `[experts]` section, defaults applied.
    pub experts: ExpertSettings,
    /// The scenario's network.
    pub base: ModelSpec,
    /// The architectures sets are evaluated on, by name, the first one the headline.
    pub models: Vec<(String, ModelSpec)>,
    /// The evaluation protocol's settings.
    pub eval_settings: EvalSettings,
    /// The protocol as it runs.
    pub eval: EvalConfig,
    /// Plain augmentation for selected real images.
    pub plain: crate::data::augment::Plain,
    /// The DSA strategy's name.
    pub dsa_name: String,
    /// The training set.
    pub train: &'a Dataset,
    /// The test set.
    pub test: Dataset,
    /// The run's seed.
    pub seed: u64,
    /// The methods, the scenario's first, each once.
    pub methods: Vec<MethodConfig>,
}

impl<'a> DistillPlan<'a> {
    /// The plan of `loaded` on `split`.
    pub fn new(loaded: &Loaded, split: &'a Split) -> Result<Self> {
        let s = &loaded.scenario;
        let e = s.eval_section();
        let base = s.model_spec(split);
        let m = &s.model;
        let conv = ConvNetSpec {
            input: split.train.shape,
            num_classes: split.train.num_classes(),
            width: m.width,
            depth: m.depth,
            norm: m.norm,
            pooling: m.pooling,
        };
        let models = (e.models.iter())
            .map(|&a| {
                let spec = match a {
                    Architecture::Convnet => base.clone(),
                    other => other.spec(&conv),
                };
                (a.name().to_string(), spec)
            })
            .collect();
        let (dsa_name, dsa) = super::dsa(s, split)?;
        let distill = s.distill_section();
        let mut methods = vec![loaded.method()];
        if s.kind == Kind::Experts {
            methods.clear();
        }
        for b in &distill.run.baselines {
            let m = loaded.method_config(b)?;
            if s.kind == Kind::Distill && methods.iter().all(|x| x.name() != m.name()) {
                methods.push(m);
            }
        }
        Ok(DistillPlan {
            distill,
            experts: super::experts(loaded),
            base,
            models,
            eval: e.config(&dsa),
            plain: e.plain(split.dsa_preset() == Preset::Glyphs),
            eval_settings: e,
            dsa_name,
            train: &split.train,
            test: split.test.clone(),
            seed: s.seed,
            methods,
        })
    }

    /// The evaluation of `set`: with its learned step size as the learning rate when it has one
    /// and `learned_lr` (as the MTT reference evaluates), and combined augmentation when it holds
    /// selected real images.
    pub fn eval_for(&self, set: &SyntheticSet) -> EvalConfig {
        let mut c = self.eval.clone();
        if let (Some(lr), true) = (set.syn_lr, self.eval_settings.learned_lr) {
            c.train.lr = lr as f64;
        }
        if let Some(f) = &set.fixed {
            c.combined = Some((self.plain.clone(), f.clone()));
        }
        c
    }

    /// SelMatch's window search: networks of the first architecture, tested on the test set.
    pub fn window_search(&self) -> WindowSearch<'_> {
        WindowSearch {
            eval: EvalConfig {
                combined: None,
                ..self.eval.clone()
            },
            eval_settings: self.eval_settings.clone(),
            spec: self.models[0].1.clone(),
            plain: self.plain.clone(),
            test: &self.test,
        }
    }
}
