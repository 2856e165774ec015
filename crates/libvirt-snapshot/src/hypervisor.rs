//! The connection to libvirtd and what the compute service asks of it before
//! any snapshot: versions, capabilities, the hypervisor type, a domain's
//! state. Owns keepalive, the close callback and reconnection, and registers
//! the domain event callbacks the strategies wait on.
//!
//! Every method blocks on libvirt RPC; async callers run them on a blocking
//! thread (`tokio::task::spawn_blocking`), never on the runtime's workers —
//! [`crate::SnapshotEngine`] does that for its callers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use virt::connect::Connect;
use virt::domain::Domain;

use crate::error::{SnapshotError, VIR_ERR_AUTH_CANCELLED, VIR_ERR_AUTH_FAILED, VIR_ERR_AUTH_UNAVAILABLE};
use crate::events;
use crate::ffi::{self, CallbackId, EventKind};

/// keepalive: a probe every 5 s, the connection is dead after 3 unanswered
/// (libvirt closes it about `interval * (count + 1)` = 20 s after the peer
/// fell silent; measured on the stack with a SIGSTOPped libvirtd: see
/// docs/snapshot-engine.md). Seconds between probes.
pub const KEEPALIVE_INTERVAL_S: i32 = 5;
/// keepalive: unanswered probes after which libvirt closes the connection.
pub const KEEPALIVE_COUNT: u32 = 3;

/// An open connection to libvirtd that re-opens itself when it dies.
pub struct Hypervisor {
    uri: String,
    session: Mutex<Arc<Session>>,
}

/// One libvirt connection with its close flag and event callbacks.
struct Session {
    conn: Connect,
    closed: Arc<AtomicBool>,
    callbacks: Vec<CallbackId>,
    /// libvirt accepted the keepalive settings (remote connections, including
    /// `qemu:///system` through libvirtd's unix socket; not `test://`).
    keepalive: bool,
}

impl Session {
    fn open(uri: &str) -> Result<Self, SnapshotError> {
        // Must precede the open: libvirt binds keepalive and event delivery
        // to the event implementation present when the connection is made.
        events::ensure_event_loop()?;
        // With auth, as nova's `Host._connect` (`openAuth`): libvirt fills
        // SASL credentials from its auth.conf lookup and the callback
        // refuses anything left (a typed error, never a prompt).
        let conn = ffi::open_auth(uri).map_err(|e| open_error(uri, e))?;
        // (`virt` maps 1, "the peer does not support keepalive", to Ok too;
        // libvirtd >= 0.9.8 supports it.)
        let keepalive = match conn.set_keep_alive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) {
            Ok(()) => true,
            Err(e) => {
                // Local drivers (test://) have no keepalive; that is fine.
                tracing::debug!(uri, error = %e, "keepalive not enabled");
                false
            }
        };
        let closed = Arc::new(AtomicBool::new(false));
        if let Err(e) = ffi::register_close_flag(&conn, closed.clone()) {
            tracing::debug!(uri, error = %e, "no close callback on this driver");
        }
        let mut callbacks = Vec::new();
        for kind in [EventKind::BlockJob, EventKind::JobCompleted, EventKind::Lifecycle] {
            callbacks.push(ffi::register_event(&conn, kind).map_err(|e| SnapshotError::libvirt("event register", e))?);
        }
        tracing::info!(uri, "connected to libvirt");
        Ok(Session { conn, closed, callbacks, keepalive })
    }

    fn usable(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.conn.is_alive().unwrap_or(false)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for id in self.callbacks.drain(..) {
            let _ = ffi::deregister_event(&self.conn, id);
        }
        let _ = ffi::unregister_close_flag(&self.conn);
    }
}

/// Versions of the libvirt and hypervisor this host runs, for start-up logs
/// and capability checks (the backup API needs libvirt >= 7.2 and QEMU >= 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVersions {
    /// libvirt's library version (`virConnectGetLibVersion`).
    pub libvirt: Version,
    /// The hypervisor's version (`virConnectGetVersion`: QEMU's).
    pub hypervisor: Version,
    /// `QEMU` for the qemu driver (`TEST` for the test driver), as `virConnectGetType` reports it.
    pub hypervisor_type: String,
    /// The host's name as libvirt reports it (`virConnectGetHostname`).
    pub hostname: String,
}

/// What the live strategies need from libvirt and QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCapabilities {
    /// The QEMU driver (nova: `has_min_version(hv_type='QEMU')`); quiesce and
    /// live snapshots need it.
    pub qemu: bool,
    /// Push-mode `virDomainBackupBegin` (domain capabilities `<backup supported='yes'/>`).
    pub backup: bool,
    /// `virDomainBlockCopy` with `TRANSIENT_JOB` (libvirt >= 3.5 with QEMU).
    pub block_copy_transient: bool,
    /// `VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES` (libvirt >= 8.0).
    pub synchronous_writes: bool,
}

/// A libvirt-style version number, `major * 1_000_000 + minor * 1000 + release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        write!(f, "{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
    }
}

/// A domain's state as libvirt reports it (`virDomainState`). nova maps it
/// to its own power state (`LIBVIRT_POWER_STATE`); this crate does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainState {
    /// `VIR_DOMAIN_NOSTATE` (also any state this libvirt binding does not know).
    NoState,
    /// `VIR_DOMAIN_RUNNING`.
    Running,
    /// `VIR_DOMAIN_BLOCKED`: running, blocked on a resource.
    Blocked,
    /// `VIR_DOMAIN_PAUSED`: vCPUs paused (by us, a user, or an I/O error).
    Paused,
    /// `VIR_DOMAIN_SHUTDOWN`: being shut down.
    Shutdown,
    /// `VIR_DOMAIN_SHUTOFF`: not running.
    Shutoff,
    /// `VIR_DOMAIN_CRASHED`.
    Crashed,
    /// `VIR_DOMAIN_PMSUSPENDED`: suspended by guest power management.
    PmSuspended,
}

impl DomainState {
    pub(crate) fn from_libvirt(state: virt::domain::DomainState) -> Self {
        use virt::domain::DomainState as V;
        match state {
            V::NoState => DomainState::NoState,
            V::Running => DomainState::Running,
            V::Blocked => DomainState::Blocked,
            V::Paused => DomainState::Paused,
            V::Shutdown => DomainState::Shutdown,
            V::Shutoff => DomainState::Shutoff,
            V::Crashed => DomainState::Crashed,
            V::PMSuspended => DomainState::PmSuspended,
        }
    }

    /// The vCPUs run (running or blocked): the guest agent can answer.
    pub fn is_running(self) -> bool {
        matches!(self, DomainState::Running | DomainState::Blocked)
    }
}

/// The URI nova derives when `[libvirt] connection_uri` is empty.
pub fn default_connection_uri(virt_type: &str) -> &'static str {
    match virt_type {
        "lxc" => "lxc:///",
        "parallels" => "parallels:///system",
        _ => "qemu:///system",
    }
}

impl Hypervisor {
    /// Opens a read-write connection to `uri` (`qemu:///system`,
    /// `qemu+tcp://host/system`, `qemu+tls://host/system`, ...), with
    /// keepalive, a close callback, and the domain event callbacks.
    ///
    /// Authenticates like nova (`virConnectOpenAuth`): SASL credentials
    /// (Kolla's `auth_tcp = "sasl"`) come from libvirt's own auth.conf
    /// lookup — `$LIBVIRT_AUTH_FILE`, the URI's `authfile=`,
    /// `$XDG_CONFIG_HOME/libvirt/auth.conf` (Kolla:
    /// `/var/lib/nova/.config/libvirt/auth.conf`), `/etc/libvirt/auth.conf`.
    /// A credential none of them holds gives
    /// [`SnapshotError::CredentialsMissing`], refused credentials
    /// [`SnapshotError::AuthFailed`]; nothing is prompted for. Reconnects
    /// take the same path.
    pub fn open(uri: &str) -> Result<Self, SnapshotError> {
        let session = Session::open(uri)?;
        Ok(Hypervisor { uri: uri.to_owned(), session: Mutex::new(Arc::new(session)) })
    }

    /// The URI the connection was opened with (and re-opens with).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The current connection, re-opened first when libvirt reported it
    /// closed or it no longer answers (daemon restart, network loss).
    pub fn connection(&self) -> Result<Connect, SnapshotError> {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if !session.usable() {
            tracing::warn!(uri = %self.uri, "libvirt connection lost; reconnecting");
            *session = Arc::new(Session::open(&self.uri)?);
        }
        Ok(session.conn.clone())
    }

    /// Whether the current connection is still usable, without re-opening
    /// it: false once libvirt reported it closed (daemon gone, keepalive
    /// timeout) or it no longer answers. The next [`Hypervisor::connection`]
    /// re-opens it.
    pub fn is_connected(&self) -> bool {
        self.session.lock().unwrap_or_else(|p| p.into_inner()).usable()
    }

    /// Whether keepalive is active on the current connection (it is on every
    /// connection through libvirtd; `test://` has none).
    pub fn keepalive_enabled(&self) -> bool {
        self.session.lock().unwrap_or_else(|p| p.into_inner()).keepalive
    }

    /// The domain whose UUID is the instance's UUID.
    pub fn domain(&self, uuid: &str) -> Result<Domain, SnapshotError> {
        self.connection()?.lookup_domain_by_uuid_string(uuid).map_err(|e| SnapshotError::for_domain("lookup", uuid, e))
    }

    /// The versions of libvirt and QEMU and the host's name (blocking).
    pub fn versions(&self) -> Result<HostVersions, SnapshotError> {
        let conn = self.connection()?;
        let libvirt = conn.lib_version().map_err(|e| SnapshotError::libvirt("lib_version", e))?;
        let hypervisor = conn.hyp_version().map_err(|e| SnapshotError::libvirt("hyp_version", e))?;
        let hypervisor_type = conn.driver_type().map_err(|e| SnapshotError::libvirt("driver_type", e))?;
        let hostname = conn.hostname().map_err(|e| SnapshotError::libvirt("hostname", e))?;
        Ok(HostVersions { libvirt: Version(libvirt), hypervisor: Version(hypervisor), hypervisor_type, hostname })
    }

    /// What this host can do for live snapshots of domains of `virt_type`
    /// (`qemu` or `kvm`, the domain XML's `type`).
    pub fn capabilities(&self, virt_type: &str) -> Result<HostCapabilities, SnapshotError> {
        let v = self.versions()?;
        let qemu = v.hypervisor_type == "QEMU";
        let conn = self.connection()?;
        let backup = match conn.domain_capabilities(None, None, None, Some(virt_type), 0) {
            Ok(xml) => domcaps_backup_supported(&xml),
            Err(e) => {
                tracing::debug!(error = %e, "no domain capabilities; judging backup support by versions");
                qemu && v.libvirt >= Version(7_002_000) && v.hypervisor >= Version(4_002_000)
            }
        };
        Ok(HostCapabilities {
            qemu,
            backup: qemu && backup,
            block_copy_transient: qemu && v.libvirt >= Version(3_005_000),
            synchronous_writes: qemu && v.libvirt >= Version(8_000_000),
        })
    }

    /// The domain's current job type (`virDomainJobType`: 0 none, 1 bounded,
    /// 2 unbounded): a backup shows here.
    pub fn domain_job_type(&self, uuid: &str) -> Result<i32, SnapshotError> {
        let domain = self.domain(uuid)?;
        ffi::job_stats(&domain, false).map(|(t, _)| t).map_err(|e| SnapshotError::for_domain("jobStats", uuid, e))
    }

    /// The block job on the domain's disk `target`, if any.
    pub fn block_job(&self, uuid: &str, target: &str) -> Result<Option<ffi::BlockJobInfo>, SnapshotError> {
        let domain = self.domain(uuid)?;
        ffi::block_job_info(&domain, target).map_err(|e| SnapshotError::for_domain("blockJobInfo", uuid, e))
    }

    /// The state of the domain whose UUID is the instance's UUID, read fresh
    /// from libvirt (what nova's `get_info(use_cache=False).state` maps).
    pub fn domain_state(&self, uuid: &str) -> Result<DomainState, SnapshotError> {
        let domain = self.domain(uuid)?;
        read_domain_state(&domain, uuid)
    }
}

/// `virDomainGetState` of `domain` (whose UUID is `uuid`).
pub(crate) fn read_domain_state(domain: &Domain, uuid: &str) -> Result<DomainState, SnapshotError> {
    let (state, _reason) = domain.state().map_err(|e| SnapshotError::for_domain("state", uuid, e))?;
    Ok(state.known().map(DomainState::from_libvirt).unwrap_or(DomainState::NoState))
}

/// Classifies a failed `virConnectOpenAuth` of `uri`: credentials libvirt
/// asked for and auth.conf lacked, refused authentication, or any other
/// connection error (`Libvirt { operation: "open" }`).
fn open_error(uri: &str, err: ffi::OpenAuthError) -> SnapshotError {
    let ffi::OpenAuthError { error: source, requested } = err;
    if !requested.is_empty() {
        let mut credentials: Vec<String> = Vec::new();
        for c in &requested {
            if !credentials.iter().any(|n| n == c.name) {
                credentials.push(c.name.to_owned());
            }
        }
        return SnapshotError::CredentialsMissing { uri: uri.to_owned(), credentials, source };
    }
    match source.code().to_raw() {
        VIR_ERR_AUTH_FAILED | VIR_ERR_AUTH_CANCELLED | VIR_ERR_AUTH_UNAVAILABLE => {
            SnapshotError::AuthFailed { uri: uri.to_owned(), source }
        }
        _ => SnapshotError::libvirt("open", source),
    }
}

/// `<domainCapabilities>…<features><backup supported='yes'/>`.
fn domcaps_backup_supported(xml: &str) -> bool {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return false;
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("backup") && n.parent().is_some_and(|p| p.has_tag_name("features")))
        .any(|n| n.attribute("supported") == Some("yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_displays_like_libvirt() {
        assert_eq!(Version(11_003_000).to_string(), "11.3.0");
        assert_eq!(Version(10_000_002).to_string(), "10.0.2");
    }

    #[test]
    fn domain_states_are_libvirts_own() {
        use virt::domain::DomainState as V;
        assert_eq!(DomainState::from_libvirt(V::Blocked), DomainState::Blocked);
        assert_eq!(DomainState::from_libvirt(V::Shutoff), DomainState::Shutoff);
        assert_eq!(DomainState::from_libvirt(V::PMSuspended), DomainState::PmSuspended);
        assert!(DomainState::Blocked.is_running() && DomainState::Running.is_running());
        assert!(!DomainState::Paused.is_running() && !DomainState::Shutoff.is_running());
    }

    #[test]
    fn test_driver_reports_versions_and_missing_domains() {
        // libvirt's built-in test driver needs no daemon.
        let hv = Hypervisor::open("test:///default").expect("test driver");
        assert!(hv.is_connected());
        assert!(!hv.keepalive_enabled(), "the test driver has no keepalive");
        let v = hv.versions().unwrap();
        assert_eq!(v.hypervisor_type, "TEST");
        // The default test domain "test" is running.
        let uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f";
        assert_eq!(hv.domain_state(uuid).unwrap(), DomainState::Running);
        let missing = "00000000-0000-0000-0000-000000000001";
        assert!(matches!(hv.domain_state(missing), Err(SnapshotError::DomainNotFound { .. })));
        // Not QEMU: no live strategy, no quiesce.
        let caps = hv.capabilities("test").unwrap();
        assert!(!caps.qemu && !caps.backup && !caps.block_copy_transient);
    }

    #[test]
    fn a_closed_connection_is_reopened_with_its_callbacks() {
        let hv = Hypervisor::open("test:///default").unwrap();
        let first = Arc::as_ptr(&hv.session.lock().unwrap());
        hv.connection().unwrap();
        assert_eq!(Arc::as_ptr(&hv.session.lock().unwrap()), first, "a live connection is kept");
        // What the close callback does when libvirtd goes away.
        hv.session.lock().unwrap().closed.store(true, Ordering::SeqCst);
        let conn = hv.connection().unwrap();
        let session = hv.session.lock().unwrap().clone();
        assert!(!std::ptr::eq(Arc::as_ptr(&session), first), "a new session was opened");
        assert_eq!(session.callbacks.len(), 3, "event callbacks registered again");
        assert!(conn.is_alive().unwrap());
    }

    #[test]
    fn default_uri_follows_virt_type() {
        assert_eq!(default_connection_uri("kvm"), "qemu:///system");
        assert_eq!(default_connection_uri("qemu"), "qemu:///system");
        assert_eq!(default_connection_uri("lxc"), "lxc:///");
    }

    #[test]
    fn backup_capability_is_read_from_domcaps() {
        let yes = "<domainCapabilities><features><backup supported='yes'/></features></domainCapabilities>";
        let no = "<domainCapabilities><features><backup supported='no'/></features></domainCapabilities>";
        assert!(domcaps_backup_supported(yes));
        assert!(!domcaps_backup_supported(no));
        assert!(!domcaps_backup_supported("<domainCapabilities/>"));
    }
}
