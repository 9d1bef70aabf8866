//! Federated simulation: the wire protocol (proto/distillery.proto), strategies, the round engine,
//! the byte ledger and the transports (in-process channels, gRPC).

/// The messages and the gRPC service generated from proto/distillery.proto.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("distillery.fed.v1");
}

pub mod engine;
pub mod grpc;
pub mod strategy;
pub mod wire;
