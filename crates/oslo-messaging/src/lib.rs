//! oslo.messaging over AMQP 0.9.1, wire-compatible with oslo's RabbitMQ driver.
//!
//! Owns: the transport URL, TLS to the broker (oslo's `ssl_*` rules,
//! `ssl_enforce_hostname_verification` included), the exchange and queue topology for every queue mode
//! oslo supports (classic, quorum, stream fanout, queue-manager names), the
//! message envelope and `_context_*` codec, the RPC server with its dispatcher
//! (`NoSuchMethod`, `UnsupportedVersion`) on a pool of
//! `executor_thread_pool_size` workers, the RPC client (call and cast), the
//! notifier, remote-error serialization and the reconnect supervisor.
//!
//! Must not know: anything about nova. Method names, versioned objects and the
//! conductor belong to `nova-objects` and `nova-compute`; this crate moves
//! JSON between processes exactly as oslo.messaging would.
//!
//! ```no_run
//! use oslo_messaging::{Context, RpcClient, RabbitOptions, Target, Transport, TransportUrl};
//! # async fn demo() -> Result<(), oslo_messaging::Error> {
//! let url = TransportUrl::parse("rabbit://guest:guest@127.0.0.1:5672/")?;
//! let transport = Transport::connect(&url, RabbitOptions::default(), "nova").await?;
//! let conductor = RpcClient::new(&transport, Target::topic("conductor").with_namespace("baseapi").with_version("1.0"));
//! let pong = conductor.call(&Context::new(), "ping", serde_json::json!({"arg": "1.21 GigaWatts"})).await?;
//! assert_eq!(pong["service"], "conductor");
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod broker;
pub mod codec;
mod connection;
mod context;
mod error;
pub mod json;
mod notifier;
mod options;
mod remote_error;
mod rpc;
mod target;
mod tls;
mod topology;
mod transport;
mod url;

pub use context::{Context, CONTEXT_PREFIX};
pub use error::Error;
pub use notifier::{Notifier, Priority};
pub use options::RabbitOptions;
pub use remote_error::{RemoteError, DISPATCHER_MODULE};
pub use rpc::client::{RpcClient, DEFAULT_TIMEOUT};
pub use rpc::dispatcher::{Dispatcher, Endpoint, HandlerFuture, HandlerResult, Unhandled};
pub use rpc::server::{RpcServer, ServerOptions};
pub use target::{version_is_compatible, Target};
pub use transport::Transport;
pub use url::{TransportHost, TransportUrl};
