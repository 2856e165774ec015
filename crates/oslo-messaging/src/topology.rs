//! Exchanges, queues, bindings and consumer arguments exactly as oslo's
//! RabbitMQ driver declares them for every queue-mode option, queue-manager
//! names, and the declaration itself with oslo's non-durable fallback on
//! `PRECONDITION_FAILED - inequivalent arg 'durable'`.

use std::sync::Mutex;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ExchangeKind};
use tracing::{info, warn};

use crate::error::Error;
use crate::options::RabbitOptions;

/// An exchange declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeType,
    pub durable: bool,
    pub auto_delete: bool,
}

/// The exchange types oslo uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeType {
    Topic,
    Fanout,
}

impl ExchangeType {
    fn lapin(self) -> ExchangeKind {
        match self {
            Self::Topic => ExchangeKind::Topic,
            Self::Fanout => ExchangeKind::Fanout,
        }
    }
}

/// A queue argument value, typed as py-amqp encodes Python values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgValue {
    Int(i64),
    Str(String),
    Bool(bool),
}

impl ArgValue {
    fn amqp(&self) -> AMQPValue {
        match self {
            // py-amqp writes ints that fit 32 bits as 'I', others as 'l'.
            Self::Int(i) => match i32::try_from(*i) {
                Ok(small) => AMQPValue::LongInt(small),
                Err(_) => AMQPValue::LongLongInt(*i),
            },
            Self::Str(s) => AMQPValue::LongString(s.as_str().into()),
            Self::Bool(b) => AMQPValue::Boolean(*b),
        }
    }
}

pub(crate) type Args = Vec<(&'static str, ArgValue)>;

pub(crate) fn field_table(args: &[(&'static str, ArgValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in args {
        t.insert(ShortString::from(*k), v.amqp());
    }
    t
}

/// A queue, its binding and how to consume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueSpec {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: Args,
    /// `None` for reply queues (default exchange, no binding).
    pub binding: Option<(ExchangeSpec, String)>,
    pub cancel_on_failover: bool,
    pub stream: bool,
}

impl QueueSpec {
    /// Consumer arguments; `stream_offset` is the next offset to read on a stream.
    pub fn consumer_arguments(&self, stream_offset: &ArgValue) -> FieldTable {
        if self.stream {
            // oslo replaces (not extends) the consumer arguments for streams.
            return field_table(&[("x-stream-offset", stream_offset.clone())]);
        }
        if self.cancel_on_failover {
            return field_table(&[("x-cancel-on-ha-failover", ArgValue::Bool(true))]);
        }
        FieldTable::default()
    }
}

/// oslo's `_get_queue_arguments`.
pub(crate) fn queue_arguments(o: &RabbitOptions, ttl_secs: u64, quorum: bool, stream: bool) -> Args {
    if stream {
        let mut args = vec![("x-queue-type", ArgValue::Str("stream".into()))];
        if ttl_secs > 0 {
            args.push(("x-max-age", ArgValue::Str(format!("{ttl_secs}s"))));
        }
        return args;
    }
    let mut args = Args::new();
    if o.rabbit_ha_queues {
        args.push(("x-ha-policy", ArgValue::Str("all".into())));
    }
    if quorum {
        args.push(("x-queue-type", ArgValue::Str("quorum".into())));
        let limits = [
            ("x-delivery-limit", o.rabbit_quorum_delivery_limit),
            ("x-max-in-memory-length", o.rabbit_quorum_max_memory_length),
            ("x-max-in-memory-bytes", o.rabbit_quorum_max_memory_bytes),
        ];
        for (key, value) in limits {
            if value > 0 {
                args.push((key, ArgValue::Int(i64::try_from(value).unwrap_or(i64::MAX))));
            }
        }
    }
    if ttl_secs > 0 {
        args.push(("x-expires", ArgValue::Int(i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX))));
    }
    args
}

/// The control (topic) exchange.
pub(crate) fn topic_exchange(o: &RabbitOptions, name: &str) -> ExchangeSpec {
    ExchangeSpec {
        name: name.to_owned(),
        kind: ExchangeType::Topic,
        durable: o.durable(),
        auto_delete: o.amqp_auto_delete,
    }
}

/// The `<topic>_fanout` exchange.
pub(crate) fn fanout_exchange(o: &RabbitOptions, topic: &str) -> ExchangeSpec {
    ExchangeSpec {
        name: format!("{topic}_fanout"),
        kind: ExchangeType::Fanout,
        durable: o.rabbit_transient_quorum_queue,
        auto_delete: true,
    }
}

/// `declare_topic_consumer`: queue `queue_name` bound with `routing_key`.
pub(crate) fn topic_queue(o: &RabbitOptions, exchange: &str, routing_key: &str, queue_name: &str) -> QueueSpec {
    QueueSpec {
        name: queue_name.to_owned(),
        durable: o.durable(),
        auto_delete: o.amqp_auto_delete,
        // Topic queues never get x-expires.
        arguments: queue_arguments(o, 0, o.rabbit_quorum_queue, false),
        binding: Some((topic_exchange(o, exchange), routing_key.to_owned())),
        cancel_on_failover: o.enable_cancel_on_failover,
        stream: false,
    }
}

/// `declare_fanout_consumer`; `unique` is a uuid hex or a queue-manager name.
pub(crate) fn fanout_queue(o: &RabbitOptions, topic: &str, unique: &str) -> QueueSpec {
    let name = if o.rabbit_stream_fanout { format!("{topic}_fanout") } else { format!("{topic}_fanout_{unique}") };
    QueueSpec {
        name,
        durable: o.rabbit_transient_quorum_queue || o.rabbit_stream_fanout,
        auto_delete: false,
        arguments: queue_arguments(
            o,
            o.rabbit_transient_queues_ttl,
            o.rabbit_transient_quorum_queue,
            o.rabbit_stream_fanout,
        ),
        binding: Some((fanout_exchange(o, topic), topic.to_owned())),
        cancel_on_failover: o.enable_cancel_on_failover,
        stream: o.rabbit_stream_fanout,
    }
}

/// `declare_direct_consumer`: a reply queue on the default exchange.
pub(crate) fn reply_queue(o: &RabbitOptions, name: &str) -> QueueSpec {
    QueueSpec {
        name: name.to_owned(),
        durable: o.rabbit_transient_quorum_queue,
        auto_delete: false,
        arguments: queue_arguments(o, o.rabbit_transient_queues_ttl, o.rabbit_transient_quorum_queue, false),
        binding: None,
        cancel_on_failover: o.enable_cancel_on_failover,
        stream: false,
    }
}

/// `_publish_and_creates_default_queue`: the queue named like a
/// notification's routing key, so notifications wait for a consumer.
pub(crate) fn notification_queue(o: &RabbitOptions, exchange: &str, routing_key: &str) -> QueueSpec {
    let exchange = topic_exchange(o, exchange);
    QueueSpec {
        name: routing_key.to_owned(),
        durable: exchange.durable,
        auto_delete: exchange.auto_delete,
        arguments: queue_arguments(o, 0, o.rabbit_quorum_queue, false),
        binding: Some((exchange, routing_key.to_owned())),
        cancel_on_failover: false,
        stream: false,
    }
}

/// Queue-manager names (`use_queue_manager`): `<hostname>:<processname>:<n>`,
/// `n` counting per process group as oslo's `QManager` does through
/// `/dev/shm/<hostname>_<processname>_qmanager`.
pub(crate) fn queue_manager_name(o: &RabbitOptions) -> String {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let counter = next_qmanager_counter(&o.hostname, &o.processname);
    format!("{}:{}:{}", o.hostname, o.processname, counter)
}

fn next_qmanager_counter(hostname: &str, processname: &str) -> u64 {
    let path = format!("/dev/shm/{hostname}_{processname}_qmanager");
    let (cur_pg, cur_start) = service_identity().unwrap_or((std::process::id().into(), 0));
    let stored = std::fs::read_to_string(&path).ok().and_then(|s| {
        let mut it = s.trim().split(':').map(|p| p.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    });
    let counter = match stored {
        Some((pg, counter, start)) if pg == cur_pg && start == cur_start => counter + 1,
        _ => 1,
    };
    if let Err(e) = std::fs::write(&path, format!("{cur_pg}:{counter}:{cur_start}")) {
        warn!(path, error = %e, "cannot record queue-manager counter; names may repeat after restart");
    }
    counter
}

/// `(process group, start time of the group leader)` from /proc, as oslo's
/// `_service_identity`.
fn service_identity() -> Option<(u64, u64)> {
    let fields = |pid: &str| -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name start at field 3 (state).
        let after = &stat[stat.rfind(')')? + 1..];
        Some(after.split_whitespace().map(str::to_owned).collect())
    };
    let own = fields("self")?;
    let pg: u64 = own.get(2)?.parse().ok()?;
    let leader = if pg == 0 { "self".to_owned() } else { pg.to_string() };
    let start: u64 = fields(&leader)?.get(19)?.parse().ok()?;
    Some((pg, start))
}

/// The reply text of a broker error, e.g. `PRECONDITION_FAILED - inequivalent arg ...`.
pub(crate) fn broker_reason(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => format!("{:?} - {}", amqp.kind(), amqp.get_message()),
        _ => e.to_string(),
    }
}

fn is_durable_mismatch(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_message().as_str().contains("inequivalent arg 'durable'"))
}

/// Whether the error is the broker refusing a declaration (channel-level),
/// as opposed to the connection going away.
pub(crate) fn is_broker_refusal(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(_)) && e.is_amqp_soft_error()
}

fn declare_error(what: String, e: lapin::Error) -> Error {
    if is_broker_refusal(&e) {
        Error::Declare { what, reason: broker_reason(&e) }
    } else {
        Error::connection(format!("declare {what}"), e)
    }
}

/// Declares an exchange; on a durable mismatch re-declares it non-durable on a
/// fresh channel (the refusal closed the old one), as oslo's `_publish` does.
pub(crate) async fn declare_exchange(conn: &Connection, channel: &mut Channel, ex: &ExchangeSpec) -> Result<(), Error> {
    match exchange_declare(channel, ex).await {
        Err(e) if is_durable_mismatch(&e) && ex.durable => {
            warn!(exchange = %ex.name, reason = %broker_reason(&e), "force creating a non durable exchange");
            *channel = conn.create_channel().await.map_err(|e| Error::connection("open channel", e))?;
            let fallback = ExchangeSpec { durable: false, ..ex.clone() };
            exchange_declare(channel, &fallback).await.map_err(|e| declare_error(format!("exchange {}", ex.name), e))
        }
        other => other.map_err(|e| declare_error(format!("exchange {}", ex.name), e)),
    }
}

async fn exchange_declare(channel: &Channel, ex: &ExchangeSpec) -> Result<(), lapin::Error> {
    let opts = ExchangeDeclareOptions { durable: ex.durable, auto_delete: ex.auto_delete, ..Default::default() };
    channel.exchange_declare(ex.name.as_str().into(), ex.kind.lapin(), opts, FieldTable::default()).await
}

/// Declares a queue with its exchange and binding (kombu's `Queue.declare`).
/// On a durable mismatch oslo retries with a non-durable exchange and queue
/// (`_declare_fallback_nondurable`); any other refusal is returned as
/// [`Error::Declare`] carrying the broker's reason.
pub(crate) async fn declare_queue(conn: &Connection, channel: &mut Channel, q: &QueueSpec) -> Result<(), Error> {
    match declare_queue_once(channel, q).await {
        Err(e) if is_durable_mismatch(&e) => {
            warn!(queue = %q.name, reason = %broker_reason(&e), "queue could not be declared, probably because of conflicting configurations; retrying as non durable");
            *channel = conn.create_channel().await.map_err(|e| Error::connection("open channel", e))?;
            let mut fallback = q.clone();
            fallback.durable = false;
            if let Some((ex, _)) = fallback.binding.as_mut() {
                ex.durable = false;
                // oslo re-creates the exchange with the queue's auto_delete.
                ex.auto_delete = q.auto_delete;
            }
            info!(queue = %q.name, "declaring queue as non durable");
            declare_queue_once(channel, &fallback).await.map_err(|e| declare_error(format!("queue {}", q.name), e))
        }
        other => other.map_err(|e| declare_error(format!("queue {}", q.name), e)),
    }
}

async fn declare_queue_once(channel: &Channel, q: &QueueSpec) -> Result<(), lapin::Error> {
    if let Some((ex, _)) = &q.binding {
        exchange_declare(channel, ex).await?;
    }
    let opts = QueueDeclareOptions { durable: q.durable, auto_delete: q.auto_delete, ..Default::default() };
    channel.queue_declare(q.name.as_str().into(), opts, field_table(&q.arguments)).await?;
    if let Some((ex, key)) = &q.binding {
        channel
            .queue_bind(
                q.name.as_str().into(),
                ex.name.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(args: &Args) -> Vec<&str> {
        args.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn classic_defaults_match_the_observed_topology() {
        let o = RabbitOptions::default();
        let q = topic_queue(&o, "nova", "compute.cmp1", "compute.cmp1");
        assert!(!q.durable && !q.auto_delete && q.arguments.is_empty());
        let f = fanout_queue(&o, "compute", "abc");
        assert_eq!(f.name, "compute_fanout_abc");
        assert_eq!(f.arguments, vec![("x-expires", ArgValue::Int(1_800_000))]);
        let (ex, key) = f.binding.unwrap();
        assert_eq!((ex.name.as_str(), key.as_str(), ex.auto_delete), ("compute_fanout", "compute", true));
        assert_eq!(reply_queue(&o, "reply_x").arguments, vec![("x-expires", ArgValue::Int(1_800_000))]);
    }

    #[test]
    fn quorum_with_limits_and_transient_quorum() {
        let o = RabbitOptions {
            rabbit_quorum_queue: true,
            rabbit_transient_quorum_queue: true,
            rabbit_quorum_delivery_limit: 3,
            rabbit_quorum_max_memory_bytes: 1024,
            ..Default::default()
        };
        let q = topic_queue(&o, "nova", "compute", "compute");
        assert!(q.durable);
        assert_eq!(names(&q.arguments), ["x-queue-type", "x-delivery-limit", "x-max-in-memory-bytes"]);
        let r = reply_queue(&o, "reply_x");
        assert!(r.durable);
        assert_eq!(names(&r.arguments), ["x-queue-type", "x-delivery-limit", "x-max-in-memory-bytes", "x-expires"]);
    }

    #[test]
    fn stream_fanout_is_one_shared_queue() {
        let o = RabbitOptions {
            rabbit_stream_fanout: true,
            rabbit_transient_quorum_queue: true,
            rabbit_qos_prefetch_count: 10,
            ..Default::default()
        };
        let f = fanout_queue(&o, "compute", "ignored");
        assert_eq!(f.name, "compute_fanout");
        assert!(f.durable && f.stream);
        assert_eq!(
            f.arguments,
            vec![("x-queue-type", ArgValue::Str("stream".into())), ("x-max-age", ArgValue::Str("1800s".into()))]
        );
        let args = f.consumer_arguments(&ArgValue::Str("last".into()));
        assert!(args.inner().contains_key(&ShortString::from("x-stream-offset")));
    }

    #[test]
    fn ha_and_cancel_on_failover() {
        let o = RabbitOptions { rabbit_ha_queues: true, enable_cancel_on_failover: true, ..Default::default() };
        let q = topic_queue(&o, "nova", "compute", "compute");
        assert_eq!(q.arguments, vec![("x-ha-policy", ArgValue::Str("all".into()))]);
        assert!(q
            .consumer_arguments(&ArgValue::Str("last".into()))
            .inner()
            .contains_key(&ShortString::from("x-cancel-on-ha-failover")));
    }

    #[test]
    fn queue_manager_names_count_up() {
        let o = RabbitOptions {
            hostname: format!("qm-test-{}", uuid::Uuid::new_v4().simple()),
            processname: "unit".into(),
            ..Default::default()
        };
        let a = queue_manager_name(&o);
        let b = queue_manager_name(&o);
        assert!(a.ends_with(":unit:1"), "{a}");
        assert!(b.ends_with(":unit:2"), "{b}");
        let _ = std::fs::remove_file(format!("/dev/shm/{}_unit_qmanager", o.hostname));
    }
}
