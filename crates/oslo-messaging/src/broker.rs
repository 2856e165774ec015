//! The broker side of a transport: one supervised AMQP connection per
//! [`crate::Transport`], the reconnect supervisor (oslo's backoff, host failover, re-declaring every
//! queue and re-subscribing every consumer after any connection or channel
//! loss), consumer subscriptions feeding deliveries into the RPC server and
//! reply waiter, and publishing with publisher confirms.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use error_chain::Chain;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeleteOptions,
};
use lapin::types::AMQPValue;
use lapin::{Channel, Confirmation, Connection, Consumer, Event};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::codec::Outgoing;
use crate::connection::Connector;
use crate::error::Error;
use crate::options::RabbitOptions;
use crate::topology::{self, ArgValue, ExchangeSpec, QueueSpec};
use crate::url::TransportUrl;

/// How often a session checks its connection status besides lapin's events.
const STATUS_POLL: Duration = Duration::from_secs(1);
/// Replies to a missing reply queue are retried this often (oslo: 0.25 s).
const REPLY_RETRY_EVERY: Duration = Duration::from_millis(250);
/// A reply queue found missing is skipped for this long (oslo: 60 s).
const OBSOLETE_REPLY_QUEUE_TTL: Duration = Duration::from_secs(60);

pub(crate) struct Inner {
    connector: Connector,
    control_exchange: String,
    session_tx: watch::Sender<Option<Arc<Session>>>,
    subscriptions: Mutex<Vec<Arc<Subscription>>>,
    shutdown: watch::Sender<bool>,
    generations: AtomicU64,
    obsolete_reply_queues: Mutex<HashMap<String, Instant>>,
}

/// A delivery handed to a consumer of this crate, with the queue it came from.
pub(crate) struct Incoming {
    pub delivery: Delivery,
    pub queue: String,
}

/// Where a message is published.
pub(crate) enum Destination {
    /// A topic exchange and routing key. `mandatory` for calls only: the
    /// receiver cannot tell, and a call the broker could not route (no
    /// server's queue bound yet, e.g. while the servers re-declare after a
    /// broker restart) comes back instead of waiting out its timeout.
    Topic { exchange: ExchangeSpec, routing_key: String, mandatory: bool },
    /// A `<topic>_fanout` exchange.
    Fanout { exchange: ExchangeSpec },
    /// A notification: its default queue is declared first, like oslo.
    Notification { queue: QueueSpec },
    /// A reply queue through the default exchange, `mandatory`.
    Direct { queue: String },
}

impl Inner {
    /// Connects to the first reachable broker of `url` (trying each once) and
    /// starts the reconnect supervisor, which from then on reconnects forever
    /// with oslo's backoff.
    pub(crate) async fn start(
        url: &TransportUrl,
        options: RabbitOptions,
        control_exchange: String,
    ) -> Result<Arc<Self>, Error> {
        let connector = Connector::new(url, &options)?;
        let (session_tx, _) = watch::channel(None);
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            connector,
            control_exchange,
            session_tx,
            subscriptions: Mutex::new(Vec::new()),
            shutdown,
            generations: AtomicU64::new(0),
            obsolete_reply_queues: Mutex::new(HashMap::new()),
        });
        let session = inner.open_session().await?;
        inner.session_tx.send_replace(Some(session.clone()));
        tokio::spawn(supervise(Arc::downgrade(&inner), session, inner.shutdown.subscribe()));
        Ok(inner)
    }

    /// `[DEFAULT] control_exchange`.
    pub(crate) fn control_exchange(&self) -> &str {
        &self.control_exchange
    }

    /// Whether a connection is currently up.
    pub(crate) fn is_connected(&self) -> bool {
        self.current().is_some_and(|s| s.is_alive())
    }

    /// `host:port` of the broker currently connected to.
    pub(crate) fn broker(&self) -> Option<String> {
        self.current().map(|s| s.broker.clone())
    }

    /// How many connections have been opened (1 + reconnects).
    pub(crate) fn connection_count(&self) -> u64 {
        self.generations.load(Ordering::Relaxed)
    }

    /// Deletes a queue; returns the number of messages dropped.
    pub(crate) async fn delete_queue(&self, name: &str) -> Result<u32, Error> {
        let session = self.wait_session(Instant::now() + Duration::from_secs(10)).await?;
        let ch = session.connection.create_channel().await.map_err(|e| Error::connection("open channel", e))?;
        let n = ch.queue_delete(name.into(), QueueDeleteOptions::default()).await.map_err(|e| Error::Declare {
            what: format!("delete queue {name}"),
            reason: topology::broker_reason(&e),
        })?;
        let _ = ch.close(200, "OK".into()).await;
        Ok(n)
    }

    /// Deletes an exchange.
    pub(crate) async fn delete_exchange(&self, name: &str) -> Result<(), Error> {
        let session = self.wait_session(Instant::now() + Duration::from_secs(10)).await?;
        let ch = session.connection.create_channel().await.map_err(|e| Error::connection("open channel", e))?;
        ch.exchange_delete(name.into(), Default::default()).await.map_err(|e| Error::Declare {
            what: format!("delete exchange {name}"),
            reason: topology::broker_reason(&e),
        })?;
        let _ = ch.close(200, "OK".into()).await;
        Ok(())
    }

    /// Stops the supervisor and closes the connection.
    pub(crate) async fn close(&self) {
        self.shutdown.send_replace(true);
        if let Some(session) = self.session_tx.send_replace(None) {
            let _ = session.connection.close(200, "OK".into()).await;
        }
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.session_tx.borrow().clone()
    }

    pub(crate) fn options(&self) -> &RabbitOptions {
        self.connector.options()
    }

    async fn open_session(self: &Arc<Self>) -> Result<Arc<Session>, Error> {
        let (connection, broker) = self.connector.connect_any().await?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let (lost, _) = watch::channel(false);
        let session = Arc::new(Session {
            generation,
            connection,
            broker,
            publisher: tokio::sync::Mutex::new(None),
            declarer: tokio::sync::Mutex::new(None),
            declared: Mutex::new(HashSet::new()),
            lost,
        });
        tokio::spawn(monitor(Arc::downgrade(&session)));
        Ok(session)
    }

    /// The current session, waiting for the supervisor until `deadline`.
    pub(crate) async fn wait_session(&self, deadline: Instant) -> Result<Arc<Session>, Error> {
        let started = Instant::now();
        let mut rx = self.session_tx.subscribe();
        loop {
            if *self.shutdown.borrow() {
                return Err(Error::Closed);
            }
            let current = rx.borrow_and_update().clone();
            match current {
                Some(s) if s.is_alive() => return Ok(s),
                Some(s) => s.mark_lost(),
                None => {}
            }
            let wait = deadline.saturating_duration_since(Instant::now()).min(STATUS_POLL);
            if wait.is_zero() {
                return Err(Error::NotConnected { waited: started.elapsed() });
            }
            let _ = tokio::time::timeout(wait, rx.changed()).await;
        }
    }

    /// Registers a subscription and starts it on the current connection; the
    /// supervisor restarts it on every new one. A refused declaration (e.g.
    /// PRECONDITION_FAILED) is returned and the subscription dropped.
    pub(crate) async fn subscribe(self: &Arc<Self>, sub: Arc<Subscription>) -> Result<(), Error> {
        self.lock_subscriptions().push(sub.clone());
        let session = match self.wait_session(Instant::now() + Duration::from_secs(30)).await {
            Ok(s) => s,
            Err(e) => {
                self.unsubscribe(&sub);
                return Err(e);
            }
        };
        if let Err(e) = sub.start_on(self, &session).await {
            self.unsubscribe(&sub);
            return Err(e);
        }
        Ok(())
    }

    pub(crate) fn unsubscribe(&self, sub: &Arc<Subscription>) {
        self.lock_subscriptions().retain(|s| !Arc::ptr_eq(s, sub));
    }

    fn lock_subscriptions(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Subscription>>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn restart_subscriptions(self: &Arc<Self>, session: &Arc<Session>) {
        let subs: Vec<Arc<Subscription>> = self.lock_subscriptions().clone();
        for sub in subs {
            if let Err(e) = sub.start_on(self, session).await {
                error!(queues = %sub.queue_names(), error = %Chain(&e), "failed to re-declare consumer after reconnect");
            }
        }
    }

    /// Publishes, waiting for a connection and retrying connection-level
    /// failures until `deadline` (oslo's `ensure` retries until `retry`).
    pub(crate) async fn publish(&self, dest: &Destination, out: &Outgoing, deadline: Instant) -> Result<(), Error> {
        loop {
            let session = self.wait_session(deadline).await?;
            match session.publish(dest, out).await {
                Err(e @ Error::Connection { .. }) => {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    warn!(error = %Chain(&e), "publish failed on a broken connection; retrying");
                    if !session.is_alive() {
                        session.mark_lost();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Sends a reply like oslo's `AMQPIncomingMessage.reply`: `mandatory` to
    /// the reply queue, retried every 0.25 s while the queue is missing, for
    /// `kombu_missing_consumer_retry_timeout`; then the queue is skipped for 60 s.
    pub(crate) async fn send_reply(&self, reply_q: &str, msg_id: &str, out: &Outgoing) -> Result<(), Error> {
        if self.is_obsolete_reply_queue(reply_q) {
            warn!(reply_queue = reply_q, msg_id, "reply queue doesn't exist, drop reply");
            return Ok(());
        }
        let budget = Duration::from_secs(self.options().kombu_missing_consumer_retry_timeout);
        let deadline = Instant::now() + budget;
        let dest = Destination::Direct { queue: reply_q.to_owned() };
        loop {
            match self.publish(&dest, out, deadline).await {
                Err(Error::Undeliverable { .. }) if Instant::now() < deadline => {
                    debug!(reply_queue = reply_q, msg_id, "reply could not be sent due to a missing queue; retrying");
                    tokio::time::sleep(REPLY_RETRY_EVERY).await;
                }
                Err(e @ Error::Undeliverable { .. }) => {
                    error!(
                        reply_queue = reply_q,
                        msg_id,
                        seconds = budget.as_secs(),
                        "reply failed to send due to a missing queue; abandoning"
                    );
                    self.obsolete_reply_queues
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(reply_q.to_owned(), Instant::now());
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    fn is_obsolete_reply_queue(&self, reply_q: &str) -> bool {
        let mut cache = self.obsolete_reply_queues.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, at| at.elapsed() < OBSOLETE_REPLY_QUEUE_TTL);
        cache.contains_key(reply_q)
    }
}

/// The reconnect supervisor: waits for the session to be lost, reconnects
/// with oslo's backoff (interval + attempt * backoff, capped), then
/// re-declares and re-subscribes everything.
async fn supervise(weak: Weak<Inner>, mut session: Arc<Session>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let mut lost = session.lost.subscribe();
        tokio::select! {
            _ = lost.wait_for(|l| *l) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        inner.session_tx.send_replace(None);
        error!(broker = %session.broker, "connection to the AMQP server was lost; reconnecting");
        let Some(new) = reconnect(&inner, &mut shutdown).await else { return };
        info!(broker = %new.broker, generation = new.generation, "reconnected to AMQP server; re-declaring queues and consumers");
        // Consumers first, then everyone else: `is_connected()` and publishes
        // see the new connection only once our queues exist again, so a
        // message routed to them right after a broker restart is not dropped
        // as unroutable.
        inner.restart_subscriptions(&new).await;
        inner.session_tx.send_replace(Some(new.clone()));
        session = new;
    }
}

async fn reconnect(inner: &Arc<Inner>, shutdown: &mut watch::Receiver<bool>) -> Option<Arc<Session>> {
    let mut attempt = 0u32;
    loop {
        match inner.open_session().await {
            Ok(s) => return Some(s),
            Err(e) => {
                let delay = inner.options().retry_delay(attempt);
                error!(error = %Chain(&e), retry_in_secs = delay.as_secs(), "AMQP server is unreachable; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|s| *s) => return None,
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Marks the session lost when lapin reports a connection error or the
/// connection stops being connected.
async fn monitor(weak: Weak<Session>) {
    let Some(session) = weak.upgrade() else { return };
    let mut events = session.connection.events_listener();
    let mut lost = session.lost.subscribe();
    drop(session);
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Event::Error(e)) => {
                    // lapin also reports a channel the broker closed (e.g. a
                    // 406 on a declare) here; that costs the channel, not the
                    // connection, and must not reconnect everything.
                    if weak.upgrade().is_some_and(|s| s.connection.status().connected()) {
                        debug!(error = %Chain(&e), "AMQP channel closed by the broker; the connection is up");
                        continue;
                    }
                    warn!(error = %Chain(&e), "AMQP connection error");
                    break;
                }
                Some(Event::ConnectionBlocked(reason)) => error!(reason, "the broker has blocked the connection"),
                Some(Event::ConnectionUnblocked) => info!("the broker has unblocked the connection"),
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep(STATUS_POLL) => {
                match weak.upgrade() {
                    Some(s) if s.is_alive() => {}
                    _ => break,
                }
            }
            _ = lost.wait_for(|l| *l) => return,
        }
    }
    if let Some(s) = weak.upgrade() {
        s.mark_lost();
    }
}

/// One live connection and its publishing state.
pub(crate) struct Session {
    pub generation: u64,
    pub connection: Connection,
    broker: String,
    /// Confirm-mode channel for publishing.
    publisher: tokio::sync::Mutex<Option<Channel>>,
    /// Channel for publish-side declarations; a refusal closes it, not the publisher.
    declarer: tokio::sync::Mutex<Option<Channel>>,
    /// Exchanges and notification queues already declared on this connection.
    declared: Mutex<HashSet<String>>,
    lost: watch::Sender<bool>,
}

impl Session {
    fn is_alive(&self) -> bool {
        !*self.lost.borrow() && self.connection.status().connected()
    }

    fn mark_lost(&self) {
        self.lost.send_replace(true);
    }

    async fn publisher(&self) -> Result<Channel, Error> {
        let mut guard = self.publisher.lock().await;
        if let Some(ch) = guard.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let ch = self.connection.create_channel().await.map_err(|e| Error::connection("open publish channel", e))?;
        ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| Error::connection("confirm.select", e))?;
        *guard = Some(ch.clone());
        Ok(ch)
    }

    async fn declarer(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Channel>>, Error> {
        let mut guard = self.declarer.lock().await;
        if !guard.as_ref().is_some_and(|c| c.status().connected()) {
            let ch = self.connection.create_channel().await.map_err(|e| Error::connection("open channel", e))?;
            *guard = Some(ch);
        }
        Ok(guard)
    }

    fn is_declared(&self, key: &str) -> bool {
        self.declared.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
    }

    fn set_declared(&self, key: String) {
        self.declared.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    }

    async fn ensure_exchange(&self, ex: &ExchangeSpec) -> Result<(), Error> {
        let key = format!("exchange:{}", ex.name);
        if self.is_declared(&key) {
            return Ok(());
        }
        let mut guard = self.declarer().await?;
        let Some(ch) = guard.as_mut() else { return Err(Error::Closed) };
        topology::declare_exchange(&self.connection, ch, ex).await?;
        self.set_declared(key);
        Ok(())
    }

    async fn ensure_queue(&self, q: &QueueSpec) -> Result<(), Error> {
        let key = format!("queue:{}", q.name);
        if self.is_declared(&key) {
            return Ok(());
        }
        let mut guard = self.declarer().await?;
        let Some(ch) = guard.as_mut() else { return Err(Error::Closed) };
        topology::declare_queue(&self.connection, ch, q).await?;
        self.set_declared(key);
        Ok(())
    }

    async fn publish(&self, dest: &Destination, out: &Outgoing) -> Result<(), Error> {
        let (exchange, routing_key, mandatory) = match dest {
            Destination::Topic { exchange, routing_key, mandatory } => {
                self.ensure_exchange(exchange).await?;
                (exchange.name.as_str(), routing_key.as_str(), *mandatory)
            }
            Destination::Fanout { exchange } => {
                self.ensure_exchange(exchange).await?;
                (exchange.name.as_str(), "", false)
            }
            Destination::Notification { queue } => {
                self.ensure_queue(queue).await?;
                let ex = queue.binding.as_ref().map_or("", |(e, _)| e.name.as_str());
                (ex, queue.name.as_str(), false)
            }
            Destination::Direct { queue } => ("", queue.as_str(), true),
        };
        let ch = self.publisher().await?;
        let opts = BasicPublishOptions { mandatory, ..Default::default() };
        let confirm = ch
            .basic_publish(exchange.into(), routing_key.into(), opts, &out.body, out.properties.clone())
            .await
            .map_err(|e| publish_error(exchange, routing_key, e))?;
        let undeliverable = |reason: String| Error::Undeliverable {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            reason,
        };
        match confirm.await.map_err(|e| publish_error(exchange, routing_key, e))? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(ret)) => Err(undeliverable(format!("{} {}", ret.reply_code, ret.reply_text))),
            Confirmation::Nack(_) => Err(undeliverable("the broker nacked the message".into())),
        }
    }
}

fn publish_error(exchange: &str, routing_key: &str, e: lapin::Error) -> Error {
    if topology::is_broker_refusal(&e) {
        Error::Undeliverable {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            reason: topology::broker_reason(&e),
        }
    } else {
        Error::connection(format!("publish to {exchange:?}/{routing_key:?}"), e)
    }
}

/// A set of queues consumed on one channel (an oslo listener connection).
pub(crate) struct Subscription {
    queues: Vec<QueueSpec>,
    prefetch: u16,
    sink: mpsc::Sender<Incoming>,
    state: tokio::sync::Mutex<SubState>,
    stopped: AtomicBool,
    /// Next offset per stream queue (oslo's `next_stream_offset`).
    stream_offsets: Mutex<HashMap<String, i64>>,
}

#[derive(Default)]
struct SubState {
    /// Incremented at every (re)start; pumps of older epochs are stale.
    epoch: u64,
    generation: u64,
    active: bool,
    channel: Option<Channel>,
    tags: Vec<String>,
}

impl Subscription {
    pub fn new(queues: Vec<QueueSpec>, prefetch: u16, sink: mpsc::Sender<Incoming>) -> Arc<Self> {
        Arc::new(Self {
            queues,
            prefetch,
            sink,
            state: tokio::sync::Mutex::new(SubState::default()),
            stopped: AtomicBool::new(false),
            stream_offsets: Mutex::new(HashMap::new()),
        })
    }

    pub fn queue_names(&self) -> String {
        self.queues.iter().map(|q| q.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Declares the queues and starts consuming on a fresh channel of `session`,
    /// unless already running on it.
    async fn start_on(self: &Arc<Self>, inner: &Arc<Inner>, session: &Arc<Session>) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        if self.stopped.load(Ordering::SeqCst) || (st.active && st.generation == session.generation) {
            return Ok(());
        }
        if let Some(old) = st.channel.take() {
            let _ = old.close(200, "OK".into()).await;
        }
        let conn = &session.connection;
        let mut channel = conn.create_channel().await.map_err(|e| Error::connection("open consumer channel", e))?;
        for q in &self.queues {
            topology::declare_queue(conn, &mut channel, q).await?;
        }
        if self.prefetch > 0 {
            channel
                .basic_qos(self.prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| Error::connection("basic.qos", e))?;
        }
        st.epoch += 1;
        st.tags.clear();
        for (i, q) in self.queues.iter().enumerate() {
            // oslo's consumer tags count 1, 2, 3 on each listener connection.
            let tag = (i + 1).to_string();
            let consumer = self.consume(&channel, q, &tag).await?;
            st.tags.push(tag);
            tokio::spawn(pump(Arc::downgrade(inner), self.clone(), consumer, st.epoch, q.name.clone(), q.stream));
        }
        debug!(queues = %self.queue_names(), generation = session.generation, "consuming");
        st.channel = Some(channel);
        st.generation = session.generation;
        st.active = true;
        Ok(())
    }

    async fn consume(&self, channel: &Channel, q: &QueueSpec, tag: &str) -> Result<Consumer, Error> {
        let offset = self.next_stream_offset(&q.name);
        if q.stream {
            info!(queue = %q.name, offset = ?offset, "stream queue consume");
        }
        channel
            .basic_consume(
                q.name.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                q.consumer_arguments(&offset),
            )
            .await
            .map_err(|e| {
                if topology::is_broker_refusal(&e) {
                    Error::Declare { what: format!("consumer on {}", q.name), reason: topology::broker_reason(&e) }
                } else {
                    Error::connection(format!("basic.consume {}", q.name), e)
                }
            })
    }

    fn record_stream_offset(&self, queue: &str, delivery: &Delivery) {
        let headers = delivery.properties.headers().as_ref();
        let offset = headers.and_then(|h| h.inner().get(&lapin::types::ShortString::from("x-stream-offset")).cloned());
        let offset = match offset {
            Some(AMQPValue::LongLongInt(o)) => o,
            Some(AMQPValue::LongInt(o)) => i64::from(o),
            Some(AMQPValue::LongUInt(o)) => i64::from(o),
            _ => return,
        };
        self.stream_offsets.lock().unwrap_or_else(|p| p.into_inner()).insert(queue.to_owned(), offset + 1);
    }

    /// oslo's `reset_stream_offset`: the next subscribe starts at "last".
    fn reset_stream_offset(&self, queue: &str) {
        let previous = self.stream_offsets.lock().unwrap_or_else(|p| p.into_inner()).remove(queue);
        warn!(queue, next_offset = ?previous, "stream consumer cancelled by the broker; resuming from \"last\"");
    }

    /// The offset the next subscribe to stream `queue` starts at: "last"
    /// first, then one past the last delivery seen (oslo's `next_stream_offset`).
    fn next_stream_offset(&self, queue: &str) -> ArgValue {
        match self.stream_offsets.lock().unwrap_or_else(|p| p.into_inner()).get(queue) {
            Some(next) => ArgValue::Int(*next),
            None => ArgValue::Str("last".into()),
        }
    }

    /// Cancels the consumers and closes the channel; unacknowledged
    /// deliveries go back to their queues.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let mut st = self.state.lock().await;
        st.active = false;
        if let Some(ch) = st.channel.take() {
            for tag in st.tags.drain(..) {
                let _ = ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
            }
            let _ = ch.close(200, "OK".into()).await;
        }
    }
}

/// Forwards deliveries of one consumer; when the consumer ends while the
/// subscription is still wanted (channel closed, consumer cancelled by the
/// broker, queue deleted) re-subscribes after `kombu_reconnect_delay`.
async fn pump(
    weak: Weak<Inner>,
    sub: Arc<Subscription>,
    mut consumer: Consumer,
    epoch: u64,
    queue: String,
    stream: bool,
) {
    // lapin ends the stream (None) when the consumer is cancelled, by the
    // broker or because its channel closed; errors come as items.
    let ended = loop {
        match consumer.next().await {
            Some(Ok(delivery)) => {
                if stream {
                    sub.record_stream_offset(&queue, &delivery);
                }
                if sub.sink.send(Incoming { delivery, queue: queue.clone() }).await.is_err() {
                    return;
                }
            }
            Some(Err(e)) => {
                warn!(queue, error = %Chain(&e), "consumer failed");
                break false;
            }
            None => break true,
        }
    };
    if sub.stopped.load(Ordering::SeqCst) {
        return;
    }
    {
        let mut st = sub.state.lock().await;
        if st.epoch != epoch || !st.active {
            return;
        }
        st.active = false;
        // Cancelled while its channel is still open: the broker sent
        // basic.cancel (e.g. the stream was deleted). The stream's offsets
        // may have restarted, so oslo resumes from "last" in that case only.
        let broker_cancel = ended && st.channel.as_ref().is_some_and(|c| c.status().connected());
        if stream && broker_cancel {
            sub.reset_stream_offset(&queue);
        }
    }
    resubscribe(weak, sub, queue).await;
}

// Boxed with an explicit `Send` bound: pump → resubscribe → start_on → pump
// is a cycle the compiler cannot prove `Send` through otherwise.
fn resubscribe(
    weak: Weak<Inner>,
    sub: Arc<Subscription>,
    queue: String,
) -> futures_util::future::BoxFuture<'static, ()> {
    Box::pin(resubscribe_loop(weak, sub, queue))
}

async fn resubscribe_loop(weak: Weak<Inner>, sub: Arc<Subscription>, queue: String) {
    let mut attempt = 0u32;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        // `Transport::close()` ends every consumer: nothing to recover.
        if *inner.shutdown.borrow() {
            debug!(queue, "consumer ended: the transport is closing");
            return;
        }
        let delay = if attempt == 0 { inner.options().reconnect_delay() } else { inner.options().retry_delay(attempt) };
        warn!(queue, delay_secs = delay.as_secs_f64(), "consumer ended; re-declaring and re-subscribing");
        drop(inner);
        tokio::time::sleep(delay).await;
        let Some(inner) = weak.upgrade() else { return };
        if sub.stopped.load(Ordering::SeqCst) {
            return;
        }
        // Without a live session the supervisor restarts every subscription.
        let Some(session) = inner.current().filter(|s| s.is_alive()) else { return };
        match sub.start_on(&inner, &session).await {
            Ok(()) => return,
            Err(e) => error!(queue, error = %Chain(&e), "re-subscribing failed"),
        }
        attempt = attempt.saturating_add(1);
    }
}
