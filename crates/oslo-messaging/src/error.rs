//! The crate's one error type. Callers branch on the variant: `Timeout`,
//! `Remote` (a failure serialized by the peer) and `Connection` (retryable)
//! are the ones a service acts on.

use crate::codec::DecodeError;
use crate::remote_error::RemoteError;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `transport_url` cannot be used.
    #[error("invalid transport_url {url}: {reason}")]
    InvalidTransportUrl {
        /// The URL with passwords masked.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// An option or option combination oslo would refuse too.
    #[error("configuration error: {0}")]
    Config(String),
    /// A TLS file named by an `ssl_*` option cannot be read.
    #[error("cannot read {option} file {path}")]
    TlsFile {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The `ssl_*` options cannot make a TLS configuration (a file that is not
    /// PEM, a key that does not fit its certificate).
    #[error("cannot set up TLS: {what}")]
    Tls {
        /// The option and file, or the part of the set-up that failed.
        what: String,
        /// rustls' or the PEM parser's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No broker of the transport URL accepted a connection, or the
    /// connection was lost in the middle of an operation. Retryable.
    #[error("AMQP connection failed during {op}")]
    Connection {
        /// What was being done.
        op: String,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// No connection to any broker came up within the time the operation allowed.
    #[error("not connected to any AMQP broker after waiting {waited:?}")]
    NotConnected {
        /// How long the operation waited for the reconnect supervisor.
        waited: std::time::Duration,
    },
    /// The broker refused a declaration, e.g. `406 PRECONDITION_FAILED` when a
    /// queue exists with other arguments than this side's options produce.
    #[error("declaring {what} was refused by the broker: {reason}")]
    Declare {
        /// The exchange, queue or binding.
        what: String,
        /// The broker's reply text.
        reason: String,
    },
    /// The broker did not confirm a publish (nack) or returned a mandatory message.
    #[error("message to exchange {exchange:?} routing key {routing_key:?} was not delivered: {reason}")]
    Undeliverable {
        /// Exchange published to.
        exchange: String,
        /// Routing key published with.
        routing_key: String,
        /// The broker's reason.
        reason: String,
    },
    /// No reply arrived in time (oslo's `MessagingTimeout`).
    #[error("timed out waiting for a reply to message ID {msg_id}")]
    Timeout {
        /// The call's `_msg_id`.
        msg_id: String,
    },
    /// The remote side raised an exception while handling a call.
    #[error("remote error {}.{}: {}", .0.module, .0.class, .0.message)]
    Remote(Box<RemoteError>),
    /// A message could not be serialized.
    #[error("cannot encode message")]
    Encode(#[source] serde_json::Error),
    /// A received message could not be decoded.
    #[error("cannot decode message")]
    Decode(#[from] DecodeError),
    /// A call's result does not have the type the caller asked for
    /// ([`crate::RpcClient::call_as`]).
    #[error("unexpected result of {method}")]
    UnexpectedResult {
        /// The method called.
        method: String,
        /// The deserialization error.
        #[source]
        source: serde_json::Error,
    },
    /// The transport, server or client was stopped.
    #[error("the messaging transport is closed")]
    Closed,
}

impl Error {
    pub(crate) fn connection(op: impl Into<String>, source: lapin::Error) -> Self {
        Self::Connection { op: op.into(), source }
    }
}
