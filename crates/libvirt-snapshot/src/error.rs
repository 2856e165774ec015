//! The engine's error type. `nova-compute` maps these to nova exceptions in
//! one place; nothing here knows nova's exception names.

/// What went wrong talking to libvirt or preparing a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// libvirtd refused or failed a call. `code` is libvirt's `virErrorNumber`.
    #[error("libvirt: {operation}: {message} (code {code})")]
    Libvirt { operation: &'static str, code: u32, message: String },

    /// No domain with this UUID on this host (libvirt `VIR_ERR_NO_DOMAIN`).
    #[error("domain {uuid} not found on this host")]
    DomainNotFound { uuid: String },
}

/// libvirt's `VIR_ERR_NO_DOMAIN`.
const VIR_ERR_NO_DOMAIN: u32 = 42;

impl SnapshotError {
    /// Wraps a libvirt error raised by `operation`. libvirt errors are
    /// thread-local, so the caller must convert in the thread that made the call.
    pub(crate) fn libvirt(operation: &'static str, err: virt::error::Error) -> Self {
        SnapshotError::Libvirt {
            operation,
            code: err.code().to_raw() as u32,
            message: err.message().to_owned(),
        }
    }

    /// Like [`SnapshotError::libvirt`], but names a missing domain precisely.
    pub(crate) fn for_domain(operation: &'static str, uuid: &str, err: virt::error::Error) -> Self {
        if err.code().to_raw() as u32 == VIR_ERR_NO_DOMAIN {
            SnapshotError::DomainNotFound { uuid: uuid.to_owned() }
        } else {
            Self::libvirt(operation, err)
        }
    }
}
