//! oslo's RPC server for one or more targets (nova-compute serves `compute`
//! and `compute-alt` for one host): consumes `<topic>`, `<topic>.<server>`
//! and the fanout queue of every target, acks each request on delivery,
//! drops duplicates by `_unique_id`, runs handlers on a bounded worker pool,
//! sends call-monitor heartbeats while a call runs, replies with
//! `result`/`failure`/`ending`, and stops gracefully.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use error_chain::Chain;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::broker::{Incoming, Subscription};
use crate::codec::{self, new_id, Reply, Request};
use crate::error::Error;
use crate::remote_error::RemoteError;
use crate::rpc::dispatcher::Dispatcher;
use crate::rpc::workers::WorkerPool;
use crate::target::Target;
use crate::topology::{self, QueueSpec};
use crate::transport::Transport;

/// oslo's `_MsgIdCache.DUP_MSG_CHECK_SIZE`.
const DUPLICATE_WINDOW: usize = 16;

/// Server tuning.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `[DEFAULT] executor_thread_pool_size` (64 in oslo): at most this many
    /// handlers run at once (clamped to 1..=10 000); further requests wait,
    /// acknowledged, until a handler finishes.
    pub executor_thread_pool_size: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { executor_thread_pool_size: 64 }
    }
}

/// A running RPC server.
pub struct RpcServer {
    shared: Arc<Shared>,
    subscriptions: Vec<Arc<Subscription>>,
    fanout_queues: Vec<String>,
    stop_tx: watch::Sender<bool>,
    serve_loop: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer").field("queues", &self.queue_names()).finish()
    }
}

struct Shared {
    transport: Transport,
    dispatcher: Dispatcher,
    workers: WorkerPool,
    seen: Mutex<VecDeque<String>>,
}

impl RpcServer {
    /// Declares the queues of every target and starts serving them with default options.
    pub async fn start(transport: &Transport, targets: Vec<Target>, dispatcher: Dispatcher) -> Result<Self, Error> {
        Self::start_with(transport, targets, dispatcher, ServerOptions::default()).await
    }

    /// As [`RpcServer::start`], with explicit options.
    pub async fn start_with(
        transport: &Transport,
        targets: Vec<Target>,
        dispatcher: Dispatcher,
        options: ServerOptions,
    ) -> Result<Self, Error> {
        if targets.is_empty() {
            return Err(Error::Config("an RPC server needs at least one target".into()));
        }
        let workers = WorkerPool::new(options.executor_thread_pool_size);
        let (tx, rx) = mpsc::channel(workers.size());
        let shared = Arc::new(Shared {
            transport: transport.clone(),
            dispatcher,
            workers,
            seen: Mutex::new(VecDeque::with_capacity(DUPLICATE_WINDOW)),
        });
        let mut subscriptions = Vec::new();
        let mut fanout_queues = Vec::new();
        for target in &targets {
            let queues = listener_queues(transport, target);
            let fanout =
                queues.last().filter(|q| !q.stream && !transport.options().use_queue_manager).map(|q| q.name.clone());
            let sub = Subscription::new(queues, transport.options().rabbit_qos_prefetch_count, tx.clone());
            if let Err(e) = transport.inner.subscribe(sub.clone()).await {
                for s in &subscriptions {
                    stop_subscription(transport, s).await;
                }
                return Err(e);
            }
            info!(queues = %sub.queue_names(), "RPC server consuming");
            subscriptions.push(sub);
            fanout_queues.extend(fanout);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let serve_loop = tokio::spawn(serve(shared.clone(), rx, stop_rx));
        Ok(Self { shared, subscriptions, fanout_queues, stop_tx, serve_loop: Mutex::new(Some(serve_loop)) })
    }

    /// The queues this server consumes.
    pub fn queue_names(&self) -> Vec<String> {
        self.subscriptions.iter().map(|s| s.queue_names()).collect()
    }

    /// Stops consuming: cancels the consumers (unacknowledged prefetched
    /// requests return to their queues) and deletes the per-process fanout
    /// queues as oslo does at close. In-flight handlers keep running.
    pub async fn stop(&self) {
        self.stop_tx.send_replace(true);
        for sub in &self.subscriptions {
            stop_subscription(&self.shared.transport, sub).await;
        }
        let handle = self.serve_loop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        for q in &self.fanout_queues {
            if let Err(e) = self.shared.transport.delete_queue(q).await {
                debug!(queue = q, error = %Chain(&e), "fanout queue not deleted");
            }
        }
    }

    /// Waits for in-flight handlers (and their replies) to finish.
    pub async fn wait(&self) {
        self.shared.workers.idle().await;
    }

    /// Graceful stop: stop consuming, finish in-flight work.
    pub async fn shutdown(self) {
        self.stop().await;
        self.wait().await;
        info!("RPC server stopped");
    }
}

async fn stop_subscription(transport: &Transport, sub: &Arc<Subscription>) {
    transport.inner.unsubscribe(sub);
    sub.stop().await;
}

/// The queues oslo's `listen()` declares for a target, in oslo's order.
fn listener_queues(transport: &Transport, target: &Target) -> Vec<QueueSpec> {
    let o = transport.options();
    let exchange = target.exchange.as_deref().unwrap_or(transport.control_exchange());
    let mut queues = vec![topology::topic_queue(o, exchange, &target.topic, &target.topic)];
    if let Some(server) = &target.server {
        let key = format!("{}.{}", target.topic, server);
        queues.push(topology::topic_queue(o, exchange, &key, &key));
    }
    let unique = if o.use_queue_manager { topology::queue_manager_name(o) } else { new_id() };
    queues.push(topology::fanout_queue(o, &target.topic, &unique));
    queues
}

async fn serve(shared: Arc<Shared>, mut rx: mpsc::Receiver<Incoming>, mut stop: watch::Receiver<bool>) {
    loop {
        let incoming = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(request) = accept(&shared, incoming).await else { continue };
        let worker = shared.clone();
        shared.workers.run(async move { process(&worker, request).await }).await;
    }
}

/// Decodes, acknowledges and de-duplicates one delivery. Undecodable ones are
/// logged with the reason and rejected without requeue; the consumer lives on.
async fn accept(shared: &Shared, incoming: Incoming) -> Option<Request> {
    let Incoming { delivery, queue } = incoming;
    let decoded = codec::decode(&delivery.properties, &delivery.data).and_then(Request::from_message);
    let request = match decoded {
        Ok(r) => r,
        Err(reason) => {
            warn!(queue, bytes = delivery.data.len(), reason = %Chain(&reason), "dropping malformed RPC message");
            if let Err(e) = delivery.acker.reject(BasicRejectOptions { requeue: false }).await {
                warn!(queue, error = %Chain(&e), "failed to reject malformed message");
            }
            return None;
        }
    };
    // oslo acks RPC requests on delivery, before dispatch (at-most-once).
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        warn!(queue, method = %request.method, error = %Chain(&e), "discarding RPC request due to failed acknowledge");
        return None;
    }
    if is_duplicate(shared, request.unique_id.as_deref()) {
        warn!(queue, method = %request.method, unique_id = ?request.unique_id, "ignoring duplicate message");
        return None;
    }
    Some(request)
}

fn is_duplicate(shared: &Shared, unique_id: Option<&str>) -> bool {
    let Some(id) = unique_id else { return false };
    let mut seen = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.iter().any(|s| s == id) {
        return true;
    }
    if seen.len() == DUPLICATE_WINDOW {
        seen.pop_front();
    }
    seen.push_back(id.to_owned());
    false
}

async fn process(shared: &Shared, request: Request) {
    let span = info_span!(
        "rpc",
        request_id = request.context.request_id().unwrap_or("-"),
        method = %request.method,
        msg_id = request.msg_id.as_deref().unwrap_or("-"),
    );
    async {
        let started = std::time::Instant::now();
        let heartbeat = start_heartbeat(shared, &request);
        let ctx = request.context.clone();
        let result = shared
            .dispatcher
            .dispatch(
                ctx,
                request.namespace.as_deref(),
                request.version.as_deref(),
                &request.method,
                request.args.clone(),
                request.reply_q.is_some(),
            )
            .await;
        if let Some(h) = heartbeat {
            h.abort();
        }
        log_outcome(&request, &result, started.elapsed());
        if let (Some(msg_id), Some(reply_q)) = (&request.msg_id, &request.reply_q) {
            send_final_reply(shared, msg_id, reply_q, result).await;
        }
    }
    .instrument(span)
    .await;
}

fn log_outcome(request: &Request, result: &Result<Value, RemoteError>, elapsed: Duration) {
    match result {
        Ok(_) => debug!(elapsed_ms = elapsed.as_millis() as u64, "handled RPC request"),
        Err(e) if e.class == "NoSuchMethod" && request.method.ends_with("_ignore_errors") => {
            debug!("method {} not found", request.method)
        }
        Err(e) => error!(error = %e, elapsed_ms = elapsed.as_millis() as u64, "exception during message handling"),
    }
}

/// oslo's `_watchdog`: `ending: false` replies every `int(_timeout) / 2` s.
fn start_heartbeat(shared: &Shared, request: &Request) -> Option<JoinHandle<()>> {
    let (msg_id, reply_q) = (request.msg_id.clone()?, request.reply_q.clone()?);
    let timeout = request.call_monitor_timeout()?;
    let interval = Duration::from_secs_f64(timeout as f64 / 2.0);
    if interval < Duration::from_secs(1) {
        warn!(timeout = ?request.timeout, "client provided an invalid timeout value");
        return None;
    }
    let transport = shared.transport.clone();
    Some(tokio::spawn(
        async move {
            loop {
                tokio::time::sleep(interval).await;
                debug!(interval_secs = interval.as_secs_f64(), "sending call-monitor heartbeat");
                let reply = Reply {
                    result: Value::Null,
                    failure: None,
                    ending: false,
                    msg_id: Some(msg_id.clone()),
                    unique_id: Some(new_id()),
                };
                if let Err(e) = send_reply_message(&transport, &reply_q, &msg_id, &reply).await {
                    debug!(error = %Chain(&e), "call-monitor heartbeat failed");
                    return;
                }
            }
        }
        .in_current_span(),
    ))
}

async fn send_final_reply(shared: &Shared, msg_id: &str, reply_q: &str, result: Result<Value, RemoteError>) {
    let (result, failure) = match result {
        Ok(v) => (v, None),
        Err(e) => match e.to_failure_string() {
            Ok(f) => (Value::Null, Some(f)),
            Err(err) => (
                Value::Null,
                Some(
                    RemoteError::type_error(format!("cannot serialize exception: {err}"))
                        .to_failure_string()
                        .unwrap_or_default(),
                ),
            ),
        },
    };
    let reply = Reply { result, failure, ending: true, msg_id: Some(msg_id.to_owned()), unique_id: Some(new_id()) };
    if let Err(e) = send_reply_message(&shared.transport, reply_q, msg_id, &reply).await {
        error!(reply_queue = reply_q, error = %Chain(&e), "failed to send reply");
    }
}

async fn send_reply_message(transport: &Transport, reply_q: &str, msg_id: &str, reply: &Reply) -> Result<(), Error> {
    let compression = transport.options().kombu_compression.as_deref();
    let out = codec::encode(&reply.to_message(), None, compression).map_err(Error::Encode)?;
    transport.inner.send_reply(reply_q, msg_id, &out).await
}
