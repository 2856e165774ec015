//! The RPC server's bounded worker pool: oslo's executor with
//! `executor_thread_pool_size` workers. At most that many handlers run at
//! once; the server waits for a free worker before it takes the next
//! request, and graceful stop waits until every worker is idle.
//!
//! Must not know: requests, replies or the broker.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// The most workers a pool is given, whatever the option says.
const MAX_WORKERS: usize = 10_000;

/// A fixed number of concurrent handler tasks.
#[derive(Debug, Clone)]
pub(crate) struct WorkerPool {
    permits: Arc<Semaphore>,
    size: u32,
}

impl WorkerPool {
    /// `size` workers, at least 1 (oslo refuses 0) and at most 10 000.
    pub(crate) fn new(size: usize) -> Self {
        let size = size.clamp(1, MAX_WORKERS);
        Self { permits: Arc::new(Semaphore::new(size)), size: u32::try_from(size).unwrap_or(1) }
    }

    /// How many workers the pool has.
    pub(crate) fn size(&self) -> usize {
        self.size as usize
    }

    /// Waits for a free worker, then runs `work` on it. Returns without
    /// running it only if the pool was closed.
    pub(crate) async fn run<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else { return };
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }

    /// Waits until no worker is busy.
    pub(crate) async fn idle(&self) {
        if let Ok(all) = self.permits.acquire_many(self.size).await {
            drop(all);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn never_runs_more_handlers_than_workers() {
        let pool = WorkerPool::new(3);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..12 {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            pool.run(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            })
            .await;
        }
        pool.idle().await;
        assert_eq!(done.load(Ordering::SeqCst), 12, "idle() returns after every handler");
        assert_eq!(peak.load(Ordering::SeqCst), 3, "the pool is used fully and never exceeded");
    }

    #[tokio::test]
    async fn one_worker_serialises_handlers() {
        let pool = WorkerPool::new(1);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..4 {
            let order = order.clone();
            pool.run(async move {
                order.lock().unwrap().push(("start", i));
                tokio::time::sleep(Duration::from_millis(5)).await;
                order.lock().unwrap().push(("end", i));
            })
            .await;
        }
        pool.idle().await;
        let order = order.lock().unwrap();
        for pair in order.chunks(2) {
            assert_eq!((pair[0].0, pair[1].0), ("start", "end"), "{order:?}");
            assert_eq!(pair[0].1, pair[1].1, "{order:?}");
        }
    }

    #[test]
    fn size_is_clamped() {
        assert_eq!(WorkerPool::new(0).size(), 1);
        assert_eq!(WorkerPool::new(64).size(), 64);
        assert_eq!(WorkerPool::new(usize::MAX).size(), MAX_WORKERS);
    }
}
