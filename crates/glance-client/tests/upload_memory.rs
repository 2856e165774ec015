//! Issue #5, test 1: a 2 GiB (mostly sparse) image streamed into a reserved image of the real
//! shared Glance ends `active` with our size and sha512, while this process's resident memory
//! stays small. Alone in its test binary so the process's memory is this upload's only.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use glance_client::{FileSource, ImageStatus, ImageUpdate, UploadProgress};
use support::*;

const SIZE: u64 = 2 << 30;
/// Loading the image would add 2 GiB; chunks in flight are a few MiB.
const MAX_GROWTH: u64 = 256 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_upload_streams_with_small_memory() {
    init_tracing();
    require_shared_glance();
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), SIZE);
    let expected_hash = sha512_file(&path);

    let glance = client_for(SHARED_GLANCE);
    let ctx = context(None);
    let id = reserve_image(SHARED_GLANCE, None, "glance-client-2gib", "raw", serde_json::json!({})).await;
    glance.update(&ctx, &id, &ImageUpdate::new().set("image_state", "available")).await.unwrap();

    let (rss_before, hwm_before) = memory();
    let peak_rss = Arc::new(AtomicU64::new(rss_before));
    let reports = Arc::new(AtomicU64::new(0));
    let progress = {
        let (peak_rss, reports) = (Arc::clone(&peak_rss), Arc::clone(&reports));
        Arc::new(move |p: &UploadProgress| {
            peak_rss.fetch_max(memory().0, Ordering::Relaxed);
            reports.fetch_add(1, Ordering::Relaxed);
            assert!(p.bytes_sent <= p.total_bytes && p.total_bytes == SIZE);
        })
    };
    let started = std::time::Instant::now();
    let image = glance.upload(&ctx, &id, &FileSource::new(&path), Some(progress)).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let (_, hwm_after) = memory();

    assert_eq!(image.status, ImageStatus::Active);
    assert_eq!(image.size, Some(SIZE));
    assert_eq!(image.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(image.os_hash_value.as_deref(), Some(expected_hash.as_str()));
    let growth = hwm_after.saturating_sub(hwm_before);
    let sampled = peak_rss.load(Ordering::Relaxed).saturating_sub(rss_before);
    eprintln!(
        "2 GiB upload: {seconds:.1} s ({:.0} MiB/s), {} progress reports; RSS before {} MiB, \
         peak sampled growth {} MiB, VmHWM growth {} MiB (bound {} MiB)",
        SIZE as f64 / MIB as f64 / seconds,
        reports.load(Ordering::Relaxed),
        rss_before / MIB,
        sampled / MIB,
        growth / MIB,
        MAX_GROWTH / MIB
    );
    assert!(reports.load(Ordering::Relaxed) >= 2, "progress was reported");
    assert!(growth < MAX_GROWTH, "peak resident memory grew by {} MiB", growth / MIB);
    glance.delete(&ctx, &id).await.unwrap();
}
