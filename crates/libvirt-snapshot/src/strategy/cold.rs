//! The `cold` strategy: a running guest is frozen (when the policy allows),
//! its vCPUs paused (`virDomainSuspend`), the disk chain copied, the guest
//! resumed and thawed; a shut-off guest is copied directly and never
//! started. (nova uses managedSave + restore: the guest goes down; pausing
//! keeps it up, the disk is just as still.)

use virt::domain::Domain;

use crate::error::SnapshotError;
use crate::journal::Step;
use crate::output::DiskView;
use crate::quiesce::QuiesceWindow;
use crate::strategy::{Ctx, SinkFn};

/// Resumes the guest on drop unless already resumed.
struct Paused<'a> {
    domain: &'a Domain,
    paused: bool,
}

impl Paused<'_> {
    fn resume(&mut self) -> Result<(), SnapshotError> {
        self.paused = false;
        self.domain.resume().map_err(|e| SnapshotError::libvirt("resume", e))
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if self.paused {
            match self.domain.resume() {
                Ok(()) => tracing::warn!("guest resumed on an error path"),
                Err(e) => tracing::error!(error = %e, "cannot resume the guest"),
            }
        }
    }
}

pub(crate) fn run(ctx: &mut Ctx<'_>, sink: &mut SinkFn<'_>) -> Result<Option<QuiesceWindow>, SnapshotError> {
    let running = ctx.domain_state.is_running();
    // A shut-off disk is consistent; a paused guest cannot be frozen and is
    // not paused by us. Only a running guest is quiesced and paused.
    let frozen = if running { ctx.maybe_freeze()? } else { None };
    let mut pause = Paused { domain: ctx.domain, paused: false };
    if running {
        ctx.journal.push(Step::Paused)?;
        ctx.domain.suspend().map_err(|e| SnapshotError::libvirt("suspend", e))?;
        pause.paused = true;
        tracing::info!("guest vCPUs paused for a cold snapshot");
    }
    let path = ctx.disk.ensure_local()?.to_owned();
    let view = DiskView::Image {
        path,
        format: ctx.disk.format.clone(),
        standalone: ctx.chain.backing().is_none(),
        virtual_size: ctx.chain.virtual_size(),
    };
    let written = sink(&view);
    if pause.paused {
        pause.resume()?;
        ctx.journal.forget(|s| *s == Step::Paused)?;
        tracing::info!("guest resumed");
    }
    let window = ctx.thaw(frozen)?;
    written?;
    Ok(window)
}
