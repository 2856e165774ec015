//! The virt driver as the manager sees it: the few calls the snapshot path
//! makes of the hypervisor, behind the object-safe [`VirtDriver`] trait.
//!
//! [`LibvirtDriver`] is the real one, over libvirt-snapshot's engine; unit
//! tests use an in-memory driver. nova's libvirt driver maps libvirt's
//! domain states to nova power states; so does [`LibvirtDriver`], here and
//! nowhere else.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libvirt_snapshot::{
    DomainState, ImageFormat, Progress, ProgressFn, QuiescePolicy, SnapshotEngine, SnapshotError, SnapshotOutcome,
    SnapshotRequest, SnapshotStrategy,
};
use nova_objects::PowerState;
use tracing::debug;

use crate::conductor::BoxFuture;

/// A point-in-time image of an instance's root disk, ready to upload. The
/// temporary files behind it go when it is dropped.
pub struct ExtractedImage {
    /// The standalone image file.
    pub path: PathBuf,
    /// Its format (Glance's `disk_format`).
    pub format: ImageFormat,
    /// Its size in bytes.
    pub size: u64,
    /// How it was taken.
    pub strategy: SnapshotStrategy,
    /// How long the copy took.
    pub elapsed: Duration,
    /// How long the guest's filesystems were frozen, when they were.
    pub frozen: Option<Duration>,
    /// Keeps the engine's work directory and journal record alive.
    _keep: Box<dyn Send + Sync>,
}

impl ExtractedImage {
    /// An image at `path`, taken with `strategy`, whose files live as long as `keep`.
    pub fn new(
        path: PathBuf,
        format: ImageFormat,
        size: u64,
        strategy: SnapshotStrategy,
        keep: Box<dyn Send + Sync>,
    ) -> Self {
        ExtractedImage { path, format, size, strategy, elapsed: Duration::ZERO, frozen: None, _keep: keep }
    }

    /// The line operators (and deploy/bench) read: `Snapshot extracted
    /// (Backup, qcow2, N bytes) in 2.52s, guest frozen 95 ms`.
    pub fn log_line(&self) -> String {
        let frozen = self.frozen.map(|d| format!(", guest frozen {} ms", d.as_millis())).unwrap_or_default();
        // `Backup`, `Mirror`, `Cold`: the spelling the bench and operators' greps know.
        let (strategy, format) = (format!("{:?}", self.strategy), self.format.as_str());
        format!(
            "Snapshot extracted ({strategy}, {format}, {} bytes) in {:.2}s{frozen}",
            self.size,
            self.elapsed.as_secs_f64()
        )
    }
}

/// What start-up recovery of the engine's crash journal did.
#[derive(Debug, Default)]
pub struct JournalRecovery {
    /// Journal records found.
    pub records: usize,
    /// Each undo step taken, as a log line.
    pub actions: Vec<String>,
    /// Records that could not be fully undone (kept for the next start).
    pub kept: Vec<PathBuf>,
}

/// The hypervisor calls of the snapshot path.
pub trait VirtDriver: Send + Sync + 'static {
    /// `_host.get_guest`: `DomainNotFound` when the domain is not on this host.
    fn lookup(&self, uuid: &str) -> BoxFuture<'_, Result<(), SnapshotError>>;

    /// The domain's state as nova's power state (`_get_power_state`).
    fn power_state(&self, uuid: &str) -> BoxFuture<'_, Result<PowerState, SnapshotError>>;

    /// Takes the point-in-time image. When `cancel` resolves the engine is
    /// asked to stop; the future still resolves only once the guest is
    /// thawed, resumed and persistent again.
    fn snapshot(
        &self,
        request: SnapshotRequest,
        cancel: BoxFuture<'static, ()>,
    ) -> BoxFuture<'_, Result<ExtractedImage, SnapshotError>>;

    /// `quiesce_instance`: freezes the guest's filesystems through its agent.
    fn quiesce(&self, uuid: &str, policy: QuiescePolicy) -> BoxFuture<'_, Result<(), SnapshotError>>;

    /// `unquiesce_instance`: thaws them; the number of filesystems thawed.
    fn unquiesce(&self, uuid: &str) -> BoxFuture<'_, Result<u32, SnapshotError>>;

    /// Finishes or rolls back what a killed process left (the crash journal).
    fn recover(&self) -> BoxFuture<'_, Result<JournalRecovery, SnapshotError>>;
}

/// The libvirt driver: libvirt-snapshot's engine.
pub struct LibvirtDriver {
    engine: Arc<SnapshotEngine>,
}

impl LibvirtDriver {
    /// Drives `engine`.
    pub fn new(engine: Arc<SnapshotEngine>) -> Self {
        LibvirtDriver { engine }
    }
}

/// nova's `LIBVIRT_POWER_STATE` table.
fn nova_power_state(state: DomainState) -> PowerState {
    match state {
        DomainState::NoState => PowerState::NoState,
        DomainState::Running | DomainState::Blocked => PowerState::Running,
        DomainState::Paused => PowerState::Paused,
        DomainState::Shutdown | DomainState::Shutoff => PowerState::Shutdown,
        DomainState::Crashed => PowerState::Crashed,
        DomainState::PmSuspended => PowerState::Suspended,
    }
}

fn extracted(outcome: SnapshotOutcome) -> Result<ExtractedImage, SnapshotError> {
    let size = outcome.image.size()?;
    let (elapsed, frozen) = (outcome.elapsed, outcome.quiesce.as_ref().map(|w| w.duration));
    let (path, format, strategy) = (outcome.image.path().to_owned(), outcome.image.format(), outcome.strategy);
    Ok(ExtractedImage { elapsed, frozen, ..ExtractedImage::new(path, format, size, strategy, Box::new(outcome)) })
}

impl VirtDriver for LibvirtDriver {
    fn lookup(&self, uuid: &str) -> BoxFuture<'_, Result<(), SnapshotError>> {
        let uuid = uuid.to_owned();
        Box::pin(async move {
            match self.engine.domain_exists(&uuid).await? {
                true => Ok(()),
                false => Err(SnapshotError::DomainNotFound { uuid }),
            }
        })
    }

    fn power_state(&self, uuid: &str) -> BoxFuture<'_, Result<PowerState, SnapshotError>> {
        let uuid = uuid.to_owned();
        Box::pin(async move { Ok(nova_power_state(self.engine.domain_state(&uuid).await?)) })
    }

    fn snapshot(
        &self,
        request: SnapshotRequest,
        cancel: BoxFuture<'static, ()>,
    ) -> BoxFuture<'_, Result<ExtractedImage, SnapshotError>> {
        let progress: ProgressFn = Arc::new(|p: Progress| debug!("snapshot {:?}: {}/{}", p.phase, p.done, p.total));
        Box::pin(async move { extracted(self.engine.snapshot(request, Some(progress), cancel).await?) })
    }

    fn quiesce(&self, uuid: &str, policy: QuiescePolicy) -> BoxFuture<'_, Result<(), SnapshotError>> {
        Box::pin(self.engine.quiesce(uuid.to_owned(), policy))
    }

    fn unquiesce(&self, uuid: &str) -> BoxFuture<'_, Result<u32, SnapshotError>> {
        Box::pin(self.engine.unquiesce(uuid.to_owned()))
    }

    fn recover(&self) -> BoxFuture<'_, Result<JournalRecovery, SnapshotError>> {
        Box::pin(async move {
            let report = self.engine.recover().await?;
            Ok(JournalRecovery {
                records: report.records,
                actions: report.actions.iter().map(|a| format!("{a:?}")).collect(),
                kept: report.kept,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extracted_line_keeps_the_shape_operators_and_the_bench_parse() {
        let image = ExtractedImage {
            elapsed: Duration::from_millis(2520),
            frozen: Some(Duration::from_millis(95)),
            ..ExtractedImage::new(
                "/tmp/x".into(),
                ImageFormat::Qcow2,
                823721984,
                SnapshotStrategy::Backup,
                Box::new(()),
            )
        };
        assert_eq!(
            image.log_line(),
            "Snapshot extracted (Backup, qcow2, 823721984 bytes) in 2.52s, guest frozen 95 ms"
        );
        let unfrozen = ExtractedImage { frozen: None, ..image };
        assert_eq!(unfrozen.log_line(), "Snapshot extracted (Backup, qcow2, 823721984 bytes) in 2.52s");
    }
}
