//! Typed option groups: what the service reads, one struct per group.
//!
//! Field names equal option names; the registry in `options` guarantees
//! every field receives a value of the right type (a unit test checks the
//! registry and these structs agree), so serde here only maps, never
//! validates. Secrets are [`Secret`]/[`TransportUrl`], which mask
//! themselves in `Debug` and JSON.

use serde::{Deserialize, Serialize};

use crate::secret::{Secret, TransportUrl};

/// `[DEFAULT]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultGroup {
    pub host: String,
    pub state_path: String,
    pub instances_path: String,
    pub transport_url: TransportUrl,
    pub control_exchange: String,
    pub rpc_response_timeout: i64,
    pub long_rpc_timeout: i64,
    pub max_concurrent_snapshots: u32,
    pub max_concurrent_builds: u32,
    pub report_interval: i64,
    pub service_down_time: i64,
    pub graceful_shutdown_timeout: u32,
    pub debug: bool,
    pub log_dir: Option<String>,
    pub log_file: Option<String>,
    pub use_stderr: bool,
    pub executor_thread_pool_size: u32,
    pub non_inheritable_image_properties: Vec<String>,
    pub use_cow_images: bool,
}

/// `[workarounds]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workarounds {
    pub disable_libvirt_livesnapshot: bool,
    pub disable_deep_image_inspection: bool,
}

/// `[libvirt] virt_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VirtType {
    Kvm,
    Lxc,
    Qemu,
    Parallels,
}

/// `[libvirt] images_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImagesType {
    Raw,
    Flat,
    Qcow2,
    Lvm,
    Rbd,
    Ploop,
    Default,
}

/// `[libvirt]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Libvirt {
    /// Empty means "derive from virt_type"; see [`Libvirt::effective_uri`].
    pub connection_uri: String,
    pub virt_type: VirtType,
    pub images_type: ImagesType,
    /// One of raw/qcow2/vmdk/vdi (validated by the registry); the engine
    /// parses it into its own format type.
    pub snapshot_image_format: Option<String>,
    pub snapshots_directory: String,
    pub snapshot_compression: bool,
    pub images_rbd_pool: String,
    pub images_rbd_ceph_conf: String,
    pub rbd_user: Option<String>,
    pub rbd_secret_uuid: Option<String>,
}

impl Libvirt {
    /// The URI nova would connect to (driver.py `_uri`).
    pub fn effective_uri(&self) -> &str {
        if !self.connection_uri.is_empty() {
            return &self.connection_uri;
        }
        match self.virt_type {
            VirtType::Kvm | VirtType::Qemu => "qemu:///system",
            VirtType::Lxc => "lxc:///",
            VirtType::Parallels => "parallels:///system",
        }
    }
}

/// `[glance]` (nova's options plus keystoneauth session/adapter options).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Glance {
    pub api_servers: Vec<String>,
    pub num_retries: u32,
    pub debug: bool,
    pub cafile: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<Secret>,
    pub insecure: bool,
    pub timeout: Option<i64>,
    pub endpoint_override: Option<String>,
    pub region_name: Option<String>,
    pub valid_interfaces: Vec<String>,
    pub service_type: String,
    pub service_name: Option<String>,
    pub connect_retries: Option<i64>,
    pub status_code_retries: Option<i64>,
}

/// `[service_user]` (keystoneauth auth + session options).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUser {
    pub send_service_user_token: bool,
    pub auth_type: Option<String>,
    pub auth_section: Option<String>,
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub password: Option<Secret>,
    pub user_domain_name: Option<String>,
    pub user_domain_id: Option<String>,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub system_scope: Option<String>,
    pub application_credential_id: Option<String>,
    pub application_credential_name: Option<String>,
    pub application_credential_secret: Option<Secret>,
    pub region_name: Option<String>,
    pub cafile: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<Secret>,
    pub insecure: bool,
    pub timeout: Option<i64>,
}

/// `[oslo_messaging_rabbit] rabbit_login_method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum LoginMethod {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "AMQPLAIN")]
    AmqPlain,
    #[serde(rename = "EXTERNAL")]
    External,
    #[serde(rename = "RABBIT-CR-DEMO")]
    RabbitCrDemo,
}

/// `[oslo_messaging_rabbit] kombu_failover_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverStrategy {
    RoundRobin,
    Shuffle,
}

/// `[oslo_messaging_rabbit]`: every option of oslo.messaging's rabbit driver.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OsloMessagingRabbit {
    pub amqp_durable_queues: bool,
    pub amqp_auto_delete: bool,
    pub rpc_conn_pool_size: u32,
    pub conn_pool_min_size: i64,
    pub conn_pool_ttl: i64,
    pub ssl: bool,
    pub ssl_version: String,
    pub ssl_key_file: Secret,
    pub ssl_cert_file: String,
    pub ssl_ca_file: String,
    pub ssl_enforce_hostname_verification: bool,
    pub ssl_enforce_fips_mode: bool,
    pub kombu_reconnect_delay: f64,
    pub kombu_reconnect_splay: f64,
    pub kombu_compression: Option<String>,
    pub kombu_missing_consumer_retry_timeout: i64,
    pub kombu_failover_strategy: FailoverStrategy,
    pub rabbit_login_method: LoginMethod,
    pub rabbit_retry_interval: u32,
    pub rabbit_retry_backoff: u32,
    pub rabbit_interval_max: u32,
    pub rabbit_ha_queues: bool,
    pub rabbit_quorum_queue: bool,
    pub rabbit_transient_quorum_queue: bool,
    pub rabbit_quorum_delivery_limit: i64,
    pub rabbit_quorum_max_memory_length: i64,
    pub rabbit_quorum_max_memory_bytes: i64,
    pub rabbit_transient_queues_ttl: u32,
    pub rabbit_qos_prefetch_count: i64,
    pub heartbeat_timeout_threshold: i64,
    pub heartbeat_rate: i64,
    pub direct_mandatory_flag: bool,
    pub enable_cancel_on_failover: bool,
    pub use_queue_manager: bool,
    pub hostname: String,
    pub processname: String,
    pub rabbit_stream_fanout: bool,
}

/// `[oslo_messaging_notifications]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OsloMessagingNotifications {
    /// MultiStrOpt: every `driver =` line of every file, in order.
    pub driver: Vec<String>,
    pub transport_url: Option<TransportUrl>,
    pub topics: Vec<String>,
    pub retry: i64,
}

/// `[notifications] notification_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationFormat {
    Unversioned,
    Versioned,
    Both,
}

/// `[notifications] notify_on_state_change`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOnStateChange {
    VmState,
    VmAndTaskState,
}

/// `[notifications]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    pub notification_format: NotificationFormat,
    pub versioned_notifications_topics: Vec<String>,
    pub notify_on_state_change: Option<NotifyOnStateChange>,
}

/// `[compute]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Compute {
    pub max_concurrent_disk_ops: u32,
}

/// `[upgrade_levels]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeLevels {
    pub compute: Option<String>,
}

/// `[cinder]`: nova's Cinder client options (`nova/conf/cinder.py`) and
/// keystoneauth's session options, for the volume calls of quiesce.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cinder {
    pub catalog_info: String,
    pub endpoint_template: Option<String>,
    pub os_region_name: Option<String>,
    pub cafile: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<Secret>,
    pub insecure: bool,
    pub timeout: Option<i64>,
    pub http_retries: u32,
}

/// `[snapshot_engine]`: our own options, not nova's.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotEngine {
    /// One of backup/mirror (validated by the registry); the engine parses
    /// it into its own strategy type. Also read from the deprecated
    /// `[libvirt] live_snapshot_strategy`.
    pub live_strategy: String,
}

/// All groups; the effective configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    /// `[DEFAULT]` (keyed `default` inside the `config` crate, `DEFAULT` in JSON).
    #[serde(rename(serialize = "DEFAULT", deserialize = "default"))]
    pub default: DefaultGroup,
    pub workarounds: Workarounds,
    pub libvirt: Libvirt,
    pub glance: Glance,
    pub service_user: ServiceUser,
    pub oslo_messaging_rabbit: OsloMessagingRabbit,
    pub oslo_messaging_notifications: OsloMessagingNotifications,
    pub notifications: Notifications,
    pub compute: Compute,
    pub upgrade_levels: UpgradeLevels,
    pub cinder: Cinder,
    pub snapshot_engine: SnapshotEngine,
}
