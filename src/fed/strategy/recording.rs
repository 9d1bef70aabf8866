//! A strategy whose accepted sets are also kept, as the server decoded them (for the privacy
//! audit of what clients sent, and in checkpoints of a strategy in progress).

use super::{Accepted, ClientApp, Strategy, StrategyKind};
use crate::data::Dataset;
use crate::error::Result;
use crate::fed::message::{Rejection, Task, Update};
use crate::model::Model;
use burn::tensor::backend::AutodiffBackend;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Each client's last accepted set: client -> (round, set).
pub type Sent = Arc<Mutex<BTreeMap<usize, (usize, Dataset)>>>;

/// The sets in `sent` now (what a checkpoint keeps of a strategy in progress).
pub fn snapshot(sent: &Sent) -> BTreeMap<usize, (usize, Dataset)> {
    sent.lock().map(|m| m.clone()).unwrap_or_default()
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
