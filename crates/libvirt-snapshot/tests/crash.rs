//! Issue test 6 — the snapshotting process is SIGKILLed in the middle of a
//! backup job and of a mirror job; `recover()` (in another process, from
//! the journal alone) then leaves the domain persistent, running, thawed,
//! without any block job, and no temp file remains.
//!
//! The snapshotting process is this test binary re-executed with
//! `LVS_CHILD_*` set, running only `child_snapshot_process`. The jobs are
//! kept long: the guest's overlay carries 512 MiB of data; the mirror runs
//! with a bandwidth limit, and the backup (libvirt has no speed parameter for
//! backup jobs) is throttled by this test through QMP `block-job-set-speed`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use libvirt_snapshot::{
    CancelToken, JournalRecord, QuiescePolicy, RecoveryAction, SnapshotEngine, SnapshotRequest, SnapshotStrategy, Step,
};
use stack_tests::{Guest, GuestOptions};
use virt::domain::DomainState;

const ENV_UUID: &str = "LVS_CHILD_UUID";
const ENV_DIR: &str = "LVS_CHILD_DIR";
const ENV_STRATEGY: &str = "LVS_CHILD_STRATEGY";

/// Runs only as the child: takes a snapshot that the parent kills.
#[test]
fn child_snapshot_process() {
    let Ok(uuid) = std::env::var(ENV_UUID) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(ENV_DIR).unwrap());
    let strategy = match std::env::var(ENV_STRATEGY).unwrap().as_str() {
        "backup" => SnapshotStrategy::Backup,
        _ => SnapshotStrategy::Mirror,
    };
    let cfg = libvirt_snapshot::EngineConfig {
        connection_uri: stack_tests::LIBVIRT_URI.into(),
        snapshots_directory: dir.join("snapshots"),
        journal_directory: dir.join("journal"),
        // 2 MiB/s: the mirror of 512 MiB would take minutes.
        bandwidth: Some(2 << 20),
        ..Default::default()
    };
    let engine = SnapshotEngine::open(cfg).unwrap();
    let req = SnapshotRequest {
        instance_uuid: uuid,
        name: "killed".into(),
        quiesce: QuiescePolicy { agent_enabled: true, required: true },
        strategy: Some(strategy),
    };
    let out = engine.snapshot_blocking(&req, &|_| {}, &CancelToken::new());
    panic!("the child should have been killed, but the snapshot returned: {out:?}");
}

/// A booted guest whose overlay holds 512 MiB of data beyond its filesystem.
fn big_guest() -> Guest {
    let guest = GuestOptions::new("lvs-crash").define().unwrap_or_else(|e| panic!("{e}"));
    let disk = guest.disk_path();
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("qemu-img").args(["resize", "-q", "-f", "qcow2"]).arg(&disk).arg("768M"));
    run(Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -q -P 0xab 256M 512M"]).arg(&disk));
    guest
}

fn qmp(guest: &Guest, cmd: &str) -> serde_json::Value {
    let reply = guest.domain().qemu_monitor_command(cmd, 0).unwrap_or_else(|e| panic!("QMP {cmd}: {e}"));
    serde_json::from_str(&reply).unwrap()
}

fn block_jobs(guest: &Guest) -> Vec<serde_json::Value> {
    qmp(guest, r#"{"execute":"query-block-jobs"}"#)["return"].as_array().cloned().unwrap_or_default()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_mid_job_then_recover() {
    require_stack();
    let guest = big_guest();
    guest.start().unwrap_or_else(|e| panic!("{e}"));
    guest.wait_for_agent(Duration::from_secs(180)).unwrap_or_else(|e| panic!("{e}"));
    for strategy in ["backup", "mirror"] {
        killed_mid_job_is_recovered(&guest, strategy);
    }
    leftovers_of_other_crash_moments_are_undone(&guest);
}

/// A child process is SIGKILLed while its `strategy` job runs; a fresh
/// engine's recover() aborts the job and leaves the guest as it was.
fn killed_mid_job_is_recovered(guest: &Guest, strategy: &str) {
    let uuid = guest.uuid().to_string();
    let scratch = Scratch::new("lvs-crash-");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_snapshot_process", "--nocapture", "--test-threads=1"])
        .env(ENV_UUID, &uuid)
        .env(ENV_DIR, scratch.dir.path())
        .env(ENV_STRATEGY, strategy)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_the_job_mid_way(guest, strategy);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!scratch.leftovers().is_empty(), "{strategy}: the killed process left its temp dir (as expected)");
    assert!(!scratch.journal_records().is_empty(), "{strategy}: and its journal record");

    // A fresh process would do exactly this at start-up.
    let engine = scratch.engine();
    let report = engine.recover_blocking().unwrap_or_else(|e| panic!("recover: {e}"));
    eprintln!("{strategy}: recovery: {report:?}");
    let aborted = report
        .actions
        .iter()
        .any(|a| matches!(a, RecoveryAction::BackupAborted { .. } | RecoveryAction::MirrorAborted { .. }));
    assert!(aborted, "{strategy}: no job aborted: {report:?}");
    assert!(report.kept.is_empty(), "{strategy}: records kept: {report:?}");
    wait_until("the job to go away", Duration::from_secs(30), || block_jobs(guest).is_empty());
    let dom = guest.domain();
    assert!(dom.is_persistent().unwrap(), "{strategy}: not persistent");
    assert_eq!(dom.state().unwrap().0.known(), Some(DomainState::Running), "{strategy}: not running");
    assert_eq!(guest.fsfreeze_status().unwrap(), "thawed", "{strategy}: frozen");
    assert!(!dom.xml_desc(0).unwrap().contains("<mirror"), "{strategy}: mirror left in the XML");
    assert_eq!(engine.hypervisor().domain_job_type(&uuid).unwrap(), 0, "{strategy}: a domain job is left");
    assert_eq!(engine.hypervisor().block_job(&uuid, "vda").unwrap(), None, "{strategy}: a block job is left");
    assert!(scratch.leftovers().is_empty(), "{strategy}: temp files left: {:?}", scratch.leftovers());
    assert!(scratch.journal_records().is_empty(), "{strategy}: journal left: {:?}", scratch.journal_records());
    sh(guest, "echo still-alive > /data/alive.txt && sync");
}

/// Waits for the child's job (slowing a backup down as soon as it shows),
/// and asserts it is still mid-way when the child is about to be killed.
fn wait_for_the_job_mid_way(guest: &Guest, strategy: &str) {
    wait_until(&format!("the {strategy} job"), Duration::from_secs(60), || {
        let jobs = block_jobs(guest);
        let Some(job) = jobs.first() else {
            return false;
        };
        if strategy == "backup" {
            let device = job["device"].as_str().unwrap().to_owned();
            let cmd = serde_json::json!({"execute": "block-job-set-speed", "arguments": {"device": device, "speed": 1 << 20}});
            qmp(guest, &cmd.to_string());
        }
        true
    });
    std::thread::sleep(Duration::from_millis(800));
    let jobs = block_jobs(guest);
    assert_eq!(jobs.len(), 1, "{strategy}: the job must still run when the process is killed: {jobs:?}");
    assert!(jobs[0]["offset"].as_u64() < jobs[0]["len"].as_u64(), "{strategy}: mid-job: {jobs:?}");
}

/// What a crash at other moments leaves: a guest frozen, paused and made
/// transient, with a record from a dead process. recover() undoes all.
fn leftovers_of_other_crash_moments_are_undone(guest: &Guest) {
    let scratch = Scratch::new("lvs-crash-state-");
    let dom = guest.domain();
    let inactive_secure_xml = dom.xml_desc(2 | 1).unwrap();
    let leftover = scratch.snapshots().join("snapshot-dead");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("x.delta"), b"partial").unwrap();
    guest.fsfreeze().unwrap_or_else(|e| panic!("{e}"));
    dom.suspend().unwrap();
    dom.undefine().unwrap();
    assert!(!dom.is_persistent().unwrap());
    let record = JournalRecord {
        id: "dead".into(),
        pid: dead_pid(),
        process_start: Some(1),
        domain_uuid: guest.uuid().to_string(),
        strategy: "mirror".into(),
        steps: vec![
            Step::TempDir { path: leftover.clone() },
            Step::PersistentDefinition { xml: inactive_secure_xml },
            Step::Quiesce,
            Step::Paused,
        ],
    };
    std::fs::create_dir_all(scratch.journal()).unwrap();
    std::fs::write(scratch.journal().join("dead.json"), serde_json::to_vec(&record).unwrap()).unwrap();
    let engine = scratch.engine();
    let report = engine.recover_blocking().unwrap_or_else(|e| panic!("recover: {e}"));
    eprintln!("state recovery: {report:?}");
    assert!(report.kept.is_empty(), "{report:?}");
    assert!(dom.is_persistent().unwrap(), "definition not restored");
    assert_eq!(dom.state().unwrap().0.known(), Some(DomainState::Running), "not resumed");
    assert_eq!(guest.fsfreeze_status().unwrap(), "thawed", "not thawed");
    assert!(!leftover.exists(), "temp dir not removed");
    assert!(scratch.journal_records().is_empty());
    assert_eq!(sh(guest, "cat /data/alive.txt"), "still-alive\n");
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}
