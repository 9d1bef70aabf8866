//! `kind = "distill"`: make the method's set and each baseline's (built by the registry,
//! checkpointing as they go), measure every set's coverage, evaluate every set with the same
//! protocol on every architecture asked for. `kind = "experts"` only trains the experts.

mod make;
pub mod observer;
pub mod plan;

use super::RunContext;
use crate::device::BackendJob;
use crate::distill::eval::evaluate_set_soft;
use crate::distill::{MethodConfig, SyntheticSet};
use crate::error::Result;
use crate::report::mean_std;
use crate::report::records::{
    Accuracy, DistillOutcome, ExpertsInfo, ExpertsOutcome, Outcome, Summary,
};
use crate::report::rows::{CoverageRow, DistillRow};
use crate::scenario::Kind;
use crate::train::events::Progress;
use burn::tensor::backend::AutodiffBackend;
use observer::{Logs, Probe};
pub use plan::Plan;
use std::collections::BTreeMap;
use std::time::Instant;

/// A distill run.
pub struct DistillJob<'a> {
    /// The run.
    pub ctx: RunContext<'a>,
}

impl BackendJob for DistillJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let plan = Plan::new(ctx)?;
        if ctx.scenario().kind == Kind::Experts {
            return experts_only::<B>(&plan, device, backend);
        }
        match make::resume_mark(&plan)? {
            None if make::keeps_rows_from_start(&plan) => {}
            mark => ctx.rewind_to(mark.as_deref())?,
        }
        let progress = ctx.progress(total_steps(&plan) as u64);
        let mut logs = Logs {
            metrics: ctx.csv::<DistillRow>("metrics.csv")?,
            coverage: match plan.eval_settings.coverage {
                true => Some(ctx.csv::<CoverageRow>("coverage.csv")?),
                false => None,
            },
            windows: None,
            dir: ctx.dir.clone(),
            started: ctx.started,
        };
        let mut probe: Probe<B> = None;
        let mut made = make::Made::default();
        for m in &plan.methods {
            let set = make::set::<B>(
                &plan, m, &mut logs, &mut probe, &progress, &device, &mut made,
            )?;
            made.sets.push((m.name().to_string(), set));
        }
        let mut coverage = BTreeMap::new();
        if plan.eval_settings.coverage {
            for (m, set) in &made.sets {
                let c = observer::measure::<B>(&plan, &mut probe, set, &device)?;
                logs.coverage_row(m, set.provenance.iterations, &c)?;
                progress.say(&format!("{m:<8} coverage {c}"));
                coverage.insert(m.clone(), c);
            }
        }
        let (results, mut report) =
            evaluate::<B>(&plan, &made.sets, &mut logs, &progress, &device)?;
        let privacy = super::audit::distill::audit::<B>(&plan, &made.sets, &probe, &device)?;
        let privacy = privacy.map(|(record, lines)| {
            lines.iter().for_each(|l| progress.say(l));
            report.extend(lines);
            record
        });
        for (m, d) in &made.distilled {
            if let Some(dp) = &d.dp {
                let line = format!(
                    "{m:<8} differentially private: epsilon {:.3} at delta {:e} (noise multiplier {}, clip {}, sampling rate {:.4}, {} iterations; Renyi-DP accountant)",
                    dp.epsilon, dp.settings.delta, dp.settings.noise_multiplier, dp.settings.clip, dp.sampling_rate, dp.steps
                );
                progress.say(&line);
                report.push(line);
            }
        }
        progress.finish();
        let primary = plan.methods[0].name();
        let headline = results.get(primary).and_then(|r| r.get(&plan.models[0].0));
        let timed = made.distilled.get(primary);
        let outcome = DistillOutcome {
            distill: plan.distill.clone(),
            dsa_strategy: plan.dsa_name.clone(),
            eval: plan.eval_settings.clone(),
            syn_lr: made
                .sets
                .iter()
                .filter_map(|(m, s)| s.syn_lr.map(|lr| (m.clone(), lr)))
                .collect(),
            coverage,
            test_acc_mean: headline.map(|a| a.mean),
            test_acc_std: headline.map(|a| a.std),
            experts: made.experts.clone(),
            seconds_per_iteration: timed
                .filter(|d| d.iterations_this_run > 0)
                .map_or(0.0, |d| d.seconds / d.iterations_this_run as f64),
            distilled: made.distilled,
            device_check: made.checks,
            eval_during_distill_seconds: made.excluded,
            results,
        };
        let mut summary = ctx.summary(backend, report, Outcome::Distill(Box::new(outcome)));
        summary.privacy = privacy;
        Ok(summary)
    }
}

/// Steps the progress bar counts: experts, iterations, evaluation networks.
fn total_steps(plan: &Plan<'_>) -> usize {
    let d = &plan.distill;
    let e = &plan.eval_settings;
    let n_syn = plan.train.num_classes() * d.run.ipc;
    let per_net = e.epochs * n_syn.div_ceil(e.batch_size.max(1));
    let iterations: usize = plan.methods.iter().map(MethodConfig::iterations).sum();
    let experts = match plan
        .methods
        .iter()
        .any(|m| m.trajectory_matching().is_some())
    {
        true => plan.experts.steps(plan.train.len()),
        false => 0,
    };
    let mid = plan.methods[0]
        .iterations()
        .saturating_sub(1)
        .checked_div(d.run.eval_every)
        .unwrap_or(0);
    experts + iterations + (plan.methods.len() * plan.models.len() + mid) * e.repeats * per_net
}

/// Every set on every architecture: the accuracies, and one report line each.
type Evaluated = (BTreeMap<String, BTreeMap<String, Accuracy>>, Vec<String>);

fn evaluate<B: AutodiffBackend>(
    plan: &Plan<'_>,
    sets: &[(String, SyntheticSet)],
    logs: &mut Logs,
    progress: &Progress,
    device: &B::Device,
) -> Result<Evaluated> {
    let mut results = BTreeMap::new();
    let mut report = Vec::new();
    for (m, set) in sets {
        let mut per_model = BTreeMap::new();
        // A partitioned set trains as its enlarged parts, labels and flags repeated with them.
        let set = &set.decoded();
        let data = set.to_dataset();
        for (name, spec) in &plan.models {
            let cfg = plan.eval_for(set);
            let soft = plan.eval_settings.soft_targets(set);
            let accs = evaluate_set_soft::<B>(
                &data, soft, &plan.test, spec, &cfg, plan.seed, device, progress,
            )?;
            logs.eval_rows(m, name, set.provenance.iterations, &accs)?;
            let (mean, std) = mean_std(&accs);
            let line = format!(
                "{m:<8} {name:<16} {:.2} ± {:.2} % ({} nets)",
                100.0 * mean,
                100.0 * std,
                accs.len()
            );
            progress.say(&line);
            report.push(line);
            per_model.insert(
                name.clone(),
                Accuracy {
                    test_acc: accs,
                    mean,
                    std,
                },
            );
        }
        results.insert(m.clone(), per_model);
    }
    Ok((results, report))
}

/// `kind = "experts"`: trains the missing experts and reports where they are.
fn experts_only<B: AutodiffBackend>(
    plan: &Plan<'_>,
    device: B::Device,
    backend: &str,
) -> Result<Summary> {
    let (ctx, x) = (plan.ctx, &plan.experts);
    let progress = ctx.progress(x.steps(plan.train.len()) as u64);
    let mut logs = Logs {
        metrics: ctx.csv::<DistillRow>("metrics.csv")?,
        coverage: None,
        windows: None,
        dir: ctx.dir.clone(),
        started: ctx.started,
    };
    let env = ctx.env()?;
    let dataset = ctx.split.cache_name();
    let experts_plan = env.expert_plan(plan.train, &dataset, plan.seed);
    progress.say(&format!("experts: {}", experts_plan.dir.display()));
    let t0 = Instant::now();
    make::with_observer::<B, _>(
        plan,
        "mtt",
        &mut logs,
        &mut None,
        &progress,
        &device,
        |dctx| experts_plan.prepare(plan.train, dctx).map(|_| ()),
    )?;
    progress.finish();
    let info = ExpertsInfo {
        dir: experts_plan.dir.clone(),
        count: x.count,
        epochs: x.epochs,
    };
    let report = vec![format!(
        "{} experts of {} epochs in {}",
        x.count,
        x.epochs,
        info.dir.display()
    )];
    let outcome = Outcome::Experts(ExpertsOutcome {
        experts: info,
        experts_seconds: t0.elapsed().as_secs_f64(),
    });
    Ok(ctx.summary(backend, report, outcome))
}
