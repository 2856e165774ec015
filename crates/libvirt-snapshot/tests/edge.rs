//! Real-guest edge cases of the live strategies:
//!
//! * the mirror's READY deadline (lesson 2 in docs/architecture.md): a guest writing
//!   continuously, the mirror in non-write-blocking mode and throttled, so it
//!   cannot converge — the snapshot fails with `JobTimeout` after the
//!   configured deadline, and the domain is left persistent, running,
//!   thawed, without block job, temp files or journal record;
//! * a guest the user paused (`virsh suspend`): backup (the default) and
//!   mirror succeed without quiesce (a paused guest's agent cannot answer),
//!   the guest stays paused the whole time (never resumed by us), and the
//!   image holds the guest's data; with `os_require_quiesce` it fails cleanly
//!   and stays paused;
//! * a freeze that times out (the agent inside the guest is SIGSTOPped):
//!   libvirt's default agent response timeout is "block", so the freeze (and
//!   any thaw queued behind it) waits until the agent answers. The snapshot
//!   still fails with `QuiesceFailed` at `quiesce_timeout` (it waited 24 s
//!   before the fix in quiesce.rs), and once the agent runs again the late
//!   freeze is thawed by the engine's freeze thread: the guest ends thawed.
//!   Measured numbers: docs/snapshot-engine.md.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use libvirt_snapshot::{
    CancelToken, QuiescePolicy, SnapshotEngine, SnapshotError, SnapshotOutcome, SnapshotRequest, SnapshotStrategy,
};
use stack_tests::Guest;
use virt::domain::{DomainPausedReason, DomainState, DomainStateEnum, DomainStateReason, DomainStateReasonEnum};
use virt::enumutil::Enum;

fn request(guest: &Guest, name: &str, strategy: Option<SnapshotStrategy>, required: bool) -> SnapshotRequest {
    SnapshotRequest {
        instance_uuid: guest.uuid().to_string(),
        name: name.into(),
        quiesce: QuiescePolicy { agent_enabled: true, required },
        strategy,
    }
}

/// Running, persistent, thawed, no block job or domain job, nothing left.
fn assert_clean(guest: &Guest, engine: &SnapshotEngine, scratch: &Scratch, state: DomainState) {
    let dom = guest.domain();
    let uuid = guest.uuid().to_string();
    assert_eq!(dom.state().unwrap().0.known(), Some(state));
    assert!(dom.is_persistent().unwrap(), "the domain must stay persistent");
    assert_eq!(engine.hypervisor().block_job(&uuid, "vda").unwrap(), None, "a block job is left");
    assert!(!dom.xml_desc(0).unwrap().contains("<mirror"), "a mirror is left");
    assert_eq!(engine.hypervisor().domain_job_type(&uuid).unwrap(), 0, "a domain job is left");
    scratch.assert_clean();
}

/// O_DIRECT writers rewriting 32 MiB forever (as in stress.rs).
const WRITER: &str = "for n in 1 2; do (while :; do dd if=/dev/zero of=/data/stress$n bs=1M count=32 \
                      conv=notrunc oflag=direct 2>/dev/null; done) </dev/null >/dev/null 2>&1 & echo $! >> /tmp/writer.pids; done";

#[test]
fn a_mirror_that_cannot_converge_times_out_and_leaves_the_guest_clean() {
    require_stack();
    let scratch = Scratch::new("lvs-mirror-timeout-");
    let deadline = Duration::from_secs(5);
    let mut cfg = scratch.config();
    cfg.live_strategy = libvirt_snapshot::LiveStrategy::Mirror;
    // Background mode (not write-blocking) and throttled to 256 KiB/s: with
    // 64 MiB of dirty overlay and a writer at full speed, READY is minutes
    // away at best — the deadline must end it.
    cfg.mirror_write_blocking = false;
    cfg.bandwidth = Some(256 << 10);
    cfg.mirror_ready_timeout = deadline;
    let engine = SnapshotEngine::open(cfg).unwrap_or_else(|e| panic!("engine: {e}"));
    let guest = boot("lvs-mirror-timeout");
    sh(&guest, WRITER);
    std::thread::sleep(Duration::from_secs(2));
    the_ready_deadline_ends_the_mirror(&engine, &guest, deadline);
    assert_clean(&guest, &engine, &scratch, DomainState::Running);
    sh(&guest, "kill $(cat /tmp/writer.pids); true");

    // The same engine, the same guest: a write-blocking mirror converges.
    let mut cfg = engine.config().clone();
    cfg.mirror_write_blocking = true;
    cfg.bandwidth = None;
    cfg.mirror_ready_timeout = Duration::from_secs(120);
    drop(engine);
    let engine = SnapshotEngine::open(cfg).unwrap_or_else(|e| panic!("engine: {e}"));
    let out = engine
        .snapshot_blocking(
            &request(&guest, "converges", Some(SnapshotStrategy::Mirror), true),
            &|_| {},
            &CancelToken::new(),
        )
        .unwrap_or_else(|e| panic!("write-blocking mirror after the timeout: {e}"));
    assert_standalone(out.image.path());
    drop(out);
    assert_clean(&guest, &engine, &scratch, DomainState::Running);
}

/// A mirror of the writing guest fails with JobTimeout at `deadline` (not
/// before, not much after), the guest thawed.
fn the_ready_deadline_ends_the_mirror(engine: &SnapshotEngine, guest: &Guest, deadline: Duration) {
    let before = guest.domain().block_stats("vda").unwrap().wr_bytes;

    let started = Instant::now();
    let res = engine.snapshot_blocking(
        &request(guest, "timeout", Some(SnapshotStrategy::Mirror), true),
        &|_| {},
        &CancelToken::new(),
    );
    let took = started.elapsed();
    let written = guest.domain().block_stats("vda").unwrap().wr_bytes - before;
    eprintln!(
        "MEASURE mirror READY deadline {deadline:?}: failed after {took:?}, guest wrote {} MiB meanwhile",
        written >> 20
    );
    match res {
        Err(SnapshotError::JobTimeout { job, what, waited }) => {
            assert_eq!((job, what), ("block copy", "become ready"));
            assert_eq!(waited, deadline);
        }
        Err(other) => panic!("expected JobTimeout, got {other:?}"),
        Ok(out) => panic!("a throttled background mirror converged: {:?}", out.elapsed),
    }
    assert!(took >= deadline, "gave up before the deadline: {took:?}");
    assert!(took < deadline + Duration::from_secs(30), "the abort took too long: {took:?}");
    assert!(written > 8 << 20, "the guest was not writing: {written} bytes");
    assert_eq!(guest.fsfreeze_status().unwrap(), "thawed");
}

#[test]
fn a_user_paused_guest_is_snapshotted_and_left_paused() {
    require_stack();
    let scratch = Scratch::new("lvs-paused-");
    let engine = scratch.engine();
    let guest = boot("lvs-paused");
    let content = format!("paused {}\n", uuid::Uuid::new_v4());
    sh(&guest, &format!("printf '%s' '{content}' > /data/paused.txt && sync"));
    let out = std::process::Command::new("virsh")
        .args(["-c", stack_tests::LIBVIRT_URI, "suspend", guest.name()])
        .output()
        .unwrap();
    assert!(out.status.success(), "virsh suspend: {}", String::from_utf8_lossy(&out.stderr));
    assert!(paused_by_user(&guest));

    for (strategy, expected) in
        [(None, SnapshotStrategy::Backup), (Some(SnapshotStrategy::Mirror), SnapshotStrategy::Mirror)]
    {
        let (res, left_paused) = snapshot_sampling_state(&engine, &guest, strategy, &format!("paused-{expected:?}"));
        let out = res.unwrap_or_else(|e| panic!("{expected:?} of a paused guest: {e}"));
        eprintln!("MEASURE {expected:?} of a paused guest: {:?}", out.elapsed);
        assert_eq!(out.strategy, expected, "a paused guest gets a live snapshot");
        assert!(out.quiesce.is_none(), "a paused guest's agent cannot freeze");
        assert!(left_paused.is_empty(), "{expected:?}: the guest left the paused state: {left_paused:?}");
        assert!(paused_by_user(&guest), "{expected:?}: the guest must stay paused (user)");
        assert_standalone(out.image.path());
        let got = read_back_replayed(out.image.path(), "/paused.txt", scratch.dir.path());
        assert_eq!(got.as_deref(), Some(content.as_bytes()), "{expected:?}: data lost");
        drop(out);
        assert_clean(&guest, &engine, &scratch, DomainState::Paused);
    }

    // os_require_quiesce on a paused guest: a clean refusal, still paused.
    match engine.snapshot_blocking(&request(&guest, "paused-required", None, true), &|_| {}, &CancelToken::new()) {
        Err(SnapshotError::QuiesceFailed { .. }) => {}
        other => panic!("expected QuiesceFailed, got {other:?}"),
    }
    assert!(paused_by_user(&guest));
    assert_clean(&guest, &engine, &scratch, DomainState::Paused);

    // Resumed by the user, the guest is whole.
    guest.domain().resume().unwrap();
    guest.wait_for_agent(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guest.read_file("/data/paused.txt").unwrap(), content.as_bytes());
}

/// Paused, and by the user (`virsh suspend`), not by us.
fn paused_by_user(guest: &Guest) -> bool {
    let (state, reason) = guest.domain().state().unwrap();
    state.known() == Some(DomainState::Paused)
        && matches!(reason, Enum::Known(DomainStateReason::Paused(Enum::Known(DomainPausedReason::User))))
}

/// A snapshot of `guest` (no quiesce required), with the domain state
/// sampled every 10 ms throughout: the states seen other than paused.
fn snapshot_sampling_state(
    engine: &SnapshotEngine,
    guest: &Guest,
    strategy: Option<SnapshotStrategy>,
    name: &str,
) -> (Result<SnapshotOutcome, SnapshotError>, Vec<(DomainStateEnum, DomainStateReasonEnum)>) {
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Vec::new());
    let res = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let st = guest.domain().state().unwrap();
                if st.0.known() != Some(DomainState::Paused) {
                    seen.lock().unwrap().push(st);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let res = engine.snapshot_blocking(&request(guest, name, strategy, false), &|_| {}, &CancelToken::new());
        stop.store(true, Ordering::SeqCst);
        res
    });
    (res, seen.into_inner().unwrap())
}

#[test]
fn a_freeze_that_times_out_fails_at_the_deadline_and_is_thawed_when_it_lands() {
    require_stack();
    let scratch = Scratch::new("lvs-freeze-timeout-");
    let mut cfg = scratch.config();
    cfg.quiesce_timeout = Duration::from_secs(1);
    let engine = SnapshotEngine::open(cfg).unwrap_or_else(|e| panic!("engine: {e}"));
    let guest = boot("lvs-freeze-timeout");
    // The agent stops answering (SIGSTOP, so the channel stays connected and
    // libvirt waits) for 25 s, starting 2 s from now.
    sh(
        &guest,
        "(sleep 2; kill -STOP $(pidof qemu-ga); sleep 25; kill -CONT $(pidof qemu-ga)) \
         </dev/null >/dev/null 2>&1 &",
    );
    std::thread::sleep(Duration::from_secs(3));

    let started = Instant::now();
    let res = engine.snapshot_blocking(
        &request(&guest, "freeze-timeout", Some(SnapshotStrategy::Backup), true),
        &|_| {},
        &CancelToken::new(),
    );
    let took = started.elapsed();
    eprintln!("MEASURE freeze timeout 1 s with a SIGSTOPped agent: snapshot failed after {took:?}");
    match res {
        Err(SnapshotError::QuiesceFailed { agent_unresponsive: true, message, .. }) => {
            assert!(message.contains("did not freeze within"), "{message}")
        }
        other => panic!("expected a timed-out freeze, got {other:?}"),
    }
    // Bounded by quiesce_timeout, not by libvirt (which blocks on a hung
    // agent until it answers: here for the rest of the agent's 25 s stop).
    assert!(took >= Duration::from_secs(1));
    assert!(took < Duration::from_secs(6), "the caller waited for the agent: {took:?}");
    assert_clean(&guest, &engine, &scratch, DomainState::Running);
    // Once the agent runs again, the pending freeze lands and the freeze
    // thread thaws it right after: the guest must end thawed.
    let resumed = Instant::now();
    let mut last = String::new();
    while resumed.elapsed() < Duration::from_secs(90) {
        match guest.fsfreeze_status() {
            Ok(s) if s == "thawed" => {
                eprintln!(
                    "MEASURE agent answers again and the guest is thawed {:?} after the snapshot failed",
                    started.elapsed() - took
                );
                return;
            }
            Ok(s) => last = s,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the guest did not end thawed: {last}");
}
