//! The audit of a federated run, from the server's side: each client's last accepted set of
//! every distilling strategy against that client's own partition (its members) and the
//! held-out data (the non-members); per client, the real-data baseline (a network trained on
//! the partition) and a random selection of the partition as large as the client's set.
//! [`recording`] wraps a strategy so the server's decoded sets are kept as they are accepted.

use super::{audit_real, nonmembers, setup, Files};
use crate::audit::records::{ClientTotals, PrivacyAudit, SetAudit};
use crate::audit::{AuditSettings, Audited, Auditor, Population, Protocol};
use crate::data::Dataset;
use crate::distill::eval::EvalConfig;
use crate::error::Result;
use crate::experiment::RunContext;
use crate::fed::message::{Rejection, Task, Update};
use crate::fed::strategy::{Accepted, ClientApp, Strategy, StrategyKind};
use crate::model::Model;
use crate::report::mean_std;
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Each client's last accepted set: client -> (round, set).
pub type Sent = Arc<Mutex<BTreeMap<usize, (usize, Dataset)>>>;

/// The sets in `sent` now (what a checkpoint keeps of a strategy in progress).
pub fn snapshot(sent: &Sent) -> BTreeMap<usize, (usize, Dataset)> {
    sent.lock().map(|m| m.clone()).unwrap_or_default()
}

/// What a federated run's audit has done so far, as its checkpoint keeps it: every audited
/// client set by strategy, and each client's first set (the size its baselines match).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditKept {
    done: BTreeMap<String, Vec<ClientSet>>,
    first: BTreeMap<usize, Dataset>,
}

/// A strategy whose accepted sets are also kept (everything else is the strategy's own).
pub struct Recording<B: AutodiffBackend> {
    inner: Box<dyn Strategy<B>>,
    sent: Sent,
}

/// `s`, keeping the sets it accepts (beginning with `kept`, those a checkpoint kept), and where
/// they are kept.
pub fn recording<B: AutodiffBackend>(
    s: Box<dyn Strategy<B>>,
    kept: BTreeMap<usize, (usize, Dataset)>,
) -> (Box<dyn Strategy<B>>, Sent) {
    let sent = Arc::new(Mutex::new(kept));
    let r = Recording {
        inner: s,
        sent: sent.clone(),
    };
    (Box::new(r), sent)
}

impl<B: AutodiffBackend> Strategy<B> for Recording<B> {
    fn kind(&self) -> StrategyKind {
        self.inner.kind()
    }
    fn rounds(&self) -> usize {
        self.inner.rounds()
    }
    fn begin_task(&mut self, task: usize) {
        self.inner.begin_task(task)
    }
    fn configure_round(&mut self, round: usize) -> Task {
        self.inner.configure_round(round)
    }
    fn accept(&self, update: Update) -> std::result::Result<Accepted, Rejection> {
        let (client, round) = (update.client, update.round);
        let verdict = self.inner.accept(update);
        if let Ok(Accepted::Set(d)) = &verdict {
            if let Ok(mut m) = self.sent.lock() {
                m.insert(client, (round, d.data.clone()));
            }
        }
        verdict
    }
    fn aggregate(
        &mut self,
        round: usize,
        updates: Vec<Accepted>,
        device: &B::Device,
    ) -> Result<()> {
        self.inner.aggregate(round, updates, device)
    }
    fn global(&mut self) -> &mut Model<B::InnerBackend> {
        self.inner.global()
    }
    fn memory_images(&self) -> usize {
        self.inner.memory_images()
    }
    fn client(&self) -> Arc<dyn ClientApp<B>> {
        self.inner.client()
    }
    fn evaluate(&mut self, test: &Dataset, device: &B::Device) -> f64 {
        self.inner.evaluate(test, device)
    }
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
            let files = Files::new(ctx)?;
            self.auditor = Some((a, files));
        }
        Ok(self.auditor.as_mut().expect("made above"))
    }

    /// Audits the sets strategy `label` accepted (kept by [`recording`]).
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
        let lines = report_lines(&clients, from);
        let record = PrivacyAudit {
            setup,
            sets: BTreeMap::new(),
            clients,
            seconds: self.started.elapsed().as_secs_f64(),
        };
        Ok(Some((record, lines)))
    }
}

/// The clients' figures of one set kind together.
fn totals(v: &[ClientSet]) -> ClientTotals {
    let recs: Vec<&SetAudit> = v.iter().map(|(_, _, d)| &d.record).collect();
    let pixel: Vec<f64> = v.iter().flat_map(|(_, _, d)| d.pixel.clone()).collect();
    let feature: Vec<f64> = v.iter().flat_map(|(_, _, d)| d.feature.clone()).collect();
    let images: usize = recs.iter().map(|r| r.images).sum();
    let copies = |f: &dyn Fn(&SetAudit) -> Option<usize>| -> Option<f64> {
        let n: Option<usize> = recs.iter().map(|r| f(r)).sum();
        n.map(|n| n as f64 / images.max(1) as f64)
    };
    let median = |d: &[f64]| (!d.is_empty()).then(|| crate::audit::nearest::quantile(d, 0.5));
    let mean =
        |f: &dyn Fn(&SetAudit) -> f64| mean_std(&recs.iter().map(|r| f(r)).collect::<Vec<_>>()).0;
    let max = |f: &dyn Fn(&SetAudit) -> f64| recs.iter().map(|r| f(r)).fold(f64::MIN, f64::max);
    let calibrated = recs.iter().all(|r| r.attack.calibrated.is_some());
    let cal = |r: &SetAudit| r.attack.calibrated.map_or(f64::NAN, |c| c.auc);
    ClientTotals {
        clients: recs.len(),
        images,
        pixel_near_copy_share: copies(&|r| r.nearest.as_ref().map(|n| n.pixel.near_copies)),
        feature_near_copy_share: copies(&|r| r.nearest.as_ref().map(|n| n.feature.near_copies)),
        pixel_median: median(&pixel),
        feature_median: median(&feature),
        test_acc_mean: mean(&|r| r.test_acc),
        loss_auc_mean: mean(&|r| r.attack.loss.auc),
        loss_auc_max: max(&|r| r.attack.loss.auc),
        loss_tpr_at_1pct_fpr_mean: mean(&|r| r.attack.loss.tpr_at_1pct_fpr),
        loss_advantage_mean: mean(&|r| r.attack.loss.advantage),
        calibrated_auc_mean: calibrated.then(|| mean(&cal)),
        calibrated_auc_max: calibrated.then(|| max(&cal)),
    }
}

/// The report's lines of the clients' totals.
fn report_lines(t: &BTreeMap<String, ClientTotals>, from: &str) -> Vec<String> {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    let num = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    let mut lines = vec![format!(
        "{:<24} {:>7} {:>9} {:>10} {:>13} {:>12} {:>13}",
        "privacy (per client)",
        "clients",
        "copies px",
        "median px",
        "loss AUC mean",
        "loss AUC max",
        "cal. AUC mean"
    )];
    for (k, c) in t {
        lines.push(format!(
            "{k:<24} {:>7} {:>9} {:>10} {:>13.3} {:>12.3} {:>13}",
            c.clients,
            pct(c.pixel_near_copy_share),
            num(c.pixel_median),
            c.loss_auc_mean,
            c.loss_auc_max,
            num(c.calibrated_auc_mean),
        ));
    }
    lines.push(format!(
        "privacy: each client's set against its own partition (members) and {} (non-members); per client in privacy.csv",
        match from {
            "held_out" => "held-out training images",
            _ => "the test set",
        }
    ));
    lines
}
