//! Issue test 4 — cold snapshots, through the async API: a running guest is
//! paused for the whole copy (its state is sampled from the progress
//! callback) and running, thawed and answering afterwards; a shut-off guest
//! is copied without being started. Both images are standalone and hold the
//! guest's file.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use libvirt_snapshot::{
    CancelToken, FileSink, ImageFormat, Phase, Progress, QuiescePolicy, SnapshotEngine, SnapshotRequest,
    SnapshotStrategy,
};
use stack_tests::Guest;
use virt::domain::DomainState;

#[test]
fn cold_pauses_a_running_guest_and_never_starts_a_shut_off_one() {
    require_stack();
    let scratch = Scratch::new("lvs-cold-");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt.block_on(SnapshotEngine::connect(scratch.config())).unwrap_or_else(|e| panic!("{e}"));
    let guest = boot("lvs-cold");
    sh(&guest, "echo cold-data > /data/cold.txt && sync");

    a_running_guest_is_paused_for_the_copy(&rt, &engine, &guest, &scratch);
    a_panic_in_the_copy_is_undone(&engine, &guest, &scratch);
    the_configured_format_and_compression_are_written(&guest, &scratch);

    sh(&guest, "echo off-data > /data/off.txt && sync");
    guest.destroy().unwrap();
    a_shut_off_guest_is_copied_and_never_started(&rt, &engine, &guest, &scratch);
    a_caller_made_sink_gets_the_view(&engine, &guest, &scratch);
}

/// Running guest: every progress report of the copy sees it paused; it is
/// running, thawed and answering afterwards.
fn a_running_guest_is_paused_for_the_copy(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<SnapshotEngine>,
    guest: &Guest,
    scratch: &Scratch,
) {
    let seen: Arc<Mutex<Vec<(Phase, DomainState)>>> = Arc::default();
    let dom = guest.domain().clone();
    let record = seen.clone();
    let progress = Arc::new(move |p: Progress| {
        let state = dom.state().ok().and_then(|(s, _)| s.known()).unwrap_or(DomainState::NoState);
        record.lock().unwrap().push((p.phase, state));
    });
    let req = SnapshotRequest {
        instance_uuid: guest.uuid().to_string(),
        name: "cold-running".into(),
        quiesce: QuiescePolicy { agent_enabled: true, required: true },
        strategy: Some(SnapshotStrategy::Cold),
    };
    let out = rt
        .block_on(engine.snapshot(req, Some(progress), std::future::pending()))
        .unwrap_or_else(|e| panic!("cold snapshot: {e}"));
    eprintln!("MEASURE Cold running: {:?}, freeze window {:?}", out.elapsed, out.quiesce.map(|w| w.duration));
    assert_eq!(out.strategy, SnapshotStrategy::Cold);
    assert_eq!(out.domain_state, libvirt_snapshot::DomainState::Running);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "no progress was reported");
    assert!(seen.iter().all(|(_, s)| *s == DomainState::Paused), "not paused during the copy: {seen:?}");
    assert_eq!(guest.domain().state().unwrap().0.known(), Some(DomainState::Running), "running again afterwards");
    assert_eq!(guest.fsfreeze_status().unwrap(), "thawed");
    assert_eq!(sh(guest, "cat /data/cold.txt"), "cold-data\n", "the guest still answers");
    assert_standalone(out.image.path());
    let got = read_back_replayed(out.image.path(), "/cold.txt", scratch.dir.path());
    assert_eq!(got.as_deref(), Some(&b"cold-data\n"[..]));
}

/// A panic inside the copy (here: the caller's progress callback, while the
/// guest is frozen and paused) still resumes, thaws and cleans up.
fn a_panic_in_the_copy_is_undone(engine: &SnapshotEngine, guest: &Guest, scratch: &Scratch) {
    let req = SnapshotRequest {
        instance_uuid: guest.uuid().to_string(),
        name: "cold-panic".into(),
        quiesce: QuiescePolicy { agent_enabled: true, required: true },
        strategy: Some(SnapshotStrategy::Cold),
    };
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.snapshot_blocking(&req, &|_| panic!("progress callback panics"), &CancelToken::new())
    }));
    assert!(panicked.is_err(), "the panic must reach the caller");
    assert_eq!(guest.domain().state().unwrap().0.known(), Some(DomainState::Running), "resumed after a panic");
    assert_eq!(guest.fsfreeze_status().unwrap(), "thawed", "thawed after a panic");
    assert!(scratch.leftovers().is_empty(), "temp files left after a panic: {:?}", scratch.leftovers());
    assert!(scratch.journal_records().is_empty(), "journal left after a panic");
}

/// `snapshot_image_format` and `snapshot_compression` decide the output.
fn the_configured_format_and_compression_are_written(guest: &Guest, scratch: &Scratch) {
    for (format, compress) in [(ImageFormat::Raw, false), (ImageFormat::Qcow2, true)] {
        let mut cfg = scratch.config();
        cfg.snapshot_image_format = Some(format);
        cfg.snapshot_compression = compress;
        let other = SnapshotEngine::open(cfg).unwrap();
        let req = SnapshotRequest {
            instance_uuid: guest.uuid().to_string(),
            name: format!("cold-{}", format.as_str()),
            quiesce: QuiescePolicy::default(),
            strategy: Some(SnapshotStrategy::Cold),
        };
        let out = other.snapshot_blocking(&req, &|_| {}, &CancelToken::new()).unwrap_or_else(|e| panic!("{e}"));
        let info = stack_tests::qemu_img_info(out.image.path()).unwrap();
        assert_eq!(info[0]["format"], format.as_str());
        if compress {
            assert_compressed(out.image.path());
        }
        assert_standalone(out.image.path());
        assert_eq!(
            read_back_replayed(out.image.path(), "/cold.txt", scratch.dir.path()).as_deref(),
            Some(&b"cold-data\n"[..])
        );
    }
}

/// `qemu-img check` counts compressed clusters in the qcow2 at `image`.
fn assert_compressed(image: &std::path::Path) {
    let out = std::process::Command::new("qemu-img").args(["check", "--output=json"]).arg(image).output().unwrap();
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(check["compressed-clusters"].as_u64().unwrap_or(0) > 0, "not compressed: {check}");
}

/// Shut-off guest: cold is chosen by its state; it is copied, never started.
fn a_shut_off_guest_is_copied_and_never_started(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<SnapshotEngine>,
    guest: &Guest,
    scratch: &Scratch,
) {
    let req = SnapshotRequest {
        instance_uuid: guest.uuid().to_string(),
        name: "cold-off".into(),
        quiesce: QuiescePolicy { agent_enabled: true, required: false },
        strategy: None,
    };
    let out = rt
        .block_on(engine.snapshot(req, None, std::future::pending()))
        .unwrap_or_else(|e| panic!("shut-off snapshot: {e}"));
    eprintln!("MEASURE Cold shut off: {:?}", out.elapsed);
    assert_eq!(out.strategy, SnapshotStrategy::Cold);
    assert_eq!(out.domain_state, libvirt_snapshot::DomainState::Shutoff);
    assert!(out.quiesce.is_none());
    assert!(!guest.domain().is_active().unwrap(), "a shut-off guest must not be started");
    assert!(guest.domain().is_persistent().unwrap());
    assert_standalone(out.image.path());
    let got = read_back_replayed(out.image.path(), "/off.txt", scratch.dir.path());
    assert_eq!(got.as_deref(), Some(&b"off-data\n"[..]));
}

/// The same view through a caller-made sink writing outside the work
/// directory (the seam a streaming sink plugs into).
fn a_caller_made_sink_gets_the_view(engine: &SnapshotEngine, guest: &Guest, scratch: &Scratch) {
    let elsewhere = scratch.dir.path().join("elsewhere.raw");
    let req = SnapshotRequest {
        instance_uuid: guest.uuid().to_string(),
        name: "cold-sink".into(),
        quiesce: QuiescePolicy::default(),
        strategy: None,
    };
    let target = elsewhere.clone();
    let (written, summary) = engine
        .snapshot_with_sink_blocking(
            &req,
            move |_workdir, _format| FileSink { path: target, format: ImageFormat::Raw, compress: false },
            &|_| {},
            &CancelToken::new(),
        )
        .unwrap_or_else(|e| panic!("sink snapshot: {e}"));
    assert_eq!(written, elsewhere);
    assert_eq!(summary.strategy, SnapshotStrategy::Cold);
    assert_standalone(&written);
    let got = read_back_replayed(&written, "/off.txt", scratch.dir.path());
    assert_eq!(got.as_deref(), Some(&b"off-data\n"[..]));
    assert!(scratch.leftovers().is_empty(), "temp files left: {:?}", scratch.leftovers());
    assert!(scratch.journal_records().is_empty());
}
