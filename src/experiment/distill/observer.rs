//! What a distill run does with a distiller's events: `metrics.csv` rows (experts, windows,
//! losses), checkpoints, mid-run evaluations and coverage as the [`Schedule`] makes them due, the
//! time budget, SelMatch's `windows.csv`, and the device check; and the time each part took.

use super::plan::Plan;
use crate::distill::coverage::{Coverage, CoverageProbe};
use crate::distill::eval::evaluate_set_soft;
use crate::distill::mtt::check::StepCheck;
use crate::distill::{Event, SyntheticSet};
use crate::error::Result;
use crate::files::checkpoint;
use crate::files::{CsvLog, Fixed, Plain};
use crate::report::mean_std;
use crate::report::rows::{CoverageRow, DistillRow, WindowRow};
use crate::train::events::{Flow, Observer, Progress, Schedule};
use burn::tensor::backend::AutodiffBackend;
use std::path::PathBuf;
use std::time::Instant;

/// The run's logs, shared by every method's observer.
pub struct Logs {
    /// `metrics.csv`.
    pub metrics: CsvLog<DistillRow>,
    /// `coverage.csv`, when coverage is measured.
    pub coverage: Option<CsvLog<CoverageRow>>,
    /// `windows.csv`, made when SelMatch first scores a window.
    pub windows: Option<CsvLog<WindowRow>>,
    /// The run's folder (for `windows.csv`).
    pub dir: PathBuf,
    /// When the run started (the `elapsed_s` column).
    pub started: Instant,
}

impl Logs {
    /// Seconds since the run started.
    fn elapsed(&self) -> Fixed<3> {
        Fixed(self.started.elapsed().as_secs_f64())
    }

    /// One `eval` row per trained network.
    pub fn eval_rows(
        &mut self,
        method: &str,
        model: &str,
        iteration: usize,
        accs: &[f64],
    ) -> Result<()> {
        for (r, a) in accs.iter().enumerate() {
            let row = DistillRow {
                phase: "eval".into(),
                method: method.into(),
                model: model.into(),
                iteration: iteration.to_string(),
                repeat: Some(r),
                loss: None,
                test_acc: Some(Fixed(*a)),
                elapsed_s: self.elapsed(),
            };
            self.metrics.row(&row)?;
        }
        Ok(())
    }

    /// One coverage measurement as a row of `coverage.csv`.
    pub fn coverage_row(&mut self, method: &str, iteration: usize, c: &Coverage) -> Result<()> {
        match self.coverage.as_mut() {
            Some(log) => log.row(&CoverageRow {
                method: method.into(),
                iteration,
                overall: Fixed(c.overall),
                easy: Fixed(c.easy),
                hard: Fixed(c.hard),
                radius: Fixed(c.radius),
            }),
            None => Ok(()),
        }
    }
}

/// The coverage probe of a run, built when first needed.
pub type Probe<B> = Option<CoverageProbe<<B as AutodiffBackend>::InnerBackend>>;

/// Hears one method's events.
pub struct RunObserver<'a, 'p, B: AutodiffBackend> {
    /// The run's shared settings.
    pub plan: &'a Plan<'p>,
    /// The method's name.
    pub method: &'a str,
    /// Its logs.
    pub logs: &'a mut Logs,
    /// The coverage probe.
    pub probe: &'a mut Probe<B>,
    /// When periodic actions fall due.
    pub schedule: Schedule,
    /// Where its checkpoint goes.
    pub checkpoint: PathBuf,
    /// The step counter.
    pub progress: &'a Progress,
    /// Where tensors live.
    pub device: B::Device,
    /// When its distillation started.
    pub started: Instant,
    /// Seconds of mid-run evaluations, coverage and window selection (not distillation).
    pub excluded: f64,
    /// Seconds choosing SelMatch's window.
    pub selection: f64,
    /// The device check, if one ran.
    pub checked: Option<StepCheck>,
}

impl<B: AutodiffBackend> RunObserver<'_, '_, B> {
    /// Distillation seconds so far.
    pub fn spent(&self) -> f64 {
        self.started.elapsed().as_secs_f64() - self.excluded
    }

    fn iteration(
        &mut self,
        it: usize,
        loss: f64,
        snapshot: &dyn Fn() -> crate::distill::Checkpoint,
    ) -> Result<Flow> {
        self.progress.tick();
        let due = self.schedule.due(it, self.spent());
        if due.log {
            let row = DistillRow {
                phase: "distill".into(),
                method: self.method.into(),
                model: String::new(),
                iteration: it.to_string(),
                repeat: None,
                loss: Some(Fixed(loss)),
                test_acc: None,
                elapsed_s: self.logs.elapsed(),
            };
            self.logs.metrics.row(&row)?;
            self.progress
                .message(format!("iteration {it} loss {loss:.4}"));
        }
        if due.coverage {
            let t = Instant::now();
            let c = self.coverage(&snapshot().set)?;
            self.logs.coverage_row(self.method, it, &c)?;
            self.excluded += t.elapsed().as_secs_f64();
            self.progress
                .say(&format!("iteration {it:>6}: {} coverage {c}", self.method));
        }
        if due.evaluate {
            let t = Instant::now();
            self.evaluate(it, loss, &snapshot().set)?;
            self.excluded += t.elapsed().as_secs_f64();
        }
        // Last, so the rows the checkpoint covers are all of this iteration's.
        let stop = checkpoint::stop_requested();
        if due.checkpoint || stop {
            let ck = snapshot();
            let mark = mark(self.method, ck.set.provenance.iterations);
            checkpoint::journal(&self.plan.ctx.dir, &mark)?;
            ck.save(&self.checkpoint)?;
            checkpoint::stop_point(&self.plan.ctx.dir)?;
        }
        if due.budget_reached {
            self.progress.say(&format!(
                "{}: time budget of {:.0} s reached after iteration {it}",
                self.method,
                self.schedule.max_seconds.unwrap_or_default()
            ));
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// The coverage of `set`, building the probe on first use.
    pub fn coverage(&mut self, set: &SyntheticSet) -> Result<Coverage> {
        measure::<B>(self.plan, self.probe, set, &self.device)
    }

    fn evaluate(&mut self, it: usize, loss: f64, set: &SyntheticSet) -> Result<()> {
        let (model, spec) = &self.plan.models[0];
        let set = &set.decoded();
        let accs = evaluate_set_soft::<B>(
            &set.to_dataset(),
            self.plan.eval_settings.soft_targets(set),
            &self.plan.test,
            spec,
            &self.plan.eval_for(set),
            self.plan.seed,
            &self.device,
            self.progress,
        )?;
        self.logs.eval_rows(self.method, model, it, &accs)?;
        let (mu, sd) = mean_std(&accs);
        self.progress.say(&format!(
            "iteration {it:>6}: loss {loss:.4}, {model} test acc {mu:.4} ± {sd:.4}"
        ));
        Ok(())
    }

    fn window(&mut self, beta: f64, accs: &[f64]) -> Result<()> {
        if self.logs.windows.is_none() {
            self.logs.windows = Some(CsvLog::create(&self.logs.dir.join("windows.csv"))?);
        }
        for (r, a) in accs.iter().enumerate() {
            if let Some(w) = self.logs.windows.as_mut() {
                w.row(&WindowRow {
                    beta: Plain(beta),
                    repeat: r,
                    test_acc: Fixed(*a),
                })?;
            }
            let row = DistillRow {
                phase: "window".into(),
                method: self.method.into(),
                model: self.plan.models[0].0.clone(),
                iteration: format!("{beta}"),
                repeat: Some(r),
                loss: None,
                test_acc: Some(Fixed(*a)),
                elapsed_s: self.logs.elapsed(),
            };
            self.logs.metrics.row(&row)?;
        }
        let mu = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
        self.progress
            .say(&format!("window beta {beta:.2}: test acc {mu:.4}"));
        Ok(())
    }

    fn expert(&mut self, index: usize, count: usize) -> Result<()> {
        let row = DistillRow {
            phase: "experts".into(),
            method: "mtt".into(),
            model: String::new(),
            iteration: index.to_string(),
            repeat: None,
            loss: None,
            test_acc: None,
            elapsed_s: self.logs.elapsed(),
        };
        self.logs.metrics.row(&row)?;
        self.progress
            .message(format!("expert {} of {count} trained", index + 1));
        Ok(())
    }
}

/// The coverage of `set` in the run's probe (built on first use).
pub fn measure<B: AutodiffBackend>(
    plan: &Plan<'_>,
    probe: &mut Probe<B>,
    set: &SyntheticSet,
    device: &B::Device,
) -> Result<Coverage> {
    let p = match probe {
        Some(p) => p,
        None => {
            let e = &plan.eval_settings;
            probe.insert(crate::distill::coverage::probe::<B>(
                &plan.base,
                plan.train,
                &plan.test,
                (e.coverage_epochs, e.coverage_sample),
                plan.seed,
                device,
            )?)
        }
    };
    Ok(p.measure(set, device))
}

impl<'e, B: AutodiffBackend> Observer<Event<'e>> for RunObserver<'_, '_, B> {
    fn notify(&mut self, event: Event<'e>) -> Result<Flow> {
        match event {
            Event::Iteration {
                iteration,
                loss,
                snapshot,
            } => return self.iteration(iteration, loss, snapshot),
            Event::WindowScored { beta, accs } => self.window(beta, accs)?,
            Event::WindowChosen {
                beta,
                tried,
                seconds,
            } => {
                self.selection += seconds;
                self.excluded += seconds;
                if tried > 0 {
                    self.progress
                        .say(&format!("SelMatch window: beta {beta} of {tried} tried"));
                }
            }
            Event::ExpertTrained { index, count } => self.expert(index, count)?,
            Event::DeviceChecked(c) => {
                self.progress.say(&format!("{}: {c}", self.method));
                self.checked = Some(c.clone());
            }
        }
        Ok(Flow::Continue)
    }
}

/// The journal's name for `method`'s checkpoint after `iterations`.
pub fn mark(method: &str, iterations: usize) -> String {
    format!("{method}@{iterations}")
}
