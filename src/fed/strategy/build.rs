//! Building a strategy by kind: the server half with the initial global model, or the client
//! half a `distillery client` process runs.

use super::{client, fedavg, feddm, oneshot, ClientApp, Settings, Strategy, StrategyKind};
use burn::tensor::backend::AutodiffBackend;
use std::sync::Arc;

/// Builds the strategy `kind` with the initial global model.
pub fn build<B: AutodiffBackend>(
    kind: StrategyKind,
    s: Arc<Settings>,
    device: &B::Device,
) -> Box<dyn Strategy<B>> {
    let global = s.initial::<B>(device);
    match kind {
        StrategyKind::Fedavg => Box::new(fedavg::FedAvg { s, global }),
        StrategyKind::DistilledOneshot => Box::new(oneshot::OneShot { s, global }),
        StrategyKind::DistilledIterative => Box::new(feddm::FedDm { s, global }),
    }
}

/// The client half of strategy `kind` (what a `distillery client` process runs).
pub fn client_app<B: AutodiffBackend>(
    kind: StrategyKind,
    s: Arc<Settings>,
) -> Arc<dyn ClientApp<B>> {
    match kind {
        StrategyKind::Fedavg => Arc::new(fedavg::LocalTraining { s }),
        StrategyKind::DistilledOneshot => Arc::new(client::Distilling { s, around: false }),
        StrategyKind::DistilledIterative => Arc::new(client::Distilling { s, around: true }),
    }
}
