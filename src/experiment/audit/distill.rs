//! The audit of a distill run: every method's set against the members (the training set the
//! run saw), beside the real-data baseline and, unless a method already is one, a random
//! selection of the same size. The attacked network of a set is trained as the run's first
//! evaluation network is (same architecture, protocol and seed; `[audit] epochs` may shorten it).

use super::{files, nonmembers};
use crate::audit::records::PrivacyAudit;
use crate::audit::run::{audit_one, audit_real, setup};
use crate::audit::{Auditor, Population, Protocol};
use crate::distill::SyntheticSet;
use crate::error::Result;
use crate::experiment::distill::observer::Probe;
use crate::experiment::distill::plan::Plan;
use crate::report::audit::report_lines;
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::time::Instant;

/// Audits a distill run's `sets`; None when the audit is off. Reuses the coverage probe's
/// network as the feature space when there is one (the same network the audit would train).
pub fn audit<B: AutodiffBackend>(
    plan: &Plan<'_>,
    sets: &[(String, SyntheticSet)],
    probe: &Probe<B>,
    device: &B::Device,
) -> Result<Option<(PrivacyAudit, Vec<String>)>> {
    let ctx = plan.ctx;
    let Some(settings) = ctx.scenario().audit_if_on() else {
        return Ok(None);
    };
    let Some((_, first)) = sets.first() else {
        return Ok(None);
    };
    let t0 = Instant::now();
    let e = &plan.eval_settings;
    let epochs = settings.epochs.unwrap_or(e.epochs);
    let mut protocol = plan.eval.clone();
    protocol.train = e.train_config(epochs);
    let proto = Protocol {
        spec: plan.models[0].1.clone(),
        sets: protocol,
        baseline: e.train_config(settings.baseline_epochs),
        feature_epochs: e.coverage_epochs,
    };
    let (non, from) = nonmembers(ctx);
    let pop = Population {
        members: plan.train,
        nonmembers: non,
        test: &plan.test,
    };
    let ipc = first.provenance.ipc;
    let features = probe.as_ref().map(|p| p.net().clone());
    let mut a = Auditor::<B>::new(
        &settings,
        pop,
        proto,
        Vec::new(),
        (ipc, features),
        plan.seed,
        device,
    )?;
    let mut files = files(ctx)?;
    let mut out = BTreeMap::new();
    for (m, set) in sets {
        // The set's own evaluation (learned step size, combined augmentation), shortened.
        let mut cfg = plan.eval_for(set);
        let lr = cfg.train.lr;
        cfg.train = e.train_config(epochs);
        cfg.train.lr = lr;
        let pic = files.picture(m);
        let norm = set.provenance.normalization.clone();
        let done = a.set(0, &set.to_dataset(), &cfg, Some((&pic, norm)))?;
        files.row(m, None, None, &done.record)?;
        out.insert(m.clone(), done.record);
    }
    if !out.contains_key("random") {
        let norm = first.provenance.normalization.clone();
        let done = audit_one(
            &mut a,
            &mut files,
            ("random", 0),
            &first.to_dataset(),
            norm,
            true,
        )?;
        out.insert("random".into(), done.record);
    }
    let real = audit_real(&mut a, &mut files, (0, None))?;
    out.insert("real_data".into(), real.record);
    let lines = report_lines(&out, from);
    let record = PrivacyAudit {
        setup: setup(&settings, &a, (plan.train.len(), non.len(), from), ipc),
        sets: out,
        clients: BTreeMap::new(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok(Some((record, lines)))
}
