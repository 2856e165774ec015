//! The one place where errors of the crates below become nova exceptions.
//!
//! nova-api, nova-conductor and operators only ever see nova's exception
//! classes: in RPC replies (`quiesce_instance`: nova-api re-raises only
//! classes of module `nova.exception`), in instance faults (message, code,
//! details) and in error notifications. Every error this service can meet is
//! a [`ComputeError`]; [`ComputeError::nova`] names the class, module,
//! kwargs and code nova would have raised in the same situation.

use error_chain::error_chain;
use glance_client::GlanceError;
use libvirt_snapshot::SnapshotError;
use nova_objects::{ConductorError, FaultInfo};
use oslo_messaging::RemoteError;
use serde_json::{json, Map, Value};

/// Module of every nova exception (what nova-api's deserializer allows).
pub const NOVA_EXCEPTION_MODULE: &str = "nova.exception";

/// Everything that can make a request fail in this service.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// nova-conductor refused or failed a call (task-state conflicts included).
    #[error(transparent)]
    Conductor(#[from] ConductorError),
    /// The snapshot engine failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Glance failed or refused.
    #[error(transparent)]
    Glance(#[from] GlanceError),
    /// nova's `InstanceNotRunning`: the domain is not on this host
    /// (driver.snapshot's `get_guest` raising `InstanceNotFound`).
    #[error("Instance {instance_id} is not running.")]
    InstanceNotRunning {
        /// The instance's uuid.
        instance_id: String,
    },
    /// The snapshot job itself failed (a panic in its task): nova's
    /// `InternalError`, so the cascade still runs.
    #[error("the snapshot job of instance {instance_id} failed")]
    JobFailed {
        /// The instance's uuid.
        instance_id: String,
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A cast of a method this service does not serve (nova would have run
    /// it); recorded as `NotImplementedError` with this message.
    #[error("Operation {method} is not supported by this compute service (host {host})")]
    NotSupported {
        /// The RPC method.
        method: String,
        /// This service's host.
        host: String,
    },
    /// The service is stopping and aborted the work after its grace period.
    #[error("snapshot of instance {instance_id} aborted: nova-compute is stopping")]
    ShuttingDown {
        /// The instance's uuid.
        instance_id: String,
    },
}

/// A nova exception as the other services see it.
#[derive(Debug, Clone, PartialEq)]
pub struct NovaException {
    pub module: &'static str,
    pub class: String,
    pub message: String,
    /// The kwargs nova's `msg_fmt` needs, plus `code` as NovaException adds it.
    pub kwargs: Map<String, Value>,
    pub code: i64,
}

impl NovaException {
    fn new(class: &str, message: String, code: i64, kwargs: Value) -> Self {
        let mut kwargs = match kwargs {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        kwargs.insert("code".into(), json!(code));
        NovaException { module: NOVA_EXCEPTION_MODULE, class: class.into(), message, kwargs, code }
    }

    /// The RPC reply failure (oslo's `serialize_remote_exception`).
    pub fn to_remote_error(&self) -> RemoteError {
        RemoteError::new(self.module, self.class.clone(), self.message.clone())
            .with_kwargs(self.kwargs.clone())
            .with_tb(self.traceback_lines())
    }

    /// What `compute_utils.add_instance_fault_from_exc` stores: the formatted
    /// message for nova exceptions, the class name for others; the
    /// "traceback" only for code 500.
    pub fn fault_info(&self) -> FaultInfo {
        let message = if self.module == NOVA_EXCEPTION_MODULE { self.message.clone() } else { self.class.clone() };
        FaultInfo { code: self.code, message, traceback: self.traceback() }
    }

    /// A Python-shaped traceback naming the service, so `openstack server
    /// show` and the action event show where the error came from.
    pub fn traceback(&self) -> String {
        self.traceback_lines().concat()
    }

    fn traceback_lines(&self) -> Vec<String> {
        vec![
            "Traceback (most recent call last):\n".into(),
            "  File \"nova-compute (Rust)\", in the snapshot path\n".into(),
            format!("{}.{}: {}\n", self.module, self.class, self.message),
        ]
    }

    /// `module.Class` as oslo names it in logs.
    pub fn qualified_class(&self) -> String {
        format!("{}.{}", self.module, self.class)
    }
}

impl ComputeError {
    /// nova's `InstanceNotFound` (row gone, or domain gone during the copy).
    pub fn is_instance_not_found(&self) -> bool {
        matches!(
            self,
            ComputeError::Conductor(ConductorError::InstanceNotFound { .. })
                | ComputeError::Snapshot(SnapshotError::DomainNotFound { .. })
        )
    }

    /// `UnexpectedTaskStateError` or its subclass: `reverts_task_state` must
    /// not touch the task state then (someone else owns it).
    pub fn is_unexpected_task_state(&self) -> bool {
        matches!(self, ComputeError::Conductor(e) if e.is_unexpected_task_state())
    }

    /// `UnexpectedDeletingTaskStateError`: the instance is being deleted.
    pub fn is_deleting(&self) -> bool {
        matches!(self, ComputeError::Conductor(ConductorError::UnexpectedDeletingTaskState(_)))
    }

    /// `ImageNotFound`: the reserved image was deleted meanwhile.
    pub fn is_image_not_found(&self) -> bool {
        matches!(self, ComputeError::Glance(GlanceError::ImageNotFound { .. }))
    }

    /// What nova would have raised.
    pub fn nova(&self) -> NovaException {
        match self {
            ComputeError::Conductor(e) => conductor_exception(e),
            ComputeError::Snapshot(e) => snapshot_exception(e),
            ComputeError::Glance(e) => glance_exception(e),
            ComputeError::InstanceNotRunning { instance_id } => {
                NovaException::new("InstanceNotRunning", self.to_string(), 400, json!({ "instance_id": instance_id }))
            }
            ComputeError::JobFailed { .. } => {
                let message = error_chain(self);
                NovaException::new("InternalError", message.clone(), 500, json!({ "err": message }))
            }
            // nova.exception-moduled so the fault keeps the message, not only the class name.
            ComputeError::NotSupported { .. } => NovaException {
                module: NOVA_EXCEPTION_MODULE,
                class: "NotImplementedError".into(),
                message: self.to_string(),
                kwargs: Map::new(),
                code: 500,
            },
            ComputeError::ShuttingDown { .. } => NovaException::new("NovaException", self.to_string(), 500, json!({})),
        }
    }
}

fn conductor_exception(e: &ConductorError) -> NovaException {
    let message = error_chain(e);
    match e {
        ConductorError::InstanceNotFound { instance_id } => {
            NovaException::new("InstanceNotFound", message, 404, json!({ "instance_id": instance_id }))
        }
        ConductorError::UnexpectedTaskState(c) | ConductorError::UnexpectedDeletingTaskState(c) => NovaException::new(
            e.nova_class(),
            c.message.clone(),
            500,
            json!({ "instance_uuid": c.instance_uuid, "expected": c.expected, "actual": c.actual }),
        ),
        ConductorError::Remote(f) if f.module == NOVA_EXCEPTION_MODULE => NovaException {
            module: NOVA_EXCEPTION_MODULE,
            class: f.class.clone(),
            message: f.message.clone(),
            kwargs: f.kwargs.clone(),
            code: f.code(),
        },
        ConductorError::Timeout { .. } => NovaException {
            module: "oslo_messaging.exceptions",
            class: "MessagingTimeout".into(),
            message,
            kwargs: Map::new(),
            code: 500,
        },
        other => NovaException::new(other.nova_class(), message, 500, json!({})),
    }
}

fn snapshot_exception(e: &SnapshotError) -> NovaException {
    let message = error_chain(e);
    match e {
        // Found missing during the copy: nova maps VIR_ERR_NO_DOMAIN to
        // InstanceNotFound (bug 1722571).
        SnapshotError::DomainNotFound { uuid } => NovaException::new(
            "InstanceNotFound",
            format!("Instance {uuid} could not be found."),
            404,
            json!({ "instance_id": uuid }),
        ),
        SnapshotError::QuiesceNotSupported { .. } => NovaException::new(
            "InstanceQuiesceNotSupported",
            format!("Quiescing is not supported in instance: {message}"),
            400,
            json!({ "instance_id": "", "reason": message }),
        ),
        SnapshotError::AgentNotEnabled => {
            NovaException::new("QemuGuestAgentNotEnabled", "QEMU guest agent is not enabled".into(), 400, json!({}))
        }
        SnapshotError::QuiesceFailed { message: reason, agent_unresponsive, source } => {
            let reason = match source {
                Some(cause) => format!("{reason}: {}", error_chain(cause)),
                None => reason.clone(),
            };
            let reason = if *agent_unresponsive {
                format!("libvirt cannot connect to the qemu-guest-agent: {reason}")
            } else {
                reason
            };
            NovaException::new(
                "InstanceQuiesceFailed",
                format!("Failed to quiesce instance: {reason}"),
                409,
                json!({ "reason": reason }),
            )
        }
        SnapshotError::QemuImg { .. } => NovaException::new(
            "ImageUnacceptable",
            format!("Image snapshot is unacceptable: {message}"),
            400,
            json!({ "image_id": "snapshot", "reason": message }),
        ),
        // Everything else is a hypervisor-side failure: nova's InternalError
        // (`msg_fmt = "%(err)s"`).
        _ => NovaException::new("InternalError", message.clone(), 500, json!({ "err": message })),
    }
}

fn glance_exception(e: &GlanceError) -> NovaException {
    let message = error_chain(e);
    match e {
        GlanceError::ImageNotFound { image_id } => NovaException::new(
            "ImageNotFound",
            format!("Image {image_id} could not be found."),
            404,
            json!({ "image_id": image_id }),
        ),
        GlanceError::ImageNotAuthorized { image_id, .. } => NovaException::new(
            "ImageNotAuthorized",
            format!("Not authorized for image {image_id}."),
            500,
            json!({ "image_id": image_id }),
        ),
        GlanceError::ImageBadRequest { image_id, reason } => NovaException::new(
            "ImageBadRequest",
            format!("Request of image {image_id} got BadRequest response: {reason}"),
            400,
            json!({ "image_id": image_id, "response": reason }),
        ),
        GlanceError::ImageQuotaExceeded { image_id, .. } => NovaException::new(
            "ImageQuotaExceeded",
            format!("Quota exceeded or out of space for image {image_id} in the image service."),
            500,
            json!({ "image_id": image_id }),
        ),
        GlanceError::ImageUnacceptable { image_id, reason } => NovaException::new(
            "ImageUnacceptable",
            format!("Image {image_id} is unacceptable: {reason}"),
            400,
            json!({ "image_id": image_id, "reason": reason }),
        ),
        GlanceError::GlanceConnectionFailed { server, source } => {
            let reason = error_chain(source);
            NovaException::new(
                "GlanceConnectionFailed",
                format!("Connection to glance host {server} failed: {reason}"),
                500,
                json!({ "server": server, "reason": reason }),
            )
        }
        // Conflicts, hash mismatches, abandoned uploads: glanceclient would
        // have raised a raw HTTP error nova re-raises as is; the closest
        // nova class keeps the text.
        _ => NovaException::new("InternalError", message.clone(), 500, json!({ "err": message })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiesce_errors_are_nova_classes_the_api_catches() {
        let e = ComputeError::Snapshot(SnapshotError::AgentNotEnabled).nova();
        assert_eq!((e.module, e.class.as_str(), e.code), (NOVA_EXCEPTION_MODULE, "QemuGuestAgentNotEnabled", 400));
        let e = ComputeError::Snapshot(SnapshotError::QuiesceFailed {
            message: "x".into(),
            agent_unresponsive: true,
            source: None,
        })
        .nova();
        assert_eq!(e.class, "InstanceQuiesceFailed");
        assert_eq!(e.code, 409);
        assert!(e.message.contains("libvirt cannot connect to the qemu-guest-agent"));
    }

    #[test]
    fn faults_keep_details_only_for_500() {
        let nf = ComputeError::Glance(GlanceError::ImageNotFound { image_id: "i".into() }).nova();
        assert_eq!(nf.fault_info().code, 404);
        let internal = ComputeError::Snapshot(SnapshotError::Cancelled).nova();
        assert_eq!(internal.fault_info().code, 500);
        assert!(internal.fault_info().traceback.contains("InternalError"));
    }

    #[test]
    fn missing_domain_is_instance_not_found() {
        let e = ComputeError::Snapshot(SnapshotError::DomainNotFound { uuid: "u".into() });
        assert!(e.is_instance_not_found());
        assert_eq!(e.nova().class, "InstanceNotFound");
    }
}
