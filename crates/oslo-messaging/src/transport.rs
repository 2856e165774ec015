//! The public handle of a transport: what servers, clients and notifiers
//! share — the supervised broker connection ([`crate::broker`]) and the one
//! reply queue of its calls ([`crate::rpc::reply`]), created by the first call.
//!
//! Must not know: how messages are encoded or dispatched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::broker::Inner;
use crate::error::Error;
use crate::options::RabbitOptions;
use crate::rpc::reply::ReplyWaiter;
use crate::url::TransportUrl;

/// An oslo.messaging transport over RabbitMQ: cheap to clone, shared by the
/// RPC servers, clients and notifiers of a process.
#[derive(Clone)]
pub struct Transport {
    pub(crate) inner: Arc<Inner>,
    /// The reply queue and the calls waiting on it (oslo: one per transport).
    pub(crate) replies: Arc<OnceCell<Arc<ReplyWaiter>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("control_exchange", &self.inner.control_exchange())
            .field("broker", &self.broker())
            .finish()
    }
}

impl Transport {
    /// Connects to the first reachable broker of `url` (trying each once) and
    /// starts the reconnect supervisor, which from then on reconnects forever
    /// with oslo's backoff. `control_exchange` is `[DEFAULT] control_exchange`
    /// (`nova` for nova).
    pub async fn connect(
        url: &TransportUrl,
        options: RabbitOptions,
        control_exchange: impl Into<String>,
    ) -> Result<Self, Error> {
        let inner = Inner::start(url, options, control_exchange.into()).await?;
        Ok(Self { inner, replies: Arc::new(OnceCell::new()) })
    }

    /// `[DEFAULT] control_exchange`.
    pub fn control_exchange(&self) -> &str {
        self.inner.control_exchange()
    }

    /// The options this transport was built with.
    pub fn options(&self) -> &RabbitOptions {
        self.inner.options()
    }

    /// Whether a connection is currently up.
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// `host:port` of the broker currently connected to.
    pub fn broker(&self) -> Option<String> {
        self.inner.broker()
    }

    /// How many connections this transport has opened (1 + reconnects).
    pub fn connection_count(&self) -> u64 {
        self.inner.connection_count()
    }

    /// The reply queue of this transport's calls, once the first call made it.
    pub fn reply_queue(&self) -> Option<String> {
        self.replies.get().map(|w| w.queue.clone())
    }

    /// The reply waiter, declaring the reply queue on first use.
    pub(crate) async fn reply_waiter(&self) -> Result<Arc<ReplyWaiter>, Error> {
        self.replies.get_or_try_init(|| ReplyWaiter::start(&self.inner)).await.cloned()
    }

    /// Waits until a connection is up.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        self.inner.wait_session(Instant::now() + timeout).await.map(drop)
    }

    /// Deletes a queue (maintenance and test clean-up; oslo never deletes
    /// queues but fanout ones at close). Returns the number of messages dropped.
    pub async fn delete_queue(&self, name: &str) -> Result<u32, Error> {
        self.inner.delete_queue(name).await
    }

    /// Deletes an exchange (test clean-up).
    pub async fn delete_exchange(&self, name: &str) -> Result<(), Error> {
        self.inner.delete_exchange(name).await
    }

    /// Stops the supervisor and closes the connection. Servers should be
    /// stopped first.
    pub async fn close(&self) {
        self.inner.close().await;
    }
}
