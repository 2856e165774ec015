//! The engine's error type. `nova-compute` maps these to nova exceptions in
//! one place (e.g. `DomainNotFound` → `InstanceNotFound`/`InstanceNotRunning`,
//! `QuiesceNotSupported` → `InstanceQuiesceNotSupported`, `AgentNotEnabled` →
//! `QemuGuestAgentNotEnabled`, `QuiesceFailed` → `InstanceQuiesceFailed`);
//! nothing here knows nova's exception names.

use std::path::PathBuf;

use crate::format::DiskFormat;
use std::time::Duration;

/// What went wrong talking to libvirt or making a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// libvirtd refused or failed a call. `code` is libvirt's `virErrorNumber`.
    #[error("libvirt: {operation}: {message} (code {code})")]
    Libvirt { operation: &'static str, code: u32, message: String },

    /// Opening the connection needs credentials (SASL on `qemu+tcp://`, as
    /// Kolla's default `libvirt_enable_sasl` configures) that libvirt's
    /// auth.conf lookup did not find. The engine never prompts: like nova's
    /// `_connect_auth_cb` it refuses whatever auth.conf leaves open.
    /// `credentials` are the auth.conf keys libvirt asked for (`authname`,
    /// `password`, ...).
    #[error(
        "libvirt {uri}: authentication needs {} but no auth.conf provides it (libvirt looks in $LIBVIRT_AUTH_FILE, the URI's authfile=, $XDG_CONFIG_HOME/libvirt/auth.conf i.e. ~/.config/libvirt/auth.conf, /etc/libvirt/auth.conf; section [auth-libvirt-<host>] or [auth-libvirt-default]); not prompting: {message}",
        credentials.join(", ")
    )]
    CredentialsMissing { uri: String, credentials: Vec<String>, message: String },

    /// libvirtd refused the authentication (wrong password or unknown user
    /// in auth.conf, no SASL mechanism in common, a refused client
    /// certificate): libvirt's `VIR_ERR_AUTH_FAILED` and relatives.
    #[error("libvirt {uri}: authentication failed: {message} (code {code})")]
    AuthFailed { uri: String, code: u32, message: String },

    /// No domain with this UUID on this host (libvirt `VIR_ERR_NO_DOMAIN`).
    #[error("domain {uuid} not found on this host")]
    DomainNotFound { uuid: String },

    /// The hypervisor cannot quiesce at all (not QEMU/KVM).
    #[error("quiesce is not supported: {reason}")]
    QuiesceNotSupported { reason: String },

    /// Quiesce is required (`os_require_quiesce`) but the image does not
    /// declare a guest agent (`hw_qemu_guest_agent`).
    #[error("quiesce required but the image does not enable the QEMU guest agent")]
    AgentNotEnabled,

    /// The guest agent did not freeze (absent, unresponsive, timed out, or
    /// the freeze itself failed).
    #[error("quiescing the guest failed: {message}")]
    QuiesceFailed { message: String, agent_unresponsive: bool },

    /// Not enough free space under the snapshot directory.
    #[error("not enough free space in {}: {needed} bytes needed, {available} available", directory.display())]
    InsufficientSpace { directory: PathBuf, needed: u64, available: u64 },

    /// The root disk lives in RBD; the storage-side path is not implemented.
    #[error("root disk {name} is RBD-backed; RBD snapshots are not supported by this engine yet")]
    RbdNotSupported { name: String },

    /// The domain XML has no usable root disk.
    #[error("no usable root disk: {reason}")]
    NoRootDisk { reason: String },

    /// The requested strategy cannot run on this host or disk.
    #[error("strategy {strategy} unavailable: {reason}")]
    StrategyUnavailable { strategy: &'static str, reason: String },

    /// A block job or backup job ended without success.
    #[error("{job} job failed: {message}")]
    JobFailed { job: &'static str, message: String },

    /// A job did not reach the awaited state before its deadline (e.g. a
    /// mirror that never became READY).
    #[error("{job} job did not {what} within {waited:?}")]
    JobTimeout { job: &'static str, what: &'static str, waited: Duration },

    /// The caller cancelled the snapshot.
    #[error("snapshot cancelled")]
    Cancelled,

    /// `qemu-img` failed.
    #[error("qemu-img {command}: {message}")]
    QemuImg { command: &'static str, message: String },

    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The root disk's format is one no snapshot can be written in (nova:
    /// only raw, qcow2, vmdk and vdi); `[libvirt] snapshot_image_format` must be set.
    #[error("source format {format} has no snapshot format; set [libvirt] snapshot_image_format")]
    NoSnapshotFormat {
        /// The root disk's format.
        format: DiskFormat,
    },

    /// The blocking worker thread that ran an engine call panicked or was
    /// cancelled by the runtime before it returned (`operation` names the
    /// call: `snapshot`, `recover`, ...).
    #[error("the {operation} worker thread failed")]
    WorkerFailed {
        /// The engine call the thread ran.
        operation: &'static str,
        /// The runtime's report (panicked or cancelled).
        #[source]
        source: tokio::task::JoinError,
    },

    /// The crash journal could not be written or read.
    #[error("journal {}: {message}", path.display())]
    Journal { path: PathBuf, message: String },
}

/// libvirt's `VIR_ERR_NO_DOMAIN`.
pub(crate) const VIR_ERR_NO_DOMAIN: u32 = 42;
/// libvirt's `VIR_ERR_AGENT_UNRESPONSIVE`.
pub(crate) const VIR_ERR_AGENT_UNRESPONSIVE: u32 = 86;
/// libvirt's `VIR_ERR_AUTH_FAILED`, `VIR_ERR_AUTH_CANCELLED`,
/// `VIR_ERR_AUTH_UNAVAILABLE`.
pub(crate) const VIR_ERR_AUTH_FAILED: u32 = 45;
pub(crate) const VIR_ERR_AUTH_CANCELLED: u32 = 79;
pub(crate) const VIR_ERR_AUTH_UNAVAILABLE: u32 = 94;

impl SnapshotError {
    /// Wraps a libvirt error raised by `operation`. libvirt errors are
    /// thread-local, so the caller must convert in the thread that made the call.
    pub(crate) fn libvirt(operation: &'static str, err: virt::error::Error) -> Self {
        SnapshotError::Libvirt { operation, code: err.code().to_raw(), message: err.message().to_owned() }
    }

    /// Like [`SnapshotError::libvirt`], but names a missing domain precisely.
    pub(crate) fn for_domain(operation: &'static str, uuid: &str, err: virt::error::Error) -> Self {
        if err.code().to_raw() == VIR_ERR_NO_DOMAIN {
            SnapshotError::DomainNotFound { uuid: uuid.to_owned() }
        } else {
            Self::libvirt(operation, err)
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SnapshotError::Io { context: context.into(), source }
    }

    /// The libvirt error code, when this is a libvirt error.
    pub fn libvirt_code(&self) -> Option<u32> {
        match self {
            SnapshotError::Libvirt { code, .. } | SnapshotError::AuthFailed { code, .. } => Some(*code),
            SnapshotError::CredentialsMissing { .. } => Some(VIR_ERR_AUTH_FAILED),
            _ => None,
        }
    }
}
