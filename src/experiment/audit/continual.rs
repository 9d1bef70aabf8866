//! The audit of a continual run: each memory strategy's final memory against the stream's
//! training images (the members: every task's, as the learner saw them, so permuted or rotated
//! tasks are compared in their own pixels), beside the real-data baseline and, unless a memory
//! strategy already is one, a random selection as large as the first memory. A memory's
//! attacked network trains on it as GDumb's fresh network does (`memory_epochs`, `[train]`'s
//! optimiser).

use super::{files, nonmembers};
use crate::audit::records::PrivacyAudit;
use crate::audit::run::{audit_one, audit_real, setup};
use crate::audit::{Auditor, Population, Protocol};
use crate::data::augment::Dsa;
use crate::data::stream::Task;
use crate::data::{Dataset, Split};
use crate::distill::eval::{EvalConfig, EvalSettings};
use crate::error::{Error, Result};
use crate::experiment::RunContext;
use crate::plan::continual::memory_train;
use crate::report::audit::report_lines;
use crate::train::TrainConfig;
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::time::Instant;

/// Every task's images of one kind, one after the other.
fn union(parts: impl Iterator<Item = Dataset>, shape: [usize; 3], classes: &[String]) -> Dataset {
    let mut d = Dataset::empty(shape);
    d.classes = classes.to_vec();
    for p in parts {
        d.images.extend_from_slice(&p.images);
        d.labels.extend_from_slice(&p.labels);
    }
    d
}

/// Audits the final `memories` (strategy name, images) of a continual run over `tasks`, whose
/// memories train by `memory` (with `dsa` when the learner uses it); None when the audit is off
/// or no strategy keeps a memory.
pub fn audit<B: AutodiffBackend>(
    ctx: &RunContext<'_>,
    tasks: &[Task],
    memories: &[(String, Dataset)],
    (memory, dsa): (&TrainConfig, Option<&Dsa>),
    device: &B::Device,
) -> Result<Option<(PrivacyAudit, Vec<String>)>> {
    let s = ctx.scenario();
    let (Some(settings), Some((_, first))) = (s.audit_if_on(), memories.first()) else {
        return Ok(None);
    };
    let t0 = Instant::now();
    let (shape, classes) = (ctx.split.train.shape, &ctx.split.train.classes);
    let members = union(tasks.iter().map(|t| t.train.clone()), shape, classes);
    let test = union(tasks.iter().map(|t| t.test.clone()), shape, classes);
    let from = nonmembers(ctx).1;
    let non = match ctx.heldout {
        // The held-out images as each task shows them (its classes, permutation or rotation).
        Some(h) => {
            let view = Split {
                train: h.clone(),
                ..ctx.split.clone()
            };
            let held_tasks = s.stream(&view).map_err(Error::Setting)?;
            union(held_tasks.into_iter().map(|t| t.train), shape, classes)
        }
        None => test.clone(),
    };
    let epochs = settings.epochs.unwrap_or(memory.epochs);
    let with_epochs = |n: usize| memory_train(memory, n);
    let proto = Protocol {
        spec: ctx.spec(),
        sets: EvalConfig {
            train: with_epochs(epochs),
            dsa: dsa.cloned(),
            repeats: 1,
            combined: None,
        },
        baseline: with_epochs(settings.baseline_epochs),
        feature_epochs: EvalSettings::default().coverage_epochs,
    };
    let pop = Population {
        members: &members,
        nonmembers: &non,
        test: &test,
    };
    let per_class = first.len().div_ceil(
        first
            .class_counts()
            .iter()
            .filter(|&&n| n > 0)
            .count()
            .max(1),
    );
    let mut a = Auditor::<B>::new(
        &settings,
        pop,
        proto,
        Vec::new(),
        (per_class, None),
        s.seed,
        device,
    )?;
    let mut files = files(ctx)?;
    let norm = ctx.split.pixel_normalization();
    let mut out = BTreeMap::new();
    for (name, m) in memories {
        let done = audit_one(&mut a, &mut files, (name, 0), m, norm.clone(), false)?;
        out.insert(name.clone(), done.record);
    }
    if !out.contains_key("random") {
        let done = audit_one(&mut a, &mut files, ("random", 0), first, norm, true)?;
        out.insert("random".into(), done.record);
    }
    let real = audit_real(&mut a, &mut files, (0, None))?;
    out.insert("real_data".into(), real.record);
    let lines = report_lines(&out, from);
    let record = PrivacyAudit {
        setup: setup(&settings, &a, (members.len(), non.len(), from), per_class),
        sets: out,
        clients: BTreeMap::new(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok(Some((record, lines)))
}
