//! The snapshot engine: a point-in-time copy of an instance's root disk.
//!
//! Owns: the small safe wrapper over the libvirt calls the `virt` crate lacks
//! (block copy, block-job info and abort, backup begin, fs freeze and thaw,
//! domain event callbacks) — the only place in the workspace allowed `unsafe`;
//! disk discovery from the domain XML; the snapshot strategies (`backup`,
//! `mirror`, `cold`, later `rbd`); quiesce through qemu-guest-agent;
//! `qemu-img`; temp space under `snapshots_directory`; the crash journal and
//! start-up recovery.
//!
//! Must not know: RPC, nova-conductor, task states or Glance. It produces a
//! standalone image (or a view of one) and reports progress; the caller decides
//! where it goes.

mod error;
mod hypervisor;

pub use error::SnapshotError;
pub use hypervisor::{default_connection_uri, HostVersions, Hypervisor, PowerState, Version};
