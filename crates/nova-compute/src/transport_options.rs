//! nova.conf's `[oslo_messaging_rabbit]` group, handed to the messaging layer.
//!
//! `oslo-config` parses what the operator wrote; `oslo-messaging` knows
//! nothing about configuration files. This is the one place they meet.

use oslo_config::groups::{FailoverStrategy, LoginMethod, OsloMessagingRabbit};
use oslo_messaging::RabbitOptions;

/// A configured value the messaging layer cannot represent.
#[derive(Debug, thiserror::Error)]
#[error("[oslo_messaging_rabbit] {option} = {value} is out of range")]
pub struct OutOfRange {
    option: &'static str,
    value: i64,
}

fn unsigned<T: TryFrom<i64>>(option: &'static str, value: i64) -> Result<T, OutOfRange> {
    T::try_from(value).map_err(|_| OutOfRange { option, value })
}

/// Every option oslo.messaging's rabbit driver reads, as the driver reads it.
pub fn rabbit_options(group: &OsloMessagingRabbit) -> Result<RabbitOptions, OutOfRange> {
    Ok(RabbitOptions {
        ssl: group.ssl,
        ssl_ca_file: group.ssl_ca_file.clone(),
        ssl_cert_file: group.ssl_cert_file.clone(),
        ssl_key_file: group.ssl_key_file.expose().to_owned(),
        ssl_version: group.ssl_version.clone(),
        ssl_enforce_hostname_verification: group.ssl_enforce_hostname_verification,
        ssl_enforce_fips_mode: group.ssl_enforce_fips_mode,
        kombu_reconnect_delay: group.kombu_reconnect_delay,
        kombu_compression: group.kombu_compression.clone(),
        kombu_missing_consumer_retry_timeout: unsigned(
            "kombu_missing_consumer_retry_timeout",
            group.kombu_missing_consumer_retry_timeout,
        )?,
        kombu_failover_strategy: match group.kombu_failover_strategy {
            FailoverStrategy::RoundRobin => "round-robin",
            FailoverStrategy::Shuffle => "shuffle",
        }
        .to_owned(),
        rabbit_login_method: match group.rabbit_login_method {
            LoginMethod::Plain => "PLAIN",
            LoginMethod::AmqPlain => "AMQPLAIN",
            LoginMethod::External => "EXTERNAL",
            LoginMethod::RabbitCrDemo => "RABBIT-CR-DEMO",
        }
        .to_owned(),
        rabbit_retry_interval: u64::from(group.rabbit_retry_interval),
        rabbit_retry_backoff: u64::from(group.rabbit_retry_backoff),
        rabbit_interval_max: u64::from(group.rabbit_interval_max),
        rabbit_ha_queues: group.rabbit_ha_queues,
        rabbit_quorum_queue: group.rabbit_quorum_queue,
        rabbit_transient_quorum_queue: group.rabbit_transient_quorum_queue,
        rabbit_quorum_delivery_limit: unsigned("rabbit_quorum_delivery_limit", group.rabbit_quorum_delivery_limit)?,
        rabbit_quorum_max_memory_length: unsigned(
            "rabbit_quorum_max_memory_length",
            group.rabbit_quorum_max_memory_length,
        )?,
        rabbit_quorum_max_memory_bytes: unsigned(
            "rabbit_quorum_max_memory_bytes",
            group.rabbit_quorum_max_memory_bytes,
        )?,
        rabbit_transient_queues_ttl: u64::from(group.rabbit_transient_queues_ttl),
        rabbit_qos_prefetch_count: unsigned("rabbit_qos_prefetch_count", group.rabbit_qos_prefetch_count)?,
        heartbeat_timeout_threshold: unsigned("heartbeat_timeout_threshold", group.heartbeat_timeout_threshold)?,
        heartbeat_rate: unsigned("heartbeat_rate", group.heartbeat_rate)?,
        enable_cancel_on_failover: group.enable_cancel_on_failover,
        use_queue_manager: group.use_queue_manager,
        hostname: group.hostname.clone(),
        processname: group.processname.clone(),
        rabbit_stream_fanout: group.rabbit_stream_fanout,
        amqp_durable_queues: group.amqp_durable_queues,
        amqp_auto_delete: group.amqp_auto_delete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> oslo_config::Config {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nova.conf");
        std::fs::write(&file, text).unwrap();
        oslo_config::Config::from_files([&file]).unwrap()
    }

    #[test]
    fn defaults_match_the_messaging_layer_defaults() {
        let cfg = config("[DEFAULT]\nhost = h\n");
        let mut mapped = rabbit_options(&cfg.oslo_messaging_rabbit).unwrap();
        let mut defaults = RabbitOptions::default();
        // Both sides default these to the machine's name and process name.
        mapped.hostname.clear();
        mapped.processname.clear();
        defaults.hostname.clear();
        defaults.processname.clear();
        assert_eq!(mapped, defaults);
    }

    #[test]
    fn kolla_queue_modes_are_carried_over() {
        let cfg = config(
            "[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\nrabbit_transient_quorum_queue = true\n\
             rabbit_stream_fanout = true\nuse_queue_manager = true\nrabbit_qos_prefetch_count = 16\n\
             rabbit_login_method = PLAIN\n",
        );
        let o = rabbit_options(&cfg.oslo_messaging_rabbit).unwrap();
        assert!(o.rabbit_quorum_queue && o.rabbit_transient_quorum_queue && o.rabbit_stream_fanout);
        assert!(o.use_queue_manager);
        assert_eq!(o.rabbit_qos_prefetch_count, 16);
        assert_eq!(o.rabbit_login_method, "PLAIN");
    }
}
