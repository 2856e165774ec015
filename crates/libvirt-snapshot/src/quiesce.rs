//! Quiesce through qemu-guest-agent (nova `_can_quiesce` / `_set_quiesced`):
//! freeze with a bounded wait, thaw on every path (the [`Frozen`] guard thaws
//! on drop, so errors, cancellation and panics thaw too), and the measured
//! freeze window.

use std::sync::mpsc;
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
        let window = QuiesceWindow {
            duration: self.frozen_at.elapsed(),
            filesystems: self.filesystems,
        };
        match result {
            Ok(n) => {
                tracing::info!(
                    thawed = n,
                    window_ms = window.duration.as_millis() as u64,
                    "guest filesystems thawed"
                );
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
        SnapshotError::QuiesceNotSupported {
            reason: "the hypervisor is not QEMU/KVM".into(),
        }
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

/// Freezes the guest's filesystems, waiting at most `timeout` for the agent.
/// On failure the guest is thawed again (a timed-out freeze may still land).
pub(crate) fn freeze(domain: &Domain, timeout: Duration) -> Result<Frozen, SnapshotError> {
    let (tx, rx) = mpsc::channel();
    let dom = domain.clone();
    std::thread::Builder::new()
        .name("fs-freeze".into())
        .spawn(move || {
            // The error is thread-local: convert it here.
            let r = ffi::fs_freeze(&dom).map_err(|e| {
                let code = e.code().to_raw();
                (code, e.message().to_owned())
            });
            let _ = tx.send(r);
        })
        .map_err(|e| SnapshotError::io("spawn fs-freeze thread", e))?;
    let started = Instant::now();
    match rx.recv_timeout(timeout) {
        Ok(Ok(n)) => {
            tracing::info!(
                frozen = n,
                took_ms = started.elapsed().as_millis() as u64,
                "guest filesystems frozen"
            );
            Ok(Frozen {
                domain: domain.clone(),
                frozen_at: Instant::now(),
                filesystems: n,
                thawed: false,
            })
        }
        Ok(Err((code, message))) => {
            // A partial freeze is possible; thawing a thawed guest is a no-op.
            let _ = ffi::fs_thaw(domain);
            let message = if code == VIR_ERR_AGENT_UNRESPONSIVE {
                format!("libvirt cannot connect to the qemu-guest-agent: {message}")
            } else {
                message
            };
            Err(SnapshotError::QuiesceFailed {
                message,
                agent_unresponsive: code == VIR_ERR_AGENT_UNRESPONSIVE,
            })
        }
        Err(_) => {
            // libvirt serialises agent jobs: this thaw runs once the freeze
            // has returned, whatever it did.
            tracing::warn!(?timeout, "fsFreeze did not return in time; thawing");
            let _ = ffi::fs_thaw(domain);
            Err(SnapshotError::QuiesceFailed {
                message: format!("the guest agent did not freeze within {timeout:?}"),
                agent_unresponsive: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_can_quiesce_semantics() {
        let p = |agent_enabled, required| QuiescePolicy {
            agent_enabled,
            required,
        };
        assert!(should_quiesce(p(true, false), true).unwrap());
        assert!(!should_quiesce(p(false, false), true).unwrap());
        assert!(!should_quiesce(p(true, false), false).unwrap());
        assert!(matches!(
            should_quiesce(p(false, true), true),
            Err(SnapshotError::AgentNotEnabled)
        ));
        assert!(matches!(
            should_quiesce(p(true, true), false),
            Err(SnapshotError::QuiesceNotSupported { .. })
        ));
    }
}
