//! The notifications nova-compute emits on the snapshot path, legacy and
//! versioned as `[notifications] notification_format` chooses, and sent only
//! when a notification driver is configured:
//!
//! * around a snapshot: versioned `instance.snapshot.start|end`
//!   (`InstanceActionSnapshotPayload` 1.10, publisher `nova-compute:HOST`,
//!   [`instance_payload`]) and legacy `compute.instance.snapshot.*`
//!   (`info_from_instance`, publisher `compute.HOST`, [`legacy`]);
//! * on a handler's failure, nova's `@wrap_exception`: legacy `<function
//!   name>` with `{exception, args}` and versioned `compute.exception`
//!   (`ExceptionPayload` 1.1, [`exception`]).
//!
//! Owns: the payloads, field by field as nova builds them, and which
//! notifications a phase or a failure produces. Must not know: the envelope,
//! the topics' exchanges or the broker — a [`NotificationSink`]
//! (oslo-messaging's notifier) sends them, with the context redacted.

mod exception;
mod instance_payload;
mod legacy;

use std::future::Future;

use error_chain::Chain;
use oslo_config::groups::NotificationFormat;
pub use oslo_messaging::Priority;
use serde_json::{json, Map, Value};
use tracing::warn;

use crate::context::RequestContext;
use crate::instance::Instance;

pub use exception::{exception_notifications, ExceptionInfo, EXCEPTION_PAYLOAD_VERSION};
pub use instance_payload::{instance_action_snapshot_payload, SNAPSHOT_PAYLOAD_VERSION};
pub use legacy::info_from_instance;

/// Which notification families are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPolicy {
    /// Legacy (unversioned) notifications on `[oslo_messaging_notifications] topics`.
    pub legacy: bool,
    /// Versioned notifications on `[notifications] versioned_notifications_topics`.
    pub versioned: bool,
}

impl NotificationPolicy {
    /// nova's `rpc.init`: the format picks the families; a driver list that
    /// is empty or only `noop` disables both (oslo's notifier is then a no-op).
    pub fn new(format: NotificationFormat, drivers: &[String]) -> Self {
        let enabled = drivers.iter().any(|d| !d.trim().is_empty() && d.trim() != "noop");
        NotificationPolicy {
            legacy: enabled && matches!(format, NotificationFormat::Unversioned | NotificationFormat::Both),
            versioned: enabled && matches!(format, NotificationFormat::Versioned | NotificationFormat::Both),
        }
    }
}

/// The phase of an action notification (nova's `fields.NotificationPhase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `start`: sent before the action's work begins.
    Start,
    /// `end`: sent after the action succeeded.
    End,
}

impl Phase {
    /// The event-type suffix: `start` or `end`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::End => "end",
        }
    }
}

/// Legacy or versioned: decides the topics the notifier publishes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// Unversioned, on `[oslo_messaging_notifications] topics` (default
    /// `notifications`), publisher `compute.HOST`.
    Legacy,
    /// Versioned, on `[notifications] versioned_notifications_topics`
    /// (default `versioned_notifications`), publisher `nova-compute:HOST`.
    Versioned,
}

/// One notification, ready for the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Which family, hence which topics.
    pub kind: NotificationKind,
    /// oslo's `publisher_id`: `compute.HOST` (legacy) or `nova-compute:HOST` (versioned).
    pub publisher_id: String,
    /// e.g. `instance.snapshot.start`, `compute.exception`, `snapshot_instance`.
    pub event_type: String,
    /// `INFO` for the snapshot phases, `ERROR` for `@wrap_exception`.
    pub priority: Priority,
    /// The payload: a plain dict (legacy) or a `nova_object` primitive (versioned).
    pub payload: Value,
}

/// What the payloads need beyond the instance and the context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PayloadOptions {
    /// The Glance endpoint (`http://glance:9292`) for the legacy
    /// `image_ref_url`; without it nova's fallback, the bare image id.
    pub glance_api_server: Option<String>,
    /// `BlockDevicePayload` primitives when `[notifications]
    /// bdms_in_notifications` is on; `None` sends null, nova's default.
    pub block_devices: Option<Vec<Value>>,
    /// `SharePayload` primitives when `include_share_mapping` is on.
    pub shares: Option<Vec<Value>>,
}

/// The notifications of one snapshot phase under `policy`: legacy
/// `compute.instance.snapshot.<phase>` then versioned
/// `instance.snapshot.<phase>`, as `_snapshot_instance` sends them.
pub fn snapshot_notifications(
    policy: &NotificationPolicy,
    ctx: &RequestContext,
    instance: &Instance,
    host: &str,
    phase: Phase,
    snapshot_image_id: &str,
    opts: &PayloadOptions,
) -> Vec<Notification> {
    let phase = phase.as_str();
    let legacy =
        || (format!("compute.instance.snapshot.{phase}"), Value::Object(info_from_instance(ctx, instance, opts)));
    let versioned = || {
        (format!("instance.snapshot.{phase}"), instance_action_snapshot_payload(ctx, instance, snapshot_image_id, opts))
    };
    by_policy(policy, host, Priority::Info, legacy, versioned)
}

/// One event as `policy` sends it: the legacy notification (its event
/// type and payload from `legacy`), then the versioned one (from
/// `versioned`); a payload is built only when its family is on.
fn by_policy(
    policy: &NotificationPolicy,
    host: &str,
    priority: Priority,
    legacy: impl FnOnce() -> (String, Value),
    versioned: impl FnOnce() -> (String, Value),
) -> Vec<Notification> {
    let mut out = Vec::new();
    if policy.legacy {
        let (event_type, payload) = legacy();
        out.push(Notification {
            kind: NotificationKind::Legacy,
            publisher_id: legacy_publisher(host),
            event_type,
            priority,
            payload,
        });
    }
    if policy.versioned {
        let (event_type, payload) = versioned();
        out.push(Notification {
            kind: NotificationKind::Versioned,
            publisher_id: versioned_publisher(host),
            event_type,
            priority,
            payload,
        });
    }
    out
}

/// `rpc.get_notifier('compute', host)`'s publisher id.
fn legacy_publisher(host: &str) -> String {
    format!("compute.{host}")
}

/// `NotificationPublisher(host, source='nova-compute')`'s publisher id.
fn versioned_publisher(host: &str) -> String {
    format!("nova-compute:{host}")
}

/// A `nova_object` primitive of a notification payload, with no changes
/// list (nova resets the payload's changes before emitting).
fn payload_primitive(name: &str, version: &str, data: Map<String, Value>) -> Value {
    json!({
        "nova_object.name": name,
        "nova_object.namespace": "nova",
        "nova_object.version": version,
        "nova_object.data": data,
    })
}

/// Why a sink could not send a notification: whatever its transport says
/// (oslo-messaging's error in the service, anything in fakes).
pub type SendError = Box<dyn std::error::Error + Send + Sync>;

/// Sends notifications (oslo-messaging's notifier in the service).
pub trait NotificationSink: Send + Sync {
    /// Sends one notification with an already redacted context.
    fn notify(
        &self,
        ctx: &RequestContext,
        notification: &Notification,
    ) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Sends each notification with the redacted context. A failure is logged
/// (with its causes) and never fails the caller, as oslo's notifier
/// swallows send errors.
pub async fn emit<S: NotificationSink>(sink: &S, ctx: &RequestContext, notifications: &[Notification]) {
    let redacted = ctx.redacted();
    for n in notifications {
        if let Err(e) = sink.notify(&redacted, n).await {
            warn!(request_id = ctx.request_id(), event_type = %n.event_type, error = %Chain(e.as_ref()),
                "cannot send notification");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drivers(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn policy_follows_format_and_driver() {
        let p = NotificationPolicy::new(NotificationFormat::Unversioned, &drivers(&["messagingv2"]));
        assert_eq!(p, NotificationPolicy { legacy: true, versioned: false });
        let p = NotificationPolicy::new(NotificationFormat::Both, &drivers(&["messagingv2"]));
        assert_eq!(p, NotificationPolicy { legacy: true, versioned: true });
        let p = NotificationPolicy::new(NotificationFormat::Versioned, &drivers(&["messagingv2"]));
        assert_eq!(p, NotificationPolicy { legacy: false, versioned: true });
        for none in [&[][..], &["noop"][..]] {
            let p = NotificationPolicy::new(NotificationFormat::Both, &drivers(none));
            assert_eq!(p, NotificationPolicy { legacy: false, versioned: false });
        }
    }
}
