//! The `[oslo_messaging_rabbit]` options this crate honours, as a plain struct
//! with oslo.messaging 18's defaults. The service maps its parsed nova.conf
//! into it; this crate does not read configuration files.

use std::time::Duration;

use crate::error::Error;

/// `[oslo_messaging_rabbit]` options (plus `amqp_durable_queues` and
/// `amqp_auto_delete`, which oslo registers in the same group).
///
/// Field names are oslo's option names; `Default` gives oslo's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitOptions {
    /// `ssl`: connect over TLS.
    pub ssl: bool,
    /// `ssl_ca_file`: PEM bundle used to verify the broker; when set it is the
    /// only trust anchor (else the system's roots are used).
    pub ssl_ca_file: String,
    /// `ssl_enforce_hostname_verification` (default true, deprecated for
    /// removal in oslo): with `ssl_ca_file`, whether the broker's certificate
    /// must also name the host of the transport URL. The chain is verified
    /// either way; without `ssl_ca_file` the name is never checked (as oslo).
    pub ssl_enforce_hostname_verification: bool,
    /// `ssl_cert_file`: client certificate (PEM).
    pub ssl_cert_file: String,
    /// `ssl_key_file`: client private key (PEM, PKCS#8 or RSA).
    pub ssl_key_file: String,
    /// `ssl_version`: accepted for compatibility; rustls negotiates TLS 1.2/1.3.
    pub ssl_version: String,
    /// `ssl_enforce_fips_mode`: accepted for compatibility; has no effect (as in oslo).
    pub ssl_enforce_fips_mode: bool,
    /// `kombu_reconnect_delay`: seconds to wait before re-subscribing after a
    /// consumer cancel or channel error.
    pub kombu_reconnect_delay: f64,
    /// `kombu_compression`: `gzip`/`zlib` (zlib data, as kombu does),
    /// `bz2`/`bzip2`/`bzip` (bzip2), or unset.
    pub kombu_compression: Option<String>,
    /// `kombu_missing_consumer_retry_timeout`: how long a reply to a missing
    /// reply queue is retried before the queue is considered gone.
    pub kombu_missing_consumer_retry_timeout: u64,
    /// `kombu_failover_strategy`: `round-robin` or `shuffle`.
    pub kombu_failover_strategy: String,
    /// `rabbit_login_method`: `AMQPLAIN` or `PLAIN`.
    pub rabbit_login_method: String,
    /// `rabbit_retry_interval`: first reconnect delay, seconds.
    pub rabbit_retry_interval: u64,
    /// `rabbit_retry_backoff`: added to the delay after each failed attempt, seconds.
    pub rabbit_retry_backoff: u64,
    /// `rabbit_interval_max`: upper bound of the reconnect delay, seconds.
    pub rabbit_interval_max: u64,
    /// `rabbit_ha_queues`: `x-ha-policy: all` on queues.
    pub rabbit_ha_queues: bool,
    /// `rabbit_quorum_queue`: topic queues are durable quorum queues.
    pub rabbit_quorum_queue: bool,
    /// `rabbit_transient_quorum_queue`: reply and fanout queues are quorum queues.
    pub rabbit_transient_quorum_queue: bool,
    /// `rabbit_quorum_delivery_limit`: `x-delivery-limit` (0 = unset).
    pub rabbit_quorum_delivery_limit: u64,
    /// `rabbit_quorum_max_memory_length`: `x-max-in-memory-length` (0 = unset).
    pub rabbit_quorum_max_memory_length: u64,
    /// `rabbit_quorum_max_memory_bytes`: `x-max-in-memory-bytes` (0 = unset).
    pub rabbit_quorum_max_memory_bytes: u64,
    /// `rabbit_transient_queues_ttl`: `x-expires` of reply/fanout queues, seconds (0 = none).
    pub rabbit_transient_queues_ttl: u64,
    /// `rabbit_qos_prefetch_count`: `basic.qos` prefetch (0 = unlimited, no qos sent).
    pub rabbit_qos_prefetch_count: u16,
    /// `heartbeat_timeout_threshold`: AMQP heartbeat, seconds (0 = disabled);
    /// also the broker socket's `TCP_USER_TIMEOUT`, as oslo sets it.
    pub heartbeat_timeout_threshold: u16,
    /// `heartbeat_rate`: accepted for compatibility; lapin sends heartbeats itself.
    pub heartbeat_rate: u32,
    /// `enable_cancel_on_failover`: consumer argument `x-cancel-on-ha-failover`.
    pub enable_cancel_on_failover: bool,
    /// `use_queue_manager`: stable reply/fanout queue names.
    pub use_queue_manager: bool,
    /// `hostname`: host part of queue-manager names.
    pub hostname: String,
    /// `processname`: process part of queue-manager names.
    pub processname: String,
    /// `rabbit_stream_fanout`: one shared stream queue per fanout topic.
    pub rabbit_stream_fanout: bool,
    /// `amqp_durable_queues`: durable topic exchange and queues.
    pub amqp_durable_queues: bool,
    /// `amqp_auto_delete`: auto-delete topic exchange and queues.
    pub amqp_auto_delete: bool,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        Self {
            ssl: false,
            ssl_ca_file: String::new(),
            ssl_enforce_hostname_verification: true,
            ssl_cert_file: String::new(),
            ssl_key_file: String::new(),
            ssl_version: String::new(),
            ssl_enforce_fips_mode: false,
            kombu_reconnect_delay: 1.0,
            kombu_compression: None,
            kombu_missing_consumer_retry_timeout: 60,
            kombu_failover_strategy: "round-robin".to_owned(),
            rabbit_login_method: "AMQPLAIN".to_owned(),
            rabbit_retry_interval: 1,
            rabbit_retry_backoff: 2,
            rabbit_interval_max: 30,
            rabbit_ha_queues: false,
            rabbit_quorum_queue: false,
            rabbit_transient_quorum_queue: false,
            rabbit_quorum_delivery_limit: 0,
            rabbit_quorum_max_memory_length: 0,
            rabbit_quorum_max_memory_bytes: 0,
            rabbit_transient_queues_ttl: 1800,
            rabbit_qos_prefetch_count: 0,
            heartbeat_timeout_threshold: 60,
            heartbeat_rate: 3,
            enable_cancel_on_failover: false,
            use_queue_manager: false,
            hostname: default_hostname(),
            processname: default_processname(),
            rabbit_stream_fanout: false,
            amqp_durable_queues: false,
            amqp_auto_delete: false,
        }
    }
}

impl RabbitOptions {
    /// Rejects the combinations oslo refuses at start-up, with oslo's reasons.
    pub fn validate(&self) -> Result<(), Error> {
        if self.rabbit_quorum_queue && self.rabbit_ha_queues {
            return Err(Error::Config(
                "rabbit_quorum_queue and rabbit_ha_queues both enabled, queue type is quorum or HA (mirrored) not both"
                    .into(),
            ));
        }
        if self.rabbit_stream_fanout && self.rabbit_qos_prefetch_count == 0 {
            return Err(Error::Config(
                "rabbit_stream_fanout needs rabbit_qos_prefetch_count to be set to a value greater than 0".into(),
            ));
        }
        if self.rabbit_stream_fanout && !self.rabbit_transient_quorum_queue {
            return Err(Error::Config(
                "rabbit_stream_fanout needs rabbit_transient_quorum_queue to be set to true".into(),
            ));
        }
        match self.kombu_compression.as_deref() {
            None | Some("") => {}
            Some(name) if crate::codec::Compression::from_name(name).is_some() => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "kombu_compression {other:?} is not supported (gzip, zlib, bz2, bzip2 or bzip)"
                )))
            }
        }
        match self.rabbit_login_method.as_str() {
            "AMQPLAIN" | "PLAIN" => Ok(()),
            other => Err(Error::Config(format!("rabbit_login_method {other:?} is not supported (AMQPLAIN or PLAIN)"))),
        }
    }

    /// oslo's `Connection.durable`: topic exchange and queues are durable.
    pub fn durable(&self) -> bool {
        self.amqp_durable_queues || self.rabbit_quorum_queue
    }

    /// The delay before reconnect attempt `attempt` (0-based), as kombu's
    /// `interval_start + attempt * interval_step`, capped at `interval_max`.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let secs = self
            .rabbit_retry_interval
            .saturating_add(u64::from(attempt).saturating_mul(self.rabbit_retry_backoff))
            .min(self.rabbit_interval_max);
        Duration::from_secs(secs)
    }

    /// `kombu_reconnect_delay` as a duration.
    pub fn reconnect_delay(&self) -> Duration {
        Duration::from_secs_f64(self.kombu_reconnect_delay.max(0.0))
    }
}

/// `socket.gethostname()`, read from the kernel without libc calls.
fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// `os.path.basename(sys.argv[0])`.
fn default_processname() -> String {
    std::env::args()
        .next()
        .as_deref()
        .and_then(|a| std::path::Path::new(a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_kombu_steps() {
        let o = RabbitOptions::default();
        let secs: Vec<u64> = (0..20).map(|a| o.retry_delay(a).as_secs()).collect();
        assert_eq!(&secs[..4], &[1, 3, 5, 7]);
        assert_eq!(secs[19], 30);
    }

    #[test]
    fn oslo_refuses_these_combinations() {
        let quorum_and_ha = RabbitOptions { rabbit_quorum_queue: true, rabbit_ha_queues: true, ..Default::default() };
        assert!(quorum_and_ha.validate().is_err());
        let stream_no_prefetch =
            RabbitOptions { rabbit_stream_fanout: true, rabbit_transient_quorum_queue: true, ..Default::default() };
        assert!(stream_no_prefetch.validate().is_err());
        let stream_no_transient =
            RabbitOptions { rabbit_stream_fanout: true, rabbit_qos_prefetch_count: 10, ..Default::default() };
        assert!(stream_no_transient.validate().is_err());
        assert!(RabbitOptions::default().validate().is_ok());
    }

    #[test]
    fn compression_codecs_are_checked() {
        for ok in ["gzip", "zlib", "bz2", "bzip2", "bzip", ""] {
            let o = RabbitOptions { kombu_compression: Some(ok.into()), ..Default::default() };
            assert!(o.validate().is_ok(), "{ok}");
        }
        let lzma = RabbitOptions { kombu_compression: Some("lzma".into()), ..Default::default() };
        let e = lzma.validate().unwrap_err().to_string();
        assert!(e.contains("kombu_compression \"lzma\" is not supported"), "{e}");
    }
}
