//! SelMatch's parts of a distill run: the selection step (difficulty scores from a CSV, the cache
//! or a training run; the beta search over windows, every window's accuracy to `windows.csv`; the
//! chosen window with its partial-update mask) and the coverage of every set.

use super::distill::DistillJob;
use crate::data::augment::Plain;
use crate::distill::coverage::{embed, Coverage, FeatureSpace};
use crate::distill::eval::{evaluate_set, EvalConfig};
use crate::distill::selmatch::difficulty::window_select;
use crate::distill::selmatch::scores;
use crate::distill::selmatch::search_beta;
use crate::distill::SyntheticSet;
use crate::error::{Error, Result};
use crate::model::{Model, ModelSpec};
use crate::report::CsvLog;
use crate::runner::distill::eval_train_config;
use crate::scenario::EvalSection;
use crate::train::train;
use crate::train::TrainConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::seq::index::sample;
use rand::SeedableRng;
use std::time::Instant;

impl DistillJob<'_> {
    /// The SelMatch window: training-set indices, grouped by class, hardest first. Scores:
    /// `scores_csv`, else computed once and cached under `<results>/scores/`. Beta: the
    /// scenario's, else the best of `beta_grid` (every window is trained on with the evaluation
    /// protocol, plain augmentation, `window_repeats` networks).
    pub(super) fn selmatch_window<B: AutodiffBackend>(
        &self,
        eval: &EvalConfig,
        plain: &Plain,
        spec: &ModelSpec,
        log: &mut CsvLog,
        started: &Instant,
        device: &B::Device,
    ) -> Result<Vec<usize>> {
        let s = &self.loaded.scenario;
        let d = s.distill_section();
        let train = &self.split.train;
        let k = train.num_classes();
        let scores = match &d.scores_csv {
            Some(p) => scores::load_csv(&self.loaded.resolve(p), train.len())?,
            None => {
                let m = &s.model;
                let file = format!(
                    "{}-{}-{:?}-w{}-d{}-e{}-s{}.csv",
                    self.split.cache_name(),
                    d.difficulty.name(),
                    m.arch,
                    m.width,
                    m.depth,
                    d.difficulty_epochs,
                    s.seed
                );
                let path = self.experts_root.with_file_name("scores").join(file);
                if !self.quiet {
                    eprintln!("difficulty scores: {}", path.display());
                }
                let cfg = TrainConfig {
                    batch_size: 256,
                    ..TrainConfig::reference(d.difficulty_epochs)
                };
                scores::cached(&path, train.len(), || {
                    scores::compute::<B>(train, spec, d.difficulty, &cfg, s.seed, device, |_| {})
                })?
            }
        };
        let labels = &train.labels;
        let beta = match d.beta {
            Some(b) => b,
            None => {
                let path = self.dir.join("windows.csv");
                let mut rows = CsvLog::create(&path, &["beta", "repeat", "test_acc"])?;
                let mut cfg = EvalConfig {
                    repeats: d.window_repeats.max(1),
                    combined: None,
                    ..eval.clone()
                };
                if let Some(ep) = d.window_epochs {
                    cfg.train = eval_train_config(&EvalSection {
                        epochs: ep,
                        ..s.eval_section()
                    });
                }
                let (best, all) =
                    search_beta(labels, &scores, k, d.ipc, &d.beta_grid, |beta, idx| {
                        let window = train.subset(idx);
                        // Real images only: plain augmentation for all of them.
                        let cfg = EvalConfig {
                            combined: Some((plain.clone(), vec![true; window.len()])),
                            ..cfg.clone()
                        };
                        let accs = evaluate_set::<B>(
                            &window,
                            &self.split.test,
                            spec,
                            &cfg,
                            s.seed,
                            device,
                            || {},
                        )?;
                        for (r, a) in accs.iter().enumerate() {
                            rows.row(&[format!("{beta}"), r.to_string(), format!("{a:.6}")])?;
                            log.row(&[
                                "window".to_string(),
                                "selmatch".into(),
                                "convnet".into(),
                                format!("{beta}"),
                                r.to_string(),
                                String::new(),
                                format!("{a:.6}"),
                                format!("{:.3}", started.elapsed().as_secs_f64()),
                            ])?;
                        }
                        if !self.quiet {
                            let mu = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
                            eprintln!("window beta {beta:.2}: test acc {mu:.4}");
                        }
                        Ok(accs)
                    })?;
                if !self.quiet {
                    eprintln!("SelMatch window: beta {best} of {} tried", all.len());
                }
                best
            }
        };
        window_select(labels, &scores, k, d.ipc, beta)
            .map_err(|e| Error::Other(format!("SelMatch window at beta {beta}: {e}")))
    }

    /// The coverage of `set`, building the probe on first use.
    pub(super) fn measure_coverage<B: AutodiffBackend>(
        &self,
        probe: &mut Option<CoverageProbe<B::InnerBackend>>,
        spec: &ModelSpec,
        set: &SyntheticSet,
        device: &B::Device,
    ) -> Result<Coverage> {
        let p = match probe {
            Some(p) => p,
            None => probe.insert(self.coverage_probe::<B>(spec, device)?),
        };
        Ok(p.measure(set, device))
    }

    /// The coverage probe: a `spec` network trained on the real data for `coverage_epochs`
    /// (seeded), r from `coverage_sample` real training images, the whole test set queried.
    pub(super) fn coverage_probe<B: AutodiffBackend>(
        &self,
        spec: &ModelSpec,
        device: &B::Device,
    ) -> Result<CoverageProbe<B::InnerBackend>> {
        let s = &self.loaded.scenario;
        let e = s.eval_section();
        let train_set = &self.split.train;
        let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed ^ 0xc0e7);
        let mut net = spec.init::<B::InnerBackend, _>(&mut rng, device);
        let cfg = TrainConfig::reference(e.coverage_epochs.max(1));
        train::<B, _>(
            &mut net,
            train_set,
            &cfg,
            None,
            &mut rng,
            device,
            || {},
            |_, _, _| Ok(()),
        )?;
        let n = e
            .coverage_sample
            .clamp(2, train_set.len().max(2))
            .min(train_set.len());
        let mut idx = sample(&mut rng, train_set.len(), n).into_vec();
        idx.sort_unstable();
        let space = FeatureSpace::new(&mut net, &train_set.subset(&idx), &self.split.test, device);
        Ok(CoverageProbe { net, space })
    }
}

/// A trained feature network and its coverage space, built once per run and asked for the
/// coverage of each set (at the end, and every `coverage_every` iterations while distilling).
pub(super) struct CoverageProbe<B: Backend> {
    net: Model<B>,
    space: FeatureSpace,
}

impl<B: Backend> CoverageProbe<B> {
    /// The coverage of `set` in the probe's feature space.
    pub(super) fn measure(&mut self, set: &SyntheticSet, device: &B::Device) -> Coverage {
        let f = embed(&mut self.net, &set.to_dataset(), device);
        self.space.coverage(&f)
    }
}
