//! The crate's errors: malformed primitives (`ObjectError`) and the
//! conductor's answers (`ConductorError`), where the nova exceptions the
//! snapshot path branches on are typed variants.
//!
//! The conductor serializes a failed object call as
//! `{"class", "module", "message", "kwargs"}`; `ConductorError::from_remote`
//! turns the classes nova-compute reacts to into variants and keeps every
//! other one as `Remote`, class and message intact.

use serde_json::{Map, Value};

/// A primitive or reply that does not have the shape nova gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// What is wrong with it, naming the object class or the reply.
    #[error("malformed nova object: {0}")]
    Malformed(String),
}

/// An exception raised on the conductor's side, as it came over the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteFailure {
    /// Exception class, e.g. `InstanceNotFound`.
    pub class: String,
    /// Python module, e.g. `nova.exception`.
    pub module: String,
    /// `str(exception)`.
    pub message: String,
    /// The exception's keyword arguments (nova: `code` and the message fields).
    pub kwargs: Map<String, Value>,
}

impl RemoteFailure {
    /// The `code` kwarg of a nova exception (500 when absent, as in nova).
    pub fn code(&self) -> i64 {
        self.kwargs.get("code").and_then(Value::as_i64).unwrap_or(500)
    }

    fn kwarg(&self, key: &str) -> String {
        match self.kwargs.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }
}

impl std::fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}: {}", self.module, self.class, self.message)
    }
}

/// The cause a transport keeps for its failures: whatever the messaging
/// layer said (oslo-messaging's error in the service).
pub type TransportCause = Box<dyn std::error::Error + Send + Sync>;

/// Why a call failed, as the messaging layer sees it.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The conductor raised an exception (the reply's `failure`).
    #[error("remote {0}")]
    Remote(Box<RemoteFailure>),
    /// No reply in time.
    #[error("no reply in time")]
    Timeout,
    /// The broker or connection is unusable right now.
    #[error("transport unavailable")]
    Unavailable(#[source] TransportCause),
    /// The reply could not be decoded.
    #[error("undecodable reply")]
    Protocol(#[source] TransportCause),
}

/// A lost `Instance.save` compare-and-swap, as the conductor reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStateConflict {
    /// The instance whose save lost.
    pub instance_uuid: String,
    /// `{"task_state": [expected...]}`.
    pub expected: Value,
    /// `{"task_state": actual}`.
    pub actual: Value,
    /// nova's message ("Conflict updating instance ...").
    pub message: String,
}

impl TaskStateConflict {
    /// The task state the row actually had.
    pub fn actual_task_state(&self) -> Option<&str> {
        self.actual.get("task_state").and_then(Value::as_str)
    }
}

/// What a conductor call can end in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConductorError {
    /// `Instance.save` compare-and-swap lost: the task state is not the
    /// expected one. nova-compute does not revert the task state on this.
    #[error("{}", .0.message)]
    UnexpectedTaskState(Box<TaskStateConflict>),
    /// The same conflict, with the instance being deleted
    /// (actual task state `deleting`): the operation must stop quietly.
    #[error("{}", .0.message)]
    UnexpectedDeletingTaskState(Box<TaskStateConflict>),
    /// The instance row is gone (or deleted).
    #[error("instance {instance_id} could not be found")]
    InstanceNotFound {
        /// The instance's uuid, as nova's `instance_id` kwarg carries it.
        instance_id: String,
    },
    /// No instance action for this request id: the event cannot be recorded.
    #[error("action for request_id {request_id} on instance {instance_uuid} not found")]
    InstanceActionNotFound {
        /// The request whose action was looked up.
        request_id: String,
        /// The instance the action would belong to.
        instance_uuid: String,
    },
    /// The action exists but the event to finish was never started.
    #[error("event {event} not found for action id {action_id}")]
    InstanceActionEventNotFound {
        /// The event name, e.g. `compute_snapshot_instance`.
        event: String,
        /// The action's database id.
        action_id: String,
    },
    /// The Service row was deleted under a running service.
    #[error("service {service_id} could not be found")]
    ServiceNotFound {
        /// The Service row's id (or host/binary, as nova formats it).
        service_id: String,
    },
    /// Our service version is below the deployment's minimum.
    #[error("{message}")]
    ServiceTooOld {
        /// nova's message, naming our version and the minimum.
        message: String,
    },
    /// Any other exception the conductor raised.
    #[error("conductor raised {0}")]
    Remote(Box<RemoteFailure>),
    /// No reply within the call timeout (oslo's `MessagingTimeout`).
    #[error("timed out waiting for nova-conductor ({method})")]
    Timeout {
        /// The conductor method called.
        method: String,
    },
    /// The messaging transport could not carry the call (broker down,
    /// connection lost); retryable.
    #[error("cannot reach nova-conductor ({method})")]
    Unavailable {
        /// The conductor method called.
        method: String,
        /// What the transport said.
        #[source]
        source: TransportCause,
    },
    /// The reply could not be decoded at all (not JSON, not an oslo reply).
    #[error("undecodable reply from nova-conductor ({method})")]
    Undecodable {
        /// The conductor method called.
        method: String,
        /// The decoder's complaint.
        #[source]
        source: TransportCause,
    },
    /// The conductor answered with something nova would not send.
    #[error(transparent)]
    Malformed(#[from] ObjectError),
}

impl ConductorError {
    /// Maps a serialized nova exception to its typed variant.
    pub fn from_remote(failure: RemoteFailure) -> Self {
        if failure.module != "nova.exception" {
            return ConductorError::Remote(Box::new(failure));
        }
        match failure.class.as_str() {
            "UnexpectedTaskStateError" | "UnexpectedDeletingTaskStateError" => {
                let instance_uuid = failure.kwarg("instance_uuid");
                let expected = failure.kwargs.get("expected").cloned().unwrap_or(Value::Null);
                let actual = failure.kwargs.get("actual").cloned().unwrap_or(Value::Null);
                let conflict =
                    Box::new(TaskStateConflict { instance_uuid, expected, actual, message: failure.message.clone() });
                if failure.class == "UnexpectedDeletingTaskStateError" {
                    ConductorError::UnexpectedDeletingTaskState(conflict)
                } else {
                    ConductorError::UnexpectedTaskState(conflict)
                }
            }
            "InstanceNotFound" => ConductorError::InstanceNotFound { instance_id: failure.kwarg("instance_id") },
            "InstanceActionNotFound" => ConductorError::InstanceActionNotFound {
                request_id: failure.kwarg("request_id"),
                instance_uuid: failure.kwarg("instance_uuid"),
            },
            "InstanceActionEventNotFound" => ConductorError::InstanceActionEventNotFound {
                event: failure.kwarg("event"),
                action_id: failure.kwarg("action_id"),
            },
            "ServiceNotFound" => ConductorError::ServiceNotFound { service_id: failure.kwarg("service_id") },
            "ServiceTooOld" => ConductorError::ServiceTooOld { message: failure.message },
            _ => ConductorError::Remote(Box::new(failure)),
        }
    }

    /// True for the two compare-and-swap conflicts (nova's
    /// `UnexpectedTaskStateError` and its subclass).
    pub fn is_unexpected_task_state(&self) -> bool {
        matches!(self, ConductorError::UnexpectedTaskState(_) | ConductorError::UnexpectedDeletingTaskState(_))
    }

    /// True when retrying later may succeed (transport trouble, timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConductorError::Timeout { .. } | ConductorError::Unavailable { .. })
    }

    /// The nova exception class this error stands for, for logs, faults
    /// and notifications.
    pub fn nova_class(&self) -> &str {
        match self {
            ConductorError::UnexpectedTaskState(_) => "UnexpectedTaskStateError",
            ConductorError::UnexpectedDeletingTaskState(_) => "UnexpectedDeletingTaskStateError",
            ConductorError::InstanceNotFound { .. } => "InstanceNotFound",
            ConductorError::InstanceActionNotFound { .. } => "InstanceActionNotFound",
            ConductorError::InstanceActionEventNotFound { .. } => "InstanceActionEventNotFound",
            ConductorError::ServiceNotFound { .. } => "ServiceNotFound",
            ConductorError::ServiceTooOld { .. } => "ServiceTooOld",
            ConductorError::Remote(f) => &f.class,
            ConductorError::Timeout { .. } => "MessagingTimeout",
            ConductorError::Unavailable { .. } => "MessageDeliveryFailure",
            ConductorError::Undecodable { .. } | ConductorError::Malformed(_) => "ValueError",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failure(class: &str, kwargs: Value) -> RemoteFailure {
        RemoteFailure {
            class: class.into(),
            module: "nova.exception".into(),
            message: format!("{class} happened"),
            kwargs: kwargs.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn conflicts_are_typed_and_keep_expected_and_actual() {
        let kw = json!({"instance_uuid": "u1", "expected": {"task_state": ["image_snapshot"]},
                        "actual": {"task_state": "deleting"}, "code": 500});
        let e = ConductorError::from_remote(failure("UnexpectedDeletingTaskStateError", kw.clone()));
        match &e {
            ConductorError::UnexpectedDeletingTaskState(c) => {
                assert_eq!(c.instance_uuid, "u1");
                assert_eq!(c.actual_task_state(), Some("deleting"));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_unexpected_task_state());
        let e = ConductorError::from_remote(failure("UnexpectedTaskStateError", kw));
        assert!(matches!(e, ConductorError::UnexpectedTaskState(_)));
    }

    #[test]
    fn not_found_classes_are_typed() {
        let e = ConductorError::from_remote(failure("InstanceNotFound", json!({"instance_id": "u2", "code": 404})));
        assert!(matches!(&e, ConductorError::InstanceNotFound { instance_id } if instance_id == "u2"), "{e:?}");
        let e = ConductorError::from_remote(failure(
            "InstanceActionNotFound",
            json!({"request_id": "req-1", "instance_uuid": "u3", "code": 500}),
        ));
        assert_eq!(e.to_string(), "action for request_id req-1 on instance u3 not found");
    }

    #[test]
    fn other_classes_and_modules_stay_remote() {
        let f = failure("InstanceInvalidState", json!({"code": 409}));
        assert_eq!(f.code(), 409);
        assert!(matches!(ConductorError::from_remote(f), ConductorError::Remote(_)));
        let mut f = failure("InstanceNotFound", json!({}));
        f.module = "builtins".into();
        assert!(matches!(ConductorError::from_remote(f), ConductorError::Remote(_)));
    }
}
