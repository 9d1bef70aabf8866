//! The audit of a federated run, from the server's side: each client's last accepted set of
//! every distilling strategy against that client's own partition (its members) and the
//! held-out data (the non-members); per client, the real-data baseline (a network trained on
//! the partition) and a random selection of the partition as large as the client's set.
//! [`crate::fed::strategy::recording`] keeps the server's decoded sets as they are accepted.

use super::{files, nonmembers};
use crate::audit::records::{ClientTotals, PrivacyAudit};
use crate::audit::run::{audit_real, setup, Files};
use crate::audit::{AuditSettings, Audited, Auditor, Population, Protocol};
use crate::data::Dataset;
use crate::distill::eval::EvalConfig;
use crate::error::Result;
use crate::experiment::RunContext;
use crate::fed::strategy::recording::Sent;
use crate::fed::strategy::StrategyKind;
use crate::report::audit::{client_lines, totals};
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::time::Instant;

/// What a federated run's audit has done so far, as its checkpoint keeps it: every audited
/// client set by strategy, and each client's first set (the size its baselines match).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditKept {
    done: BTreeMap<String, Vec<ClientSet>>,
    first: BTreeMap<usize, Dataset>,
}

/// One audited client set: (client, round, its audit).
type ClientSet = (usize, Option<usize>, Audited);

/// A federated run's audit as its strategies finish.
pub struct Federated<'a, B: AutodiffBackend> {
    ctx: &'a RunContext<'a>,
    parts: &'a [Vec<usize>],
    settings: Option<AuditSettings>,
    auditor: Option<(Auditor<'a, B>, Files)>,
    done: BTreeMap<String, Vec<ClientSet>>,
    first: BTreeMap<usize, Dataset>,
    started: Instant,
}

impl<'a, B: AutodiffBackend> Federated<'a, B> {
    /// The audit of a run whose clients hold the training images at `parts`.
    pub fn new(ctx: &'a RunContext<'a>, parts: &'a [Vec<usize>]) -> Self {
        Federated {
            ctx,
            parts,
            settings: ctx.scenario().audit_if_on(),
            auditor: None,
            done: BTreeMap::new(),
            first: BTreeMap::new(),
            started: Instant::now(),
        }
    }

    /// Continues from what a checkpoint kept of the audit.
    pub fn restore(&mut self, kept: AuditKept) {
        (self.done, self.first) = (kept.done, kept.first);
    }

    /// What a checkpoint keeps of the audit so far.
    pub fn kept(&self) -> AuditKept {
        AuditKept {
            done: self.done.clone(),
            first: self.first.clone(),
        }
    }

    /// True when strategy `kind`'s accepted sets are audited (the audit is on and it sends sets).
    pub fn wants(&self, kind: StrategyKind) -> bool {
        self.settings.is_some() && kind.distils()
    }

    /// The auditor, made at the first set.
    fn auditor(&mut self, device: &B::Device) -> Result<&mut (Auditor<'a, B>, Files)> {
        if self.auditor.is_none() {
            let ctx = self.ctx;
            let s = ctx.scenario();
            let settings = self.settings.clone().unwrap_or_default();
            let e = s.eval_section();
            let epochs = settings.epochs.unwrap_or(e.epochs);
            let dsa = ctx.dsa()?.1;
            let proto = Protocol {
                spec: ctx.spec(),
                sets: EvalConfig {
                    train: e.train_config(epochs),
                    dsa: e.dsa.then_some(dsa),
                    repeats: 1,
                    combined: None,
                },
                baseline: e.train_config(settings.baseline_epochs),
                feature_epochs: e.coverage_epochs,
            };
            let pop = Population {
                members: &ctx.split.train,
                nonmembers: nonmembers(ctx).0,
                test: &ctx.split.test,
            };
            let ipc = s.distill_section().run.ipc;
            let a = Auditor::new(
                &settings,
                pop,
                proto,
                self.parts.to_vec(),
                (ipc, None),
                s.seed,
                device,
            )?;
            let files = files(ctx)?;
            self.auditor = Some((a, files));
        }
        Ok(self.auditor.as_mut().expect("made above"))
    }

    /// Audits the sets strategy `label` accepted (kept by a recording strategy).
    pub fn strategy(&mut self, label: &str, sent: &Sent, device: &B::Device) -> Result<()> {
        if self.settings.is_none() {
            return Ok(());
        }
        let sets: Vec<(usize, (usize, Dataset))> = match sent.lock() {
            Ok(m) => m.iter().map(|(k, v)| (*k, v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        let norm = self.ctx.split.pixel_normalization();
        for (client, (round, set)) in sets {
            self.first.entry(client).or_insert_with(|| set.clone());
            let (a, files) = self.auditor(device)?;
            let cfg = a.protocol().sets.clone();
            let pic = files.picture(&format!("{label}-client{client}"));
            let done = a.set(client, &set, &cfg, Some((&pic, norm.clone())))?;
            files.row(label, Some(client), Some(round), &done.record)?;
            self.done
                .entry(label.to_string())
                .or_default()
                .push((client, Some(round), done));
        }
        Ok(())
    }

    /// The baselines of every client that sent a set, the totals, and the report lines; None
    /// when nothing was audited.
    pub fn finish(mut self, device: &B::Device) -> Result<Option<(PrivacyAudit, Vec<String>)>> {
        if self.first.is_empty() {
            return Ok(None);
        }
        let norm = self.ctx.split.pixel_normalization();
        let first = std::mem::take(&mut self.first);
        for (client, like) in &first {
            let (a, files) = self.auditor(device)?;
            let real = audit_real(a, files, (*client, Some(*client)))?;
            let pic = files.picture(&format!("random-client{client}"));
            let random = a.random(*client, like, Some((&pic, norm.clone())))?;
            files.row("random", Some(*client), None, &random.record)?;
            for (name, d) in [("real_data", real), ("random", random)] {
                self.done
                    .entry(name.into())
                    .or_default()
                    .push((*client, None, d));
            }
        }
        let settings = self.settings.clone().unwrap_or_default();
        let ctx = self.ctx;
        let (non, from) = nonmembers(ctx);
        let (a, _) = self.auditor(device)?;
        let setup = setup(
            &settings,
            a,
            (ctx.split.train.len(), non.len(), from),
            ctx.scenario().distill_section().run.ipc,
        );
        let clients: BTreeMap<String, ClientTotals> = self
            .done
            .iter()
            .map(|(k, v)| (k.clone(), totals(v)))
            .collect();
        let lines = client_lines(&clients, from);
        let record = PrivacyAudit {
            setup,
            sets: BTreeMap::new(),
            clients,
            seconds: self.started.elapsed().as_secs_f64(),
        };
        Ok(Some((record, lines)))
    }
}
