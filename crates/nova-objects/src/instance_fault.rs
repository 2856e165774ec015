//! `InstanceFault`: the error a user sees in `openstack server show`
//! (`fault.code`, `fault.message`, and for admins `fault.details`).
//!
//! Built the way nova's `add_instance_fault_from_exc` builds it: the
//! message is the exception's formatted message (or its class name),
//! truncated to 255 bytes of UTF-8 without splitting a character; the
//! traceback goes into `details` only for code 500; `host` is this
//! service's `[DEFAULT] host`. Saved with `object_action(create)`.

use serde_json::{Map, Value};
use tracing::info;

use crate::conductor::{ConductorApi, ConductorTransport};
use crate::context::RequestContext;
use crate::error::ConductorError;
use crate::primitive::ObjectPrimitive;

/// The InstanceFault object version nova 34 uses.
pub const INSTANCE_FAULT_VERSION: &str = "1.2";
/// The database column size of `instance_faults.message`.
const MESSAGE_MAX_BYTES: usize = 255;

/// What nova-compute knows about a failure, before it becomes a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultInfo {
    /// The exception's `code` kwarg (500 for anything that is not a nova
    /// exception with its own code).
    pub code: i64,
    /// `format_message()` for nova exceptions, else the class name — never
    /// the text of a foreign exception, which may hold secrets.
    pub message: String,
    /// The full traceback text (`traceback.format_exception`).
    pub traceback: String,
}

/// A new fault, ready to `create`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceFault {
    primitive: ObjectPrimitive,
}

impl InstanceFault {
    /// `add_instance_fault_from_exc(context, instance, exc, exc_info)`'s object.
    pub fn from_exc(instance_uuid: &str, host: &str, info: &FaultInfo) -> Self {
        let details = if info.code == 500 { info.traceback.clone() } else { String::new() };
        let mut primitive = ObjectPrimitive::new("InstanceFault", INSTANCE_FAULT_VERSION);
        primitive.set("host", Value::String(host.into()));
        primitive.set("instance_uuid", Value::String(instance_uuid.into()));
        primitive.set("message", Value::String(safe_truncate(&info.message, MESSAGE_MAX_BYTES).into()));
        primitive.set("code", Value::from(info.code));
        primitive.set("details", Value::String(details));
        InstanceFault { primitive }
    }

    /// The primitive `create` sends.
    pub fn primitive(&self) -> &ObjectPrimitive {
        &self.primitive
    }

    /// The fault's `message`: the exception class or its safe message, truncated as nova does.
    pub fn message(&self) -> &str {
        self.primitive.get_str("message").unwrap_or_default()
    }

    /// The fault's `details`: the message and the traceback.
    pub fn details(&self) -> &str {
        self.primitive.get_str("details").unwrap_or_default()
    }

    /// The fault's id once created.
    pub fn id(&self) -> Option<i64> {
        self.primitive.get("id").and_then(Value::as_i64)
    }

    /// `InstanceFault.create()` through the conductor.
    pub async fn create<T: ConductorTransport>(
        &mut self,
        api: &ConductorApi<T>,
        ctx: &RequestContext,
    ) -> Result<(), ConductorError> {
        let code = self.primitive.get("code").and_then(|c| c.as_i64());
        info!(
            request_id = ctx.request_id(),
            instance = self.primitive.get_str("instance_uuid"),
            code,
            message = self.message(),
            "recording instance fault"
        );
        api.object_action(ctx, &mut self.primitive, "create", Vec::new(), Map::new()).await?;
        Ok(())
    }
}

/// nova's `utils.safe_truncate`: at most `max` bytes of UTF-8, never half a
/// character.
pub fn safe_truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::conductor::fake::FakeTransport;

    #[test]
    fn details_only_for_code_500() {
        let info = FaultInfo { code: 500, message: "RuntimeError".into(), traceback: "Traceback...\n".into() };
        assert_eq!(InstanceFault::from_exc("u", "h", &info).details(), "Traceback...\n");
        let info = FaultInfo { code: 409, ..info };
        assert_eq!(InstanceFault::from_exc("u", "h", &info).details(), "");
    }

    #[test]
    fn message_is_truncated_to_255_bytes_on_a_char_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let info = FaultInfo { code: 500, message: long, traceback: String::new() };
        let fault = InstanceFault::from_exc("u", "h", &info);
        assert_eq!(fault.message().len(), 254);
        assert_eq!(safe_truncate("short", 255), "short");
        assert_eq!(safe_truncate(&"a".repeat(300), 255).len(), 255);
    }

    #[tokio::test]
    async fn create_sends_the_fields_nova_sends_and_takes_the_id() {
        let reply = json!([{"id": 7, "created_at": "2026-11-22T13:45:04Z", "updated_at": null,
                            "deleted_at": null, "deleted": false, "obj_what_changed": []}, null]);
        let api = ConductorApi::new(FakeTransport::replying(vec![Ok(reply)]));
        let info = FaultInfo { code: 500, message: "RuntimeError".into(), traceback: "tb".into() };
        let mut fault = InstanceFault::from_exc("uuid-1", "cmp1", &info);
        fault.create(&api, &RequestContext::admin()).await.unwrap();
        assert_eq!(fault.id(), Some(7));
        assert!(fault.primitive().changes().is_empty());
        let (_, call) = &api.transport().calls()[0];
        assert_eq!(call.method, "object_action");
        assert_eq!(call.args["objmethod"], "create");
        let sent = &call.args["objinst"];
        assert_eq!(sent["nova_object.name"], "InstanceFault");
        assert_eq!(sent["nova_object.version"], "1.2");
        assert_eq!(
            sent["nova_object.data"],
            json!({"host": "cmp1", "instance_uuid": "uuid-1", "message": "RuntimeError", "code": 500, "details": "tb"})
        );
    }
}
