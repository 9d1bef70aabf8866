//! `kind = "train"`: fresh networks trained on the training set (or a random `ipc` selection
//! per class), tested every `eval_every` epochs, checkpointed after every epoch.

use super::RunContext;
use crate::device::BackendJob;
use crate::error::{Error, Result};
use crate::files::checkpoint::STATE_FILE;
use crate::files::{Fixed, Plain};
use crate::model::Weights;
use crate::report::mean_std;
use crate::report::records::{Outcome, Summary, TrainOutcome};
use crate::report::rows::TrainRow;
use crate::scenario::Kind;
use crate::train::{evaluate, EpochPoint, TrainConfig, Training};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A train run's checkpoint, written after every epoch: the repeats finished and where the one
/// in progress stands.
#[derive(Default, Serialize, Deserialize)]
struct State {
    /// Each finished repeat's final test accuracy.
    finals: Vec<f64>,
    /// Each finished repeat's seconds per epoch (timing only).
    epoch_secs: Vec<f64>,
    /// The repeat in progress.
    ongoing: Option<Ongoing>,
}

/// A repeat in progress, after an epoch.
#[derive(Serialize, Deserialize)]
struct Ongoing {
    repeat: usize,
    point: EpochPoint,
    weights: Weights,
    /// The repeat's random stream where it is.
    rng: ChaCha12Rng,
    /// The last test accuracy measured.
    last_acc: f64,
}

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
        let mut state: State = ctx.resume_state(Kind::Train)?.unwrap_or_default();
        let mut log = ctx.csv::<TrainRow>("metrics.csv")?;
        let train = &ctx.split.train;
        let per_epoch = s.train.ipc.map_or(train.len(), |ipc| {
            train.class_counts().iter().map(|&c| c.min(ipc)).sum()
        });
        let batches = per_epoch.div_ceil(cfg.batch_size);
        let steps = batches * cfg.epochs * s.train.repeats;
        let progress = ctx.progress(steps as u64);
        progress.skip((batches * cfg.epochs * state.finals.len()) as u64);
        let bad =
            |e: String| Error::Checkpoint(format!("{}: {e}", ctx.dir.join(STATE_FILE).display()));
        for rep in state.finals.len()..s.train.repeats {
            // The same stream as StdRng's (ChaCha12), which can say where it is.
            let mut rng = ChaCha12Rng::seed_from_u64(s.seed.wrapping_add(rep as u64));
            let train_set = match s.train.ipc {
                Some(ipc) => train.random_per_class(ipc, &mut rng),
                None => train.clone(),
            };
            let mut model = spec.init::<B::InnerBackend, _>(&mut rng, &device);
            let mut last_acc = f64::NAN;
            let mut from = None;
            if let Some(o) = state.ongoing.take().filter(|o| o.repeat == rep) {
                o.weights.restore(&mut model, &device).map_err(bad)?;
                ctx.say(&format!(
                    "resuming repeat {} at epoch {}",
                    rep + 1,
                    o.point.next_epoch + 1
                ));
                progress.skip((batches * o.point.next_epoch) as u64);
                (rng, last_acc, from) = (o.rng, o.last_acc, Some(o.point));
            }
            let t0 = Instant::now();
            let first_epoch = from.as_ref().map_or(0, |p| p.next_epoch);
            let mut eval_secs = 0f64;
            let (finals, secs) = (&state.finals, &state.epoch_secs);
            Training::<B>::new(&cfg, &device)
                .counted(&progress)
                .run_from(
                    &mut model,
                    &train_set,
                    &mut rng,
                    from,
                    |epoch, loss, m, at| {
                        let last = epoch + 1 == cfg.epochs;
                        if (epoch + 1).is_multiple_of(s.train.eval_every) || last {
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
                        }
                        let state = State {
                            finals: finals.clone(),
                            epoch_secs: secs.clone(),
                            ongoing: Some(Ongoing {
                                repeat: rep,
                                point: at.point(),
                                weights: Weights::of(m),
                                rng: at.rng().clone(),
                                last_acc,
                            }),
                        };
                        ctx.checkpoint(Kind::Train, &state)
                    },
                )?;
            let ran = (cfg.epochs - first_epoch).max(1) as f64;
            state
                .epoch_secs
                .push((t0.elapsed().as_secs_f64() - eval_secs) / ran);
            state.finals.push(last_acc);
            ctx.checkpoint(Kind::Train, &state)?;
        }
        progress.finish();
        Ok(summary(ctx, backend, (cfg, s.train.ipc), state))
    }
}

/// The run's summary once every repeat of `cfg` (on `ipc` images per class) has ended.
fn summary(
    ctx: &RunContext<'_>,
    backend: &str,
    (cfg, ipc): (TrainConfig, Option<usize>),
    state: State,
) -> Summary {
    let (finals, epoch_secs) = (state.finals, state.epoch_secs);
    let (mean, std) = mean_std(&finals);
    let report = vec![format!("test accuracy {mean:.4} ± {std:.4}")];
    let outcome = Outcome::Train(TrainOutcome {
        train: cfg,
        ipc,
        test_acc: finals,
        test_acc_mean: mean,
        test_acc_std: std,
        seconds_per_epoch: mean_std(&epoch_secs).0,
    });
    ctx.summary(backend, report, outcome)
}
