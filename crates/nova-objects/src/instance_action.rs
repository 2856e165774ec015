//! `InstanceActionEvent`: the per-step records under an instance action
//! (`openstack server event show`). nova-api creates the action
//! (`createImage`, `createBackup`) keyed by the request id; nova-compute adds
//! the `compute_<method>` event to it with `event_start` and closes it with
//! `event_finish_with_failure` — `Success`, or `Error` with the exception
//! message and traceback.
//!
//! The conductor finds the action by `(instance_uuid, context.request_id)`,
//! so these calls must carry the request's own context.

use error_chain::Chain;
use serde_json::{Map, Value};
use tracing::{debug, warn};

use crate::conductor::{ConductorApi, ConductorTransport};
use crate::context::RequestContext;
use crate::error::ConductorError;

/// `obj_tree_get_versions('InstanceActionEvent')` in nova 34.
pub const INSTANCE_ACTION_EVENT_MANIFEST: &[(&str, &str)] = &[("InstanceActionEvent", "1.4")];

/// How an event ended, as `event_finish_with_failure` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Result `Success`.
    Success,
    /// Result `Error`: `message` becomes the event's `details` (nova:
    /// `format_message()` of a nova exception, else the class name) and
    /// `traceback` its `traceback`.
    Failure {
        /// The event's `details`.
        message: String,
        /// The event's `traceback`.
        traceback: String,
    },
}

/// nova's `InstanceActionEvent` class methods.
#[derive(Debug, Clone, Copy)]
pub struct InstanceActionEvent;

impl InstanceActionEvent {
    /// The event name `wrap_instance_event(prefix='compute')` gives a
    /// manager method: `compute_snapshot_instance`.
    pub fn compute_event_name(method: &str) -> String {
        format!("compute_{method}")
    }

    /// `InstanceActionEvent.event_start(ctx, uuid, event, want_result=False,
    /// host=host)`. `InstanceActionNotFound` when nova-api recorded no action
    /// for this request id.
    pub async fn event_start<T: ConductorTransport>(
        api: &ConductorApi<T>,
        ctx: &RequestContext,
        instance_uuid: &str,
        event: &str,
        host: &str,
    ) -> Result<(), ConductorError> {
        let mut kwargs = Map::new();
        kwargs.insert("want_result".into(), Value::Bool(false));
        kwargs.insert("host".into(), Value::String(host.into()));
        debug!(request_id = ctx.request_id(), instance = instance_uuid, event, "instance action event start");
        Self::class_call(api, ctx, "event_start", instance_uuid, event, kwargs).await
    }

    /// `InstanceActionEvent.event_finish_with_failure(ctx, uuid, event,
    /// exc_val=..., exc_tb=..., want_result=False)`.
    pub async fn event_finish_with_failure<T: ConductorTransport>(
        api: &ConductorApi<T>,
        ctx: &RequestContext,
        instance_uuid: &str,
        event: &str,
        outcome: &EventOutcome,
    ) -> Result<(), ConductorError> {
        let (exc_val, exc_tb) = match outcome {
            EventOutcome::Success => (Value::Null, Value::Null),
            // Any non-null `exc_tb`, even empty, makes nova record `Error`.
            EventOutcome::Failure { message, traceback } => {
                (Value::String(message.clone()), Value::String(traceback.clone()))
            }
        };
        let mut kwargs = Map::new();
        kwargs.insert("exc_val".into(), exc_val);
        kwargs.insert("exc_tb".into(), exc_tb);
        kwargs.insert("want_result".into(), Value::Bool(false));
        debug!(
            request_id = ctx.request_id(),
            instance = instance_uuid,
            event,
            ?outcome,
            "instance action event finish"
        );
        Self::class_call(api, ctx, "event_finish_with_failure", instance_uuid, event, kwargs).await
    }

    async fn class_call<T: ConductorTransport>(
        api: &ConductorApi<T>,
        ctx: &RequestContext,
        objmethod: &str,
        instance_uuid: &str,
        event: &str,
        kwargs: Map<String, Value>,
    ) -> Result<(), ConductorError> {
        let args = vec![Value::String(instance_uuid.into()), Value::String(event.into())];
        let result =
            api.class_action(ctx, "InstanceActionEvent", INSTANCE_ACTION_EVENT_MANIFEST, objmethod, args, kwargs).await;
        if let Err(e) = &result {
            warn!(request_id = ctx.request_id(), instance = instance_uuid, event, error = %Chain(&e),
                "cannot record instance action event");
        }
        result.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::conductor::fake::FakeTransport;
    use crate::error::RemoteFailure;
    use crate::error::TransportError;

    #[tokio::test]
    async fn start_and_finish_carry_the_request_context_and_nova_kwargs() {
        let api = ConductorApi::new(FakeTransport::replying(vec![Ok(Value::Null), Ok(Value::Null)]));
        let ctx = RequestContext::for_user("u", "p", &["member"], None);
        let event = InstanceActionEvent::compute_event_name("snapshot_instance");
        InstanceActionEvent::event_start(&api, &ctx, "uuid-1", &event, "cmp1").await.unwrap();
        let failure = EventOutcome::Failure { message: "boom".into(), traceback: "Traceback ...\n".into() };
        InstanceActionEvent::event_finish_with_failure(&api, &ctx, "uuid-1", &event, &failure).await.unwrap();
        let calls = api.transport().calls();
        assert_eq!(calls[0].0.request_id(), ctx.request_id());
        assert_eq!(calls[0].1.method, "object_class_action_versions");
        assert_eq!(
            Value::Object(calls[0].1.args.clone()),
            json!({"objname": "InstanceActionEvent", "objmethod": "event_start",
                   "object_versions": {"InstanceActionEvent": "1.4"},
                   "args": ["uuid-1", "compute_snapshot_instance"],
                   "kwargs": {"want_result": false, "host": "cmp1"}})
        );
        assert_eq!(
            calls[1].1.args["kwargs"],
            json!({"exc_val": "boom", "exc_tb": "Traceback ...\n", "want_result": false})
        );
    }

    #[tokio::test]
    async fn missing_action_is_a_typed_error() {
        let failure = RemoteFailure {
            class: "InstanceActionNotFound".into(),
            module: "nova.exception".into(),
            message: "Action for request_id req-x on instance u not found".into(),
            kwargs: json!({"request_id": "req-x", "instance_uuid": "u", "code": 500}).as_object().unwrap().clone(),
        };
        let api = ConductorApi::new(FakeTransport::replying(vec![Err(TransportError::Remote(Box::new(failure)))]));
        let err =
            InstanceActionEvent::event_start(&api, &RequestContext::admin(), "u", "compute_x", "h").await.unwrap_err();
        assert!(
            matches!(&err, ConductorError::InstanceActionNotFound { request_id, instance_uuid }
                if request_id == "req-x" && instance_uuid == "u"),
            "{err:?}"
        );
    }
}
