//! oslo's `Notifier` with the `messagingv2` driver: a 2.0-envelope message
//! `{message_id, publisher_id, event_type, priority, payload, timestamp}` with
//! a redacted context, published on the control exchange with routing key
//! `<topic>.<priority>` after declaring the queue of that name, as oslo does.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::debug;

use crate::broker::Destination;
use crate::codec::{self, new_id};
use crate::context::Context;
use crate::error::Error;
use crate::topology;
use crate::transport::Transport;

/// How long a notification waits for a connection before failing.
const SEND_DEADLINE: Duration = Duration::from_secs(60);

/// Notification priorities, oslo's `Notifier` methods (`audit`, `debug`,
/// `info`, `warn`, `error`, `critical`, `sample`): upper-case in the
/// message's `priority`, lower-case in the routing key `<topic>.<priority>`.
/// The one priority type of the workspace (nova-objects re-exports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// `AUDIT`
    Audit,
    /// `DEBUG`
    Debug,
    /// `INFO`
    Info,
    /// `WARN`
    Warn,
    /// `ERROR`
    Error,
    /// `CRITICAL`
    Critical,
    /// `SAMPLE`
    Sample,
}

impl Priority {
    /// Every priority, in oslo's order of its `Notifier` methods.
    pub const ALL: [Priority; 7] =
        [Self::Audit, Self::Debug, Self::Info, Self::Warn, Self::Error, Self::Critical, Self::Sample];

    /// Reads a priority as oslo spells it on the wire (`INFO`), or in a
    /// routing key or a consumer's listener method (`info`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    /// The lower-case name ending the routing key (`notifications.info`).
    pub fn routing_suffix(self) -> String {
        self.as_str().to_ascii_lowercase()
    }

    /// The upper-case name in the message.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "AUDIT",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Critical => "CRITICAL",
            Self::Sample => "SAMPLE",
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sends notifications to one or more topics (`notifications`,
/// `versioned_notifications`).
#[derive(Debug, Clone)]
pub struct Notifier {
    transport: Transport,
    publisher_id: String,
    topics: Vec<String>,
}

impl Notifier {
    /// A notifier publishing as `publisher_id` (e.g. `compute.HOST`) to `topics`.
    pub fn new(transport: &Transport, publisher_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self { transport: transport.clone(), publisher_id: publisher_id.into(), topics }
    }

    /// A copy with another publisher id (oslo's `prepare(publisher_id=...)`).
    pub fn prepare(&self, publisher_id: impl Into<String>) -> Self {
        Self { publisher_id: publisher_id.into(), ..self.clone() }
    }

    /// Sends an `INFO` notification.
    pub async fn info<P: Serialize>(&self, ctx: &Context, event_type: &str, payload: P) -> Result<(), Error> {
        self.notify(ctx, event_type, Priority::Info, payload).await
    }

    /// Sends an `ERROR` notification.
    pub async fn error<P: Serialize>(&self, ctx: &Context, event_type: &str, payload: P) -> Result<(), Error> {
        self.notify(ctx, event_type, Priority::Error, payload).await
    }

    /// Sends a notification to every topic; the first failure is returned
    /// after all topics were tried.
    pub async fn notify<P: Serialize>(
        &self,
        ctx: &Context,
        event_type: &str,
        priority: Priority,
        payload: P,
    ) -> Result<(), Error> {
        let payload = serde_json::to_value(payload).map_err(Error::Encode)?;
        let msg = self.message(ctx, event_type, priority, payload);
        let compression = self.transport.options().kombu_compression.as_deref().filter(|c| !c.is_empty());
        let out = codec::encode(&msg, None, compression).map_err(Error::Encode)?;
        let mut first_error = None;
        for topic in &self.topics {
            let routing_key = format!("{topic}.{}", priority.routing_suffix());
            let queue =
                topology::notification_queue(self.transport.options(), self.transport.control_exchange(), &routing_key);
            debug!(event_type, routing_key, "NOTIFY");
            let sent = self
                .transport
                .inner
                .publish(&Destination::Notification { queue }, &out, Instant::now() + SEND_DEADLINE)
                .await;
            if let Err(e) = sent {
                tracing::error!(event_type, routing_key, error = %error_chain::Chain(&e), "could not send notification");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn message(&self, ctx: &Context, event_type: &str, priority: Priority, payload: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("message_id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        m.insert("publisher_id".into(), Value::String(self.publisher_id.clone()));
        m.insert("event_type".into(), Value::String(event_type.to_owned()));
        m.insert("priority".into(), Value::String(priority.as_str().to_owned()));
        m.insert("payload".into(), payload);
        m.insert("timestamp".into(), Value::String(python_utc_now(SystemTime::now())));
        m.insert("_unique_id".into(), Value::String(new_id()));
        ctx.redacted().pack_into(&mut m);
        m
    }
}

/// `str(timeutils.utcnow())`: `YYYY-MM-DD HH:MM:SS.ffffff`, without the
/// fraction when it is zero.
pub(crate) fn python_utc_now(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = civil_from_days(days as i64);
    let base = format!("{y:04}-{mo:02}-{da:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    match d.subsec_micros() {
        0 => base,
        us => format!("{base}.{us:06}"),
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, UTC).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_spelled_as_oslo_does() {
        let names: Vec<&str> = Priority::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["AUDIT", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "SAMPLE"]);
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
            assert_eq!(Priority::parse(&p.routing_suffix()), Some(p));
        }
        assert_eq!(Priority::Error.routing_suffix(), "error");
        assert_eq!(Priority::Warn.to_string(), "WARN");
        assert_eq!(Priority::parse("WARNING"), None, "oslo's name is WARN");
    }

    #[test]
    fn timestamp_matches_python_str_datetime() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_786_246_123_456);
        assert_eq!(python_utc_now(t), "2026-11-27 13:30:46.123456");
        assert_eq!(python_utc_now(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29 00:00:00");
    }
}
