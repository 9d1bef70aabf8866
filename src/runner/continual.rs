//! `kind = "continual"`: build the task stream, then for every strategy (each from the same
//! initial network) train task after task, fill the memory, test on every task after each one,
//! and write the accuracy matrices, the forgetting metrics and their plots.

use super::distill::{dm_config, dsa_of};
use super::{model_spec, progress};
use crate::cl::learner::{accuracy_row, fit, Fit};
use crate::cl::memory::{Budget, Memory};
use crate::cl::metrics::AccuracyMatrix;
use crate::data::stream::{self, Task};
use crate::data::{globalise, localise};
use crate::data::{Dataset, Split};
use crate::device::BackendJob;
use crate::distill::{Checkpoint, Ctx, Distiller, Dm, DmConfig, Flow, InitKind, Selection};
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::report::plot::{heatmap_svg, lines_svg};
use crate::report::{write_atomic, CsvLog};
use crate::rng::step_seed;
use crate::scenario::{ClStrategy, Loaded, Protocol, StreamKind};
use crate::train::{LrSchedule, TrainConfig};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

pub(super) struct ContinualJob<'a> {
    pub loaded: &'a Loaded,
    pub split: &'a Split,
    pub dir: &'a Path,
    pub quiet: bool,
}

/// The stream a scenario asks for.
pub fn build_stream(
    s: &crate::scenario::Scenario,
    split: &Split,
) -> std::result::Result<Vec<Task>, String> {
    let c = s.continual_section();
    match c.stream {
        StreamKind::ClassIncremental => match &c.class_groups {
            Some(g) => stream::class_groups(split, g),
            None => stream::class_incremental(split, c.tasks, c.shuffle_classes, s.seed),
        },
        StreamKind::Permuted => Ok(stream::permuted(split, c.tasks, s.seed)),
        StreamKind::Rotated => Ok(stream::rotated(split, c.tasks, c.max_degrees)),
    }
}

fn concat(a: &mut Dataset, b: &Dataset) {
    a.images.extend_from_slice(&b.images);
    a.labels.extend_from_slice(&b.labels);
}

/// Fills `ipc` images per class of `task` with `strategy` (labels global, priority order).
#[allow(clippy::too_many_arguments)]
fn choose<B: AutodiffBackend>(
    strategy: ClStrategy,
    task: &Task,
    ipc: usize,
    spec: &ModelSpec,
    dm: &DmConfig,
    embed_epochs: usize,
    seed: u64,
    split: &Split,
    device: &B::Device,
) -> Result<Dataset> {
    let local = localise(&task.train, &task.classes);
    let spec = spec.with_classes(task.classes.len());
    let mut noop = |_: usize, _: f64, _: &dyn Fn() -> Checkpoint| Ok(Flow::Continue);
    let mut ctx = Ctx::<B> {
        device: device.clone(),
        seed,
        dataset: split.cache_name(),
        normalization: split.pixel_normalization(),
        on_iteration: &mut noop,
        resume: None,
    };
    let set = match strategy {
        ClStrategy::Dm => Dm {
            cfg: DmConfig { spec, ..dm.clone() },
        }
        .distill(&local, ipc, &mut ctx)?,
        sel => Selection {
            kind: match sel {
                ClStrategy::Herding => InitKind::Herding,
                ClStrategy::Kcenter => InitKind::Kcenter,
                _ => InitKind::Real,
            },
            spec,
            embed_epochs,
            pool: dm.pool,
        }
        .distill(&local, ipc, &mut ctx)?,
    };
    Ok(globalise(
        &set.to_dataset(),
        &task.classes,
        &split.train.classes,
    ))
}

const HEADER: &[&str] = &[
    "strategy",
    "after_task",
    "task",
    "test_acc",
    "memory_images",
    "train_loss",
    "elapsed_s",
];

impl BackendJob for ContinualJob<'_> {
    type Output = Result<serde_json::Value>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let s = &self.loaded.scenario;
        let c = s.continual_section();
        let d = s.distill_section();
        let split = self.split;
        let tasks = build_stream(s, split).map_err(|m| {
            Error::Other(format!(
                "{}: [continual] tasks: {m}",
                self.loaded.path.display()
            ))
        })?;
        let spec = model_spec(s, split);
        let train_cfg = s.train_config();
        let memory_cfg = TrainConfig {
            epochs: c.memory_epochs,
            schedule: LrSchedule::Step {
                milestones: vec![c.memory_epochs / 2 + 1],
                gamma: 0.1,
            },
            ..train_cfg.clone()
        };
        let (_, dsa) = dsa_of(&d, &split.name)?;
        let heads: Option<Vec<Vec<usize>>> = c.task_incremental.then(|| {
            let mut h = vec![Vec::new(); split.train.num_classes()];
            for t in &tasks {
                for &k in &t.classes {
                    h[k] = t.classes.clone();
                }
            }
            h
        });
        let dm_cfg = dm_config(&d, d.iterations.unwrap_or(1000), spec.clone(), &dsa);
        let budget = c.budget();

        let mut log = CsvLog::create(&self.dir.join("metrics.csv"), HEADER)?;
        let mut mem_log = CsvLog::create(
            &self.dir.join("memory.csv"),
            &["strategy", "after_task", "task", "class", "images"],
        )?;
        let pb = progress((c.strategies.len() * tasks.len()) as u64, self.quiet);
        let started = Instant::now();

        // The accuracy of the untrained network on each task (forward transfer's b).
        let init_seed = step_seed(s.seed, 0x1417);
        let init_model = || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(init_seed);
            spec.init::<B::InnerBackend, _>(&mut rng, &device)
        };
        let baseline = accuracy_row(&mut init_model(), &tasks, c.task_incremental, &device);

        let task_names: Vec<String> = (0..tasks.len()).map(|t| format!("task {t}")).collect();
        let mut results = serde_json::Map::new();
        let mut table = Vec::new();
        let mut avg_series = Vec::new();
        let mut done: Vec<ClStrategy> = Vec::new();
        for &strat in &c.strategies {
            if done.contains(&strat) {
                continue;
            }
            done.push(strat);
            let name = strat.name();
            let t0 = Instant::now();
            let mut select_secs = 0.0;
            let mut model = init_model();
            let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(s.seed, 0x5eed));
            let mut memory = Memory::new(budget, split.train.shape, split.train.classes.clone());
            let mut seen = Dataset {
                images: Vec::new(),
                labels: Vec::new(),
                shape: split.train.shape,
                classes: split.train.classes.clone(),
            };
            let mut rows = Vec::new();
            for (t, task) in tasks.iter().enumerate() {
                let step = Fit {
                    train: &train_cfg,
                    replay_fraction: c.replay_fraction,
                    dsa: c.dsa.then_some(&dsa),
                    heads: heads.as_deref(),
                };
                let fill = |memory: &mut Memory, secs: &mut f64| -> Result<()> {
                    let ts = Instant::now();
                    let n_new = task.classes.len();
                    let shares = memory.shares_with(n_new);
                    let ipc = shares[shares.len() - n_new..]
                        .iter()
                        .copied()
                        .max()
                        .unwrap_or(0);
                    if ipc > 0 {
                        let chosen = choose::<B>(
                            strat,
                            task,
                            ipc,
                            &spec,
                            &dm_cfg,
                            d.embed_epochs,
                            step_seed(s.seed, t as u64),
                            split,
                            &device,
                        )?;
                        memory.add(t, &chosen).map_err(Error::Other)?;
                    }
                    *secs += ts.elapsed().as_secs_f64();
                    Ok(())
                };
                let loss = match (strat, c.protocol) {
                    (ClStrategy::Finetune, _) => {
                        fit::<B, _>(&mut model, &task.train, None, &step, &mut rng, &device)?
                    }
                    (ClStrategy::Joint, protocol) => {
                        concat(&mut seen, &task.train);
                        if protocol == Protocol::Gdumb {
                            model = init_model();
                        }
                        fit::<B, _>(&mut model, &seen, None, &step, &mut rng, &device)?
                    }
                    (_, Protocol::Streaming) => {
                        let replay = memory.dataset();
                        let l = fit::<B, _>(
                            &mut model,
                            &task.train,
                            Some(&replay),
                            &step,
                            &mut rng,
                            &device,
                        )?;
                        fill(&mut memory, &mut select_secs)?;
                        l
                    }
                    (_, Protocol::Gdumb) => {
                        fill(&mut memory, &mut select_secs)?;
                        model = init_model();
                        let fresh = Fit {
                            train: &memory_cfg,
                            ..step.clone()
                        };
                        fit::<B, _>(
                            &mut model,
                            &memory.dataset(),
                            None,
                            &fresh,
                            &mut rng,
                            &device,
                        )?
                    }
                };
                let row = accuracy_row(&mut model, &tasks, c.task_incremental, &device);
                for (j, a) in row.iter().enumerate() {
                    log.row(&[
                        name.to_string(),
                        t.to_string(),
                        j.to_string(),
                        format!("{a:.6}"),
                        memory.len().to_string(),
                        format!("{loss:.6}"),
                        format!("{:.3}", started.elapsed().as_secs_f64()),
                    ])?;
                }
                for (mt, mc, n) in memory.counts() {
                    mem_log.row(&[
                        name.to_string(),
                        t.to_string(),
                        mt.to_string(),
                        mc.to_string(),
                        n.to_string(),
                    ])?;
                }
                let seen_mean = row[..=t].iter().sum::<f64>() / (t + 1) as f64;
                pb.inc(1);
                if !self.quiet {
                    pb.println(format!(
                        "{name:>9} after task {t}: mean accuracy on tasks seen {seen_mean:.4}, memory {} images",
                        memory.len()
                    ));
                }
                rows.push(row);
            }
            let m =
                AccuracyMatrix::from_rows(rows, Some(baseline.clone())).map_err(Error::Other)?;
            write_atomic(
                &self.dir.join(format!("accuracy_matrix_{name}.csv")),
                m.to_csv().as_bytes(),
            )?;
            let svg = heatmap_svg(
                &format!("{} — accuracy after each task ({name})", s.name),
                "after training on",
                "tested on",
                &task_names,
                &task_names,
                &m.r,
                None,
            );
            write_atomic(
                &self.dir.join(format!("accuracy_matrix_{name}.svg")),
                svg.as_bytes(),
            )?;
            let per_task: Vec<(String, Vec<(f64, f64)>)> = (0..tasks.len())
                .map(|j| {
                    let pts = (j..m.r.len()).map(|i| (i as f64, m.r[i][j])).collect();
                    (format!("task {j}"), pts)
                })
                .collect();
            write_atomic(
                &self.dir.join(format!("task_accuracy_{name}.svg")),
                lines_svg(
                    &format!("Each task's accuracy over the stream ({name})"),
                    "after training on task",
                    "test accuracy",
                    &per_task,
                )
                .as_bytes(),
            )?;
            avg_series.push((
                name.to_string(),
                m.r.iter()
                    .enumerate()
                    .map(|(i, r)| (i as f64, r[..=i].iter().sum::<f64>() / (i + 1) as f64))
                    .collect::<Vec<_>>(),
            ));
            let mut summary = m.summary();
            summary["memory_images"] = json!(memory.len());
            summary["memory_per_slot"] = json!(memory
                .counts()
                .iter()
                .map(|(t, c, n)| json!({"task": t, "class": c, "images": n}))
                .collect::<Vec<_>>());
            summary["seconds"] = json!(t0.elapsed().as_secs_f64());
            summary["memory_fill_seconds"] = json!(select_secs);
            summary["accuracy_matrix"] = json!(m.r);
            table.push((
                name,
                memory.len(),
                m.average_accuracy(),
                m.forgetting(),
                m.backward_transfer(),
                m.average_incremental_accuracy(),
            ));
            results.insert(name.to_string(), summary);
        }
        write_atomic(
            &self.dir.join("average_accuracy.svg"),
            lines_svg(
                &format!("{}: mean accuracy on the tasks seen so far", s.name),
                "after training on task",
                "mean test accuracy (tasks seen)",
                &avg_series,
            )
            .as_bytes(),
        )?;
        pb.finish_and_clear();
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
        let mut report = vec![format!(
            "{:<10} {:>7} {:>9} {:>11} {:>9} {:>9}",
            "strategy", "memory", "ACC", "forgetting", "BWT", "AIA"
        )];
        for (n, mem, acc, f, bwt, aia) in &table {
            report.push(format!(
                "{n:<10} {mem:>7} {:>9} {:>11} {:>9} {:>9}",
                fmt(*acc),
                fmt(*f),
                fmt(*bwt),
                fmt(*aia)
            ));
        }
        report.push(
            "ACC: mean of the last row; forgetting: Chaudhry max-minus-last; BWT: GEM paper (T-1); AIA: average incremental accuracy"
                .to_string(),
        );
        let budget_json = match budget {
            Budget::PerClass(n) => json!({"per_class": n}),
            Budget::Total(n) => json!({"total": n}),
        };
        Ok(json!({
            "name": s.name,
            "kind": "continual",
            "backend": backend,
            "dataset": split.name,
            "seed": s.seed,
            "stream": c.stream,
            "tasks": tasks.iter().map(|t| json!({"id": t.id, "classes": t.classes, "train": t.train.len(), "test": t.test.len()})).collect::<Vec<_>>(),
            "task_incremental": c.task_incremental,
            "protocol": c.protocol,
            "memory_budget": budget_json,
            "memory_shares": "each slot (a class of a task) keeps floor(B / slots) images, the first B mod slots slots one more; shrinking drops the images added last",
            "replay_fraction": c.replay_fraction,
            "train": train_cfg,
            "random_init_accuracy": baseline,
            "strategies": results,
            "wall_seconds": started.elapsed().as_secs_f64(),
            "report": report,
        }))
    }
}
