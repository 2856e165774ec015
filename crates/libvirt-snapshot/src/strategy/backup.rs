//! The `backup` strategy: quiesce → push-mode full backup
//! (`virDomainBackupBegin`) into a standalone image in the work directory →
//! thaw right after the begin call → wait for the job-completed event.
//!
//! Point-in-time by construction (copy-before-write from the moment the job
//! starts), no convergence phase, the domain definition is never touched.

use std::path::{Path, PathBuf};
use std::time::Instant;

use virt::domain::Domain;

use crate::error::SnapshotError;
use crate::events::{
    self, BlockJobStatus, BlockJobType, DomainEvent, Subscription, JOB_OPERATION_BACKUP, LIFECYCLE_STOPPED,
};
use crate::ffi;
use crate::format::{DiskFormat, ImageFormat};
use crate::journal::Step;
use crate::output::{DiskView, Phase, Progress};
use crate::qemu_img;
use crate::quiesce::QuiesceWindow;
use crate::strategy::{Ctx, SinkFn, TICK};

/// The `<domainbackup>` document: one disk, pushed into `target`.
pub(crate) fn backup_xml(disk: &str, target: &Path, format: ImageFormat) -> String {
    format!(
        "<domainbackup mode='push'><disks><disk name='{disk}' backup='yes' type='file'>\
         <driver type='{format}'/><target file='{}'/></disk></disks></domainbackup>",
        xml_escape(&target.to_string_lossy())
    )
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
}

/// Aborts the backup job on drop unless it ended.
struct BackupJob<'a> {
    domain: &'a Domain,
    running: bool,
}

impl Drop for BackupJob<'_> {
    fn drop(&mut self) {
        if self.running {
            match ffi::abort_job(self.domain) {
                Ok(()) => tracing::warn!("backup job aborted"),
                Err(e) => tracing::error!(error = %e, "cannot abort the backup job"),
            }
        }
    }
}

pub(crate) fn run(ctx: &mut Ctx<'_>, sink: &mut SinkFn<'_>) -> Result<Option<QuiesceWindow>, SnapshotError> {
    // The target is the output itself when no conversion is needed.
    let compress = ctx.cfg.snapshot_compression && ctx.out_format == ImageFormat::Qcow2;
    let format = match ctx.out_format {
        ImageFormat::Raw if !compress => ImageFormat::Raw,
        _ => ImageFormat::Qcow2,
    };
    let target: PathBuf = ctx.workdir.join(format!("{}.backup", ctx.name));
    let xml = backup_xml(&ctx.disk.target, &target, format);

    // Formatted before the freeze, so the freeze window holds only the
    // begin call (libvirt would otherwise create the image inside it).
    create_target(&target, format, ctx.chain.virtual_size())?;

    // Subscribed before the job exists: its end cannot be missed.
    let events = events::subscribe(ctx.uuid);
    // Journaled before the freeze (two fsyncs less inside the window); a
    // record of a job that never started is harmless to recover().
    ctx.journal.push(Step::BackupJob { target: target.clone() })?;
    let frozen = ctx.maybe_freeze()?;
    let begun = Instant::now();
    ffi::backup_begin(ctx.domain, &xml, true).map_err(|e| SnapshotError::libvirt("backupBegin", e))?;
    let mut job = BackupJob { domain: ctx.domain, running: true };
    let window = ctx.thaw(frozen)?;
    tracing::info!(target = %target.display(), "backup job started");

    wait_completed(ctx, &events, &target)?;
    job.running = false;
    ctx.journal.forget(|s| matches!(s, Step::BackupJob { .. }))?;
    tracing::info!(took_ms = begun.elapsed().as_millis() as u64, "backup job completed");

    let view = DiskView::Image {
        path: target,
        format: DiskFormat::from(format),
        standalone: true,
        virtual_size: ctx.chain.virtual_size(),
    };
    sink(&view)?;
    Ok(window)
}

/// An empty image of the disk's size: a standalone qcow2 or a sparse raw file.
fn create_target(target: &Path, format: ImageFormat, size: u64) -> Result<(), SnapshotError> {
    if format == ImageFormat::Qcow2 {
        return qemu_img::create_qcow2(target, size, None);
    }
    let f = std::fs::File::create(target).map_err(|e| SnapshotError::io(format!("create {}", target.display()), e))?;
    f.set_len(size).map_err(|e| SnapshotError::io(format!("size {}", target.display()), e))
}

/// Waits until the backup is over *and* libvirt has closed the target: the
/// job-completed event carries the verdict, but it is emitted before libvirt
/// detaches the target node — until then QEMU may still hold qcow2 metadata
/// of the target in memory. The disk's BLOCK_JOB_2 (backup) event comes after
/// the detach. Progress is reported from job statistics meanwhile (progress
/// only — completion is the events' call).
fn wait_completed(ctx: &Ctx<'_>, events: &Subscription, target: &Path) -> Result<(), SnapshotError> {
    let deadline = Instant::now() + ctx.cfg.job_timeout;
    let mut verdict: Option<Result<(), SnapshotError>> = None;
    let mut detached = false;
    loop {
        if let (Some(_), true) = (&verdict, detached) {
            // Late events of an earlier backup cannot pass for ours: ours
            // is over only when libvirt no longer lists our target.
            if !backup_running(ctx, target) {
                return verdict.expect("checked");
            }
            tracing::warn!("completion events while our backup still runs: stale, ignored");
            verdict = None;
            detached = false;
        }
        ctx.cancel.check()?;
        if Instant::now() >= deadline {
            return Err(SnapshotError::JobTimeout { job: "backup", what: "complete", waited: ctx.cfg.job_timeout });
        }
        match events.recv_timeout(TICK) {
            Some(DomainEvent::JobCompleted(done)) if done.operation == Some(JOB_OPERATION_BACKUP) => {
                verdict = Some(if done.success == Some(true) {
                    Ok(())
                } else {
                    Err(SnapshotError::JobFailed {
                        job: "backup",
                        message: done.error.unwrap_or_else(|| "libvirt reported failure".into()),
                    })
                });
            }
            Some(DomainEvent::BlockJob { disk, job_type: BlockJobType::Backup, status }) if disk == ctx.disk.target => {
                match status {
                    BlockJobStatus::Completed => detached = true,
                    BlockJobStatus::Failed | BlockJobStatus::Canceled if backup_running(ctx, target) => {
                        tracing::warn!(?status, "stale backup event while ours runs; ignored");
                    }
                    BlockJobStatus::Failed | BlockJobStatus::Canceled => {
                        return Err(SnapshotError::JobFailed {
                            job: "backup",
                            message: format!("backup of {disk} ended {status:?}"),
                        })
                    }
                    BlockJobStatus::Ready | BlockJobStatus::Unknown(_) => {}
                }
            }
            Some(DomainEvent::Lifecycle { event, .. }) if event == LIFECYCLE_STOPPED => {
                return Err(SnapshotError::JobFailed { job: "backup", message: "the domain stopped".into() });
            }
            Some(_) => {}
            None => report_progress(ctx),
        }
    }
}

/// Whether libvirt still runs a backup writing `target`.
fn backup_running(ctx: &Ctx<'_>, target: &Path) -> bool {
    match ffi::backup_xml_desc(ctx.domain) {
        Ok(xml) => crate::disk::backup_targets(&xml).iter().any(|t| t == target),
        Err(_) => false,
    }
}

fn report_progress(ctx: &Ctx<'_>) {
    if let Ok((_, stats)) = ffi::job_stats(ctx.domain, false) {
        if let (Some(done), Some(total)) = (stats.disk_processed, stats.disk_total) {
            (ctx.progress)(Progress { phase: Phase::Copy, done, total });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_xml_names_disk_format_and_escaped_target() {
        let xml = backup_xml("vda", Path::new("/s/a'b/x.backup"), ImageFormat::Qcow2);
        assert!(xml.contains("<disk name='vda' backup='yes' type='file'>"));
        assert!(xml.contains("<driver type='qcow2'/>"));
        assert!(xml.contains("file='/s/a&apos;b/x.backup'"));
        roxmltree::Document::parse(&xml).unwrap();
    }
}
