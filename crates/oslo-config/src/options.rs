//! The registry: every option this service parses, declared once.
//!
//! Each entry carries oslo's type, nova's default, whether it is secret, a
//! one-line help and its [`Role`]: does what nova documents, accepted and
//! ignored, or our own extension. Typing, `$var` lookup, the start-up
//! warnings, the sample `nova.conf` and the configuration reference are all
//! derived from this table, so they cannot drift apart. Defaults are nova's
//! (nova/conf/*.py), oslo.messaging's (impl_rabbit.py, amqp.py, notifier.py,
//! server.py) and keystoneauth's; extensions live in their own group,
//! `[snapshot_engine]`, so no name of ours looks like one of nova's.

/// oslo option types, with the constraints nova declares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// BoolOpt: true/false/yes/no/on/off/1/0, any case.
    Bool,
    /// IntOpt with optional inclusive bounds.
    Int {
        /// Smallest accepted value.
        min: Option<i64>,
        /// Largest accepted value.
        max: Option<i64>,
    },
    /// FloatOpt with optional inclusive bounds.
    Float {
        /// Smallest accepted value.
        min: Option<f64>,
        /// Largest accepted value.
        max: Option<f64>,
    },
    /// StrOpt.
    Str,
    /// StrOpt with `choices` (case-sensitive, as in oslo).
    Choice(&'static [&'static str]),
    /// ListOpt: comma-separated, items trimmed.
    List,
    /// MultiStrOpt: every occurrence, across files, in order.
    MultiStr,
}

/// Where an option's default comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DefaultValue {
    /// Unset (`None` in oslo); an empty list for list kinds.
    Unset,
    /// A literal in oslo's file syntax (may hold `$var` references).
    Literal(&'static str),
    /// The machine's hostname (`socket.gethostname()`).
    Hostname,
    /// The program name (`os.path.basename(sys.argv[0])`).
    ProgramName,
}

/// What an option is to this service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Does what nova (or oslo, keystoneauth) documents for it.
    Nova,
    /// Accepted so a full nova.conf loads unchanged, but has no effect here;
    /// the service warns once at start-up when a file sets it
    /// ([`crate::Config::ignored_options_set`]).
    Ignored,
    /// Ours, not nova's (strategy choices, deadlines, caps): only in the
    /// `[snapshot_engine]` group.
    Extension,
}

impl Role {
    /// How the sample and the reference name the role.
    pub fn label(self) -> &'static str {
        match self {
            Role::Nova => "nova",
            Role::Ignored => "accepted, ignored",
            Role::Extension => "ours",
        }
    }
}

/// One registered option.
#[derive(Clone, Copy, Debug)]
pub struct OptSpec {
    /// Group as written in files (`DEFAULT`, `libvirt`).
    pub group: &'static str,
    /// Option name (oslo `dest`: underscores).
    pub name: &'static str,
    /// Type and constraints.
    pub kind: Kind,
    /// Default when no file sets it.
    pub default: DefaultValue,
    /// Masked everywhere if true.
    pub secret: bool,
    /// Older (group, name) spellings still honoured, as oslo `deprecated_opts`.
    pub deprecated: &'static [(&'static str, &'static str)],
    /// One-line description for the sample and the reference.
    pub help: &'static str,
    /// Whether it does what nova documents, is ignored, or is ours.
    pub role: Role,
}

const fn opt(
    group: &'static str,
    name: &'static str,
    kind: Kind,
    default: DefaultValue,
    help: &'static str,
) -> OptSpec {
    OptSpec { group, name, kind, default, secret: false, deprecated: &[], help, role: Role::Nova }
}

impl OptSpec {
    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    const fn deprecated(mut self, names: &'static [(&'static str, &'static str)]) -> Self {
        self.deprecated = names;
        self
    }

    const fn ignored(mut self) -> Self {
        self.role = Role::Ignored;
        self
    }

    const fn extension(mut self) -> Self {
        self.role = Role::Extension;
        self
    }
}

use DefaultValue::{Hostname, Literal, ProgramName, Unset};
use Kind::{Bool, Choice, List, MultiStr, Str};

const fn int(min: Option<i64>, max: Option<i64>) -> Kind {
    Kind::Int { min, max }
}
const INT: Kind = int(None, None);
const UINT: Kind = int(Some(0), None);
const F: DefaultValue = Literal("false");
const T: DefaultValue = Literal("true");

/// The groups, in the order the sample and the dump list them.
pub const GROUPS: &[&str] = &[
    "DEFAULT",
    "workarounds",
    "libvirt",
    "glance",
    "service_user",
    "oslo_messaging_rabbit",
    "oslo_messaging_notifications",
    "notifications",
    "compute",
    "upgrade_levels",
    "cinder",
    "snapshot_engine",
];

/// Every option the service reads.
pub const OPTIONS: &[OptSpec] = &[
    // --- DEFAULT ---------------------------------------------------------
    opt("DEFAULT", "host", Str, Hostname,
        "Name of this compute node: RPC server `compute.<host>`, instance.host, fault host."),
    opt("DEFAULT", "state_path", Str, Literal("/var/lib/nova"),
        "Top-level directory for nova's state (nova's own default is $pybasedir; ours is the packaged /var/lib/nova)."),
    opt("DEFAULT", "instances_path", Str, Literal("$state_path/instances"),
        "Where instances' disks live on this host; read here through $instances_path (snapshots_directory)."),
    opt("DEFAULT", "transport_url", Str, Literal("rabbit://"),
        "oslo.messaging transport URL: rabbit://user:pass@host:port[,user:pass@host2:port]/vhost (passwords are masked)."),
    opt("DEFAULT", "control_exchange", Str, Literal("nova"),
        "AMQP topic exchange (oslo default `openstack`, set to `nova` by nova)."),
    opt("DEFAULT", "rpc_response_timeout", INT, Literal("60"),
        "Seconds to wait for an RPC call's reply."),
    opt("DEFAULT", "long_rpc_timeout", INT, Literal("1800"),
        "Seconds to wait for replies of long-running RPC calls; the snapshot path makes none.").ignored(),
    opt("DEFAULT", "max_concurrent_snapshots", UINT, Literal("5"),
        "Snapshots run at once on this host (0 = unlimited, deprecated)."),
    opt("DEFAULT", "max_concurrent_builds", UINT, Literal("10"),
        "Builds run at once on this host (0 = unlimited); this service builds nothing.").ignored(),
    opt("DEFAULT", "report_interval", INT, Literal("10"),
        "Seconds between service heartbeats."),
    opt("DEFAULT", "service_down_time", INT, Literal("60"),
        "Seconds since the last heartbeat after which a service counts as down; judged by nova-api and the scheduler, not here.")
        .ignored(),
    opt("DEFAULT", "graceful_shutdown_timeout", UINT, Literal("60"),
        "Seconds a stop (SIGTERM/SIGINT) waits for running snapshots before aborting them; 0 waits without limit (oslo.service)."),
    opt("DEFAULT", "debug", Bool, F, "Log at DEBUG level."),
    opt("DEFAULT", "log_dir", Str, Unset, "Directory for log_file (relative log_file is placed here)."),
    opt("DEFAULT", "log_file", Str, Unset, "Log file name; unset logs to stderr."),
    opt("DEFAULT", "use_stderr", Bool, F, "Also log to stderr."),
    opt("DEFAULT", "executor_thread_pool_size", int(Some(1), None), Literal("64"),
        "RPC requests handled at once by the RPC servers (oslo.messaging).")
        .deprecated(&[("DEFAULT", "rpc_thread_pool_size")]),
    opt("DEFAULT", "non_inheritable_image_properties", List, Literal("cache_in_nova,bittorrent"),
        "Image properties not copied from the base image to a snapshot; nova-api applies it when it reserves the image.")
        .ignored(),
    opt("DEFAULT", "use_cow_images", Bool, T,
        "With [libvirt] images_type = default, use qcow2 (true) or raw (false) disks; snapshots read the disk's real format.")
        .ignored(),
    // --- workarounds -----------------------------------------------------
    opt("workarounds", "disable_libvirt_livesnapshot", Bool, F,
        "Always take cold snapshots (pause the guest); deprecated in nova since 19.0.0."),
    opt("workarounds", "disable_deep_image_inspection", Bool, F,
        "Skip the format safety inspection of downloaded images; the snapshot path downloads none.").ignored(),
    // --- libvirt ---------------------------------------------------------
    opt("libvirt", "connection_uri", Str, Literal(""),
        "libvirt URI; empty derives it from virt_type (qemu:///system, lxc:///, parallels:///system)."),
    opt("libvirt", "virt_type", Choice(&["kvm", "lxc", "qemu", "parallels"]), Literal("kvm"),
        "Hypervisor type."),
    opt("libvirt", "images_type",
        Choice(&["raw", "flat", "qcow2", "lvm", "rbd", "ploop", "default"]), Literal("default"),
        "Image backend of instance disks; snapshots follow each disk's source in the domain XML instead.").ignored(),
    opt("libvirt", "snapshot_image_format", Choice(&["raw", "qcow2", "vmdk", "vdi"]), Unset,
        "Format of uploaded snapshots; unset keeps the source disk's format."),
    opt("libvirt", "snapshots_directory", Str, Literal("$instances_path/snapshots"),
        "Scratch directory for snapshot images before upload."),
    opt("libvirt", "snapshot_compression", Bool, F,
        "Compress qcow2 snapshots (qemu-img convert -c)."),
    opt("libvirt", "images_rbd_pool", Str, Literal("rbd"),
        "RADOS pool of RBD-backed disks; RBD direct snapshots are not implemented yet.").ignored(),
    opt("libvirt", "images_rbd_ceph_conf", Str, Literal(""),
        "ceph.conf path (empty: librados default); RBD direct snapshots are not implemented yet.").ignored(),
    opt("libvirt", "rbd_user", Str, Unset, "RADOS user for RBD access; RBD direct snapshots are not implemented yet.")
        .ignored(),
    opt("libvirt", "rbd_secret_uuid", Str, Unset,
        "libvirt secret UUID of rbd_user's key; RBD direct snapshots are not implemented yet.").ignored(),
    // --- glance ----------------------------------------------------------
    opt("glance", "api_servers", List, Unset,
        "Glance endpoints to use instead of the catalog (deprecated in nova)."),
    opt("glance", "num_retries", UINT, Literal("3"), "Retries of a failed Glance request."),
    opt("glance", "debug", Bool, F, "Log Glance requests at DEBUG (glanceclient); [DEFAULT] debug covers ours.").ignored(),
    opt("glance", "cafile", Str, Unset, "CA bundle for HTTPS to Glance.")
        .deprecated(&[("ssl", "ca_file")]),
    opt("glance", "certfile", Str, Unset, "Client certificate for HTTPS to Glance.")
        .deprecated(&[("ssl", "cert_file")]),
    opt("glance", "keyfile", Str, Unset, "Client key for HTTPS to Glance.")
        .deprecated(&[("ssl", "key_file")]).secret(),
    opt("glance", "insecure", Bool, F, "Do not verify Glance's TLS certificate.")
        .deprecated(&[("glance", "api_insecure")]),
    opt("glance", "timeout", INT, Unset, "HTTP timeout in seconds (unset: none)."),
    opt("glance", "endpoint_override", Str, Unset, "Fixed Glance endpoint URL."),
    opt("glance", "region_name", Str, Unset, "Catalog region of the Glance endpoint."),
    opt("glance", "valid_interfaces", List, Literal("internal,public"),
        "Catalog interfaces to try, in order."),
    opt("glance", "service_type", Str, Literal("image"), "Catalog service type."),
    opt("glance", "service_name", Str, Unset, "Catalog service name; the endpoint is picked by type and interface.")
        .ignored(),
    opt("glance", "connect_retries", INT, Unset, "Retries of a failed connection; num_retries covers them.").ignored(),
    opt("glance", "status_code_retries", INT, Unset, "Retries on retriable HTTP status codes; num_retries covers them.")
        .ignored(),
    // --- service_user ----------------------------------------------------
    opt("service_user", "send_service_user_token", Bool, F,
        "Send an X-Service-Token with user-token requests to Glance."),
    opt("service_user", "auth_type", Str, Unset, "Keystone auth plugin: password or v3applicationcredential."),
    opt("service_user", "auth_section", Str, Unset, "Group holding the auth options instead; not supported, set them here.")
        .ignored(),
    opt("service_user", "auth_url", Str, Unset, "Keystone URL."),
    opt("service_user", "username", Str, Unset, "Service user name."),
    opt("service_user", "user_id", Str, Unset, "Service user id."),
    opt("service_user", "password", Str, Unset, "Service user password.").secret(),
    opt("service_user", "user_domain_name", Str, Unset, "Domain name of the user."),
    opt("service_user", "user_domain_id", Str, Unset, "Domain id of the user."),
    opt("service_user", "project_name", Str, Unset, "Project to scope to."),
    opt("service_user", "project_id", Str, Unset, "Project id to scope to."),
    opt("service_user", "project_domain_name", Str, Unset, "Domain name of the project."),
    opt("service_user", "project_domain_id", Str, Unset, "Domain id of the project."),
    opt("service_user", "system_scope", Str, Unset, "System scope (e.g. all); service tokens are project-scoped here.")
        .ignored(),
    opt("service_user", "application_credential_id", Str, Unset, "Application credential id."),
    opt("service_user", "application_credential_name", Str, Unset, "Application credential name."),
    opt("service_user", "application_credential_secret", Str, Unset, "Application credential secret.")
        .secret(),
    opt("service_user", "region_name", Str, Unset, "Catalog region; the service token needs no catalog lookup.").ignored(),
    opt("service_user", "cafile", Str, Unset, "CA bundle for HTTPS to Keystone."),
    opt("service_user", "certfile", Str, Unset, "Client certificate for HTTPS to Keystone."),
    opt("service_user", "keyfile", Str, Unset, "Client key for HTTPS to Keystone.").secret(),
    opt("service_user", "insecure", Bool, F, "Do not verify Keystone's TLS certificate."),
    opt("service_user", "timeout", INT, Unset, "HTTP timeout in seconds."),
    // --- oslo_messaging_rabbit -------------------------------------------
    opt("oslo_messaging_rabbit", "amqp_durable_queues", Bool, F, "Declare durable queues and exchanges."),
    opt("oslo_messaging_rabbit", "amqp_auto_delete", Bool, F, "Auto-delete queues and exchanges."),
    opt("oslo_messaging_rabbit", "rpc_conn_pool_size", int(Some(1), None), Literal("30"),
        "Size of the RPC connection pool; one multiplexed connection serves every call here.").ignored(),
    opt("oslo_messaging_rabbit", "conn_pool_min_size", INT, Literal("2"),
        "Pool size under which connections are not expired; there is no pool here.").ignored(),
    opt("oslo_messaging_rabbit", "conn_pool_ttl", INT, Literal("1200"),
        "Idle pooled connection lifetime (s); there is no pool here.").ignored(),
    opt("oslo_messaging_rabbit", "ssl", Bool, F, "Connect over TLS."),
    opt("oslo_messaging_rabbit", "ssl_version", Str, Literal(""), "TLS version (empty: library default)."),
    opt("oslo_messaging_rabbit", "ssl_key_file", Str, Literal(""), "Client key file.").secret(),
    opt("oslo_messaging_rabbit", "ssl_cert_file", Str, Literal(""), "Client certificate file."),
    opt("oslo_messaging_rabbit", "ssl_ca_file", Str, Literal(""), "CA bundle to verify the broker."),
    opt("oslo_messaging_rabbit", "ssl_enforce_hostname_verification", Bool, T,
        "With ssl_ca_file set, verify the broker's hostname against its certificate (deprecated for removal)."),
    opt("oslo_messaging_rabbit", "ssl_enforce_fips_mode", Bool, F, "No effect (deprecated for removal)."),
    opt("oslo_messaging_rabbit", "kombu_reconnect_delay",
        Kind::Float { min: Some(0.0), max: Some(4.5) }, Literal("1.0"),
        "Seconds to wait before reconnecting after a consumer cancel."),
    opt("oslo_messaging_rabbit", "kombu_reconnect_splay", Kind::Float { min: Some(0.0), max: None },
        Literal("0.0"), "Random extra seconds added to kombu_reconnect_delay; not applied here.").ignored(),
    opt("oslo_messaging_rabbit", "kombu_compression", Str, Unset,
        "Message compression: gzip or bz2 (experimental)."),
    opt("oslo_messaging_rabbit", "kombu_missing_consumer_retry_timeout", INT, Literal("60"),
        "Seconds to keep retrying a reply to a missing consumer.")
        .deprecated(&[("oslo_messaging_rabbit", "kombu_reconnect_timeout")]),
    opt("oslo_messaging_rabbit", "kombu_failover_strategy", Choice(&["round-robin", "shuffle"]),
        Literal("round-robin"), "How to pick the next broker host."),
    opt("oslo_messaging_rabbit", "rabbit_login_method",
        Choice(&["PLAIN", "AMQPLAIN", "EXTERNAL", "RABBIT-CR-DEMO"]), Literal("AMQPLAIN"),
        "AMQP SASL login method."),
    opt("oslo_messaging_rabbit", "rabbit_retry_interval", int(Some(1), None), Literal("1"),
        "First reconnect delay (s)."),
    opt("oslo_messaging_rabbit", "rabbit_retry_backoff", UINT, Literal("2"),
        "Reconnect delay increment (s)."),
    opt("oslo_messaging_rabbit", "rabbit_interval_max", int(Some(1), None), Literal("30"),
        "Largest reconnect delay (s)."),
    opt("oslo_messaging_rabbit", "rabbit_ha_queues", Bool, F, "Classic mirrored queues (x-ha-policy: all)."),
    opt("oslo_messaging_rabbit", "rabbit_quorum_queue", Bool, F, "Declare topic queues as quorum queues."),
    opt("oslo_messaging_rabbit", "rabbit_transient_quorum_queue", Bool, F,
        "Declare fanout and reply queues as quorum queues."),
    opt("oslo_messaging_rabbit", "rabbit_quorum_delivery_limit", INT, Literal("0"),
        "x-delivery-limit of quorum queues (0: none)."),
    opt("oslo_messaging_rabbit", "rabbit_quorum_max_memory_length", INT, Literal("0"),
        "x-max-in-memory-length of quorum queues (0: none)."),
    opt("oslo_messaging_rabbit", "rabbit_quorum_max_memory_bytes", INT, Literal("0"),
        "x-max-in-memory-bytes of quorum queues (0: none)."),
    opt("oslo_messaging_rabbit", "rabbit_transient_queues_ttl", UINT, Literal("1800"),
        "x-expires of transient queues in seconds (0: none)."),
    opt("oslo_messaging_rabbit", "rabbit_qos_prefetch_count", INT, Literal("0"),
        "basic.qos prefetch (0: unlimited)."),
    opt("oslo_messaging_rabbit", "heartbeat_timeout_threshold", INT, Literal("60"),
        "Seconds without heartbeat before the broker is considered down (0: off)."),
    opt("oslo_messaging_rabbit", "heartbeat_rate", INT, Literal("3"),
        "Heartbeat checks per heartbeat_timeout_threshold."),
    opt("oslo_messaging_rabbit", "direct_mandatory_flag", Bool, T,
        "Publish replies as mandatory (deprecated); always on here, false has no effect.").ignored(),
    opt("oslo_messaging_rabbit", "enable_cancel_on_failover", Bool, F,
        "Consumer argument x-cancel-on-ha-failover."),
    opt("oslo_messaging_rabbit", "use_queue_manager", Bool, F,
        "Stable queue names from hostname and processname."),
    opt("oslo_messaging_rabbit", "hostname", Str, Hostname, "Host part of queue-manager names."),
    opt("oslo_messaging_rabbit", "processname", Str, ProgramName, "Process part of queue-manager names."),
    opt("oslo_messaging_rabbit", "rabbit_stream_fanout", Bool, F,
        "One stream queue per fanout instead of one queue per consumer."),
    // --- oslo_messaging_notifications ------------------------------------
    opt("oslo_messaging_notifications", "driver", MultiStr, Unset,
        "Notification drivers (repeatable): messaging, messagingv2, routing, log, test, noop."),
    opt("oslo_messaging_notifications", "transport_url", Str, Unset,
        "Transport for notifications; here they always go over [DEFAULT] transport_url.").secret().ignored(),
    opt("oslo_messaging_notifications", "topics", List, Literal("notifications"),
        "Topics of legacy notifications."),
    opt("oslo_messaging_notifications", "retry", INT, Literal("-1"),
        "Send retries (0: none, -1: forever); here a notification that cannot be sent is logged and dropped.").ignored(),
    // --- notifications ---------------------------------------------------
    opt("notifications", "notification_format", Choice(&["unversioned", "versioned", "both"]),
        Literal("unversioned"), "Which notifications to emit.")
        .deprecated(&[("DEFAULT", "notification_format")]),
    opt("notifications", "versioned_notifications_topics", List, Literal("versioned_notifications"),
        "Topics of versioned notifications."),
    opt("notifications", "notify_on_state_change", Choice(&["vm_state", "vm_and_task_state"]), Unset,
        "Send compute.instance.update on state changes; not sent by this service.")
        .deprecated(&[("DEFAULT", "notify_on_state_change")])
        .ignored(),
    // --- compute ---------------------------------------------------------
    opt("compute", "max_concurrent_disk_ops", UINT, Literal("0"),
        "Disk-heavy operations (convert, upload) at once (0: unlimited)."),
    // --- upgrade_levels --------------------------------------------------
    opt("upgrade_levels", "compute", Str, Unset,
        "RPC version cap for calls to other computes, or `auto`; this service calls none.").ignored(),
    // --- cinder ----------------------------------------------------------
    opt("cinder", "catalog_info", Str, Literal("volumev3::publicURL"),
        "Cinder in the service catalog: <service_type>:<service_name>:<endpoint_type>."),
    opt("cinder", "endpoint_template", Str, Unset,
        "Cinder endpoint overriding the catalog, e.g. http://cinder:8776/v3/%(project_id)s."),
    opt("cinder", "os_region_name", Str, Unset, "Catalog region of the Cinder endpoint."),
    opt("cinder", "cafile", Str, Unset, "CA bundle for HTTPS to Cinder."),
    opt("cinder", "certfile", Str, Unset, "Client certificate for HTTPS to Cinder."),
    opt("cinder", "keyfile", Str, Unset, "Client key for HTTPS to Cinder.").secret(),
    opt("cinder", "insecure", Bool, F, "Do not verify Cinder's TLS certificate."),
    opt("cinder", "timeout", INT, Unset, "HTTP timeout in seconds (unset: none)."),
    opt("cinder", "http_retries", UINT, Literal("3"), "Retries of a failed Cinder request (0: one attempt)."),
    // --- snapshot_engine (ours) ------------------------------------------
    opt("snapshot_engine", "live_strategy", Choice(&["backup", "mirror"]), Literal("backup"),
        "Live snapshots via the libvirt backup API (backup: point-in-time, no convergence) or nova's block copy (mirror).")
        .deprecated(&[("libvirt", "live_snapshot_strategy")])
        .extension(),
];

/// Looks an option up by group (file spelling) and name.
pub fn find(group: &str, name: &str) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|o| o.group == group && o.name == name)
}

/// The options of one group, in registry order.
pub fn in_group(group: &str) -> impl Iterator<Item = &'static OptSpec> + '_ {
    OPTIONS.iter().filter(move |o| o.group == group)
}
