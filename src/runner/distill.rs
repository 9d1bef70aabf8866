//! `kind = "distill"`: train (missing) MTT experts if the method needs them, make the synthetic
//! set (checkpointing as it goes), make the selection baselines, evaluate every set with the same
//! protocol on every architecture asked for. `kind = "experts"` stops after the experts.

use super::{model_spec, progress};
use crate::data::augment::{Dsa, Plain, STRATEGY_DEFAULT, STRATEGY_DIGITS};
use crate::data::Split;
use crate::device::{BackendJob, DeviceKind};
use crate::distill::coverage::Coverage;
use crate::distill::eval::{architecture, evaluate_set, EvalConfig};
use crate::distill::mtt::experts::{train_experts, Experts, Manifest};
use crate::distill::mtt::{Mtt, MttConfig};
use crate::distill::selmatch::distilled_mask;
use crate::distill::{
    Checkpoint, Ctx, Distiller, Dm, DmConfig, Flow, InitKind, Selection, SyntheticSet,
};
use crate::error::{Error, Result};
use crate::model::{ConvNetSpec, ModelSpec};
use crate::report::{mean_std, CsvLog};
use crate::scenario::{EvalSchedule, Loaded, Method};
use crate::train::{LrSchedule, TrainConfig};
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// The DSA strategy the reference uses for a dataset (no flip for digits).
pub fn default_strategy(dataset: &str) -> &'static str {
    match dataset {
        "mnist" | "digits" | "usps" | "kmnist" | "emnist" => STRATEGY_DIGITS,
        _ => STRATEGY_DEFAULT,
    }
}

/// The DSA strategy of a `[distill]` section (the dataset's reference default when absent), by
/// name and built.
pub fn dsa_of(d: &crate::scenario::DistillSection, dataset: &str) -> Result<(String, Dsa)> {
    let name = d
        .dsa_strategy
        .clone()
        .unwrap_or_else(|| default_strategy(dataset).to_string());
    let dsa = Dsa::new(&name).map_err(Error::Other)?;
    Ok((name, dsa))
}

/// The evaluation protocol's training from an `[eval]` section (lr / 10 at epochs / 2 + 1).
pub fn eval_train_config(e: &crate::scenario::EvalSection) -> TrainConfig {
    TrainConfig {
        epochs: e.epochs,
        batch_size: e.batch_size,
        lr: e.lr,
        momentum: e.momentum,
        weight_decay: e.weight_decay,
        schedule: match e.schedule {
            EvalSchedule::Step => LrSchedule::Step {
                milestones: vec![e.epochs / 2 + 1],
                gamma: 0.1,
            },
            EvalSchedule::Cosine => LrSchedule::Cosine { min_factor: 0.0 },
        },
    }
}

/// DM's settings from a `[distill]` section, for `iterations` iterations with network `spec`.
pub fn dm_config(
    d: &crate::scenario::DistillSection,
    iterations: usize,
    spec: ModelSpec,
    dsa: &Dsa,
) -> DmConfig {
    DmConfig {
        iterations,
        lr_img: d.lr_img(),
        momentum: d.momentum,
        batch_real: d.batch_real,
        init: d.init,
        dsa: d.dsa.then(|| dsa.clone()),
        spec,
        pool: d.pool,
        around: None,
    }
}

/// The evaluation settings for `set`: its learned step size as the learning rate, if it has
/// one and `learned_lr` (as the MTT reference evaluates), and combined augmentation when it
/// holds selected real images.
fn eval_config(
    base: &EvalConfig,
    set: &SyntheticSet,
    learned_lr: bool,
    plain: &Plain,
) -> EvalConfig {
    let mut c = base.clone();
    if let (Some(lr), true) = (set.syn_lr, learned_lr) {
        c.train.lr = lr as f64;
    }
    // SelMatch's combined augmentation: plain for the selected real images, DSA for the rest.
    if let Some(f) = &set.fixed {
        c.combined = Some((plain.clone(), f.clone()));
    }
    c
}

/// The default experts folder for a scenario's data, network and expert settings.
fn experts_folder_name(
    dataset: &str,
    s: &crate::scenario::Scenario,
    x: &crate::scenario::ExpertsSection,
) -> String {
    let m = &s.model;
    format!(
        "{dataset}-{:?}-w{}-d{}-{:?}-{:?}-e{}-lr{}-b{}{}-s{}",
        m.arch,
        m.width,
        m.depth,
        m.norm,
        m.pooling,
        x.epochs,
        x.lr,
        x.batch_size,
        if x.dsa { "-dsa" } else { "" },
        x.seed_or(s.seed)
    )
    .to_lowercase()
}

/// One `eval` row per trained network.
fn eval_rows(
    log: &mut CsvLog,
    method: &str,
    model: &str,
    iteration: usize,
    accs: &[f64],
    started: &Instant,
) -> Result<()> {
    for (r, a) in accs.iter().enumerate() {
        log.row(&[
            "eval".to_string(),
            method.to_string(),
            model.to_string(),
            iteration.to_string(),
            r.to_string(),
            String::new(),
            format!("{a:.6}"),
            format!("{:.3}", started.elapsed().as_secs_f64()),
        ])?;
    }
    Ok(())
}

pub(super) struct DistillJob<'a> {
    pub loaded: &'a Loaded,
    pub split: &'a Split,
    pub dir: &'a Path,
    pub quiet: bool,
    pub resuming: bool,
    /// Where expert folders go by default (`<results root>/experts`).
    pub experts_root: std::path::PathBuf,
}

/// The columns of `coverage.csv`.
const COVERAGE_HEADER: &[&str] = &["method", "iteration", "overall", "easy", "hard", "radius"];

/// One coverage measurement as a row of `coverage.csv`.
fn coverage_row(log: &mut CsvLog, m: Method, it: usize, c: &Coverage) -> Result<()> {
    log.row(&[
        m.name().to_string(),
        it.to_string(),
        format!("{:.6}", c.overall),
        format!("{:.6}", c.easy),
        format!("{:.6}", c.hard),
        format!("{:.6}", c.radius),
    ])
}

const HEADER: &[&str] = &[
    "phase",
    "method",
    "model",
    "iteration",
    "repeat",
    "loss",
    "test_acc",
    "elapsed_s",
];

impl DistillJob<'_> {
    /// The run's CSV file `name`: appended to when resuming, created otherwise.
    fn csv(&self, name: &str, header: &[&str]) -> Result<CsvLog> {
        let path = self.dir.join(name);
        if self.resuming {
            CsvLog::append(&path, header)
        } else {
            CsvLog::create(&path, header)
        }
    }
}

impl BackendJob for DistillJob<'_> {
    type Output = Result<serde_json::Value>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let s = &self.loaded.scenario;
        let d = s.distill_section();
        let e = s.eval_section();
        let split = self.split;
        let base = model_spec(s, split);
        let conv = ConvNetSpec {
            input: split.train.shape,
            num_classes: split.train.num_classes(),
            width: s.model.width,
            depth: s.model.depth,
            norm: s.model.norm,
            pooling: s.model.pooling,
        };
        let models: Vec<(String, ModelSpec)> = e
            .models
            .iter()
            .map(|name| {
                let spec = if name == "convnet" {
                    Some(base.clone())
                } else {
                    architecture(&conv, name)
                };
                spec.map(|sp| (name.clone(), sp))
                    .ok_or_else(|| Error::Other(format!("unknown architecture {name:?}")))
            })
            .collect::<Result<_>>()?;
        let (strategy, dsa) = dsa_of(&d, &split.name)?;
        let make_dsa = |on: bool| -> Result<Option<Dsa>> { Ok(on.then(|| dsa.clone())) };
        let eval_cfg = EvalConfig {
            train: eval_train_config(&e),
            dsa: make_dsa(e.dsa)?,
            repeats: e.repeats,
            combined: None,
        };
        let plain = Plain {
            pad: e.plain_pad,
            flip: e
                .plain_flip
                .unwrap_or(default_strategy(&split.name) != STRATEGY_DIGITS),
        };
        let iterations = d.iterations();
        let experts_only = s.kind == crate::scenario::Kind::Experts;
        // The method, then each baseline once.
        let mut methods: Vec<Method> = Vec::new();
        if !experts_only {
            for m in std::iter::once(d.method).chain(d.baselines.iter().copied()) {
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
        }

        let mut log = self.csv("metrics.csv", HEADER)?;
        let n_syn = split.train.num_classes() * d.ipc;
        let per_net = e.epochs * n_syn.div_ceil(e.batch_size);
        let optimises =
            matches!(d.method, Method::Dm | Method::Mtt | Method::Selmatch) && !experts_only;
        let distill_steps = if optimises { iterations } else { 0 };
        let x = s.experts_section();
        // Experts: for an experts run, and for each trajectory-matching set (method or baseline)
        // still to be made; a resumed run whose sets are all saved goes straight to evaluation.
        let needs_experts = experts_only
            || methods.iter().any(|m| {
                matches!(m, Method::Mtt | Method::Selmatch)
                    && !(self.resuming
                        && self.dir.join(format!("{}.safetensors", m.name())).exists())
            });
        let expert_steps = if needs_experts {
            x.count * x.epochs * split.train.len().div_ceil(x.batch_size)
        } else {
            0
        };
        let mid_evals = iterations
            .saturating_sub(1)
            .checked_div(d.eval_every)
            .unwrap_or(0);
        let total = expert_steps
            + distill_steps
            + (methods.len() * models.len() + mid_evals) * e.repeats * per_net;
        let pb = progress(total as u64, self.quiet);
        let started = Instant::now();
        let mut distill_secs = 0.0;
        // Intermediate evaluations (eval_every) are not distillation time.
        let mut mid_eval_secs = 0.0;
        let mut iters_timed = 0usize;
        // SelMatch's difficulty scores and window search (not in distill_seconds).
        let mut selection_secs = 0.0;

        let experts = if needs_experts {
            let dir = match &x.dir {
                Some(p) => self.loaded.resolve(p),
                None => self
                    .experts_root
                    .join(experts_folder_name(&split.cache_name(), s, &x)),
            };
            let manifest = Manifest {
                spec: base.clone(),
                dataset: split.cache_name(),
                train_images: split.train.len(),
                train: TrainConfig {
                    epochs: x.epochs,
                    batch_size: x.batch_size,
                    lr: x.lr,
                    momentum: 0.0,
                    weight_decay: 0.0,
                    schedule: LrSchedule::Constant,
                },
                dsa: x.dsa.then(|| strategy.clone()),
                seed: x.seed_or(s.seed),
            };
            if !self.quiet {
                pb.println(format!("experts: {}", dir.display()));
            }
            train_experts::<B>(
                &split.train,
                &manifest,
                make_dsa(x.dsa)?.as_ref(),
                x.count,
                &dir,
                &device,
                || pb.inc(1),
                |i| {
                    log.row(&[
                        "experts".to_string(),
                        "mtt".into(),
                        String::new(),
                        i.to_string(),
                        String::new(),
                        String::new(),
                        String::new(),
                        format!("{:.3}", started.elapsed().as_secs_f64()),
                    ])?;
                    pb.set_message(format!("expert {} of {} trained", i + 1, x.count));
                    Ok(())
                },
            )?;
            Some(Experts::Files {
                dir,
                spec: base.clone(),
                epochs: x.epochs,
                count: x.count,
            })
        } else {
            None
        };
        let experts_secs = started.elapsed().as_secs_f64();

        // Coverage (SelMatch's diagnostic): one feature network per run, built when first
        // needed; every measurement is a row of coverage.csv.
        let mut probe = None;
        let mut cov_log = if e.coverage && !methods.is_empty() {
            Some(self.csv("coverage.csv", COVERAGE_HEADER)?)
        } else {
            None
        };
        let mut sets: Vec<(Method, SyntheticSet)> = Vec::new();
        // Per optimising method: iterations reached and distillation seconds (this run).
        let mut distilled = serde_json::Map::new();
        // Per trajectory-matching method on a GPU: its first step checked against the CPU.
        let mut checks = serde_json::Map::new();
        for &m in &methods {
            let path = self.dir.join(format!("{}.safetensors", m.name()));
            if self.resuming && path.exists() {
                sets.push((m, SyntheticSet::load(&path)?));
                continue;
            }
            let t0 = Instant::now();
            let mid_before = mid_eval_secs;
            let ck_path = self
                .dir
                .join(format!("{}.checkpoint.safetensors", m.name()));
            let set = match m {
                Method::Dm | Method::Mtt | Method::Selmatch => {
                    let resume = if self.resuming && ck_path.exists() {
                        let ck = Checkpoint::load(&ck_path)?;
                        pb.inc(ck.set.provenance.iterations as u64);
                        if !self.quiet {
                            pb.println(format!(
                                "resuming from iteration {}",
                                ck.set.provenance.iterations
                            ));
                        }
                        Some(ck)
                    } else {
                        None
                    };
                    let first = resume.as_ref().map_or(0, |c| c.set.provenance.iterations);
                    // SelMatch: the window (scores cached, beta searched; a checkpoint already
                    // holds it, so a resumed run skips this) and the partial-update mask.
                    let (start, trainable) = if m != Method::Selmatch {
                        (None, None)
                    } else {
                        let window = if resume.is_some() {
                            None
                        } else {
                            let te = Instant::now();
                            let w = self.selmatch_window::<B>(
                                &eval_cfg,
                                &plain,
                                &models[0].1,
                                &mut log,
                                &started,
                                &device,
                            )?;
                            selection_secs = te.elapsed().as_secs_f64();
                            mid_eval_secs += selection_secs;
                            Some(w)
                        };
                        let k = split.train.num_classes();
                        (window, Some(distilled_mask(k, d.ipc, d.alpha)))
                    };
                    let (first_model, first_spec) = (&models[0].0, &models[0].1);
                    // The time budget counts distillation alone, from here.
                    let budget_start = Instant::now();
                    let evals_before = mid_eval_secs;
                    let mut on_iter = |it: usize,
                                       loss: f64,
                                       snap: &dyn Fn() -> Checkpoint|
                     -> Result<Flow> {
                        pb.inc(1);
                        let elapsed = started.elapsed().as_secs_f64();
                        let spent =
                            budget_start.elapsed().as_secs_f64() - (mid_eval_secs - evals_before);
                        let stop = it < iterations && d.max_seconds.is_some_and(|t| spent >= t);
                        // Checkpoints and mid-run measurements only before the last iteration:
                        // the final set is saved, measured and evaluated anyway.
                        let last = it == iterations || stop;
                        if it.is_multiple_of(d.log_every) || last {
                            log.row(&[
                                "distill".to_string(),
                                m.name().into(),
                                String::new(),
                                it.to_string(),
                                String::new(),
                                format!("{loss:.6}"),
                                String::new(),
                                format!("{elapsed:.3}"),
                            ])?;
                            pb.set_message(format!("iteration {it} loss {loss:.4}"));
                        }
                        if it.is_multiple_of(d.checkpoint_every) && !last {
                            snap().save(&ck_path)?;
                        }
                        if d.coverage_every > 0 && it.is_multiple_of(d.coverage_every) && !last {
                            // Like the evaluations, not distillation time.
                            let te = Instant::now();
                            let c = self.measure_coverage::<B>(
                                &mut probe,
                                &base,
                                &snap().set,
                                &device,
                            )?;
                            if let Some(l) = cov_log.as_mut() {
                                coverage_row(l, m, it, &c)?;
                            }
                            mid_eval_secs += te.elapsed().as_secs_f64();
                            if !self.quiet {
                                pb.println(format!("iteration {it:>6}: {} coverage {c}", m.name()));
                            }
                        }
                        if d.eval_every > 0 && it.is_multiple_of(d.eval_every) && !last {
                            let te = Instant::now();
                            let ck = snap();
                            let accs = evaluate_set::<B>(
                                &ck.set.to_dataset(),
                                &split.test,
                                first_spec,
                                &eval_config(&eval_cfg, &ck.set, e.learned_lr, &plain),
                                s.seed,
                                &device,
                                || pb.inc(1),
                            )?;
                            eval_rows(&mut log, m.name(), first_model, it, &accs, &started)?;
                            mid_eval_secs += te.elapsed().as_secs_f64();
                            let (mu, sd) = mean_std(&accs);
                            if !self.quiet {
                                pb.println(format!(
                                    "iteration {it:>6}: loss {loss:.4}, {first_model} test acc {mu:.4} ± {sd:.4}"
                                ));
                            }
                        }
                        if stop {
                            if !self.quiet {
                                pb.println(format!(
                                    "{}: time budget of {:.0} s reached after iteration {it}",
                                    m.name(),
                                    d.max_seconds.unwrap_or_default()
                                ));
                            }
                            return Ok(Flow::Stop);
                        }
                        Ok(Flow::Continue)
                    };
                    let mut ctx = Ctx::<B> {
                        device: device.clone(),
                        seed: s.seed,
                        dataset: split.cache_name(),
                        normalization: split.pixel_normalization(),
                        on_iteration: &mut on_iter,
                        resume,
                    };
                    let set = if m == Method::Dm {
                        Dm {
                            cfg: dm_config(&d, iterations, base.clone(), &dsa),
                        }
                        .distill(&split.train, d.ipc, &mut ctx)?
                    } else {
                        // Selected (never updated) images, recorded for combined augmentation.
                        let fixed: Option<Vec<bool>> =
                            trainable.as_ref().map(|t| t.iter().map(|&u| !u).collect());
                        let mut mtt = Mtt {
                            cfg: MttConfig {
                                iterations,
                                syn_steps: d.syn_steps,
                                expert_epochs: d.expert_epochs,
                                max_start_epoch: d.max_start_epoch,
                                lr_img: d.lr_img(),
                                lr_lr: d.lr_lr,
                                lr_init: d.lr_teacher,
                                momentum: d.momentum,
                                batch_syn: d.batch_syn,
                                init: d.init,
                                dsa: make_dsa(d.dsa)?,
                                spec: base.clone(),
                                hand_written: d.hand_written_backward,
                                conv_grads: d.conv_grads,
                            },
                            experts: experts.clone().unwrap_or(Experts::Loaded(Vec::new())),
                            start,
                            trainable,
                            check_device: (d.check_device && s.device != DeviceKind::Cpu)
                                .then(|| s.device.name().to_string()),
                            checked: None,
                        };
                        let mut set = mtt.distill(&split.train, d.ipc, &mut ctx)?;
                        if let Some(c) = mtt.checked {
                            if !self.quiet {
                                pb.println(format!("{}: {c}", m.name()));
                            }
                            checks.insert(m.name().to_string(), json!(c));
                        }
                        if fixed.is_some() {
                            set.fixed = fixed;
                            set.provenance.method = m.name().into();
                        }
                        set
                    };
                    let reached = set.provenance.iterations;
                    if m == d.method {
                        iters_timed += reached.saturating_sub(first);
                    }
                    let secs = t0.elapsed().as_secs_f64() - (mid_eval_secs - mid_before);
                    distilled.insert(
                        m.name().to_string(),
                        json!({
                            "iterations": reached,
                            "iterations_this_run": reached.saturating_sub(first),
                            "seconds": secs,
                            "stopped_by_budget": reached < iterations,
                        }),
                    );
                    set
                }
                sel => {
                    let kind = match sel {
                        Method::Herding => InitKind::Herding,
                        Method::Kcenter => InitKind::Kcenter,
                        _ => InitKind::Real,
                    };
                    let mut noop =
                        |_: usize, _: f64, _: &dyn Fn() -> Checkpoint| Ok(Flow::Continue);
                    let mut ctx = Ctx::<B> {
                        device: device.clone(),
                        seed: s.seed,
                        dataset: split.cache_name(),
                        normalization: split.pixel_normalization(),
                        on_iteration: &mut noop,
                        resume: None,
                    };
                    Selection {
                        kind,
                        spec: base.clone(),
                        embed_epochs: d.embed_epochs,
                        pool: d.pool,
                    }
                    .distill(&split.train, d.ipc, &mut ctx)?
                }
            };
            if m == d.method {
                distill_secs += t0.elapsed().as_secs_f64() - mid_eval_secs;
            }
            set.save(&path)?;
            set.save_png(&self.dir.join(format!("{}.png", m.name())))?;
            if ck_path.exists() {
                std::fs::remove_file(&ck_path).map_err(|e| Error::io(&ck_path, e))?;
            }
            sets.push((m, set));
        }

        let mut coverage = serde_json::Map::new();
        if let Some(l) = cov_log.as_mut() {
            for (m, set) in &sets {
                let c = self.measure_coverage::<B>(&mut probe, &base, set, &device)?;
                coverage_row(l, *m, set.provenance.iterations, &c)?;
                if !self.quiet {
                    pb.println(format!("{:<8} coverage {c}", m.name()));
                }
                coverage.insert(m.name().to_string(), json!(c));
            }
        }
        let mut results = serde_json::Map::new();
        let mut report = Vec::new();
        let mut headline = (f64::NAN, f64::NAN);
        // The learned step size each trajectory-matching set was evaluated with.
        let mut syn_lrs = serde_json::Map::new();
        for (m, set) in &sets {
            let mut per_model = serde_json::Map::new();
            let data = set.to_dataset();
            for (name, spec) in &models {
                let accs = evaluate_set::<B>(
                    &data,
                    &split.test,
                    spec,
                    &eval_config(&eval_cfg, set, e.learned_lr, &plain),
                    s.seed,
                    &device,
                    || pb.inc(1),
                )?;
                eval_rows(
                    &mut log,
                    m.name(),
                    name,
                    set.provenance.iterations,
                    &accs,
                    &started,
                )?;
                let (mu, sd) = mean_std(&accs);
                if *m == d.method && name == &models[0].0 {
                    headline = (mu, sd);
                }
                let line = format!(
                    "{:<8} {:<16} {:.2} ± {:.2} % ({} nets)",
                    m.name(),
                    name,
                    100.0 * mu,
                    100.0 * sd,
                    accs.len()
                );
                if !self.quiet {
                    pb.println(line.clone());
                }
                report.push(line);
                per_model.insert(
                    name.clone(),
                    json!({ "test_acc": accs, "mean": mu, "std": sd }),
                );
            }
            if let Some(lr) = set.syn_lr {
                syn_lrs.insert(m.name().to_string(), json!(lr));
            }
            results.insert(m.name().to_string(), serde_json::Value::Object(per_model));
        }
        pb.finish_and_clear();
        Ok(json!({
            "name": s.name,
            "kind": "distill",
            "seed": s.seed,
            "device": backend,
            "dataset": {
                "name": split.name,
                "train": split.train.len(),
                "test": split.test.len(),
                "shape": split.train.shape,
                "classes": split.train.num_classes(),
                "normalization": split.norm,
                "zca_eps": split.zca,
            },
            "model": { "spec": base, "params": base.num_params() },
            "distill": d,
            "dsa_strategy": strategy,
            "eval": e,
            "results": results,
            "syn_lr": syn_lrs,
            "coverage": coverage,
            "report": report,
            "test_acc_mean": headline.0,
            "test_acc_std": headline.1,
            "experts": match &experts {
                Some(Experts::Files { dir, count, epochs, .. }) => json!({ "dir": dir, "count": count, "epochs": epochs }),
                _ => serde_json::Value::Null,
            },
            "experts_seconds": experts_secs,
            "distill_seconds": distill_secs,
            "distilled": distilled,
            "device_check": checks,
            "selection_seconds": selection_secs,
            "eval_during_distill_seconds": mid_eval_secs,
            "seconds_per_iteration": if iters_timed > 0 { distill_secs / iters_timed as f64 } else { 0.0 },
            "wall_seconds": started.elapsed().as_secs_f64(),
        }))
    }
}
