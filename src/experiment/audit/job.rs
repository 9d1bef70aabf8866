//! `kind = "audit"` (and `distillery audit SET --data D`): a synthetic set made elsewhere
//! audited against the data it was made from. Every training image counts as a member (which
//! of them the distiller saw is not known) and the test set's images are the non-members.
//! Checkpointed after each audit, so `--resume` continues with the next.

use super::files;
use crate::audit::records::{PrivacyAudit, SetAudit};
use crate::audit::run::{audit_one, audit_real, setup};
use crate::audit::{Auditor, Population, Protocol};
use crate::device::BackendJob;
use crate::distill::SyntheticSet;
use crate::error::{Error, Result};
use crate::experiment::RunContext;
use crate::report::audit::report_lines;
use crate::report::records::{AuditOutcome, Outcome, Summary};
use crate::scenario::Kind;
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::time::Instant;

/// An audit run's checkpoint, written after each of its audits (the set, the random selection,
/// the real data): those done so far. The auditor itself is rebuilt on resume (seeded).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct State {
    done: BTreeMap<String, SetAudit>,
}

/// An audit run.
pub struct AuditJob<'a> {
    /// The run.
    pub ctx: RunContext<'a>,
}

/// The set at `path`, checked against the run's data.
fn load_set(ctx: &RunContext<'_>, path: &std::path::Path) -> Result<SyntheticSet> {
    let set = SyntheticSet::load(path)?;
    let train = &ctx.split.train;
    if set.shape != train.shape || set.num_classes() != train.num_classes() {
        return Err(Error::data(
            path,
            format!(
                "the set holds {} classes of {:?} images; the data has {} classes of {:?}",
                set.num_classes(),
                set.shape,
                train.num_classes(),
                train.shape
            ),
        ));
    }
    if set.is_empty() {
        return Err(Error::data(path, "the set holds no image"));
    }
    // Distances are only meaningful when the set lives in the space the data is loaded into.
    if let (Some(n), Some(m)) = (
        &set.provenance.normalization,
        ctx.split.pixel_normalization(),
    ) {
        if *n != m {
            return Err(Error::data(
                path,
                format!(
                    "the set was made in a space normalised by mean {:?}, std {:?}; the data loads with mean {:?}, std {:?} (another dataset?)",
                    n.mean, n.std, m.mean, m.std
                ),
            ));
        }
    }
    Ok(set)
}

impl BackendJob for AuditJob<'_> {
    type Output = Result<Summary>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let ctx = &self.ctx;
        let s = ctx.scenario();
        let settings = s.audit_section();
        let file = settings
            .set
            .as_ref()
            .map(|p| ctx.loaded.resolve(p))
            .ok_or_else(|| Error::Setting("[audit] set: no set file given".into()))?;
        let set = load_set(ctx, &file)?;
        let t0 = Instant::now();
        let e = s.eval_section();
        let epochs = settings.epochs.unwrap_or(e.epochs);
        let mut sets = e.config(&ctx.dsa()?.1);
        sets.train = e.train_config(epochs);
        if let (Some(lr), true) = (set.syn_lr, e.learned_lr) {
            sets.train.lr = lr as f64;
        }
        let proto = Protocol {
            spec: ctx.spec(),
            sets,
            baseline: e.train_config(settings.baseline_epochs),
            feature_epochs: e.coverage_epochs,
        };
        let (train, test) = (&ctx.split.train, &ctx.split.test);
        let pop = Population {
            members: train,
            nonmembers: test,
            test,
        };
        let per_class = set.len().div_ceil(set.num_classes().max(1));
        let mut a = Auditor::<B>::new(
            &settings,
            pop,
            proto,
            Vec::new(),
            (per_class, None),
            s.seed,
            &device,
        )?;
        let mut state: State = ctx.resume_state(Kind::Audit)?.unwrap_or_default();
        if !state.done.is_empty() {
            let names: Vec<&str> = state.done.keys().map(String::as_str).collect();
            ctx.say(&format!("resuming the audit after {}", names.join(", ")));
        }
        let mut files = files(ctx)?;
        let name = set.provenance.method.clone();
        let norm = ctx.split.pixel_normalization();
        let data = set.to_dataset();
        let mut steps = vec![(name.clone(), false)];
        if name != "random" {
            steps.push(("random".into(), true));
        }
        for (step, random) in steps {
            if let std::collections::btree_map::Entry::Vacant(v) = state.done.entry(step) {
                let step = v.key().clone();
                let d = audit_one(&mut a, &mut files, (&step, 0), &data, norm.clone(), random)?;
                v.insert(d.record);
                ctx.checkpoint(Kind::Audit, &state)?;
            }
        }
        if let std::collections::btree_map::Entry::Vacant(v) = state.done.entry("real_data".into())
        {
            let real = audit_real(&mut a, &mut files, (0, None))?;
            v.insert(real.record);
            ctx.checkpoint(Kind::Audit, &state)?;
        }
        let out = state.done;
        let report = report_lines(&out, "test");
        let privacy = PrivacyAudit {
            setup: setup(&settings, &a, (train.len(), test.len(), "test"), per_class),
            sets: out,
            clients: BTreeMap::new(),
            seconds: t0.elapsed().as_secs_f64(),
        };
        let outcome = Outcome::Audit(AuditOutcome {
            set: file,
            provenance: set.provenance.clone(),
        });
        let mut summary = ctx.summary(backend, report, outcome);
        summary.privacy = Some(privacy);
        Ok(summary)
    }
}
