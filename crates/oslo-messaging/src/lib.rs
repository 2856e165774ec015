//! oslo.messaging over AMQP 0.9.1, wire-compatible with oslo's RabbitMQ driver.
//!
//! Owns: the transport URL, the exchange and queue topology for every queue mode
//! oslo supports (classic, quorum, stream fanout, queue-manager names), the
//! message envelope and `_context_*` codec, the RPC server with its dispatcher
//! (`NoSuchMethod`, `UnsupportedVersion`), the RPC client (call and cast), the
//! notifier, remote-error serialization and the reconnect supervisor.
//!
//! Must not know: anything about nova. Method names, versioned objects and the
//! conductor belong to `nova-objects` and `nova-compute`; this crate moves
//! JSON between processes exactly as oslo.messaging would.
