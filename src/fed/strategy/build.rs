//! Building a strategy by kind: the server half with the initial global model, or the client
//! half a `distillery client` process runs.

use super::{client, fedavg, feddm, memory, oneshot, ClientApp, Settings, Strategy, StrategyKind};
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
        StrategyKind::Fedavg | StrategyKind::FedavgFinetune | StrategyKind::FedavgReplay => {
            Box::new(fedavg::FedAvg {
                kind,
                s,
                global,
                task: 0,
            })
        }
        StrategyKind::DistilledOneshot => Box::new(oneshot::OneShot { s, global }),
        StrategyKind::DistilledIterative => Box::new(feddm::FedDm { s, global }),
        StrategyKind::DistilledMemory => Box::new(memory::DistilledMemory::new(s, global)),
        // Centralised training runs in the experiment, not over the federation.
        StrategyKind::Joint => Box::new(fedavg::FedAvg {
            kind,
            s,
            global,
            task: 0,
        }),
    }
}

/// The client half of strategy `kind` (what a `distillery client` process runs).
pub fn client_app<B: AutodiffBackend>(
    kind: StrategyKind,
    s: Arc<Settings>,
) -> Arc<dyn ClientApp<B>> {
    match kind {
        StrategyKind::Fedavg | StrategyKind::FedavgFinetune | StrategyKind::Joint => {
            Arc::new(fedavg::LocalTraining { s, replay: false })
        }
        StrategyKind::FedavgReplay => Arc::new(fedavg::LocalTraining { s, replay: true }),
        StrategyKind::DistilledOneshot | StrategyKind::DistilledMemory => {
            Arc::new(client::Distilling { s, around: false })
        }
        StrategyKind::DistilledIterative => Arc::new(client::Distilling { s, around: true }),
    }
}
