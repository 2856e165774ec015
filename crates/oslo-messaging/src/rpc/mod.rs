//! RPC: the dispatcher (endpoints, namespaces, versions), the server that
//! consumes a target's queues and replies, and the client (cast and call).

pub(crate) mod client;
pub(crate) mod dispatcher;
pub(crate) mod reply;
pub(crate) mod server;
pub(crate) mod workers;
