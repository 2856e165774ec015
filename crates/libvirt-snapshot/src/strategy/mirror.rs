//! The `mirror` strategy, nova-compatible but fixed: a shallow
//! `virDomainBlockCopy` into a qcow2 delta over the same backing file, with
//! `TRANSIENT_JOB` (the domain is never undefined), optionally
//! `SYNCHRONOUS_WRITES` (converges under any write load); READY is awaited
//! through the block-job event with a deadline (never by polling job info:
//! nova bugs 1530275 / 1627134); then quiesce → abort without pivot → thaw;
//! the delta is flattened by the sink and deleted.

use std::path::Path;
use std::time::Instant;

use virt::domain::Domain;

use crate::error::SnapshotError;
use crate::events::{self, BlockJobStatus, BlockJobType, DomainEvent, Subscription, LIFECYCLE_STOPPED};
use crate::ffi::{self, BlockCopyFlags, BlockCopyParams};
use crate::format::DiskFormat;
use crate::journal::Step;
use crate::output::{DiskView, Phase, Progress};
use crate::qemu_img;
use crate::quiesce::QuiesceWindow;
use crate::strategy::backup::xml_escape;
use crate::strategy::{Ctx, SinkFn, TICK};

/// `VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE`: the persistent
/// definition including secrets, as nova saves it before its block job.
const XML_INACTIVE_SECURE: u32 = 2 | 1;

fn dest_xml(delta: &Path) -> String {
    format!("<disk type='file'><driver type='qcow2'/><source file='{}'/></disk>", xml_escape(&delta.to_string_lossy()))
}

/// Cancels the copy (no pivot) on drop unless it was already aborted.
struct CopyJob<'a> {
    domain: &'a Domain,
    disk: &'a str,
    running: bool,
}

impl Drop for CopyJob<'_> {
    fn drop(&mut self) {
        if self.running {
            match ffi::block_job_abort(self.domain, self.disk, false, false) {
                Ok(()) => tracing::warn!(disk = self.disk, "block copy aborted on an error path"),
                Err(e) => {
                    tracing::error!(disk = self.disk, error = %e, "cannot abort the block copy")
                }
            }
        }
    }
}

pub(crate) fn run(ctx: &mut Ctx<'_>, sink: &mut SinkFn<'_>) -> Result<Option<QuiesceWindow>, SnapshotError> {
    let disk = ctx.disk.target.clone();
    let delta = ctx.workdir.join(format!("{}.delta", ctx.name));
    let backing = ctx.chain.backing();
    let persistent = ctx.domain.is_persistent().map_err(|e| SnapshotError::libvirt("isPersistent", e))?;
    if persistent {
        // TRANSIENT_JOB keeps the definition, but what must never be lost
        // is recorded anyway: recover() re-defines it if it is gone.
        let xml = ctx.domain.xml_desc(XML_INACTIVE_SECURE).map_err(|e| SnapshotError::libvirt("XMLDesc", e))?;
        ctx.journal.push(Step::PersistentDefinition { xml })?;
    }
    qemu_img::create_qcow2(&delta, ctx.chain.virtual_size(), backing.map(|b| (b.path.as_path(), &b.format)))?;

    let events = events::subscribe(ctx.uuid);
    let flags = BlockCopyFlags {
        shallow: backing.is_some(),
        reuse_ext: true,
        transient_job: true,
        synchronous_writes: ctx.cfg.mirror_write_blocking,
    };
    let params = BlockCopyParams { bandwidth: ctx.cfg.bandwidth, ..Default::default() };
    ctx.journal.push(Step::MirrorJob { disk: disk.clone(), dest: delta.clone() })?;
    let started = Instant::now();
    ffi::block_copy(ctx.domain, &disk, &dest_xml(&delta), &params, flags)
        .map_err(|e| SnapshotError::libvirt("blockCopy", e))?;
    let mut job = CopyJob { domain: ctx.domain, disk: &disk, running: true };
    tracing::info!(disk, delta = %delta.display(), write_blocking = flags.synchronous_writes, "block copy started");

    wait_ready(ctx, &events, &disk, &delta)?;
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "block copy ready");

    // Freeze only around the abort (nova bug 1939116).
    let frozen = ctx.maybe_freeze()?;
    ffi::block_job_abort(ctx.domain, &disk, false, false).map_err(|e| SnapshotError::libvirt("blockJobAbort", e))?;
    job.running = false;
    let window = ctx.thaw(frozen)?;
    ctx.journal.forget(|s| matches!(s, Step::MirrorJob { .. }))?;
    ensure_still_persistent(ctx, persistent)?;

    let view = DiskView::Image {
        path: delta.clone(),
        format: DiskFormat::Qcow2,
        standalone: backing.is_none(),
        virtual_size: ctx.chain.virtual_size(),
    };
    sink(&view)?;
    // nova bug 1881727: don't keep delta + output (+ source) at once.
    let _ = std::fs::remove_file(&delta);
    ctx.journal.forget(|s| matches!(s, Step::PersistentDefinition { .. }))?;
    Ok(window)
}

/// Waits for the READY event of our copy job, with the configured deadline.
/// Events are confirmed against the live XML, so a late event of an earlier
/// job on the same disk (e.g. one `recover()` just aborted) is not taken for
/// ours: READY counts only if the disk's `<mirror>` is our delta and ready; an
/// end counts only if our mirror is gone.
fn wait_ready(ctx: &Ctx<'_>, events: &Subscription, disk: &str, delta: &Path) -> Result<(), SnapshotError> {
    let deadline = Instant::now() + ctx.cfg.mirror_ready_timeout;
    loop {
        ctx.cancel.check()?;
        if Instant::now() >= deadline {
            return Err(SnapshotError::JobTimeout {
                job: "block copy",
                what: "become ready",
                waited: ctx.cfg.mirror_ready_timeout,
            });
        }
        match events.recv_timeout(TICK) {
            Some(DomainEvent::BlockJob { disk: d, job_type: BlockJobType::Copy, status }) if d == disk => {
                match status {
                    BlockJobStatus::Ready => match our_mirror(ctx, disk, delta) {
                        Some(true) => return Ok(()),
                        other => tracing::warn!(?other, "READY event not about our copy; ignored"),
                    },
                    BlockJobStatus::Failed | BlockJobStatus::Canceled | BlockJobStatus::Completed => {
                        if our_mirror(ctx, disk, delta).is_some() {
                            tracing::warn!(?status, "stale block-job event for an earlier job; ignored");
                            continue;
                        }
                        return Err(SnapshotError::JobFailed {
                            job: "block copy",
                            message: format!("job ended before it was ready ({status:?})"),
                        });
                    }
                    BlockJobStatus::Unknown(_) => {}
                }
            }
            Some(DomainEvent::Lifecycle { event, .. }) if event == LIFECYCLE_STOPPED => {
                return Err(SnapshotError::JobFailed { job: "block copy", message: "the domain stopped".into() });
            }
            Some(_) => {}
            None => {
                if let Ok(Some(info)) = ffi::block_job_info(ctx.domain, disk) {
                    (ctx.progress)(Progress { phase: Phase::Copy, done: info.cur, total: info.end });
                }
            }
        }
    }
}

/// `Some(ready)` when the disk's live `<mirror>` is our delta.
fn our_mirror(ctx: &Ctx<'_>, disk: &str, delta: &Path) -> Option<bool> {
    let xml = ctx.domain.xml_desc(0).ok()?;
    match crate::disk::mirror_of(&xml, disk) {
        Some((file, ready)) if file == delta => Some(ready),
        _ => None,
    }
}

/// The domain must still be persistent; re-define it from the journal if
/// anything (not us) made it transient meanwhile.
fn ensure_still_persistent(ctx: &Ctx<'_>, was_persistent: bool) -> Result<(), SnapshotError> {
    if !was_persistent || ctx.domain.is_persistent().unwrap_or(true) {
        return Ok(());
    }
    let xml = ctx.journal.record().steps.iter().find_map(|s| match s {
        Step::PersistentDefinition { xml } => Some(xml.clone()),
        _ => None,
    });
    if let Some(xml) = xml {
        tracing::error!("domain became transient during the block copy; re-defining it");
        let conn = ctx.domain.connect().map_err(|e| SnapshotError::libvirt("connect", e))?;
        conn.define_domain_xml(&xml).map_err(|e| SnapshotError::libvirt("defineXML", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_xml_is_a_qcow2_file_disk() {
        let x = dest_xml(Path::new("/s/t/n.delta"));
        let doc = roxmltree::Document::parse(&x).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("type"), Some("file"));
        assert!(x.contains("<driver type='qcow2'/>") && x.contains("file='/s/t/n.delta'"));
    }
}
