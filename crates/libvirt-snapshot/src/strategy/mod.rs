//! The snapshot strategies and how one is chosen (docs/snapshot-engine.md):
//! `backup` (libvirt backup API, the default live strategy),
//! `mirror` (nova-compatible shallow block copy) and `cold` (pause → copy →
//! resume, or a direct copy of a shut-off guest).
//!
//! Every strategy produces a [`DiskView`] and hands it to the sink callback;
//! none of them knows where the data goes.

pub(crate) mod backup;
pub(crate) mod cold;
pub(crate) mod mirror;

use std::path::Path;
use std::time::Duration;

use error_chain::Chain;
use virt::domain::Domain;

use crate::config::{EngineConfig, LiveStrategy};
use crate::disk::{BackingChain, RootDisk};
use crate::error::SnapshotError;
use crate::format::{ImageFormat, SourceType};
use crate::hypervisor::{DomainState, HostCapabilities};
use crate::journal::{JournalEntry, Step};
use crate::output::{CancelToken, DiskView, Progress};
use crate::quiesce::{self, Frozen, QuiescePolicy, QuiesceWindow};

/// How a snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStrategy {
    /// Push-mode full backup (`virDomainBackupBegin`) into a standalone image.
    Backup,
    /// Shallow `virDomainBlockCopy` with a transient job, aborted (no pivot).
    Mirror,
    /// vCPUs paused (running guest) or nothing (shut off) while copying.
    Cold,
}

impl SnapshotStrategy {
    /// Its name in logs and journal records (`backup`, `mirror`, `cold`).
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotStrategy::Backup => "backup",
            SnapshotStrategy::Mirror => "mirror",
            SnapshotStrategy::Cold => "cold",
        }
    }
}

/// What the choice depends on.
#[derive(Debug, Clone, Copy)]
pub struct SelectionInput<'a> {
    /// `[workarounds] disable_libvirt_livesnapshot`: always cold.
    pub disable_libvirt_livesnapshot: bool,
    /// `[snapshot_engine] live_strategy`.
    pub preferred: LiveStrategy,
    /// The domain's state now (a shut-off or crashed guest is copied cold).
    pub domain_state: DomainState,
    /// What this host's libvirt and QEMU can do.
    pub caps: HostCapabilities,
    /// The root disk (an LVM disk is copied cold, RBD is refused).
    pub disk: &'a RootDisk,
}

/// nova's live-vs-cold rule (driver.py `snapshot`, step 9), then the live
/// strategy: the preferred one if this host supports it, else the other.
pub fn select_strategy(input: &SelectionInput<'_>) -> Result<SnapshotStrategy, SnapshotError> {
    input.disk.ensure_local()?;
    let live = input.caps.qemu
        && input.disk.source_type() != SourceType::Lvm
        && !input.disable_libvirt_livesnapshot
        && !matches!(
            input.domain_state,
            DomainState::Shutdown | DomainState::Shutoff | DomainState::Crashed | DomainState::NoState
        );
    if !live {
        return Ok(SnapshotStrategy::Cold);
    }
    let backup_ok = input.caps.backup;
    let mirror_ok = input.caps.block_copy_transient;
    Ok(match (input.preferred, backup_ok, mirror_ok) {
        (LiveStrategy::Backup, true, _) => SnapshotStrategy::Backup,
        (LiveStrategy::Mirror, _, true) => SnapshotStrategy::Mirror,
        (_, true, _) => SnapshotStrategy::Backup,
        (_, _, true) => SnapshotStrategy::Mirror,
        _ => SnapshotStrategy::Cold,
    })
}

/// Everything a strategy needs for one snapshot.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    pub domain: &'a Domain,
    pub uuid: &'a str,
    pub disk: &'a RootDisk,
    pub chain: &'a BackingChain,
    pub domain_state: DomainState,
    pub caps: HostCapabilities,
    /// The domain XML has the agent channel.
    pub agent_channel: bool,
    pub workdir: &'a Path,
    pub name: &'a str,
    pub out_format: ImageFormat,
    pub quiesce: QuiescePolicy,
    pub journal: &'a mut JournalEntry,
    pub progress: &'a dyn Fn(Progress),
    pub cancel: &'a CancelToken,
}

/// The sink side, as a strategy sees it.
pub(crate) type SinkFn<'a> = dyn FnMut(&DiskView) -> Result<(), SnapshotError> + 'a;

impl Ctx<'_> {
    /// Freezes if the policy asks for it and the guest can: journaled first.
    /// `Ok(None)` = continue without a freeze (logged).
    pub(crate) fn maybe_freeze(&mut self) -> Result<Option<Frozen>, SnapshotError> {
        if !quiesce::should_quiesce(self.quiesce, self.caps.qemu)? {
            return Ok(None);
        }
        if !self.agent_channel {
            return self.freeze_failed(quiesce::no_agent_channel());
        }
        if !self.domain_state.is_running() {
            // A paused guest's agent cannot answer; don't wait for it.
            let err = SnapshotError::QuiesceFailed {
                message: format!("the guest is not running ({:?}); its agent cannot freeze", self.domain_state),
                agent_unresponsive: true,
                source: None,
            };
            return self.freeze_failed(err);
        }
        self.journal.push(Step::Quiesce)?;
        match quiesce::freeze(self.domain, self.cfg.quiesce_timeout) {
            Ok(frozen) => Ok(Some(frozen)),
            Err(err) => {
                self.journal.forget(|s| *s == Step::Quiesce)?;
                self.freeze_failed(err)
            }
        }
    }

    fn freeze_failed(&self, err: SnapshotError) -> Result<Option<Frozen>, SnapshotError> {
        if self.quiesce.required {
            tracing::error!(error = %Chain(&err), "quiesce failed and os_require_quiesce is set");
            return Err(err);
        }
        tracing::warn!(error = %Chain(&err), "quiesce failed; snapshot continues unquiesced");
        Ok(None)
    }

    /// Thaws and forgets the journaled quiesce step once the guest is thawed.
    pub(crate) fn thaw(&mut self, frozen: Option<Frozen>) -> Result<Option<QuiesceWindow>, SnapshotError> {
        let Some(frozen) = frozen else {
            return Ok(None);
        };
        let window = frozen.thaw()?;
        self.journal.forget(|s| *s == Step::Quiesce)?;
        Ok(Some(window))
    }
}

/// How often wait loops wake up to report progress and check cancellation.
pub(crate) const TICK: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskSource;

    fn disk(source: DiskSource) -> RootDisk {
        RootDisk { target: "vda".into(), source, format: crate::format::DiskFormat::Qcow2 }
    }

    fn caps(backup: bool, mirror: bool) -> HostCapabilities {
        HostCapabilities { qemu: true, backup, block_copy_transient: mirror, synchronous_writes: mirror }
    }

    fn pick(
        disable: bool,
        preferred: LiveStrategy,
        domain_state: DomainState,
        caps: HostCapabilities,
        d: &RootDisk,
    ) -> Result<SnapshotStrategy, SnapshotError> {
        select_strategy(&SelectionInput {
            disable_libvirt_livesnapshot: disable,
            preferred,
            domain_state,
            caps,
            disk: d,
        })
    }

    #[test]
    fn selection_follows_nova_then_preference() {
        let file = disk(DiskSource::File("/d".into()));
        use DomainState as P;
        use LiveStrategy as L;
        use SnapshotStrategy as S;
        assert_eq!(pick(false, L::Backup, P::Running, caps(true, true), &file).unwrap(), S::Backup);
        assert_eq!(pick(false, L::Mirror, P::Running, caps(true, true), &file).unwrap(), S::Mirror);
        assert_eq!(pick(false, L::Backup, P::Running, caps(false, true), &file).unwrap(), S::Mirror);
        assert_eq!(pick(false, L::Mirror, P::Running, caps(true, false), &file).unwrap(), S::Backup);
        assert_eq!(pick(false, L::Backup, P::Paused, caps(true, true), &file).unwrap(), S::Backup);
        assert_eq!(pick(true, L::Backup, P::Running, caps(true, true), &file).unwrap(), S::Cold);
        assert_eq!(pick(false, L::Backup, P::Shutdown, caps(true, true), &file).unwrap(), S::Cold);
        assert_eq!(pick(false, L::Backup, P::Shutoff, caps(true, true), &file).unwrap(), S::Cold);
        assert_eq!(pick(false, L::Backup, P::Blocked, caps(true, true), &file).unwrap(), S::Backup);
        assert_eq!(pick(false, L::Backup, P::PmSuspended, caps(true, true), &file).unwrap(), S::Backup);
        assert_eq!(pick(false, L::Backup, P::Running, caps(false, false), &file).unwrap(), S::Cold);
        let not_qemu = HostCapabilities { qemu: false, ..caps(true, true) };
        assert_eq!(pick(false, L::Backup, P::Running, not_qemu, &file).unwrap(), S::Cold);
        let lvm = RootDisk { format: crate::format::DiskFormat::Raw, ..disk(DiskSource::Block("/dev/vg/d".into())) };
        assert_eq!(pick(false, L::Backup, P::Running, caps(true, true), &lvm).unwrap(), S::Cold);
        let rbd = disk(DiskSource::Network { protocol: "rbd".into(), name: "vms/d".into() });
        assert!(matches!(
            pick(false, L::Backup, P::Running, caps(true, true), &rbd),
            Err(SnapshotError::RbdNotSupported { .. })
        ));
    }
}
