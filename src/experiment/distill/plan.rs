//! What every method of a distill run shares, resolved once from the scenario: the
//! architectures sets are evaluated on, the evaluation protocol, the data and the methods.

use crate::data::augment::STRATEGY_DIGITS;
use crate::data::Dataset;
use crate::distill::eval::{Architecture, EvalConfig, EvalSettings};
use crate::distill::selmatch::window::WindowSearch;
use crate::distill::{MethodConfig, SyntheticSet};
use crate::error::Result;
use crate::experiment::RunContext;
use crate::model::{ConvNetSpec, ModelSpec};
use crate::scenario::Kind;

/// What every method of a run shares: the architectures, the evaluation protocol, the data.
pub struct Plan<'a> {
    /// The run.
    pub ctx: &'a RunContext<'a>,
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

impl<'a> Plan<'a> {
    pub fn new(ctx: &'a RunContext<'a>) -> Result<Self> {
        let s = ctx.scenario();
        let e = s.eval_section();
        let base = ctx.spec();
        let m = &s.model;
        let conv = ConvNetSpec {
            input: ctx.split.train.shape,
            num_classes: ctx.split.train.num_classes(),
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
        let (dsa_name, dsa) = ctx.dsa()?;
        let mut methods = vec![ctx.loaded.method()];
        if s.kind == Kind::Experts {
            methods.clear();
        }
        for b in &s.distill_section().run.baselines {
            let m = ctx.loaded.method_config(b)?;
            if s.kind == Kind::Distill && methods.iter().all(|x| x.name() != m.name()) {
                methods.push(m);
            }
        }
        Ok(Plan {
            ctx,
            base,
            models,
            eval: e.config(&dsa),
            plain: e.plain(
                crate::experiment::context::default_strategy(&ctx.split.name) == STRATEGY_DIGITS,
            ),
            eval_settings: e,
            dsa_name,
            train: &ctx.split.train,
            test: ctx.split.test.clone(),
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
