//! Issue test 3 — the guest writes continuously at full speed: the backup
//! and the mirror (write-blocking mode) still finish within their
//! deadlines, the guest really wrote meanwhile (block stats), and each
//! image's filesystem passes `e2fsck -n`.

mod common;

use std::time::Duration;

use common::*;
use libvirt_snapshot::{CancelToken, QuiescePolicy, SnapshotRequest, SnapshotStrategy};

/// Two writers, each rewriting 32 MiB with O_DIRECT (every write reaches the
/// disk at once, no page-cache bursts), forever, in the background.
const WRITER: &str = "for n in 1 2; do (while :; do dd if=/dev/zero of=/data/stress$n bs=1M count=32 \
                      conv=notrunc oflag=direct 2>/dev/null; done) </dev/null >/dev/null 2>&1 & echo $! >> /tmp/writer.pids; done";

#[test]
fn live_strategies_finish_under_continuous_writes() {
    require_stack();
    let scratch = Scratch::new("lvs-stress-");
    let mut cfg = scratch.config();
    cfg.mirror_write_blocking = true;
    cfg.mirror_ready_timeout = Duration::from_secs(120);
    cfg.job_timeout = Duration::from_secs(120);
    let engine = libvirt_snapshot::SnapshotEngine::open(cfg).unwrap_or_else(|e| panic!("{e}"));
    let guest = boot("lvs-stress");
    let uuid = guest.uuid().to_string();
    sh(&guest, WRITER);
    std::thread::sleep(Duration::from_secs(2));

    for strategy in [SnapshotStrategy::Backup, SnapshotStrategy::Mirror] {
        let before = guest.domain().block_stats("vda").unwrap().wr_bytes;
        let req = SnapshotRequest {
            instance_uuid: uuid.clone(),
            name: format!("stress-{}", strategy.as_str()),
            quiesce: QuiescePolicy { agent_enabled: true, required: true },
            strategy: Some(strategy),
        };
        let out = engine
            .snapshot_blocking(&req, &|_| {}, &CancelToken::new())
            .unwrap_or_else(|e| panic!("{strategy:?} under load: {e}"));
        let written = guest.domain().block_stats("vda").unwrap().wr_bytes - before;
        eprintln!(
            "MEASURE {strategy:?} under load: {:?}, freeze window {:?}, guest wrote {} MiB meanwhile",
            out.elapsed,
            out.quiesce.map(|w| w.duration),
            written >> 20
        );
        // O_DIRECT writers reach ~100 MiB/s on the TCG guest.
        assert!(written > 8 << 20, "the guest was not writing: {written} bytes");
        assert_standalone(out.image.path());
        let (clean, report) = fsck(out.image.path(), scratch.dir.path());
        assert!(clean, "{strategy:?}: e2fsck -n found problems:\n{report}");
        assert_eq!(guest.fsfreeze_status().unwrap(), "thawed");
    }
    sh(&guest, "kill $(cat /tmp/writer.pids); true");
    assert!(guest.domain().is_persistent().unwrap());
    assert!(scratch.leftovers().is_empty(), "temp files left: {:?}", scratch.leftovers());
}
