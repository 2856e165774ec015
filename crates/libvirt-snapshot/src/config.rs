//! The engine's configuration: what it reads from nova.conf (the service
//! maps its option groups onto [`EngineConfig`]; the engine knows nothing of
//! oslo.config), and the nova.conf spellings of the values it takes
//! (`FromStr` of [`ImageFormat`] and [`LiveStrategy`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::format::ImageFormat;

/// What the engine reads from nova.conf (the service maps its option groups
/// onto this; the engine knows nothing of oslo.config).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `[libvirt] connection_uri` (empty in nova.conf → `qemu:///system`).
    pub connection_uri: String,
    /// `[libvirt] snapshots_directory`.
    pub snapshots_directory: PathBuf,
    /// Where the crash journal lives (host-local, e.g. `$state_path/snapshot-journal`).
    pub journal_directory: PathBuf,
    /// `[libvirt] snapshot_image_format` (unset: the source format).
    pub snapshot_image_format: Option<ImageFormat>,
    /// `[libvirt] snapshot_compression`.
    pub snapshot_compression: bool,
    /// `[workarounds] disable_libvirt_livesnapshot`.
    pub disable_libvirt_livesnapshot: bool,
    /// `[snapshot_engine] live_strategy`.
    pub live_strategy: LiveStrategy,
    /// Mirror in write-blocking (active) mode: converges under any write load.
    pub mirror_write_blocking: bool,
    /// How long a mirror may take to become READY.
    pub mirror_ready_timeout: Duration,
    /// How long a backup job may take to complete.
    pub job_timeout: Duration,
    /// The longest wait for the guest agent's freeze.
    pub quiesce_timeout: Duration,
    /// Copy bandwidth limit for block copies, bytes per second.
    pub bandwidth: Option<u64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            connection_uri: "qemu:///system".into(),
            snapshots_directory: "/var/lib/nova/instances/snapshots".into(),
            journal_directory: "/var/lib/nova/snapshot-journal".into(),
            snapshot_image_format: None,
            snapshot_compression: false,
            disable_libvirt_livesnapshot: false,
            live_strategy: LiveStrategy::Backup,
            mirror_write_blocking: true,
            mirror_ready_timeout: Duration::from_secs(600),
            job_timeout: Duration::from_secs(3600),
            quiesce_timeout: Duration::from_secs(30),
            bandwidth: None,
        }
    }
}

/// The preferred live strategy (`[snapshot_engine] live_strategy`, our
/// extension): tried first when the host supports it, else the other one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveStrategy {
    /// Push-mode backup (`virDomainBackupBegin`): the freeze holds only the begin call.
    #[default]
    Backup,
    /// nova's shallow block copy (`virDomainBlockCopy`), aborted without pivot.
    Mirror,
}

impl LiveStrategy {
    /// Both strategies, in the order the option lists them.
    pub const ALL: [LiveStrategy; 2] = [LiveStrategy::Backup, LiveStrategy::Mirror];

    /// The nova.conf spelling (`backup`, `mirror`).
    pub fn as_str(self) -> &'static str {
        match self {
            LiveStrategy::Backup => "backup",
            LiveStrategy::Mirror => "mirror",
        }
    }
}

impl fmt::Display for LiveStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LiveStrategy {
    type Err = UnknownName;

    /// Parses nova.conf's spelling (`backup`, `mirror`; exact, lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LiveStrategy::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownName::new("live snapshot strategy", s, &["backup", "mirror"]))
    }
}

impl FromStr for ImageFormat {
    type Err = UnknownName;

    /// Parses nova.conf's spelling (`raw`, `qcow2`, `vmdk`, `vdi`; exact, lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownName::new("image format", s, &["raw", "qcow2", "vmdk", "vdi"]))
    }
}

/// A name that is not one of the accepted spellings (e.g. an
/// `snapshot_image_format` of `QCOW2`): what `FromStr` of this crate's
/// nova.conf enums returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{name}' (expected one of: {})", expected.join(", "))]
pub struct UnknownName {
    /// What was being named (`image format`, `live snapshot strategy`).
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The accepted spellings.
    pub expected: &'static [&'static str],
}

impl UnknownName {
    fn new(what: &'static str, name: &str, expected: &'static [&'static str]) -> Self {
        UnknownName { what, name: name.to_owned(), expected }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_formats_parse_nova_conf_spellings_exactly() {
        for f in ImageFormat::ALL {
            assert_eq!(f.as_str().parse::<ImageFormat>().unwrap(), f);
        }
        let err = "QCOW2".parse::<ImageFormat>().unwrap_err();
        assert_eq!(err.to_string(), "unknown image format 'QCOW2' (expected one of: raw, qcow2, vmdk, vdi)");
        assert!("ploop".parse::<ImageFormat>().is_err());
    }

    #[test]
    fn live_strategies_parse_nova_conf_spellings_exactly() {
        for l in LiveStrategy::ALL {
            assert_eq!(l.as_str().parse::<LiveStrategy>().unwrap(), l);
        }
        assert_eq!(LiveStrategy::default(), LiveStrategy::Backup);
        let err = "Mirror".parse::<LiveStrategy>().unwrap_err();
        assert_eq!(err.name, "Mirror");
        assert_eq!(err.expected, ["backup", "mirror"]);
    }
}
