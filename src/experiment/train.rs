//! `kind = "train"`: fresh networks trained on the training set (or a random `ipc` selection
//! per class), tested every `eval_every` epochs.

use super::RunContext;
use crate::device::BackendJob;
use crate::error::Result;
use crate::files::{Fixed, Plain};
use crate::report::mean_std;
use crate::report::records::{Outcome, Summary, TrainOutcome};
use crate::report::rows::TrainRow;
use crate::train::{evaluate, Training};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use std::time::Instant;

/// A train run.
pub struct TrainJob<'a> {
    /// The run.
    pub ctx: RunContext<'a>,
}

impl BackendJob for TrainJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let s = ctx.scenario();
        let cfg = s.train_config();
        let spec = ctx.spec();
        let mut log = ctx.csv::<TrainRow>("metrics.csv")?;
        let train = &ctx.split.train;
        let per_epoch = s.train.ipc.map_or(train.len(), |ipc| {
            train.class_counts().iter().map(|&c| c.min(ipc)).sum()
        });
        let steps = per_epoch.div_ceil(cfg.batch_size) * cfg.epochs * s.train.repeats;
        let progress = ctx.progress(steps as u64);
        let mut finals = Vec::new();
        let mut epoch_secs = Vec::new();
        for rep in 0..s.train.repeats {
            let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed.wrapping_add(rep as u64));
            let train_set = match s.train.ipc {
                Some(ipc) => train.random_per_class(ipc, &mut rng),
                None => train.clone(),
            };
            let mut model = spec.init::<B::InnerBackend, _>(&mut rng, &device);
            let t0 = Instant::now();
            let mut last_acc = f64::NAN;
            let mut eval_secs = 0f64;
            Training::<B>::new(&cfg, &device)
                .counted(&progress)
                .run_observed(&mut model, &train_set, &mut rng, |epoch, loss, m| {
                    let last = epoch + 1 == cfg.epochs;
                    if !((epoch + 1).is_multiple_of(s.train.eval_every) || last) {
                        return Ok(());
                    }
                    let te = Instant::now();
                    let (acc, tl) = evaluate(m, &ctx.split.test, 500, &device);
                    eval_secs += te.elapsed().as_secs_f64();
                    last_acc = acc;
                    log.row(&TrainRow {
                        repeat: rep,
                        epoch: epoch + 1,
                        lr: Plain(cfg.lr_at(epoch)),
                        train_loss: Fixed(loss),
                        test_loss: Fixed(tl),
                        test_acc: Fixed(acc),
                        elapsed_s: Fixed(ctx.elapsed()),
                    })?;
                    progress.message(format!("test acc {acc:.4}"));
                    progress.say(&format!(
                        "repeat {} epoch {:>4}: train loss {loss:.4}, test acc {acc:.4}",
                        rep + 1,
                        epoch + 1
                    ));
                    Ok(())
                })?;
            epoch_secs.push((t0.elapsed().as_secs_f64() - eval_secs) / cfg.epochs as f64);
            finals.push(last_acc);
        }
        progress.finish();
        let (mean, std) = mean_std(&finals);
        let report = vec![format!("test accuracy {mean:.4} ± {std:.4}")];
        let outcome = Outcome::Train(TrainOutcome {
            train: cfg,
            ipc: s.train.ipc,
            test_acc: finals,
            test_acc_mean: mean,
            test_acc_std: std,
            seconds_per_epoch: mean_std(&epoch_secs).0,
        });
        Ok(ctx.summary(backend, report, outcome))
    }
}
