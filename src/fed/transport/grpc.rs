//! The gRPC transport's server: `distillery serve` runs the scenario's server half behind a tonic
//! server (the `Federation` service of proto/distillery.proto), over TLS when given a certificate;
//! `distillery client` processes ([`super::client`]) join it, fetch each round's task, do the
//! work and submit. A client may join again under its id (after a crash or a lost connection):
//! the id stays joined, and its latest submission for a round replaces any earlier one, so an
//! update is never counted twice. A shared token (metadata
//! `authorization: Bearer <token>`) authenticates clients; frames above the size limit are
//! refused by tonic, and updates above `max_message_bytes` are rejected and logged by the engine.

use super::tls::{chain, ServerTls};
use super::{Delivery, Transport};
use crate::error::{Error, Result};
use crate::fed::pb;
use crate::fed::pb::federation_server::{Federation, FederationServer};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tonic::{Request, Response, Status};

/// The token from `DISTILLERY_TOKEN`, else the scenario's.
pub fn token(scenario: &Option<String>) -> Option<String> {
    std::env::var("DISTILLERY_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| scenario.clone())
}

/// Where and how a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// The address to bind.
    pub addr: SocketAddr,
    /// Its certificate and key (None: plaintext).
    pub tls: Option<ServerTls>,
}

/// What the server has published: the current task and who it is for.
#[derive(Clone, Debug, Default)]
struct Published {
    seq: u32,
    task: Option<pb::RoundTask>,
    selected: HashSet<u32>,
    done: bool,
}

struct Shared {
    expected: usize,
    joined: Mutex<HashSet<u32>>,
    joined_changed: Notify,
    current: watch::Sender<Published>,
    replies: Mutex<HashMap<u32, Vec<u8>>>,
    replied: Notify,
}

struct Service(Arc<Shared>);

#[tonic::async_trait]
impl Federation for Service {
    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> std::result::Result<Response<pb::JoinReply>, Status> {
        let id = req.into_inner().client_id;
        if id as usize >= self.0.expected {
            return Err(Status::invalid_argument(format!(
                "client id {id}: this server expects ids 0..{}",
                self.0.expected
            )));
        }
        self.0
            .joined
            .lock()
            .map_err(|_| Status::internal("lock"))?
            .insert(id);
        self.0.joined_changed.notify_waiters();
        Ok(Response::new(pb::JoinReply {
            clients: self.0.expected as u32,
        }))
    }

    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> std::result::Result<Response<pb::RoundTask>, Status> {
        let r = req.into_inner();
        let mut rx = self.0.current.subscribe();
        loop {
            {
                let p = rx.borrow_and_update();
                if p.done {
                    return Ok(Response::new(pb::RoundTask {
                        done: true,
                        ..Default::default()
                    }));
                }
                if let Some(t) = &p.task {
                    if p.seq >= r.next_seq && p.selected.contains(&r.client_id) {
                        return Ok(Response::new(t.clone()));
                    }
                }
            }
            if rx.changed().await.is_err() {
                return Err(Status::unavailable("the server is shutting down"));
            }
        }
    }

    async fn submit(
        &self,
        req: Request<pb::ClientUpdate>,
    ) -> std::result::Result<Response<pb::SubmitReply>, Status> {
        let u = req.into_inner();
        let p = self.0.current.borrow().clone();
        let current = p.task.as_ref().map(|t| t.round);
        if p.done || current != Some(u.round) || !p.selected.contains(&u.client_id) {
            return Ok(Response::new(pb::SubmitReply {
                accepted: false,
                reason: format!(
                    "no open round {} for client {} (too late?)",
                    u.round, u.client_id
                ),
            }));
        }
        self.0
            .replies
            .lock()
            .map_err(|_| Status::internal("lock"))?
            .insert(u.client_id, u.encode_to_vec());
        self.0.replied.notify_waiters();
        Ok(Response::new(pb::SubmitReply {
            accepted: true,
            reason: String::new(),
        }))
    }
}

/// A running gRPC server, used by the engine as its transport.
pub struct GrpcServer {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// How long to wait for all clients to join before the first round.
    pub join_timeout: Duration,
    started: bool,
}

fn check_token(
    expected: Option<String>,
) -> impl Fn(Request<()>) -> std::result::Result<Request<()>, Status> + Clone {
    move |req: Request<()>| match &expected {
        None => Ok(req),
        Some(t) => {
            let ok = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == format!("Bearer {t}"));
            if ok {
                Ok(req)
            } else {
                Err(Status::unauthenticated("missing or wrong token"))
            }
        }
    }
}

impl GrpcServer {
    /// Starts serving on `addr` for `expected` clients.
    pub fn start(
        addr: SocketAddr,
        tls: Option<&ServerTls>,
        expected: usize,
        token: Option<String>,
        max_message_bytes: usize,
    ) -> Result<Self> {
        let mut builder = tonic::transport::Server::builder();
        match tls {
            Some(t) => {
                builder = builder.tls_config(t.config()?).map_err(|e| {
                    Error::Other(format!(
                        "TLS with {} and {}: {}",
                        t.cert.display(),
                        t.key.display(),
                        chain(&e)
                    ))
                })?;
            }
            None if !addr.ip().is_loopback() => eprintln!(
                "warning: serving plaintext gRPC on {addr}, which is not loopback: the token and \
                 every update travel unencrypted (pass --tls-cert FILE --tls-key FILE)"
            ),
            None => {}
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the tokio runtime: {e}")))?;
        let (tx, _) = watch::channel(Published::default());
        let shared = Arc::new(Shared {
            expected,
            joined: Mutex::new(HashSet::new()),
            joined_changed: Notify::new(),
            current: tx,
            replies: Mutex::new(HashMap::new()),
            replied: Notify::new(),
        });
        // Frames up to twice the limit reach the engine (which rejects and logs oversize
        // updates with the client id); larger ones tonic refuses outright.
        let frame = max_message_bytes.saturating_mul(2).saturating_add(1 << 20);
        let svc = tonic::service::interceptor::InterceptedService::new(
            FederationServer::new(Service(shared.clone()))
                .max_decoding_message_size(frame)
                .max_encoding_message_size(frame),
            check_token(token),
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| Error::Other(format!("cannot listen on {addr}: {e}")))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = builder
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(GrpcServer {
            rt,
            shared,
            shutdown: Some(stop_tx),
            join_timeout: Duration::from_secs(600),
            started: false,
        })
    }

    fn wait_for_clients(&mut self) {
        let shared = self.shared.clone();
        let timeout = self.join_timeout;
        self.rt.block_on(async move {
            let until = tokio::time::Instant::now() + timeout;
            loop {
                let notified = shared.joined_changed.notified();
                if shared.joined.lock().map(|j| j.len()).unwrap_or(0) >= shared.expected {
                    return;
                }
                if tokio::time::timeout_at(until, notified).await.is_err() {
                    return;
                }
            }
        });
    }
}

impl Transport for GrpcServer {
    fn round(
        &mut self,
        _round: usize,
        selected: &[usize],
        task: &[u8],
        deadline: Option<Duration>,
    ) -> Vec<(usize, Delivery)> {
        if !self.started {
            self.wait_for_clients();
            self.started = true;
        }
        let Ok(t) = pb::RoundTask::decode(task) else {
            return selected
                .iter()
                .map(|&c| (c, Delivery::Unreachable))
                .collect();
        };
        let joined = self
            .shared
            .joined
            .lock()
            .map(|j| j.clone())
            .unwrap_or_default();
        let sel: HashSet<u32> = selected
            .iter()
            .map(|&c| c as u32)
            .filter(|c| joined.contains(c))
            .collect();
        if let Ok(mut r) = self.shared.replies.lock() {
            r.clear();
        }
        let shared = self.shared.clone();
        let seq = t.seq;
        shared.current.send_replace(Published {
            seq,
            task: Some(t),
            selected: sel.clone(),
            done: false,
        });
        let wait = deadline.unwrap_or(Duration::from_secs(3600));
        let replies = self.rt.block_on(async move {
            let until = tokio::time::Instant::now() + wait;
            loop {
                let notified = shared.replied.notified();
                let n = shared.replies.lock().map(|r| r.len()).unwrap_or(0);
                if n >= sel.len() {
                    break;
                }
                if tokio::time::timeout_at(until, notified).await.is_err() {
                    break;
                }
            }
            // Close the round: later submissions are refused as late.
            shared.current.send_modify(|p| p.selected.clear());
            std::mem::take(&mut *shared.replies.lock().expect("replies lock"))
        });
        selected
            .iter()
            .map(|&c| {
                let o = if !joined.contains(&(c as u32)) {
                    Delivery::Unreachable
                } else {
                    match replies.get(&(c as u32)) {
                        Some(b) => Delivery::Reply(b.clone()),
                        None => Delivery::Late,
                    }
                };
                (c, o)
            })
            .collect()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.shared.current.send_modify(|p| p.done = true);
        // Let waiting clients fetch `done` before the server goes away.
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}
