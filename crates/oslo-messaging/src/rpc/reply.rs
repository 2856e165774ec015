//! The reply side of oslo's calls: one reply queue per transport
//! (`reply_<uuid hex>` or a queue-manager name), and the routing of each
//! reply to the call waiting for its `_msg_id` (duplicates by `_unique_id`
//! dropped, malformed replies rejected).
//!
//! Must not know: how calls are sent or their timeouts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use error_chain::Chain;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::broker::{Incoming, Inner, Subscription};
use crate::codec::{self, new_id, Reply};
use crate::error::Error;
use crate::topology;

/// Removes a call's waiter however the call ends.
pub(crate) struct Unlisten<'a> {
    waiter: &'a ReplyWaiter,
    msg_id: &'a str,
}

impl Drop for Unlisten<'_> {
    fn drop(&mut self) {
        self.waiter.lock_waiters().remove(self.msg_id);
    }
}

/// The per-transport reply queue and the calls waiting on it.
pub(crate) struct ReplyWaiter {
    pub(crate) queue: String,
    waiters: Mutex<HashMap<String, mpsc::UnboundedSender<Reply>>>,
    seen: Mutex<VecDeque<String>>,
}

impl ReplyWaiter {
    /// Declares the reply queue and starts routing its deliveries.
    pub(crate) async fn start(inner: &Arc<Inner>) -> Result<Arc<Self>, Error> {
        let o = inner.options();
        let suffix = if o.use_queue_manager { topology::queue_manager_name(o) } else { new_id() };
        let queue = format!("reply_{suffix}");
        let (tx, rx) = mpsc::channel(256);
        let sub = Subscription::new(vec![topology::reply_queue(o, &queue)], o.rabbit_qos_prefetch_count, tx);
        inner.subscribe(sub).await?;
        info!(reply_queue = %queue, "created reply queue");
        let me = Arc::new(Self { queue, waiters: Mutex::new(HashMap::new()), seen: Mutex::new(VecDeque::new()) });
        tokio::spawn(route_replies(Arc::downgrade(&me), rx));
        Ok(me)
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Reply>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A channel for the replies to `msg_id`, until [`ReplyWaiter::unlisten_on_drop`]'s guard drops.
    pub(crate) fn listen(&self, msg_id: &str) -> mpsc::UnboundedReceiver<Reply> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock_waiters().insert(msg_id.to_owned(), tx);
        rx
    }

    /// Removes the waiter of `msg_id` when the guard drops, however the call ends.
    pub(crate) fn unlisten_on_drop<'a>(&'a self, msg_id: &'a str) -> Unlisten<'a> {
        Unlisten { waiter: self, msg_id }
    }

    fn is_duplicate(&self, unique_id: Option<&str>) -> bool {
        let Some(id) = unique_id else { return false };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.iter().any(|s| s == id) {
            return true;
        }
        if seen.len() == 16 {
            seen.pop_front();
        }
        seen.push_back(id.to_owned());
        false
    }

    async fn route(&self, incoming: Incoming) {
        let Incoming { delivery, queue } = incoming;
        let decoded = codec::decode(&delivery.properties, &delivery.data).and_then(Reply::from_message);
        let reply = match decoded {
            Ok(r) => r,
            Err(reason) => {
                warn!(queue, reason = %Chain(&reason), "dropping malformed reply");
                let _ = delivery.acker.reject(BasicRejectOptions { requeue: false }).await;
                return;
            }
        };
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        if self.is_duplicate(reply.unique_id.as_deref()) {
            return;
        }
        let Some(msg_id) = reply.msg_id.clone() else {
            warn!(queue, "dropping reply without _msg_id");
            return;
        };
        let sender = self.lock_waiters().get(&msg_id).cloned();
        match sender {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => info!(msg_id, "no calling threads waiting for msg_id"),
        }
    }
}

async fn route_replies(weak: std::sync::Weak<ReplyWaiter>, mut rx: mpsc::Receiver<Incoming>) {
    while let Some(incoming) = rx.recv().await {
        let Some(waiter) = weak.upgrade() else { return };
        waiter.route(incoming).await;
    }
}
