//! oslo's `RPCClient`: casts, and calls that wait on one reply queue per
//! transport (`reply_<uuid hex>` or a queue-manager name, `x-expires` = the
//! transient TTL), with the call timeout as the `expiration` property, the
//! call-monitor timeout (`_timeout`) renewed by `ending: false` heartbeats,
//! and remote failures decoded into [`Error::Remote`].

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tracing::debug;

use crate::broker::Destination;
use crate::codec::{self, new_id, Outgoing, Reply, Request};
use crate::context::Context;
use crate::error::Error;
use crate::remote_error::RemoteError;
use crate::target::Target;
use crate::topology;
use crate::transport::Transport;

/// oslo's default `rpc_response_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends casts and calls to a target.
#[derive(Debug, Clone)]
pub struct RpcClient {
    transport: Transport,
    target: Target,
    timeout: Duration,
    call_monitor_timeout: Option<Duration>,
}

impl RpcClient {
    /// A client for `target` with a 60 s timeout and no call monitor.
    pub fn new(transport: &Transport, target: Target) -> Self {
        Self { transport: transport.clone(), target, timeout: DEFAULT_TIMEOUT, call_monitor_timeout: None }
    }

    /// Sets the call timeout (`rpc_response_timeout`); also the message `expiration`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the call-monitor timeout: the server heartbeats every half of it
    /// and the call fails early when heartbeats stop.
    pub fn with_call_monitor_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_monitor_timeout = timeout;
        self
    }

    /// A copy of this client for another target (oslo's `prepare`).
    pub fn prepare(&self, target: Target) -> Self {
        Self { target, ..self.clone() }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends a cast: no reply, no expiration.
    pub async fn cast<A: Serialize>(&self, ctx: &Context, method: &str, args: A) -> Result<(), Error> {
        let request = self.request(ctx, method, args, None)?;
        let out = codec::encode(&request.to_message(), None, self.compression()).map_err(Error::Encode)?;
        debug!(method, unique_id = ?request.unique_id, routing_key = %self.target.routing_key(), "CAST");
        self.transport.inner.publish(&self.destination(), &out, Instant::now() + self.timeout).await
    }

    /// Sends a call and waits for its final reply.
    pub async fn call<A: Serialize>(&self, ctx: &Context, method: &str, args: A) -> Result<Value, Error> {
        let waiter = self.transport.reply_waiter().await?;
        let msg_id = new_id();
        let mut request = self.request(ctx, method, args, Some((msg_id.clone(), waiter.queue.clone())))?;
        request.timeout = Some(self.call_monitor_timeout.map_or(Value::Null, seconds_value));
        let expiration_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let out =
            codec::encode(&request.to_message(), Some(expiration_ms), self.compression()).map_err(Error::Encode)?;
        let deadline = Instant::now() + self.timeout;
        let mut replies = waiter.listen(&msg_id);
        let _unlisten = waiter.unlisten_on_drop(&msg_id);
        debug!(method, msg_id, routing_key = %self.target.routing_key(), "CALL");
        self.publish_call(&out, &msg_id, deadline).await?;
        self.wait_reply(&mut replies, &msg_id, deadline).await
    }

    /// Publishes a call `mandatory`: while no server's queue is bound to its
    /// routing key the broker returns it (never delivered, so sending it again
    /// is safe), and it is sent again until one is or the call times out.
    /// oslo publishes calls without `mandatory` and waits out the timeout for
    /// a reply that cannot come; the outcome at the deadline is the same
    /// `Timeout`, but a server that comes back in time gets the call.
    async fn publish_call(&self, out: &Outgoing, msg_id: &str, deadline: Instant) -> Result<(), Error> {
        let inner = &self.transport.inner;
        let mut dest = self.destination();
        if let Destination::Topic { mandatory, .. } = &mut dest {
            *mandatory = true;
        }
        let mut pause = UNROUTED_CALL_FIRST_PAUSE;
        loop {
            match inner.publish(&dest, out, deadline).await {
                Err(Error::Undeliverable { reason, routing_key, .. }) if is_no_route(&reason) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout { msg_id: msg_id.to_owned() });
                    }
                    debug!(msg_id, routing_key, "no server consumes this topic yet; sending the call again");
                    tokio::time::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(UNROUTED_CALL_MAX_PAUSE);
                }
                other => return other,
            }
        }
    }

    /// A call whose result is deserialized into `R`.
    pub async fn call_as<A: Serialize, R: DeserializeOwned>(
        &self,
        ctx: &Context,
        method: &str,
        args: A,
    ) -> Result<R, Error> {
        let v = self.call(ctx, method, args).await?;
        serde_json::from_value(v).map_err(|source| Error::UnexpectedResult { method: method.to_owned(), source })
    }

    async fn wait_reply(
        &self,
        replies: &mut mpsc::UnboundedReceiver<Reply>,
        msg_id: &str,
        deadline: Instant,
    ) -> Result<Value, Error> {
        let mut monitor_deadline = self.call_monitor_timeout.map(|t| Instant::now() + t);
        let mut final_reply = Value::Null;
        loop {
            let until = monitor_deadline.map_or(deadline, |m| m.min(deadline));
            let reply = match tokio::time::timeout_at(until.into(), replies.recv()).await {
                Err(_) => return Err(Error::Timeout { msg_id: msg_id.to_owned() }),
                Ok(None) => return Err(Error::Closed),
                Ok(Some(r)) => r,
            };
            if let Some(f) = reply.failure {
                return Err(Error::Remote(Box::new(RemoteError::from_failure_string(&f)?)));
            }
            if !reply.result.is_null() {
                final_reply = reply.result;
            } else if !reply.ending {
                debug!(msg_id, "call-monitor heartbeat received; renewing timeout timer");
                monitor_deadline = self.call_monitor_timeout.map(|t| Instant::now() + t);
            }
            if reply.ending {
                return Ok(final_reply);
            }
        }
    }

    fn request<A: Serialize>(
        &self,
        ctx: &Context,
        method: &str,
        args: A,
        call: Option<(String, String)>,
    ) -> Result<Request, Error> {
        let args = match serde_json::to_value(args).map_err(Error::Encode)? {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => {
                return Err(Error::Encode(<serde_json::Error as serde::ser::Error>::custom(
                    "RPC arguments must serialize to a JSON object",
                )))
            }
        };
        let (msg_id, reply_q) = call.unzip();
        Ok(Request {
            method: method.to_owned(),
            args,
            namespace: self.target.namespace.clone(),
            version: self.target.version.clone(),
            msg_id,
            reply_q,
            timeout: None,
            unique_id: Some(new_id()),
            context: ctx.clone(),
            extra: Map::new(),
        })
    }

    fn destination(&self) -> Destination {
        let o = self.transport.options();
        if self.target.fanout {
            return Destination::Fanout { exchange: topology::fanout_exchange(o, &self.target.topic) };
        }
        let exchange = self.target.exchange.as_deref().unwrap_or(self.transport.control_exchange());
        Destination::Topic {
            exchange: topology::topic_exchange(o, exchange),
            routing_key: self.target.routing_key(),
            mandatory: false,
        }
    }

    fn compression(&self) -> Option<&str> {
        self.transport.options().kombu_compression.as_deref().filter(|c| !c.is_empty())
    }
}

const UNROUTED_CALL_FIRST_PAUSE: Duration = Duration::from_millis(250);
const UNROUTED_CALL_MAX_PAUSE: Duration = Duration::from_secs(2);

/// The broker's `basic.return` for a message no queue was bound to receive
/// (`312 NO_ROUTE`), as opposed to a refusal or a nack.
fn is_no_route(reason: &str) -> bool {
    reason.starts_with("312")
}

/// Whole seconds as a JSON integer (what Python callers send), else a float.
fn seconds_value(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::from(d.as_secs())
    } else {
        Value::from(d.as_secs_f64())
    }
}
