//! The client side of the gRPC transport: one process hosts one or many clients (each with its
//! own id, partition and state) over one HTTP/2 connection, their work on a bounded
//! [`WorkerPool`]. Each client joins, then fetches, works and submits until the server says the
//! run is over. A server that is not up yet, or goes away mid-run, is retried with bounded
//! backoff ([`super::retry`]); after a reconnection every client joins again (the server may be
//! a restarted one) and repeats the call that failed (a repeated submission replaces the first,
//! so nothing is counted twice). A TLS refusal is not retried: it will not heal.

use super::grpc::CONNECTION_WINDOW;
use super::in_process::WorkerPool;
use super::kept::Store;
use super::retry::{Retry, RetryLog, Streak};
use super::tls::{chain, tls_failure, ClientTls};
use crate::error::{Error, Result};
use crate::fed::pb;
use crate::fed::pb::federation_client::FederationClient;
use crate::fed::protocol::{task_from, update_message, Expect};
use crate::fed::strategy::build::client_app;
use crate::fed::strategy::{answer, ClientApp, ClientState, Settings, StrategyKind};
use burn::tensor::backend::AutodiffBackend;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// The strategies a client knows, by label: their kind and settings.
pub type Known = HashMap<String, (StrategyKind, Arc<Settings>)>;

/// How a client process reaches its server.
#[derive(Clone, Debug)]
pub struct Connect {
    /// The server's URL (`http://` or, with `tls`, `https://`).
    pub url: String,
    /// What the client trusts (None: plaintext).
    pub tls: Option<ClientTls>,
    /// The shared token, sent as `authorization: Bearer` metadata on every call.
    pub token: Option<String>,
    /// How long to retry an unreachable server.
    pub retry: Retry,
    /// The scenario's update size limit (frames up to twice it are allowed).
    pub max_message_bytes: usize,
}

type Client = FederationClient<InterceptedService<Channel, SharedInterceptor>>;

/// The token interceptor, cloneable so every hosted client shares one connection.
#[derive(Clone)]
pub struct SharedInterceptor(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for SharedInterceptor {
    fn call(&mut self, mut req: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn endpoint(c: &Connect) -> Result<Endpoint> {
    let url = &c.url;
    let https = url.starts_with("https://");
    match (&c.tls, https) {
        (Some(_), false) => {
            return Err(Error::Usage(format!(
                "server {url:?}: --tls-ca needs an https:// URL"
            )))
        }
        (None, true) => {
            return Err(Error::Usage(format!(
                "server {url:?}: an https:// server needs --tls-ca FILE (the CA that signed its certificate)"
            )))
        }
        _ => {}
    }
    let e = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::Usage(format!("server address {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        // Thousands of hosted clients' small calls share this connection (see CONNECTION_WINDOW).
        .initial_connection_window_size(CONNECTION_WINDOW)
        // A server whose machine vanished is noticed by missing pings, not by a hung call.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    match &c.tls {
        Some(t) => e
            .tls_config(t.config()?)
            .map_err(|e| Error::Transport(format!("TLS for {url}: {}", chain(&e)))),
        None => Ok(e),
    }
}

fn untrusted(url: &str, why: &str) -> Error {
    Error::Transport(format!(
        "{url}: TLS refused ({why}); is --tls-ca the CA that signed the server's certificate, \
         and does the certificate name this host?"
    ))
}

/// Connects (retrying while the server is not up), and wraps the channel with the token.
async fn connect(c: &Connect, log: &RetryLog) -> Result<Client> {
    let ep = endpoint(c)?;
    if c.tls.is_none() && c.token.is_some() && !is_loopback_url(&c.url) {
        eprintln!(
            "warning: {} is not loopback and the connection is plaintext: the token travels in \
             the clear (serve with --tls-cert/--tls-key, connect with --tls-ca)",
            c.url
        );
    }
    let mut streak = Streak::new(&c.retry, log);
    let channel = loop {
        match ep.connect().await {
            Ok(ch) => break ch,
            Err(e) => {
                if let Some(t) = tls_failure(&e) {
                    return Err(untrusted(&c.url, &t));
                }
                let why = format!("cannot reach {}: {}", c.url, chain(&e));
                streak.wait("client", &why).await?;
            }
        }
    };
    let bearer = match &c.token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| Error::Usage("the token is not valid gRPC metadata".into()))?,
        ),
        None => None,
    };
    let frame = c
        .max_message_bytes
        .saturating_mul(2)
        .saturating_add(1 << 20);
    Ok(
        FederationClient::with_interceptor(channel, SharedInterceptor(bearer))
            .max_decoding_message_size(frame)
            .max_encoding_message_size(frame),
    )
}

fn is_loopback_url(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// True for the failures of a server that is away (not up yet, restarting, connection lost)
/// or that shed load by closing the connection.
fn away(s: &Status) -> bool {
    use tonic::Code;
    let code = matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    );
    (code || overloaded(s)) && tls_failure(s).is_none()
}

/// A failed call's message and, when it has one, the transport error under it.
fn why(s: &Status) -> String {
    match std::error::Error::source(s) {
        Some(e) => {
            let under = chain(e);
            match s.message().contains(&under) {
                true => s.message().to_string(),
                false => format!("{}: {under}", s.message()),
            }
        }
        None => s.message().to_string(),
    }
}

/// True when the server's HTTP/2 layer closed the connection with `ENHANCE_YOUR_CALM` (it held
/// too many unread frames): the calls it cut are safe to repeat on a new connection.
fn overloaded(s: &Status) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<h2::Error>() {
            return h.is_go_away() && h.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        }
        cur = e.source();
    }
    false
}

/// What one hosted client shares with the others.
struct Host<B: AutodiffBackend> {
    client: Client,
    url: String,
    retry: Retry,
    log: RetryLog,
    strategies: Known,
    expect: Expect,
    pool: Arc<WorkerPool>,
    device: B::Device,
    /// Hosted clients that have joined, and how many there are.
    joined: std::sync::atomic::AtomicUsize,
    hosted: usize,
    /// Where each client's state is kept across restarts (`--state`).
    store: Option<Store>,
}

impl<B: AutodiffBackend> Host<B> {
    fn fatal(&self, id: usize, s: &Status) -> Error {
        match tls_failure(s) {
            Some(t) => untrusted(&self.url, &t),
            // A TLS server answers plaintext HTTP/2 with protocol errors.
            None if s.message().contains("h2 protocol error") => self.hint(Error::Transport(
                format!("client {id}: {}: {}", self.url, s.message()),
            )),
            None => Error::Transport(format!("client {id}: {}: {}", self.url, why(s))),
        }
    }

    /// A plaintext client's give-up error, with the likeliest cause of steady transport errors.
    fn hint(&self, e: Error) -> Error {
        if self.url.starts_with("http://") {
            Error::Transport(format!(
                "{e} (if the server serves TLS, connect to https:// with --tls-ca)"
            ))
        } else {
            e
        }
    }

    /// Runs `call` until it succeeds, retrying (and joining again first) while the server is
    /// away, within the retry budget.
    async fn call<T, F, Fut>(&self, id: usize, mut call: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let who = format!("client {id}");
        let mut streak = Streak::new(&self.retry, &self.log);
        let mut rejoin = false;
        loop {
            if rejoin {
                let join = pb::JoinRequest {
                    client_id: id as u32,
                };
                match self.client.clone().join(join).await {
                    Ok(_) => {}
                    Err(s) if away(&s) => {
                        let why = format!("server away ({})", s.message());
                        streak.wait(&who, &why).await.map_err(|e| self.hint(e))?;
                        continue;
                    }
                    Err(s) => return Err(self.fatal(id, &s)),
                }
            }
            match call(self.client.clone()).await {
                Ok(r) => {
                    if streak.attempts() > 0 {
                        self.log.say(&format!("{who}: reconnected to {}", self.url));
                    }
                    return Ok(r.into_inner());
                }
                Err(s) if away(&s) => {
                    let why = format!("server away ({})", s.message());
                    streak.wait(&who, &why).await.map_err(|e| self.hint(e))?;
                    rejoin = true;
                }
                Err(s) => return Err(self.fatal(id, &s)),
            }
        }
    }

    /// One client's life: join, then fetch, work, submit until the run is over; the tasks done.
    async fn serve(self: Arc<Self>, first: ClientState) -> Result<usize> {
        let id = first.id;
        let cid = id as u32;
        self.call(id, |mut c| async move {
            c.join(pb::JoinRequest { client_id: cid }).await
        })
        .await?;
        let n = self
            .joined
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if n == self.hosted {
            println!("joined {}: {n} clients", self.url);
        }
        let mut apps: HashMap<String, Arc<dyn ClientApp<B>>> = HashMap::new();
        let mut states: HashMap<String, ClientState> = HashMap::new();
        let mut last = None;
        if let Some(r) = self
            .store
            .as_ref()
            .map(|s| s.load(&first))
            .transpose()?
            .flatten()
        {
            tracing::info!(
                "client {id}: continuing from its state after task {}",
                r.last.0
            );
            (states, last) = (r.states, Some(r.last));
        }
        let (mut next, mut done) = (0u32, 0usize);
        loop {
            let ask = pb::FetchRequest {
                client_id: cid,
                next_seq: next,
            };
            let task = self
                .call(id, |mut c| async move { c.fetch(ask).await })
                .await?;
            if task.done {
                return Ok(done);
            }
            next = task.seq + 1;
            if let Some((seq, _)) = &last {
                if task.seq < *seq {
                    return Err(Error::Checkpoint(format!(
                        "client {id}: its --state file says it answered task {seq}, but the server is at task {}: the file is from another run of this scenario (use a fresh --state folder)",
                        task.seq
                    )));
                }
            }
            let update = match last.take().filter(|(seq, _)| *seq == task.seq) {
                // Answered before a restart: the same bytes again (the server may lack them).
                Some((_, update)) => update,
                None => self.work(id, &task, &mut apps, &mut states, &first).await?,
            };
            self.call(id, |mut c| {
                let u = update.clone();
                async move { c.submit(u).await }
            })
            .await?;
            done += 1;
        }
    }

    /// Client `first.id`'s answer to `task` (its state for the task's strategy updated, and
    /// kept in the store before the answer leaves).
    async fn work(
        &self,
        id: usize,
        task: &pb::RoundTask,
        apps: &mut HashMap<String, Arc<dyn ClientApp<B>>>,
        states: &mut HashMap<String, ClientState>,
        first: &ClientState,
    ) -> Result<pb::ClientUpdate> {
        let strategy = task.strategy.clone();
        tracing::debug!("client {id}: working on task {} ({strategy})", task.seq);
        let typed = task_from(task, &self.expect)
            .map_err(|e| Error::Transport(format!("client {id}: {e}")))?;
        let Some((kind, settings)) = self.strategies.get(&strategy) else {
            return Err(Error::Setting(format!(
                "client {id}: the server runs strategy {strategy:?}, which this scenario does not name"
            )));
        };
        let app = apps
            .entry(strategy.clone())
            .or_insert_with(|| client_app::<B>(*kind, settings.clone()))
            .clone();
        let mut state = states.remove(&strategy).unwrap_or_else(|| first.clone());
        let dev = self.device.clone();
        let (state, update) = self
            .pool
            .run(move || {
                let u = answer(&*app, &typed, &mut state, &dev);
                (state, u)
            })
            .await
            .map_err(|_| Error::Other(format!("client {id}: its work panicked")))?;
        states.insert(strategy, state);
        let update = update_message(&update, settings.quantization);
        if let Some(store) = &self.store {
            store.save(id, task.seq, &update, states)?;
        }
        Ok(update)
    }
}

/// Runs the clients `states` (each with its id and data, as each strategy starts it) against
/// the server at `conn`, their work on `workers` threads, each one's state kept in `store`
/// when there is one, until the server ends the run.
/// Returns each client's id and the number of tasks it did, in the order of `states`; the first
/// client error ends the process's run.
pub fn run_clients<B: AutodiffBackend>(
    conn: &Connect,
    states: Vec<ClientState>,
    strategies: Known,
    (workers, store): (usize, Option<Store>),
    device: B::Device,
) -> Result<Vec<(usize, usize)>> {
    let expect = strategies
        .values()
        .next()
        .map(|(_, s)| s.expect())
        .ok_or_else(|| Error::Setting("the scenario names no strategy".into()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the tokio runtime: {e}")))?;
    let log = RetryLog::default();
    rt.block_on(async move {
        let client = connect(conn, &log).await?;
        let host = Arc::new(Host::<B> {
            client,
            url: conn.url.clone(),
            retry: conn.retry.clone(),
            log,
            strategies,
            expect,
            pool: Arc::new(WorkerPool::new(workers)),
            device,
            joined: Default::default(),
            hosted: states.len(),
            store,
        });
        let ids: Vec<usize> = states.iter().map(|s| s.id).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for s in states {
            let (id, host) = (s.id, host.clone());
            tasks.spawn(async move { (id, host.serve(s).await) });
        }
        // The first client that fails ends the process's run at once (its siblings are
        // aborted), so a launcher or scheduler sees the failure instead of a silent client.
        let mut done = HashMap::with_capacity(ids.len());
        while let Some(joined) = tasks.join_next().await {
            let (id, n) = joined.map_err(|e| Error::Other(format!("a client task: {e}")))?;
            match n {
                Ok(n) => done.insert(id, n),
                Err(e) => {
                    tasks.abort_all();
                    return Err(e);
                }
            };
        }
        let out: Vec<(usize, usize)> = ids.iter().map(|id| (*id, done[id])).collect();
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::is_loopback_url;

    #[test]
    fn loopback_urls_are_told_apart() {
        for u in [
            "http://127.0.0.1:50051",
            "http://localhost:1",
            "http://[::1]:5",
            "https://127.0.0.2/x",
        ] {
            assert!(is_loopback_url(u), "{u}");
        }
        for u in [
            "http://10.0.0.1:50051",
            "http://example.org:1",
            "http://[fe80::1]:5",
        ] {
            assert!(!is_loopback_url(u), "{u}");
        }
    }
}
