//! The conductor transport and notification sink over oslo-messaging: what
//! the service plugs into `ConductorApi` and `emit`.
//!
//! Owns: turning a `ConductorCall` into an oslo `RpcClient` call on topic
//! `conductor` (namespace and version per call) and oslo's errors into
//! `TransportError`; routing legacy and versioned notifications to their
//! notifiers. Must not know: anything about the objects themselves.

use std::time::Duration;

use oslo_messaging::{Context, Error, Notifier, RpcClient, Target, Transport};
use serde_json::Value;

use crate::conductor::{ConductorCall, ConductorTransport, CONDUCTOR_TOPIC};
use crate::context::RequestContext;
use crate::error::{RemoteFailure, TransportError};
use crate::notifications::{Notification, NotificationKind, NotificationSink, SendError};

/// Calls nova-conductor through an oslo-messaging transport.
#[derive(Debug, Clone)]
pub struct OsloConductorTransport {
    client: RpcClient,
}

impl OsloConductorTransport {
    /// A conductor client on `transport`; `rpc_response_timeout` is the
    /// default reply timeout (`[DEFAULT] rpc_response_timeout`).
    pub fn new(transport: &Transport, rpc_response_timeout: Duration) -> Self {
        let client = RpcClient::new(transport, Target::topic(CONDUCTOR_TOPIC)).with_timeout(rpc_response_timeout);
        OsloConductorTransport { client }
    }
}

impl ConductorTransport for OsloConductorTransport {
    async fn call(&self, ctx: &RequestContext, call: ConductorCall) -> Result<Value, TransportError> {
        let mut target = Target::topic(CONDUCTOR_TOPIC).with_version(call.version);
        if let Some(namespace) = call.namespace {
            target = target.with_namespace(namespace);
        }
        let mut client = self.client.prepare(target);
        if let Some(timeout) = call.timeout {
            client = client.with_timeout(timeout);
        }
        let context = Context::clone(ctx);
        client.call(&context, call.method, Value::Object(call.args)).await.map_err(transport_error)
    }
}

/// oslo's errors as the conductor client classifies them; the oslo error
/// stays the cause, so its own causes (lapin's reason) are kept too.
fn transport_error(e: Error) -> TransportError {
    match e {
        Error::Remote(r) => TransportError::Remote(Box::new(RemoteFailure {
            class: r.class,
            module: r.module,
            message: r.message,
            kwargs: r.kwargs,
        })),
        Error::Timeout { .. } => TransportError::Timeout,
        Error::Decode(d) => TransportError::Protocol(Box::new(d)),
        other => TransportError::Unavailable(Box::new(other)),
    }
}

/// Sends legacy notifications on the `[oslo_messaging_notifications]
/// topics` and versioned ones on `[notifications]
/// versioned_notifications_topics`.
#[derive(Debug, Clone)]
pub struct OsloNotificationSink {
    legacy: Notifier,
    versioned: Notifier,
}

impl OsloNotificationSink {
    /// Notifiers on `transport` for the two families' topic lists.
    pub fn new(transport: &Transport, legacy_topics: Vec<String>, versioned_topics: Vec<String>) -> Self {
        OsloNotificationSink {
            legacy: Notifier::new(transport, "", legacy_topics),
            versioned: Notifier::new(transport, "", versioned_topics),
        }
    }
}

impl NotificationSink for OsloNotificationSink {
    async fn notify(&self, ctx: &RequestContext, n: &Notification) -> Result<(), SendError> {
        let notifier = match n.kind {
            NotificationKind::Legacy => &self.legacy,
            NotificationKind::Versioned => &self.versioned,
        };
        let context = Context::clone(ctx);
        notifier
            .prepare(n.publisher_id.clone())
            .notify(&context, &n.event_type, n.priority, &n.payload)
            .await
            .map_err(SendError::from)
    }
}
