//! nova's `@wrap_exception` notifications (`nova/exception_wrapper.py`):
//! when a decorated compute-manager method fails, a legacy notification
//! whose event type is the method's name, payload `{exception, args}`, and
//! a versioned `compute.exception` carrying `ExceptionPayload` 1.1, both at
//! priority `ERROR`.

use serde_json::{json, Map, Value};

use super::{by_policy, payload_primitive, Notification};
use super::{NotificationPolicy, Priority};

/// `ExceptionPayload.VERSION` in nova 34.
pub const EXCEPTION_PAYLOAD_VERSION: &str = "1.1";

/// The failure `@wrap_exception` reports: what nova reads off the Python
/// exception it caught.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExceptionInfo<'a> {
    /// The module the exception was raised in (`inspect.trace()[-1]`'s
    /// module), e.g. `nova.compute.manager`.
    pub module_name: &'a str,
    /// The exception's class name, e.g. `ImageNotFound`.
    pub class: &'a str,
    /// `str(exception)`.
    pub message: &'a str,
    /// The exception's `kwargs` (for a `NovaException`: the message's
    /// fields and `code`): the legacy payload's `exception`.
    pub kwargs: &'a Map<String, Value>,
    /// The formatted traceback, `traceback.format_exception` joined.
    pub traceback: &'a str,
}

/// The notifications `@wrap_exception` sends for a failure of
/// `function_name` on `host` under `policy`: legacy first, then versioned.
///
/// `call_args` are the method's arguments by name (nova's
/// `inspect.getcallargs` without `self` and `context`); keys containing
/// `_pass` are left out (`_cleanse_dict`), so no password reaches the bus.
pub fn exception_notifications(
    policy: &NotificationPolicy,
    host: &str,
    function_name: &str,
    call_args: Value,
    exc: &ExceptionInfo<'_>,
) -> Vec<Notification> {
    let legacy = || {
        let payload = json!({ "exception": { "kwargs": exc.kwargs }, "args": cleanse(call_args) });
        (function_name.to_owned(), payload)
    };
    let versioned = || ("compute.exception".to_owned(), exception_payload(function_name, exc));
    by_policy(policy, host, Priority::Error, legacy, versioned)
}

/// `ExceptionPayload(module_name, function_name, exception,
/// exception_message, traceback)` as a primitive.
fn exception_payload(function_name: &str, exc: &ExceptionInfo<'_>) -> Value {
    let mut data = Map::new();
    data.insert("module_name".into(), exc.module_name.into());
    data.insert("function_name".into(), function_name.into());
    data.insert("exception".into(), exc.class.into());
    data.insert("exception_message".into(), exc.message.into());
    data.insert("traceback".into(), exc.traceback.into());
    payload_primitive("ExceptionPayload", EXCEPTION_PAYLOAD_VERSION, data)
}

/// `_cleanse_dict`: no key containing `_pass` goes into a notification.
fn cleanse(args: Value) -> Value {
    match args {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(k, _)| !k.contains("_pass")).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::NotificationKind;
    use super::*;

    fn info<'a>(kwargs: &'a Map<String, Value>) -> ExceptionInfo<'a> {
        ExceptionInfo {
            module_name: "nova.compute.manager",
            class: "ImageNotFound",
            message: "Image i could not be found.",
            kwargs,
            traceback: "Traceback (most recent call last):\n",
        }
    }

    #[test]
    fn passwords_never_reach_notifications() {
        let out = cleanse(json!({"image_id": "i", "admin_password": "x", "new_pass": "y", "rotation": 2}));
        assert_eq!(out, json!({"image_id": "i", "rotation": 2}));
    }

    #[test]
    fn legacy_then_versioned_at_error_priority() {
        let kwargs = json!({"image_id": "i", "code": 404}).as_object().cloned().unwrap();
        let policy = NotificationPolicy { legacy: true, versioned: true };
        let args = json!({"image_id": "i", "admin_password": "secret"});
        let sent = exception_notifications(&policy, "cmp1", "snapshot_instance", args, &info(&kwargs));
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].kind, NotificationKind::Legacy);
        assert_eq!(sent[0].publisher_id, "compute.cmp1");
        assert_eq!(sent[0].event_type, "snapshot_instance");
        assert_eq!(sent[0].priority, Priority::Error);
        assert_eq!(
            sent[0].payload,
            json!({"exception": {"kwargs": {"image_id": "i", "code": 404}},
            "args": {"image_id": "i"}})
        );
        assert_eq!(sent[1].kind, NotificationKind::Versioned);
        assert_eq!(sent[1].publisher_id, "nova-compute:cmp1");
        assert_eq!(sent[1].event_type, "compute.exception");
        assert_eq!(sent[1].payload["nova_object.data"]["exception"], "ImageNotFound");
    }

    #[test]
    fn the_policy_chooses_the_families() {
        let kwargs = Map::new();
        let only_versioned = NotificationPolicy { legacy: false, versioned: true };
        let sent = exception_notifications(&only_versioned, "h", "f", json!({}), &info(&kwargs));
        assert_eq!(sent.iter().map(|n| n.kind).collect::<Vec<_>>(), [NotificationKind::Versioned]);
        let none = NotificationPolicy { legacy: false, versioned: false };
        assert!(exception_notifications(&none, "h", "f", json!({}), &info(&kwargs)).is_empty());
    }
}
