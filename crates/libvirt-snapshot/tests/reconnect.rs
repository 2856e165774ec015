//! The engine survives libvirtd going away, on the real daemon (its own test
//! binary: restarting libvirtd disturbs any other test running in the same
//! process or at the same time; CI runs test binaries one at a time).
//!
//! * libvirtd is stopped (SIGTERM) and started again through
//!   `deploy/dev/libvirt.sh`'s `libvirt_up`: the engine notices the closed
//!   connection (close callback), and the *same* engine then takes a backup
//!   and a mirror snapshot of the still-running guest. Both wait for their
//!   end through domain events only (JOB_COMPLETED + BLOCK_JOB_2, READY),
//!   with a 60 s deadline: they finish only if the event callbacks were
//!   registered again on the new connection and the event loop delivers.
//! * libvirtd is frozen (SIGSTOP: its socket stays open, no EOF): only the
//!   engine's keepalive can notice. The connection is reported dead within
//!   the keepalive bound, and after SIGCONT the next snapshot reconnects.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use libvirt_snapshot::{
    CancelToken, QuiescePolicy, SnapshotEngine, SnapshotRequest, SnapshotStrategy, KEEPALIVE_COUNT,
    KEEPALIVE_INTERVAL_S,
};
use stack_tests::{libvirt_up, libvirtd_pid, Guest};
use virt::domain::DomainState;

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

/// Sends SIGCONT to a stopped libvirtd on drop: a failing assertion must
/// not leave the stack's libvirtd frozen.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

fn wait_until(timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// A quiesced snapshot of `guest` through `engine` contains a file the guest
/// wrote just before (without sync).
fn snapshot_has_fresh_file(
    engine: &SnapshotEngine,
    guest: &Guest,
    scratch: &Scratch,
    strategy: SnapshotStrategy,
    label: &str,
) {
    let file = format!("{label}-{}.txt", strategy.as_str());
    let content = format!("{label} {}\n", uuid::Uuid::new_v4());
    sh(guest, &format!("printf '%s' '{content}' > /data/{file}"));
    let req = SnapshotRequest {
        instance_uuid: guest.uuid().to_string(),
        name: file.clone(),
        quiesce: QuiescePolicy { agent_enabled: true, required: true },
        strategy: Some(strategy),
    };
    let out = engine
        .snapshot_blocking(&req, &|_| {}, &CancelToken::new())
        .unwrap_or_else(|e| panic!("{label}: {strategy:?} snapshot through the same engine: {e}"));
    eprintln!("MEASURE {label} {strategy:?}: {:?}", out.elapsed);
    assert_standalone(out.image.path());
    let got = read_back_replayed(out.image.path(), &format!("/{file}"), scratch.dir.path());
    assert_eq!(got.as_deref(), Some(content.as_bytes()), "{label}: {strategy:?} image lacks the guest's file");
}

#[test]
fn reconnects_after_libvirtd_restart_and_keepalive_notices_a_silent_daemon() {
    require_stack();
    let scratch = Scratch::new("lvs-reconnect-");
    let mut cfg = scratch.config();
    // Completion is event-driven only: lost events show up as JobTimeout.
    cfg.job_timeout = Duration::from_secs(60);
    cfg.mirror_ready_timeout = Duration::from_secs(60);
    let engine = SnapshotEngine::open(cfg).unwrap_or_else(|e| panic!("engine: {e}"));
    let mut guest = boot("lvs-reconnect");
    assert!(engine.hypervisor().keepalive_enabled());
    snapshot_has_fresh_file(&engine, &guest, &scratch, SnapshotStrategy::Backup, "before");

    // --- 1. libvirtd restart -------------------------------------------------
    let old = libvirtd_pid().expect("libvirtd pid file");
    let stopped = Instant::now();
    signal(old, "-TERM");
    wait_until(Duration::from_secs(30), "libvirtd exits", || !std::path::Path::new(&format!("/proc/{old}")).exists());
    // EOF on the socket: the close callback marks the connection dead.
    wait_until(Duration::from_secs(10), "close noticed", || !engine.hypervisor().is_connected());
    eprintln!("MEASURE libvirtd SIGTERM → exited and connection reported closed after {:?}", stopped.elapsed());
    libvirt_up().unwrap_or_else(|e| panic!("{e}"));
    let new = libvirtd_pid().expect("libvirtd runs again");
    assert_ne!(new, old, "libvirtd was not restarted");
    eprintln!("MEASURE libvirtd down → up again: {:?}", stopped.elapsed());
    // The guest's QEMU survived; the test's own handle must reconnect.
    guest.reconnect().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guest.domain().state().unwrap().0.known(), Some(DomainState::Running));
    guest.wait_for_agent(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    for strategy in [SnapshotStrategy::Backup, SnapshotStrategy::Mirror] {
        snapshot_has_fresh_file(&engine, &guest, &scratch, strategy, "restarted");
    }
    assert!(engine.hypervisor().is_connected());

    // --- 2. a silent daemon: only keepalive can tell -------------------------
    let pid = libvirtd_pid().expect("libvirtd pid");
    let frozen_at = Instant::now();
    signal(pid, "-STOP");
    let cont = Continue(pid);
    // interval * (count + 1) is libvirt's bound; allow scheduling slack.
    let bound = Duration::from_secs((KEEPALIVE_INTERVAL_S as u64) * (KEEPALIVE_COUNT as u64 + 1) + 15);
    let took = wait_until(bound, "keepalive notices the silent libvirtd", || !engine.hypervisor().is_connected());
    eprintln!(
        "MEASURE keepalive ({KEEPALIVE_INTERVAL_S} s x {KEEPALIVE_COUNT}): a SIGSTOPped libvirtd noticed after {took:?}"
    );
    assert!(took >= Duration::from_secs(KEEPALIVE_INTERVAL_S as u64), "noticed after {took:?}: not by keepalive");
    drop(cont);
    eprintln!("libvirtd was stopped for {:?}", frozen_at.elapsed());
    guest.reconnect().unwrap_or_else(|e| panic!("{e}"));
    snapshot_has_fresh_file(&engine, &guest, &scratch, SnapshotStrategy::Backup, "continued");
    assert!(engine.hypervisor().is_connected());

    assert!(guest.domain().is_persistent().unwrap());
    assert!(scratch.leftovers().is_empty(), "temp files left: {:?}", scratch.leftovers());
    assert!(scratch.journal_records().is_empty());
}
