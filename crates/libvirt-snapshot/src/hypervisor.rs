//! The connection to libvirtd and what the compute service asks of it before
//! any snapshot: versions, the hypervisor type, and a domain's power state.
//!
//! Every method blocks on libvirt RPC; async callers run them on a blocking
//! thread (`tokio::task::spawn_blocking`), never on the runtime's workers.

use virt::connect::Connect;
use virt::domain::DomainState;

use crate::error::SnapshotError;

/// An open connection to libvirtd.
pub struct Hypervisor {
    conn: Connect,
    uri: String,
}

/// Versions of the libvirt and hypervisor this host runs, for start-up logs
/// and capability checks (the backup API needs libvirt >= 7.2 and QEMU >= 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVersions {
    pub libvirt: Version,
    pub hypervisor: Version,
    /// `QEMU` for the qemu driver (`TEST` for the test driver), as `virConnectGetType` reports it.
    pub hypervisor_type: String,
    pub hostname: String,
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

/// nova's `power_state` values, as nova's libvirt driver maps domain states
/// (`LIBVIRT_POWER_STATE`): blocked counts as running, shutoff as shutdown,
/// pmsuspended as suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    NoState = 0,
    Running = 1,
    Paused = 3,
    Shutdown = 4,
    Crashed = 6,
    Suspended = 7,
}

impl PowerState {
    fn from_libvirt(state: DomainState) -> Self {
        match state {
            DomainState::NoState => PowerState::NoState,
            DomainState::Running | DomainState::Blocked => PowerState::Running,
            DomainState::Paused => PowerState::Paused,
            DomainState::Shutdown | DomainState::Shutoff => PowerState::Shutdown,
            DomainState::Crashed => PowerState::Crashed,
            DomainState::PMSuspended => PowerState::Suspended,
        }
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
    /// `qemu+tcp://host/system`, ...).
    pub fn open(uri: &str) -> Result<Self, SnapshotError> {
        let conn = Connect::open(Some(uri)).map_err(|e| SnapshotError::libvirt("open", e))?;
        Ok(Hypervisor { conn, uri: uri.to_owned() })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn versions(&self) -> Result<HostVersions, SnapshotError> {
        let libvirt = self.conn.lib_version().map_err(|e| SnapshotError::libvirt("lib_version", e))?;
        let hypervisor = self.conn.hyp_version().map_err(|e| SnapshotError::libvirt("hyp_version", e))?;
        let hypervisor_type = self.conn.driver_type().map_err(|e| SnapshotError::libvirt("driver_type", e))?;
        let hostname = self.conn.hostname().map_err(|e| SnapshotError::libvirt("hostname", e))?;
        Ok(HostVersions { libvirt: Version(libvirt), hypervisor: Version(hypervisor), hypervisor_type, hostname })
    }

    /// The power state of the domain whose UUID is the instance's UUID, read
    /// fresh from libvirt (nova: `get_info(use_cache=False).state`).
    pub fn power_state(&self, uuid: &str) -> Result<PowerState, SnapshotError> {
        let domain = self
            .conn
            .lookup_domain_by_uuid_string(uuid)
            .map_err(|e| SnapshotError::for_domain("lookup", uuid, e))?;
        let (state, _reason) = domain.state().map_err(|e| SnapshotError::for_domain("state", uuid, e))?;
        Ok(state.known().map(PowerState::from_libvirt).unwrap_or(PowerState::NoState))
    }
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
    fn power_states_follow_nova_mapping() {
        assert_eq!(PowerState::from_libvirt(DomainState::Blocked), PowerState::Running);
        assert_eq!(PowerState::from_libvirt(DomainState::Shutoff), PowerState::Shutdown);
        assert_eq!(PowerState::from_libvirt(DomainState::PMSuspended), PowerState::Suspended);
    }

    #[test]
    fn test_driver_reports_versions_and_missing_domains() {
        // libvirt's built-in test driver needs no daemon.
        let hv = Hypervisor::open("test:///default").expect("test driver");
        let v = hv.versions().unwrap();
        assert_eq!(v.hypervisor_type, "TEST");
        // The default test domain "test" is running.
        let uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f";
        assert_eq!(hv.power_state(uuid).unwrap(), PowerState::Running);
        let missing = "00000000-0000-0000-0000-000000000001";
        assert!(matches!(hv.power_state(missing), Err(SnapshotError::DomainNotFound { .. })));
    }

    #[test]
    fn default_uri_follows_virt_type() {
        assert_eq!(default_connection_uri("kvm"), "qemu:///system");
        assert_eq!(default_connection_uri("qemu"), "qemu:///system");
        assert_eq!(default_connection_uri("lxc"), "lxc:///");
    }
}
