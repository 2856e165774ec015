//! The engine's error type. `nova-compute` maps these to nova exceptions in
//! one place (e.g. `DomainNotFound` → `InstanceNotFound`/`InstanceNotRunning`,
//! `QuiesceNotSupported` → `InstanceQuiesceNotSupported`, `AgentNotEnabled` →
//! `QemuGuestAgentNotEnabled`, `QuiesceFailed` → `InstanceQuiesceFailed`);
//! nothing here knows nova's exception names.
//!
//! Each variant's `Display` says what failed at the engine's level; the
//! error that caused it (libvirt's, the OS's, serde's, qemu-img's) is its
//! `source()`, printed once by `error_chain::Chain`.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use crate::format::DiskFormat;

/// What went wrong talking to libvirt or making a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// libvirtd refused or failed a call ([`SnapshotError::libvirt_code`]
    /// gives libvirt's `virErrorNumber`).
    #[error("libvirt {operation} failed")]
    Libvirt {
        /// The libvirt call, as libvirt names it (`blockCopy`, `open`, ...).
        operation: &'static str,
        /// libvirt's error (message, code, domain).
        #[source]
        source: virt::error::Error,
    },

    /// libvirt's event loop could not be started (once per process; every
    /// later connection attempt reports the same cause).
    #[error("cannot start the libvirt event loop")]
    EventLoop {
        /// Why (libvirt's registration, or the thread spawn).
        #[source]
        source: Arc<SnapshotError>,
    },

    /// Opening the connection needs credentials (SASL on `qemu+tcp://`, as
    /// Kolla's default `libvirt_enable_sasl` configures) that libvirt's
    /// auth.conf lookup did not find. The engine never prompts: like nova's
    /// `_connect_auth_cb` it refuses whatever auth.conf leaves open.
    #[error(
        "libvirt {uri}: authentication needs {} but no auth.conf provides it (libvirt looks in $LIBVIRT_AUTH_FILE, the URI's authfile=, $XDG_CONFIG_HOME/libvirt/auth.conf i.e. ~/.config/libvirt/auth.conf, /etc/libvirt/auth.conf; section [auth-libvirt-<host>] or [auth-libvirt-default]); not prompting",
        credentials.join(", ")
    )]
    CredentialsMissing {
        /// The connection URI.
        uri: String,
        /// The auth.conf keys libvirt asked for (`authname`, `password`, ...).
        credentials: Vec<String>,
        /// libvirt's refusal of the open.
        #[source]
        source: virt::error::Error,
    },

    /// libvirtd refused the authentication (wrong password or unknown user
    /// in auth.conf, no SASL mechanism in common, a refused client
    /// certificate): libvirt's `VIR_ERR_AUTH_FAILED` and relatives.
    #[error("libvirt {uri}: authentication failed")]
    AuthFailed {
        /// The connection URI.
        uri: String,
        /// libvirt's error.
        #[source]
        source: virt::error::Error,
    },

    /// No domain with this UUID on this host (libvirt `VIR_ERR_NO_DOMAIN`).
    #[error("domain {uuid} not found on this host")]
    DomainNotFound {
        /// The instance (= domain) UUID.
        uuid: String,
    },

    /// The hypervisor cannot quiesce at all (not QEMU/KVM).
    #[error("quiesce is not supported: {reason}")]
    QuiesceNotSupported {
        /// Why (e.g. "the hypervisor is not QEMU/KVM").
        reason: String,
    },

    /// Quiesce is required (`os_require_quiesce`) but the image does not
    /// declare a guest agent (`hw_qemu_guest_agent`).
    #[error("quiesce required but the image does not enable the QEMU guest agent")]
    AgentNotEnabled,

    /// The guest agent did not freeze (absent, unresponsive, timed out, or
    /// the freeze itself failed).
    #[error("quiescing the guest failed: {message}")]
    QuiesceFailed {
        /// What went wrong, at the engine's level (the agent did not answer
        /// in time, the domain has no agent channel, ...).
        message: String,
        /// The agent could not be reached (libvirt's
        /// `VIR_ERR_AGENT_UNRESPONSIVE`, no agent channel, or no answer in time).
        agent_unresponsive: bool,
        /// libvirt's error, when the freeze call itself failed.
        #[source]
        source: Option<virt::error::Error>,
    },

    /// Not enough free space under the snapshot directory.
    #[error("not enough free space in {}: {needed} bytes needed, {available} available", directory.display())]
    InsufficientSpace {
        /// `snapshots_directory`.
        directory: PathBuf,
        /// Bytes the snapshot needs at its peak.
        needed: u64,
        /// Bytes free for an unprivileged writer.
        available: u64,
    },

    /// The root disk lives in RBD; the storage-side path is not implemented.
    #[error("root disk {name} is RBD-backed; RBD snapshots are not supported by this engine yet")]
    RbdNotSupported {
        /// The RBD image (`pool/image`).
        name: String,
    },

    /// The domain XML could not be parsed.
    #[error("the domain XML cannot be parsed")]
    DomainXml {
        /// The XML parser's error.
        #[source]
        source: roxmltree::Error,
    },

    /// The domain XML has no usable root disk.
    #[error("no usable root disk: {reason}")]
    NoRootDisk {
        /// What is missing or unsupported.
        reason: String,
    },

    /// The root disk's format is one no snapshot can be written in (nova:
    /// only raw, qcow2, vmdk and vdi); `[libvirt] snapshot_image_format` must be set.
    #[error("source format {format} has no snapshot format; set [libvirt] snapshot_image_format")]
    NoSnapshotFormat {
        /// The root disk's format.
        format: DiskFormat,
    },

    /// The requested strategy cannot run on this host or disk.
    #[error("strategy {strategy} unavailable: {reason}")]
    StrategyUnavailable {
        /// The strategy asked for.
        strategy: &'static str,
        /// Why it cannot run.
        reason: String,
    },

    /// A block job or backup job ended without success.
    #[error("{job} job failed: {message}")]
    JobFailed {
        /// `backup`, `block copy` or `snapshot`.
        job: &'static str,
        /// How it ended (libvirt's job error text when it gave one).
        message: String,
    },

    /// A job did not reach the awaited state before its deadline (e.g. a
    /// mirror that never became READY).
    #[error("{job} job did not {what} within {waited:?}")]
    JobTimeout {
        /// `backup` or `block copy`.
        job: &'static str,
        /// The state awaited (`complete`, `become ready`).
        what: &'static str,
        /// The deadline (`job_timeout`, `mirror_ready_timeout`).
        waited: Duration,
    },

    /// The caller cancelled the snapshot.
    #[error("snapshot cancelled")]
    Cancelled,

    /// `qemu-img` failed.
    #[error("qemu-img {command} failed")]
    QemuImg {
        /// The subcommand (`info`, `create`, `convert`).
        command: &'static str,
        /// How it failed.
        #[source]
        source: QemuImgFailure,
    },

    /// A local file operation failed.
    #[error("{context}")]
    Io {
        /// What was being done (`create /path`, `rename /path`, ...).
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The crash journal could not be written or read.
    #[error("journal {}", path.display())]
    Journal {
        /// The journal file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A crash journal record could not be encoded or decoded.
    #[error("journal record {} is not valid", path.display())]
    JournalRecord {
        /// The record file.
        path: PathBuf,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },

    /// The blocking worker thread that ran an engine call panicked or was
    /// cancelled by the runtime before it returned.
    #[error("the {operation} worker thread failed")]
    WorkerFailed {
        /// The engine call the thread ran (`snapshot`, `recover`, ...).
        operation: &'static str,
        /// The runtime's report (panicked or cancelled).
        #[source]
        source: tokio::task::JoinError,
    },
}

/// How a `qemu-img` run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QemuImgFailure {
    /// `qemu-img` could not be started (not installed, not executable).
    #[error("cannot run qemu-img")]
    Spawn(#[source] std::io::Error),
    /// Waiting for the running `qemu-img` failed.
    #[error("cannot wait for qemu-img")]
    Wait(#[source] std::io::Error),
    /// `qemu-img` exited unsuccessfully; `stderr` is what it printed.
    #[error("{status}: {stderr}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// Its JSON output did not parse.
    #[error("unexpected JSON output")]
    Json(#[source] serde_json::Error),
    /// `info --backing-chain` listed no image at all.
    #[error("no image in the backing chain")]
    EmptyChain,
}

/// libvirt's `VIR_ERR_NO_DOMAIN`.
pub(crate) const VIR_ERR_NO_DOMAIN: u32 = 42;
/// libvirt's `VIR_ERR_AGENT_UNRESPONSIVE`.
pub(crate) const VIR_ERR_AGENT_UNRESPONSIVE: u32 = 86;
/// libvirt's `VIR_ERR_AUTH_FAILED`.
pub(crate) const VIR_ERR_AUTH_FAILED: u32 = 45;
/// libvirt's `VIR_ERR_AUTH_CANCELLED`.
pub(crate) const VIR_ERR_AUTH_CANCELLED: u32 = 79;
/// libvirt's `VIR_ERR_AUTH_UNAVAILABLE`.
pub(crate) const VIR_ERR_AUTH_UNAVAILABLE: u32 = 94;

impl SnapshotError {
    /// Wraps a libvirt error raised by `operation`. libvirt errors are
    /// thread-local, so the caller must convert in the thread that made the call.
    pub(crate) fn libvirt(operation: &'static str, source: virt::error::Error) -> Self {
        SnapshotError::Libvirt { operation, source }
    }

    /// Like [`SnapshotError::libvirt`], but names a missing domain precisely.
    pub(crate) fn for_domain(operation: &'static str, uuid: &str, source: virt::error::Error) -> Self {
        if source.code().to_raw() == VIR_ERR_NO_DOMAIN {
            SnapshotError::DomainNotFound { uuid: uuid.to_owned() }
        } else {
            Self::libvirt(operation, source)
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SnapshotError::Io { context: context.into(), source }
    }

    pub(crate) fn qemu_img(command: &'static str, source: QemuImgFailure) -> Self {
        SnapshotError::QemuImg { command, source }
    }

    /// The libvirt error code (`virErrorNumber`), when libvirt raised this.
    pub fn libvirt_code(&self) -> Option<u32> {
        match self {
            SnapshotError::Libvirt { source, .. }
            | SnapshotError::AuthFailed { source, .. }
            | SnapshotError::CredentialsMissing { source, .. }
            | SnapshotError::QuiesceFailed { source: Some(source), .. } => Some(source.code().to_raw()),
            SnapshotError::EventLoop { source } => source.libvirt_code(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_domain() -> virt::error::Error {
        // libvirt's own error for a lookup of a UUID it does not have.
        let conn = virt::connect::Connect::open(Some("test:///default")).unwrap();
        conn.lookup_domain_by_uuid_string("00000000-0000-0000-0000-0000000000ff").unwrap_err()
    }

    #[test]
    fn each_cause_is_printed_once_through_the_chain() {
        let e = SnapshotError::libvirt("blockCopy", no_domain());
        assert_eq!(e.to_string(), "libvirt blockCopy failed");
        let chain = error_chain::error_chain(&e);
        assert!(chain.starts_with("libvirt blockCopy failed: "), "{chain}");
        assert_eq!(chain.matches("libvirt blockCopy failed").count(), 1);
        assert_eq!(e.libvirt_code(), Some(VIR_ERR_NO_DOMAIN));

        let io = SnapshotError::io("create /x", std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(io.to_string(), "create /x");
        assert_eq!(error_chain::error_chain(&io), "create /x: permission denied");

        let q = SnapshotError::qemu_img(
            "convert",
            QemuImgFailure::Spawn(std::io::Error::from(std::io::ErrorKind::NotFound)),
        );
        assert_eq!(error_chain::error_chain(&q), "qemu-img convert failed: cannot run qemu-img: entity not found");
    }

    #[test]
    fn a_missing_domain_is_named() {
        let e = SnapshotError::for_domain("lookup", "u", no_domain());
        assert!(matches!(e, SnapshotError::DomainNotFound { uuid } if uuid == "u"));
    }

    #[test]
    fn errors_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<SnapshotError>();
    }
}
