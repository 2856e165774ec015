//! Domain events: the process-wide libvirt event loop thread, the typed
//! events the engine waits on (block job, job completed, lifecycle), and the
//! per-domain subscriptions that strategies wait on with a deadline.
//!
//! Why events: a job judged finished by polling can be a job that has not
//! started yet (nova bugs 1530275 / 1627134). A subscription is taken
//! *before* the job starts, so its end can never be missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::error::SnapshotError;

/// libvirt's `virDomainBlockJobType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockJobType {
    /// `VIR_DOMAIN_BLOCK_JOB_TYPE_PULL` (block stream).
    Pull,
    /// `VIR_DOMAIN_BLOCK_JOB_TYPE_COPY`: a block copy (the `mirror` strategy's job).
    Copy,
    /// `VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT`.
    Commit,
    /// `VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT`.
    ActiveCommit,
    /// `VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP`: a disk of a backup job (the `backup` strategy).
    Backup,
    /// A value this engine does not know.
    Unknown(i32),
}

impl BlockJobType {
    pub(crate) fn from_raw(raw: i32) -> Self {
        match raw {
            1 => BlockJobType::Pull,
            2 => BlockJobType::Copy,
            3 => BlockJobType::Commit,
            4 => BlockJobType::ActiveCommit,
            5 => BlockJobType::Backup,
            other => BlockJobType::Unknown(other),
        }
    }
}

/// libvirt's `virConnectDomainEventBlockJobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockJobStatus {
    /// `VIR_DOMAIN_BLOCK_JOB_COMPLETED`.
    Completed,
    /// `VIR_DOMAIN_BLOCK_JOB_FAILED`.
    Failed,
    /// `VIR_DOMAIN_BLOCK_JOB_CANCELED` (aborted).
    Canceled,
    /// `VIR_DOMAIN_BLOCK_JOB_READY`: a copy is in sync and can be aborted or pivoted.
    Ready,
    /// A value this engine does not know.
    Unknown(i32),
}

impl BlockJobStatus {
    pub(crate) fn from_raw(raw: i32) -> Self {
        match raw {
            0 => BlockJobStatus::Completed,
            1 => BlockJobStatus::Failed,
            2 => BlockJobStatus::Canceled,
            3 => BlockJobStatus::Ready,
            other => BlockJobStatus::Unknown(other),
        }
    }
}

/// `VIR_DOMAIN_JOB_OPERATION_BACKUP`.
pub const JOB_OPERATION_BACKUP: i32 = 9;

/// The statistics of a `VIR_DOMAIN_EVENT_ID_JOB_COMPLETED` event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCompleted {
    /// `virDomainJobOperation` (9 = backup).
    pub operation: Option<i32>,
    /// `success`: whether the job succeeded.
    pub success: Option<bool>,
    /// `errmsg`: libvirt's text when it failed.
    pub error: Option<String>,
    /// `disk_total`: bytes to copy.
    pub disk_total: Option<u64>,
    /// `disk_processed`: bytes copied.
    pub disk_processed: Option<u64>,
    /// `time_elapsed`, in milliseconds.
    pub time_elapsed_ms: Option<u64>,
}

/// An event about one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// `VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2`.
    BlockJob {
        /// The disk's target name (`vda`).
        disk: String,
        /// The job's type.
        job_type: BlockJobType,
        /// What happened to it.
        status: BlockJobStatus,
    },
    /// `VIR_DOMAIN_EVENT_ID_JOB_COMPLETED`.
    JobCompleted(JobCompleted),
    /// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`.
    Lifecycle {
        /// `virDomainEventType` (5 = stopped).
        event: i32,
        /// The type's detail (`virDomainEventStoppedDetailType`, ...).
        detail: i32,
    },
}

/// `VIR_DOMAIN_EVENT_STOPPED`: the domain went away under a running job.
pub const LIFECYCLE_STOPPED: i32 = 5;

struct Hub {
    next_id: AtomicU64,
    subscribers: Mutex<HashMap<u64, (String, Sender<DomainEvent>)>>,
}

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub { next_id: AtomicU64::new(1), subscribers: Mutex::new(HashMap::new()) })
}

/// Called from the event-loop thread by the FFI callbacks.
pub(crate) fn dispatch(uuid: &str, event: DomainEvent) {
    tracing::debug!(domain = uuid, ?event, "libvirt domain event");
    let subs = hub().subscribers.lock().unwrap_or_else(|p| p.into_inner());
    for (want, tx) in subs.values() {
        if want == uuid {
            let _ = tx.send(event.clone());
        }
    }
}

/// Events of one domain, from the moment of subscription until drop.
pub struct Subscription {
    id: u64,
    rx: Receiver<DomainEvent>,
}

/// Subscribes to the events of the domain with this UUID. Take the
/// subscription before starting the job whose end you will wait for.
pub fn subscribe(uuid: &str) -> Subscription {
    let (tx, rx) = mpsc::channel();
    let id = hub().next_id.fetch_add(1, Ordering::Relaxed);
    hub().subscribers.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (uuid.to_owned(), tx));
    Subscription { id, rx }
}

impl Subscription {
    /// The next event, or `None` after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<DomainEvent> {
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        hub().subscribers.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// Registers libvirt's default event implementation and runs it on a named
/// thread, once per process. Must happen before the first connection is
/// opened, or keepalive and callbacks never fire on that connection.
pub fn ensure_event_loop() -> Result<(), SnapshotError> {
    static STARTED: OnceLock<Result<(), Arc<SnapshotError>>> = OnceLock::new();
    STARTED
        .get_or_init(|| start_event_loop().map_err(Arc::new))
        .clone()
        .map_err(|source| SnapshotError::EventLoop { source })
}

/// Registers libvirt's default event implementation and starts the thread
/// that runs it.
fn start_event_loop() -> Result<(), SnapshotError> {
    // Errors are returned to callers (and logged by them); libvirt's
    // default handler would also print each one to stderr.
    virt::error::clear_error_callback();
    virt::event::event_register_default_impl().map_err(|e| SnapshotError::libvirt("virEventRegisterDefaultImpl", e))?;
    std::thread::Builder::new()
        .name("libvirt-events".into())
        .spawn(|| loop {
            if let Err(e) = virt::event::event_run_default_impl() {
                tracing::error!(error = %e, "libvirt event loop iteration failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .map_err(|e| SnapshotError::io("spawn the libvirt-events thread", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_filter_by_domain_and_unsubscribe_on_drop() {
        let a = subscribe("aaaa");
        let b = subscribe("bbbb");
        dispatch("aaaa", DomainEvent::Lifecycle { event: 1, detail: 0 });
        assert_eq!(a.recv_timeout(Duration::from_millis(100)), Some(DomainEvent::Lifecycle { event: 1, detail: 0 }));
        assert_eq!(b.recv_timeout(Duration::from_millis(10)), None);
        let id = a.id;
        drop(a);
        assert!(!hub().subscribers.lock().unwrap().contains_key(&id));
    }

    #[test]
    fn raw_values_map_to_libvirt_names() {
        assert_eq!(BlockJobType::from_raw(2), BlockJobType::Copy);
        assert_eq!(BlockJobType::from_raw(5), BlockJobType::Backup);
        assert_eq!(BlockJobStatus::from_raw(3), BlockJobStatus::Ready);
        assert_eq!(BlockJobStatus::from_raw(9), BlockJobStatus::Unknown(9));
    }
}
