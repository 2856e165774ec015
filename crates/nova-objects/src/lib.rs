//! nova's versioned objects and the conversation with nova-conductor.
//!
//! Owns: `nova_object.*` primitives (Instance, Service, InstanceFault)
//! kept verbatim with typed accessors, the image metadata derived from
//! system_metadata, `task_state` / `vm_state` / `power_state`, nova's
//! `RequestContext`, the conductor client (`object_action`,
//! `object_class_action_versions`, `ping`), instance-action events, faults,
//! service registration and the heartbeat, and the snapshot notification
//! payloads (legacy and versioned).
//!
//! Must not know: how a snapshot is taken or uploaded (no libvirt, no
//! Glance). It speaks to the conductor through [`ConductorTransport`],
//! implemented over oslo-messaging in the service and by fakes in tests.
//!
//! ```
//! use nova_objects::{ExpectedTaskState, Instance, TaskState};
//! # let primitive = serde_json::json!({"nova_object.name": "Instance", "nova_object.namespace": "nova",
//! #     "nova_object.version": "2.8", "nova_object.data": {"uuid": "u1", "task_state": "image_snapshot_pending"}});
//! let mut instance = Instance::from_primitive(&primitive).unwrap();
//! instance.set_task_state(Some(TaskState::ImageSnapshot));
//! // instance.save(&conductor, &ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshotPending))).await?
//! assert_eq!(instance.primitive().changes(), ["task_state"]);
//! # let _ = ExpectedTaskState::Any;
//! ```

mod amqp;
mod conductor;
mod context;
mod error;
mod image_meta;
mod instance;
mod instance_action;
mod instance_fault;
mod instance_list;
mod notifications;
mod primitive;
mod service;
mod states;

pub use amqp::{OsloConductorTransport, OsloNotificationSink};
pub use conductor::{
    ConductorApi, ConductorCall, ConductorTransport, ReadinessPolicy, CONDUCTOR_TOPIC, CONDUCTOR_VERSION,
};
pub use context::{generate_request_id, RequestContext};
pub use error::{ConductorError, ObjectError, RemoteFailure, TaskStateConflict, TransportCause, TransportError};
pub use image_meta::{bool_from_string, ImageMeta};
pub use instance::{ExpectedTaskState, Instance, INSTANCE_MANIFEST, INSTANCE_VERSION};
pub use instance_action::{EventOutcome, InstanceActionEvent, INSTANCE_ACTION_EVENT_MANIFEST};
pub use instance_fault::{safe_truncate, FaultInfo, InstanceFault, INSTANCE_FAULT_VERSION};
pub use instance_list::{InstanceList, INSTANCE_LIST_VERSION};
pub use notifications::{
    emit, exception_notifications, info_from_instance, instance_action_snapshot_payload, snapshot_notifications,
    ExceptionInfo, Notification, NotificationKind, NotificationPolicy, NotificationSink, PayloadOptions, Phase,
    Priority, SendError, EXCEPTION_PAYLOAD_VERSION, SNAPSHOT_PAYLOAD_VERSION,
};
pub use primitive::ObjectPrimitive;
pub use service::{
    register_service, Heartbeat, HeartbeatStatus, Service, ServiceOptions, COMPUTE_BINARY, COMPUTE_TOPIC,
    SERVICE_MANIFEST, SERVICE_VERSION,
};
pub use states::{PowerState, TaskState, VmState};
