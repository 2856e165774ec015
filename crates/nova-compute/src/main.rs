//! `nova-compute`: the snapshot path of OpenStack's compute service.
//!
//! Owns: the process (CLI, logging, start-up order, signals) and the RPC
//! handlers `snapshot_instance`, `backup_instance`, `quiesce_instance` and
//! `unquiesce_instance` with nova's task-state machine and error semantics.
//! It is the only crate that knows the whole flow: AMQP delivery → conductor →
//! snapshot engine → Glance → conductor.
//!
//! Must not know: wire encodings, libvirt C calls or HTTP details; those live
//! in the crates below it.

fn main() {}
