//! The gRPC transport's server: `distillery serve` runs the scenario's server half behind a tonic
//! server (the `Federation` service of proto/distillery.proto), over TLS when given a certificate;
//! `distillery client` processes ([`super::client`]) join it, fetch each round's task, do the
//! work and submit. A client may join again under its id (after a crash or a lost connection):
//! the id stays joined, and its latest submission for a round replaces any earlier one, so an
//! update is never counted twice. A shared token (metadata
//! `authorization: Bearer <token>`) authenticates clients; frames above the size limit are
//! refused by tonic, and updates above `max_message_bytes` are rejected and logged by the engine.

use super::tls::{chain, ServerTls};
use super::wait::{self, id_ranges, missing_from, missing_of};
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
    /// How long to wait for every client to join before the first round starts without the
    /// missing ones.
    pub join_timeout: Duration,
}

/// The HTTP/2 connection window the server and its clients advertise. h2 closes a connection
/// (GOAWAY `ENHANCE_YOUR_CALM`, "too_many_data_frames") once the small DATA frames it holds
/// unread outweigh half this window; hyper's default (1 MiB on a server) allows about 2,100
/// small requests in flight, and a client process hosting thousands of clients sends that many
/// at once when they join or submit together. 128 MiB allows about 270,000.
pub const CONNECTION_WINDOW: u32 = 128 << 20;

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
    /// Clients that have been told the run is over.
    told_done: Mutex<HashSet<u32>>,
    told_changed: Notify,
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
                    let joined = self.0.joined.lock().is_ok_and(|j| j.contains(&r.client_id));
                    if let (true, Ok(mut t)) = (joined, self.0.told_done.lock()) {
                        t.insert(r.client_id);
                    }
                    self.0.told_changed.notify_waiters();
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
        // Checked under the borrow: cloning the published task and selection for each of
        // thousands of submissions made a round quadratic in its clients.
        let open = {
            let p = self.0.current.borrow();
            !p.done
                && p.task.as_ref().map(|t| t.round) == Some(u.round)
                && p.selected.contains(&u.client_id)
        };
        if !open {
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
    /// Starts serving as `listen` says for `expected` clients.
    pub fn start(
        listen: &Listen,
        expected: usize,
        token: Option<String>,
        max_message_bytes: usize,
    ) -> Result<Self> {
        let (addr, tls) = (listen.addr, listen.tls.as_ref());
        let mut builder =
            tonic::transport::Server::builder().initial_connection_window_size(CONNECTION_WINDOW);
        match tls {
            Some(t) => {
                builder = builder.tls_config(t.config()?).map_err(|e| {
                    Error::Transport(format!(
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
            told_done: Mutex::new(HashSet::new()),
            told_changed: Notify::new(),
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
            .map_err(|e| Error::Transport(format!("cannot listen on {addr}: {e}")))?;
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
            join_timeout: listen.join_timeout,
            started: false,
        })
    }

    /// Waits until every expected client has joined or the join timeout passes, saying every
    /// few seconds how many have joined and, at the timeout, which are missing.
    fn wait_for_clients(&mut self) {
        let (shared, timeout) = (self.shared.clone(), self.join_timeout);
        let joined = || shared.joined.lock().map(|j| j.len()).unwrap_or(0);
        let all = self.rt.block_on(wait::until(
            &shared.joined_changed,
            timeout,
            || joined() >= shared.expected,
            |t| {
                tracing::info!(
                    "waiting for clients: {} of {} joined after {t:.0} s (waiting up to {:.0} s)",
                    joined(),
                    shared.expected,
                    timeout.as_secs_f64()
                )
            },
        ));
        if !all {
            let joined = shared.joined.lock().map(|j| j.clone()).unwrap_or_default();
            tracing::warn!(
                "{} of {} clients joined within {:.0} s; starting without ids {} (serve --join-timeout sets the wait)",
                joined.len(),
                shared.expected,
                timeout.as_secs_f64(),
                id_ranges(missing_of(shared.expected, &joined))
            );
        }
    }

    /// Collects the answers to round `round` from `sel` until all have answered or `wait`
    /// passes, saying every few seconds how many have answered and, at the deadline, who not.
    fn collect(&self, round: usize, sel: HashSet<u32>, wait: Duration) -> HashMap<u32, Vec<u8>> {
        let shared = &self.shared;
        let replies = || shared.replies.lock().map(|r| r.len()).unwrap_or(0);
        let all = self.rt.block_on(wait::until(
            &shared.replied,
            wait,
            || replies() >= sel.len(),
            |t| {
                tracing::info!(
                    "round {round}: {} of {} updates after {t:.0} s",
                    replies(),
                    sel.len()
                )
            },
        ));
        // Close the round: later submissions are refused as late.
        shared.current.send_modify(|p| p.selected.clear());
        let r = std::mem::take(&mut *shared.replies.lock().expect("replies lock"));
        if !all {
            tracing::warn!(
                "round {round}: its deadline ({:.0} s) passed with {} of {} updates; no answer from ids {}",
                wait.as_secs_f64(),
                r.len(),
                sel.len(),
                id_ranges(missing_from(&sel, &r))
            );
        }
        r
    }
}

impl Transport for GrpcServer {
    fn round(
        &mut self,
        round: usize,
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
        let seq = t.seq;
        self.shared.current.send_replace(Published {
            seq,
            task: Some(t),
            selected: sel.clone(),
            done: false,
        });
        let absent = selected.len() - sel.len();
        if absent > 0 {
            tracing::warn!(
                "round {round}: {absent} selected clients never joined (ids {}); they are counted unreachable",
                id_ranges(
                    selected
                        .iter()
                        .map(|&c| c as u32)
                        .filter(|c| !joined.contains(c))
                )
            );
        }
        let mut replies = self.collect(round, sel, deadline.unwrap_or(Duration::MAX));
        selected
            .iter()
            .map(|&c| {
                let o = if !joined.contains(&(c as u32)) {
                    Delivery::Unreachable
                } else {
                    match replies.remove(&(c as u32)) {
                        Some(b) => Delivery::Reply(b),
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
        // Stay up until every joined client has been told the run is over (thousands of
        // clients may still be submitting their last answer), at most the join timeout or a
        // minute, so that none is left retrying a server that is gone.
        let shared = self.shared.clone();
        let count = |m: &Mutex<HashSet<u32>>| m.lock().map(|s| s.len()).unwrap_or(0);
        let all = self.rt.block_on(wait::until(
            &shared.told_changed,
            self.join_timeout.min(Duration::from_secs(60)),
            || count(&shared.told_done) >= count(&shared.joined),
            |_| {},
        ));
        if !all {
            let joined = shared.joined.lock().map(|j| j.clone()).unwrap_or_default();
            let told = shared
                .told_done
                .lock()
                .map(|t| t.clone())
                .unwrap_or_default();
            tracing::warn!(
                "the run is over, but ids {} never fetched that news; they will retry and give up",
                id_ranges(joined.difference(&told).copied())
            );
        }
        // Let the last answers leave before the server goes away (the timer needs the runtime).
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}
