//! How the server reaches its clients: the [`Transport`] trait (send a round's task bytes to the
//! selected clients, collect their answers by a deadline), clients as tokio tasks in this
//! process ([`in_process`]) or as remote processes over gRPC ([`grpc`]), and the faults a
//! simulation can inject.

pub mod client;
pub mod grpc;
pub mod ids;
pub mod in_process;
pub mod kept;
pub mod retry;
pub mod tls;
pub mod wait;

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Faults injected into chosen clients (to test that rounds survive them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Clients whose work panics (the client dies; it never answers again).
    pub crash: Vec<usize>,
    /// Clients that send NaN in their payload.
    pub nan: Vec<usize>,
    /// Clients that answer `slow_seconds` late.
    pub slow: Vec<usize>,
    /// How late slow clients are.
    pub slow_seconds: f64,
}

/// What a transport brought back from one selected client.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// It answered with these bytes.
    Reply(Vec<u8>),
    /// It did not answer (dropped out, or its connection ended).
    NoAnswer,
    /// It answered after the deadline (or not before it).
    Late,
    /// The task could not be delivered (the client is gone).
    Unreachable,
}

/// How the server reaches its clients.
pub trait Transport {
    /// Sends `task` (encoded) to each of `selected` and collects what each answered by `deadline`.
    fn round(
        &mut self,
        round: usize,
        selected: &[usize],
        task: &[u8],
        deadline: Option<Duration>,
    ) -> Vec<(usize, Delivery)>;

    /// What each client keeps between rounds, where this process holds it (in-process clients;
    /// None for one that is busy or dead). Empty when the clients are elsewhere.
    fn client_states(&self) -> Vec<Option<crate::fed::strategy::ClientState>> {
        Vec::new()
    }
}
