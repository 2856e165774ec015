//! The conductor client: nova-compute has no database, so every read and
//! write of an object is an RPC call to nova-conductor (topic `conductor`,
//! version 3.0): `object_action` for an object's methods,
//! `object_class_action_versions` for class methods, and `ping` (namespace
//! `baseapi`) to wait for the conductor at start-up.
//!
//! Owns: the shape of those three calls, the `[updates, result]` reply, and
//! mapping failures to `ConductorError`. The typed object methods
//! (`Instance.save`, `InstanceActionEvent.event_start`, ...) live beside
//! their objects and are built on `ConductorApi::object_action` /
//! `class_action`.
//!
//! Must not know: AMQP. Calls go through `ConductorTransport`, implemented
//! over oslo-messaging's RPC client (`amqp`) and by in-memory fakes in tests.

use std::future::Future;
use std::time::Duration;

use error_chain::Chain;
use serde_json::{json, Map, Value};
use tracing::{debug, info, warn};

use crate::context::RequestContext;
use crate::error::{ConductorError, ObjectError, RemoteFailure, TransportError};
use crate::primitive::ObjectPrimitive;

/// The conductor's RPC topic.
pub const CONDUCTOR_TOPIC: &str = "conductor";
/// The conductor API version nova 34 speaks.
pub const CONDUCTOR_VERSION: &str = "3.0";
/// `ping`'s argument; the conductor echoes it.
const PING_ARG: &str = "1.21 GigaWatts";

/// How often a call refused with "database is locked" is sent again. nova
/// retries deadlocked instance updates itself (`wrap_db_retry(retry_on_deadlock)`
/// around `_instance_update`), but oslo.db does not classify SQLite's lock
/// error as a deadlock, so against a SQLite-backed conductor the retry has to
/// happen here. The refused transaction was rolled back, so sending the same
/// call again is safe, compare-and-swap saves included.
pub const DB_LOCKED_RETRIES: u32 = 5;
const DB_LOCKED_PAUSE: Duration = Duration::from_millis(200);

/// The conductor's database said it was locked (SQLite's `OperationalError`,
/// or oslo.db's `DBDeadlock`): transient, nothing was written.
fn is_db_locked(failure: &RemoteFailure) -> bool {
    failure.class == "DBDeadlock"
        || (failure.class == "OperationalError" && failure.message.contains("database is locked"))
}

/// One RPC call to the conductor.
#[derive(Debug, Clone, PartialEq)]
pub struct ConductorCall {
    /// The RPC method: `object_action`, `object_class_action_versions`, `ping`.
    pub method: &'static str,
    /// The method's keyword arguments, as oslo sends them (`args` of the message).
    pub args: Map<String, Value>,
    /// `None` for the conductor API; `Some("baseapi")` for `ping`.
    pub namespace: Option<&'static str>,
    /// The target version: [`CONDUCTOR_VERSION`] for the conductor API, `1.0` for `baseapi`.
    pub version: &'static str,
    /// A per-call reply timeout; `None` means the transport's
    /// `rpc_response_timeout`.
    pub timeout: Option<Duration>,
}

/// How a call reaches the conductor: oslo-messaging in the service, fakes in
/// unit tests. `call` returns the reply's `result`.
pub trait ConductorTransport: Send + Sync + 'static {
    /// Sends `call` with `ctx` and waits for the reply's `result`.
    fn call(
        &self,
        ctx: &RequestContext,
        call: ConductorCall,
    ) -> impl Future<Output = Result<Value, TransportError>> + Send;
}

/// `wait_until_ready`'s schedule: nova pings ten times with a 10 s timeout,
/// then with the configured RPC timeout, forever.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadinessPolicy {
    /// The reply timeout of the first pings (nova: 10 s).
    pub early_timeout: Duration,
    /// How many pings use [`ReadinessPolicy::early_timeout`] (nova: 10);
    /// later ones use the transport's `rpc_response_timeout`.
    pub early_attempts: u32,
    /// Give up after this many attempts (`None`: never, as nova).
    pub max_attempts: Option<u32>,
    /// Pause after a transport failure, so a broker outage is not a busy loop.
    pub retry_pause: Duration,
}

impl Default for ReadinessPolicy {
    fn default() -> Self {
        ReadinessPolicy {
            early_timeout: Duration::from_secs(10),
            early_attempts: 10,
            max_attempts: None,
            retry_pause: Duration::from_secs(1),
        }
    }
}

/// nova's `conductor.API` for objects: the typed entry point of this crate.
#[derive(Debug)]
pub struct ConductorApi<T> {
    transport: T,
}

impl<T: ConductorTransport> ConductorApi<T> {
    /// The conductor API over `transport`.
    pub fn new(transport: T) -> Self {
        ConductorApi { transport }
    }

    /// The transport the calls go through (tests inspect their fakes' records).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Sends one call and maps its failure. A call the conductor's database
    /// refused because it was momentarily locked is sent again, a few times
    /// (see [`DB_LOCKED_RETRIES`]).
    pub async fn call(&self, ctx: &RequestContext, call: ConductorCall) -> Result<Value, ConductorError> {
        let mut attempt = 0;
        loop {
            match self.call_once(ctx, call.clone()).await {
                Err(ConductorError::Remote(f)) if is_db_locked(&f) && attempt < DB_LOCKED_RETRIES => {
                    attempt += 1;
                    warn!(method = call.method, attempt, "conductor database locked; retrying");
                    tokio::time::sleep(DB_LOCKED_PAUSE * attempt).await;
                }
                result => return result,
            }
        }
    }

    async fn call_once(&self, ctx: &RequestContext, call: ConductorCall) -> Result<Value, ConductorError> {
        let method = call.method;
        self.transport.call(ctx, call).await.map_err(|e| match e {
            TransportError::Remote(f) => ConductorError::from_remote(*f),
            TransportError::Timeout => ConductorError::Timeout { method: method.to_owned() },
            TransportError::Unavailable(source) => ConductorError::Unavailable { method: method.to_owned(), source },
            TransportError::Protocol(source) => ConductorError::Undecodable { method: method.to_owned(), source },
        })
    }

    /// `baseapi.ping`: one attempt; the reply must echo the argument.
    pub async fn ping(&self, ctx: &RequestContext, timeout: Option<Duration>) -> Result<(), ConductorError> {
        let mut args = Map::new();
        args.insert("arg".into(), Value::String(PING_ARG.into()));
        let call = ConductorCall { method: "ping", args, namespace: Some("baseapi"), version: "1.0", timeout };
        let reply = self.call(ctx, call).await?;
        if reply.get("arg").and_then(Value::as_str) != Some(PING_ARG) {
            return Err(ObjectError::Malformed(format!("unexpected ping reply {reply}")).into());
        }
        Ok(())
    }

    /// `conductor.API.wait_until_ready`: ping until the conductor answers.
    /// Timeouts and transport failures are retried; a remote exception is
    /// returned (the conductor is up but refuses us).
    pub async fn wait_until_ready(&self, ctx: &RequestContext, policy: &ReadinessPolicy) -> Result<(), ConductorError> {
        let mut attempt = 0u32;
        let mut waited = false;
        loop {
            let timeout = (attempt < policy.early_attempts).then_some(policy.early_timeout);
            attempt += 1;
            let err = match self.ping(ctx, timeout).await {
                Ok(()) => {
                    if waited {
                        info!(request_id = ctx.request_id(), "nova-conductor connection established successfully");
                    }
                    return Ok(());
                }
                Err(e) if e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            waited = true;
            warn!(request_id = ctx.request_id(), attempt, error = %Chain(&err),
                "timed out waiting for nova-conductor; is it running? retrying");
            if policy.max_attempts.is_some_and(|max| attempt >= max) {
                return Err(err);
            }
            if matches!(err, ConductorError::Unavailable { .. }) {
                tokio::time::sleep(policy.retry_pause).await;
            }
        }
    }

    /// `object_action(objinst, objmethod, args, kwargs)` on `object`; the
    /// conductor's `updates` are applied to it and the method's own result
    /// returned.
    pub async fn object_action(
        &self,
        ctx: &RequestContext,
        object: &mut ObjectPrimitive,
        objmethod: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, ConductorError> {
        let mut call_args = Map::new();
        call_args.insert("objinst".into(), object.to_value());
        call_args.insert("objmethod".into(), Value::String(objmethod.into()));
        call_args.insert("args".into(), Value::Array(args));
        call_args.insert("kwargs".into(), Value::Object(kwargs));
        debug!(request_id = ctx.request_id(), object = object.name(), objmethod, changes = ?object.changes(),
            "conductor object_action");
        let reply = self.call(ctx, conductor_call("object_action", call_args)).await?;
        let (updates, result) = split_action_reply(reply)?;
        object.apply_updates(&updates)?;
        Ok(result)
    }

    /// `object_class_action_versions(objname, objmethod, object_versions,
    /// args, kwargs)`: a class method; `manifest` is the object tree's
    /// versions (`obj_tree_get_versions`), so the conductor backports its
    /// answer to what we understand.
    pub async fn class_action(
        &self,
        ctx: &RequestContext,
        objname: &str,
        manifest: &[(&str, &str)],
        objmethod: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, ConductorError> {
        let versions: Map<String, Value> =
            manifest.iter().map(|(name, version)| ((*name).to_owned(), Value::String((*version).to_owned()))).collect();
        let mut call_args = Map::new();
        call_args.insert("objname".into(), Value::String(objname.into()));
        call_args.insert("objmethod".into(), Value::String(objmethod.into()));
        call_args.insert("object_versions".into(), Value::Object(versions));
        call_args.insert("args".into(), Value::Array(args));
        call_args.insert("kwargs".into(), Value::Object(kwargs));
        debug!(request_id = ctx.request_id(), objname, objmethod, "conductor object_class_action_versions");
        self.call(ctx, conductor_call("object_class_action_versions", call_args)).await
    }
}

fn conductor_call(method: &'static str, args: Map<String, Value>) -> ConductorCall {
    ConductorCall { method, args, namespace: None, version: CONDUCTOR_VERSION, timeout: None }
}

/// `object_action` answers `[updates, result]` (a tuple, sent as a list).
fn split_action_reply(reply: Value) -> Result<(Value, Value), ObjectError> {
    match reply {
        Value::Array(mut pair) if pair.len() == 2 => {
            let result = pair.pop().unwrap_or(Value::Null);
            let updates = pair.pop().unwrap_or_else(|| json!({}));
            Ok((updates, result))
        }
        other => Err(ObjectError::Malformed(format!("object_action reply is not [updates, result]: {other}"))),
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory conductor transport: records every call and answers
    //! from a queue of canned replies.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    pub struct FakeTransport {
        pub calls: Mutex<Vec<(RequestContext, ConductorCall)>>,
        pub replies: Mutex<VecDeque<Result<Value, TransportError>>>,
    }

    impl FakeTransport {
        pub fn replying(replies: Vec<Result<Value, TransportError>>) -> Self {
            FakeTransport { calls: Mutex::default(), replies: Mutex::new(replies.into()) }
        }

        pub fn calls(&self) -> Vec<(RequestContext, ConductorCall)> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl ConductorTransport for FakeTransport {
        async fn call(&self, ctx: &RequestContext, call: ConductorCall) -> Result<Value, TransportError> {
            self.calls.lock().unwrap().push((ctx.clone(), call));
            self.replies.lock().unwrap().pop_front().unwrap_or(Err(TransportError::Timeout))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeTransport;
    use super::*;

    #[tokio::test]
    async fn ping_sends_baseapi_1_0_with_nova_argument() {
        let api = ConductorApi::new(FakeTransport::replying(vec![Ok(
            json!({"service": "conductor", "arg": "1.21 GigaWatts"}),
        )]));
        let ctx = RequestContext::admin();
        api.ping(&ctx, Some(Duration::from_secs(10))).await.unwrap();
        let (_, call) = &api.transport().calls()[0];
        assert_eq!(call.method, "ping");
        assert_eq!(call.namespace, Some("baseapi"));
        assert_eq!(call.version, "1.0");
        assert_eq!(Value::Object(call.args.clone()), json!({"arg": "1.21 GigaWatts"}));
    }

    fn remote(class: &str, module: &str, message: &str) -> TransportError {
        TransportError::Remote(Box::new(RemoteFailure {
            class: class.into(),
            module: module.into(),
            message: message.into(),
            kwargs: Map::new(),
        }))
    }

    fn save_call() -> ConductorCall {
        ConductorCall { method: "object_action", args: Map::new(), namespace: None, version: "3.0", timeout: None }
    }

    #[tokio::test(start_paused = true)]
    async fn a_locked_conductor_database_is_retried_and_other_failures_are_not() {
        let locked = || remote("OperationalError", "sqlalchemy.exc", "(sqlite3.OperationalError) database is locked");
        let api = ConductorApi::new(FakeTransport::replying(vec![Err(locked()), Err(locked()), Ok(json!([{}, null]))]));
        let ctx = RequestContext::admin();
        api.call(&ctx, save_call()).await.unwrap();
        assert_eq!(api.transport().calls().len(), 3);

        // Any other database error is a real failure: sent once.
        let api = ConductorApi::new(FakeTransport::replying(vec![Err(remote(
            "OperationalError",
            "sqlalchemy.exc",
            "(sqlite3.OperationalError) no such table: instances",
        ))]));
        assert!(matches!(api.call(&ctx, save_call()).await, Err(ConductorError::Remote(_))));
        assert_eq!(api.transport().calls().len(), 1);

        // A database that stays locked fails after the bounded retries.
        let api = ConductorApi::new(FakeTransport::replying((0..=DB_LOCKED_RETRIES).map(|_| Err(locked())).collect()));
        assert!(matches!(api.call(&ctx, save_call()).await, Err(ConductorError::Remote(_))));
        assert_eq!(api.transport().calls().len() as u32, DB_LOCKED_RETRIES + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_until_ready_retries_timeouts_and_outages() {
        let pong = json!({"service": "conductor", "arg": "1.21 GigaWatts"});
        let api = ConductorApi::new(FakeTransport::replying(vec![
            Err(TransportError::Timeout),
            Err(TransportError::Unavailable("connection refused".into())),
            Ok(pong),
        ]));
        let policy = ReadinessPolicy { early_attempts: 1, ..ReadinessPolicy::default() };
        api.wait_until_ready(&RequestContext::admin(), &policy).await.unwrap();
        let timeouts: Vec<_> = api.transport().calls().iter().map(|(_, c)| c.timeout).collect();
        // Early attempts use the short timeout, later ones the configured one.
        assert_eq!(timeouts, [Some(Duration::from_secs(10)), None, None]);
    }

    #[tokio::test]
    async fn wait_until_ready_gives_up_after_max_attempts() {
        let api = ConductorApi::new(FakeTransport::default());
        let policy = ReadinessPolicy { max_attempts: Some(2), ..ReadinessPolicy::default() };
        let err = api.wait_until_ready(&RequestContext::admin(), &policy).await.unwrap_err();
        assert!(matches!(err, ConductorError::Timeout { .. }), "{err:?}");
        assert_eq!(api.transport().calls().len(), 2);
    }

    #[tokio::test]
    async fn object_action_reply_must_be_a_pair() {
        let api = ConductorApi::new(FakeTransport::replying(vec![Ok(json!({"not": "a pair"}))]));
        let mut obj = ObjectPrimitive::new("Service", "1.22");
        let err = api.object_action(&RequestContext::admin(), &mut obj, "save", vec![], Map::new()).await.unwrap_err();
        assert!(matches!(err, ConductorError::Malformed(_)), "{err:?}");
    }
}
