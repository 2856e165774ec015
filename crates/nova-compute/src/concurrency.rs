//! Limits and in-flight tracking.
//!
//! - `[DEFAULT] max_concurrent_snapshots`: nova's eventlet-mode
//!   `_snapshot_semaphore` around `snapshot_instance` jobs (0, deprecated,
//!   is unlimited here; nova maps it to its executor's size); backups run
//!   on the RPC worker and are not counted, as in nova;
//! - `[compute] max_concurrent_disk_ops`: nova's `disk_ops_semaphore`
//!   around the upload (0 = unlimited);
//! - one snapshot or backup per instance at a time: nova relies on the
//!   API's task-state precondition only. A second job for the same instance
//!   waits here for the first instead of copying the same disk twice (a
//!   duplicate `snapshot_instance` cast fails its claim before it gets
//!   here, and its `delete_image_on_error` deletes the image, as in nova —
//!   issue 13);
//! - every running snapshot is registered, so a stop can wait for them for
//!   a grace period and then cancel them (nova's `_start_recorded_task`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// The limits snapshots and backups go through.
#[derive(Debug)]
pub struct Limits {
    /// `[DEFAULT] max_concurrent_snapshots`.
    pub snapshots: Limit,
    /// `[compute] max_concurrent_disk_ops`, around the upload.
    pub disk_ops: Limit,
    /// One snapshot or backup per instance at a time.
    pub instances: InstanceLocks,
}

impl Limits {
    /// From the two nova.conf limits (0 = unlimited).
    pub fn new(max_concurrent_snapshots: u32, max_concurrent_disk_ops: u32) -> Self {
        Limits {
            snapshots: Limit::new(max_concurrent_snapshots),
            disk_ops: Limit::new(max_concurrent_disk_ops),
            instances: InstanceLocks::default(),
        }
    }
}

/// A semaphore that may be unlimited.
#[derive(Debug, Clone)]
pub struct Limit(Option<Arc<Semaphore>>);

impl Limit {
    pub fn new(max: u32) -> Self {
        Limit((max > 0).then(|| Arc::new(Semaphore::new(max as usize))))
    }

    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        match &self.0 {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        }
    }
}

/// Per-instance exclusion.
#[derive(Debug, Default)]
pub struct InstanceLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl InstanceLocks {
    pub async fn lock(&self, uuid: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds, so the map does not grow forever.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(uuid.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// The long-running work in flight, and the stop signal it watches.
#[derive(Debug)]
pub struct InFlight {
    running: Mutex<HashMap<u64, String>>,
    next: Mutex<u64>,
    idle: Notify,
    abort: watch::Sender<bool>,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight { running: Mutex::default(), next: Mutex::new(0), idle: Notify::new(), abort: watch::channel(false).0 }
    }
}

/// Registration of one task; deregisters on drop (also on panic).
pub struct Tracked {
    owner: Arc<InFlight>,
    id: u64,
    /// Becomes true when the service gives up waiting and aborts the work.
    pub abort: watch::Receiver<bool>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut running = self.owner.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(&self.id);
        if running.is_empty() {
            self.owner.idle.notify_waiters();
        }
    }
}

impl InFlight {
    pub fn track(self: &Arc<Self>, what: String) -> Tracked {
        let id = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id, what);
        Tracked { owner: self.clone(), id, abort: self.abort.subscribe() }
    }

    pub fn running(&self) -> Vec<String> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Waits until nothing runs (true) or `grace` passes (false); `None` waits without limit.
    pub async fn wait_idle(&self, grace: Option<std::time::Duration>) -> bool {
        let deadline = grace.map(|g| tokio::time::Instant::now() + g);
        loop {
            let notified = self.idle.notified();
            if self.running().is_empty() {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return self.running().is_empty();
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Tells every tracked task to abort (they clean up and end).
    pub fn abort_all(&self) {
        self.abort.send_replace(true);
    }
}

/// Resolves when `abort` turns true (never, if the sender is gone).
pub async fn aborted(abort: &mut watch::Receiver<bool>) {
    if abort.wait_for(|a| *a).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_idle_sees_the_last_task_end() {
        let inflight = Arc::new(InFlight::default());
        let t = inflight.track("a".into());
        assert!(!inflight.wait_idle(Some(Duration::from_millis(20))).await);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(t);
        });
        assert!(inflight.wait_idle(Some(Duration::from_secs(2))).await);
    }

    #[tokio::test]
    async fn wait_idle_without_limit_waits_for_the_last_task() {
        let inflight = Arc::new(InFlight::default());
        let t = inflight.track("a".into());
        let waiting = tokio::time::timeout(Duration::from_millis(100), inflight.wait_idle(None));
        assert!(waiting.await.is_err(), "still waiting while a task runs");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(t);
        });
        assert!(inflight.wait_idle(None).await);
    }

    #[tokio::test]
    async fn abort_reaches_tracked_tasks() {
        let inflight = Arc::new(InFlight::default());
        let mut t = inflight.track("a".into());
        inflight.abort_all();
        tokio::time::timeout(Duration::from_secs(1), aborted(&mut t.abort)).await.unwrap();
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        assert!(Limit::new(0).acquire().await.is_none());
        assert!(Limit::new(1).acquire().await.is_some());
    }
}
