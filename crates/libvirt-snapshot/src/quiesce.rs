//! Quiesce through qemu-guest-agent (nova `_can_quiesce` / `_set_quiesced`):
//! freeze with a bounded wait, thaw on every path (the [`Frozen`] guard thaws
//! on drop, so errors, cancellation and panics thaw too), and the measured
//! freeze window.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use virt::domain::Domain;

use crate::error::{SnapshotError, VIR_ERR_AGENT_UNRESPONSIVE};
use crate::ffi;

/// What the image metadata says about quiescing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuiescePolicy {
    /// `hw_qemu_guest_agent`: the image runs the agent, so freezing is attempted.
    pub agent_enabled: bool,
    /// `os_require_quiesce`: a snapshot without a freeze is a failure.
    pub required: bool,
}

/// How long the guest's filesystems were frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuiesceWindow {
    /// From the freeze call's return to the thaw call's return.
    pub duration: Duration,
    /// Filesystems the agent froze.
    pub filesystems: u32,
}

/// Frozen filesystems; thawed by [`Frozen::thaw`] or, failing that, on drop.
pub struct Frozen {
    domain: Domain,
    frozen_at: Instant,
    filesystems: u32,
    thawed: bool,
}

impl Frozen {
    /// Thaws and returns the freeze window. A failed thaw is logged loudly
    /// (the journal still holds the quiesce step, so `recover()` retries).
    pub fn thaw(mut self) -> Result<QuiesceWindow, SnapshotError> {
        self.thawed = true;
        let result = ffi::fs_thaw(&self.domain);
        let window = QuiesceWindow { duration: self.frozen_at.elapsed(), filesystems: self.filesystems };
        match result {
            Ok(n) => {
                tracing::info!(thawed = n, window_ms = window.duration.as_millis() as u64, "guest filesystems thawed");
                Ok(window)
            }
            Err(e) => {
                tracing::error!(error = %e, "thaw failed; the guest may still be frozen");
                Err(SnapshotError::libvirt("fsThaw", e))
            }
        }
    }
}

impl Frozen {
    /// Leaves the guest frozen on purpose (nova `quiesce_instance`: the
    /// caller thaws later with `unquiesce`).
    pub(crate) fn keep_frozen(mut self) {
        self.thawed = true;
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            match ffi::fs_thaw(&self.domain) {
                Ok(n) => {
                    tracing::warn!(thawed = n, "guest thawed on an error or cancellation path")
                }
                Err(e) => {
                    tracing::error!(error = %e, "thaw on an error path failed; the guest may still be frozen")
                }
            }
        }
    }
}

/// Whether to try a freeze at all, per nova's `_can_quiesce` semantics:
/// `Ok(true)` try, `Ok(false)` skip with a log, `Err` when quiesce is
/// required but impossible.
pub(crate) fn should_quiesce(policy: QuiescePolicy, qemu: bool) -> Result<bool, SnapshotError> {
    let refusal = if !qemu {
        SnapshotError::QuiesceNotSupported { reason: "the hypervisor is not QEMU/KVM".into() }
    } else if !policy.agent_enabled {
        SnapshotError::AgentNotEnabled
    } else {
        return Ok(true);
    };
    if policy.required {
        tracing::error!(error = %refusal, "quiesce required (os_require_quiesce) but not possible");
        return Err(refusal);
    }
    if policy.agent_enabled {
        tracing::info!(reason = %refusal, "skipping quiesce");
    }
    Ok(false)
}

/// The freeze call's outcome, handed from the freeze thread to the caller —
/// or, when the caller stopped waiting, left to the freeze thread to undo.
struct Handoff {
    /// `fs_freeze`'s result: frozen count, or libvirt's error.
    result: Option<Result<u32, virt::error::Error>>,
    /// The caller's `timeout` ran out and it reported the freeze as failed.
    abandoned: bool,
}

/// Freezes the guest's filesystems, waiting at most `timeout` for the agent.
/// On failure the guest is thawed again (a timed-out freeze may still land).
///
/// The wait is bounded for the caller, also when the agent hangs: libvirt's
/// default agent response timeout is "block" (`virDomainAgentSetResponseTimeout`
/// is never called by nova or us), so a freeze sent to a hung agent returns
/// only when the agent answers, and libvirt serialises agent commands, so a
/// thaw issued meanwhile waits just as long (measured: the whole 25 s an
/// agent was SIGSTOPped; docs/snapshot-engine.md). Hence on timeout the
/// caller does not thaw itself: the freeze thread, still blocked in the
/// freeze, thaws right after it returns, whatever the freeze did.
pub(crate) fn freeze(domain: &Domain, timeout: Duration) -> Result<Frozen, SnapshotError> {
    let shared: Shared = Arc::new((Mutex::new(Handoff { result: None, abandoned: false }), Condvar::new()));
    spawn_freeze(domain.clone(), Arc::clone(&shared))?;
    let started = Instant::now();
    match await_freeze(&shared, started + timeout) {
        Some(Ok(n)) => {
            tracing::info!(frozen = n, took_ms = started.elapsed().as_millis() as u64, "guest filesystems frozen");
            Ok(Frozen { domain: domain.clone(), frozen_at: Instant::now(), filesystems: n, thawed: false })
        }
        Some(Err(source)) => {
            // A partial freeze is possible; thawing a thawed guest is a no-op.
            let _ = ffi::fs_thaw(domain);
            Err(SnapshotError::QuiesceFailed {
                message: "fsFreeze failed".into(),
                agent_unresponsive: source.code().to_raw() == VIR_ERR_AGENT_UNRESPONSIVE,
                source: Some(source),
            })
        }
        None => {
            tracing::warn!(?timeout, "fsFreeze did not return in time; it is thawed as soon as it returns");
            Err(SnapshotError::QuiesceFailed {
                message: format!("the guest agent did not freeze within {timeout:?}"),
                agent_unresponsive: true,
                source: None,
            })
        }
    }
}

/// The [`Handoff`] and the condition variable its result is signalled on.
type Shared = Arc<(Mutex<Handoff>, Condvar)>;

/// Starts the thread that calls `fsFreeze` and hands its result over, or
/// undoes a freeze that lands after the caller gave up.
fn spawn_freeze(dom: Domain, shared: Shared) -> Result<(), SnapshotError> {
    std::thread::Builder::new()
        .name("fs-freeze".into())
        .spawn(move || {
            let started = Instant::now();
            // The error is thread-local: `fs_freeze` reads it in this thread.
            let r = ffi::fs_freeze(&dom);
            let (lock, cv) = &*shared;
            let mut handoff = lock.lock().unwrap_or_else(|p| p.into_inner());
            if !handoff.abandoned {
                handoff.result = Some(r);
                cv.notify_one();
                return;
            }
            drop(handoff);
            thaw_late_freeze(&dom, started);
        })
        .map(drop)
        .map_err(|e| SnapshotError::io("spawn fs-freeze thread", e))
}

/// The caller has given up and reported a failed freeze: undo whatever this
/// late freeze did (a no-op if nothing is frozen).
fn thaw_late_freeze(dom: &Domain, started: Instant) {
    let took_ms = started.elapsed().as_millis() as u64;
    match ffi::fs_thaw(dom) {
        Ok(n) => tracing::warn!(freeze_took_ms = took_ms, thawed = n, "late fsFreeze returned; guest thawed"),
        Err(e) => tracing::error!(
            freeze_took_ms = took_ms,
            error = %e,
            "late fsFreeze returned; thaw failed, the guest may be frozen"
        ),
    }
}

/// Waits until the freeze thread hands over its result, or `deadline`:
/// then the handoff is marked abandoned (`None`), and the freeze thread
/// undoes the freeze when it lands.
fn await_freeze(shared: &Shared, deadline: Instant) -> Option<Result<u32, virt::error::Error>> {
    let (lock, cv) = &**shared;
    let mut handoff = lock.lock().unwrap_or_else(|p| p.into_inner());
    while handoff.result.is_none() {
        let now = Instant::now();
        if now >= deadline {
            // Under the lock: the freeze thread sees this before it could
            // store a result, so exactly one side handles the outcome.
            handoff.abandoned = true;
            break;
        }
        handoff = cv.wait_timeout(handoff, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
    }
    handoff.result.take()
}

/// The quiesce failure of a domain whose XML has no guest-agent channel.
pub(crate) fn no_agent_channel() -> SnapshotError {
    SnapshotError::QuiesceFailed {
        message: "the domain has no qemu-guest-agent channel (org.qemu.guest_agent.0)".into(),
        agent_unresponsive: true,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_can_quiesce_semantics() {
        let p = |agent_enabled, required| QuiescePolicy { agent_enabled, required };
        assert!(should_quiesce(p(true, false), true).unwrap());
        assert!(!should_quiesce(p(false, false), true).unwrap());
        assert!(!should_quiesce(p(true, false), false).unwrap());
        assert!(matches!(should_quiesce(p(false, true), true), Err(SnapshotError::AgentNotEnabled)));
        assert!(matches!(should_quiesce(p(true, true), false), Err(SnapshotError::QuiesceNotSupported { .. })));
    }
}
