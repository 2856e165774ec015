//! The engine's configuration: what it reads from nova.conf (the service
//! maps its option groups onto [`EngineConfig`]; the engine knows nothing of
//! oslo.config).

use std::path::PathBuf;
use std::time::Duration;

use crate::output::ImageFormat;

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
    /// `[libvirt] live_snapshot_strategy`.
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

/// The preferred live strategy (`[libvirt] live_snapshot_strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveStrategy {
    #[default]
    Backup,
    Mirror,
}
