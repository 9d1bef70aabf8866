//! Federated simulation: typed messages ([`message`]) and their wire codec ([`protocol`],
//! proto/distillery.proto), one type per strategy ([`strategy`]), the round engine and its byte
//! ledger ([`engine`]), and the transports ([`transport`]: in-process channels, gRPC).

/// The messages and the gRPC service generated from proto/distillery.proto.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("distillery.fed.v1");
}

pub mod engine;
pub mod message;
pub mod protocol;
pub mod strategy;
pub mod transport;
