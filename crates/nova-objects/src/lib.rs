//! nova's versioned objects and the conversation with nova-conductor.
//!
//! Owns: `nova_object.*` primitives (Instance, ImageMeta, Service,
//! InstanceFault, notification payloads) kept verbatim with typed accessors,
//! `task_state` / `vm_state` / `power_state`, the conductor client
//! (`object_action`, `object_class_action_versions`, `ping`), instance-action
//! events, faults, service registration and the heartbeat.
//!
//! Must not know: how a snapshot is taken or uploaded. It speaks to the
//! conductor through `oslo-messaging` and never touches libvirt or Glance.

mod error;
mod image_meta;
mod instance;
mod primitive;
mod states;

pub use error::ObjectError;
pub use image_meta::{bool_from_string, ImageMeta};
pub use instance::{Instance, INSTANCE_VERSION};
pub use primitive::ObjectPrimitive;
pub use states::{PowerState, TaskState, VmState};
