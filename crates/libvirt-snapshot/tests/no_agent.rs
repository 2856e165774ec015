//! Issue test 5 — `os_require_quiesce` on a guest without an agent channel:
//! the snapshot fails with a typed error and the guest is untouched
//! (running, persistent, no block or domain job, no temp files, no journal
//! record). Without `os_require_quiesce` the missing agent is a logged skip.
//! Also here, on the same guest: cancellation mid-job, a too small
//! `snapshots_directory` (InsufficientSpace before anything starts), and an
//! RBD-backed root disk (refused with RbdNotSupported).

mod common;

use common::*;
use libvirt_snapshot::{
    CancelToken, QuiescePolicy, SnapshotEngine, SnapshotError, SnapshotOutcome, SnapshotRequest, SnapshotStrategy,
};
use stack_tests::{Guest, GuestOptions};
use virt::domain::DomainState;

fn assert_untouched(guest: &Guest, scratch: &Scratch, engine: &SnapshotEngine) {
    let dom = guest.domain();
    let uuid = guest.uuid().to_string();
    assert_eq!(dom.state().unwrap().0.known(), Some(DomainState::Running));
    assert!(dom.is_persistent().unwrap());
    assert_eq!(engine.hypervisor().domain_job_type(&uuid).unwrap(), 0, "a domain job is left");
    assert_eq!(engine.hypervisor().block_job(&uuid, "vda").unwrap(), None, "a block job is left");
    let xml = dom.xml_desc(0).unwrap();
    assert!(!xml.contains("<mirror"), "a block job is left");
    scratch.assert_clean();
}

#[test]
fn required_quiesce_without_agent_fails_cleanly() {
    require_stack();
    let scratch = Scratch::new("lvs-noagent-");
    let engine = scratch.engine();
    let mut opts = GuestOptions::new("lvs-noagent");
    opts.agent = false;
    let guest = opts.define().unwrap_or_else(|e| panic!("{e}"));
    guest.start().unwrap_or_else(|e| panic!("{e}"));

    a_required_quiesce_is_refused_untouched(&engine, &guest, &scratch);
    a_cancelled_job_is_undone(&engine, &guest, &scratch);
    // Not required: the absent agent is skipped and the snapshot succeeds.
    let out = snap(&engine, &guest, QuiescePolicy { agent_enabled: true, required: false }, None)
        .unwrap_or_else(|e| panic!("unquiesced snapshot: {e}"));
    assert!(out.quiesce.is_none());
    assert_standalone(out.image.path());
    drop(out);
    assert_untouched(&guest, &scratch, &engine);
    a_too_small_snapshots_directory_is_refused_up_front(&engine, &guest, &scratch);
    an_rbd_root_disk_is_refused(&engine, &guest, &scratch);
}

/// A snapshot of `guest` with this quiesce policy (and strategy, if forced).
fn snap(
    engine: &SnapshotEngine,
    guest: &Guest,
    quiesce: QuiescePolicy,
    strategy: Option<SnapshotStrategy>,
) -> Result<SnapshotOutcome, SnapshotError> {
    let req = SnapshotRequest { instance_uuid: guest.uuid().to_string(), name: "noagent".into(), quiesce, strategy };
    engine.snapshot_blocking(&req, &|_| {}, &CancelToken::new())
}

/// `os_require_quiesce` with no agent channel (QuiesceFailed) or without
/// `hw_qemu_guest_agent` (nova's QemuGuestAgentNotEnabled): refused, untouched.
fn a_required_quiesce_is_refused_untouched(engine: &SnapshotEngine, guest: &Guest, scratch: &Scratch) {
    let required = QuiescePolicy { agent_enabled: true, required: true };
    for strategy in [None, Some(SnapshotStrategy::Mirror), Some(SnapshotStrategy::Cold)] {
        match snap(engine, guest, required, strategy) {
            Err(SnapshotError::QuiesceFailed { message, .. }) => {
                eprintln!("{strategy:?}: refused: {message}")
            }
            other => panic!("{strategy:?}: expected QuiesceFailed, got {other:?}"),
        }
        assert_untouched(guest, scratch, engine);
    }
    let no_agent = QuiescePolicy { agent_enabled: false, required: true };
    assert!(matches!(snap(engine, guest, no_agent, None), Err(SnapshotError::AgentNotEnabled)));
    assert_untouched(guest, scratch, engine);
}

/// Cancelled mid-job (the token is already set when the job starts): the
/// job is aborted and everything undone.
fn a_cancelled_job_is_undone(engine: &SnapshotEngine, guest: &Guest, scratch: &Scratch) {
    let uuid = guest.uuid().to_string();
    for strategy in [SnapshotStrategy::Backup, SnapshotStrategy::Mirror] {
        let cancel = CancelToken::new();
        cancel.cancel();
        let req = SnapshotRequest {
            instance_uuid: uuid.clone(),
            name: "cancelled".into(),
            quiesce: QuiescePolicy::default(),
            strategy: Some(strategy),
        };
        let res = engine.snapshot_blocking(&req, &|_| {}, &cancel);
        assert!(matches!(res, Err(SnapshotError::Cancelled)), "{strategy:?}: {res:?}");
        let start = std::time::Instant::now();
        while engine.hypervisor().domain_job_type(&uuid).unwrap() != 0 && start.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_untouched(guest, scratch, engine);
    }
}

/// A snapshots_directory on a 1 MiB filesystem: InsufficientSpace before
/// anything starts.
fn a_too_small_snapshots_directory_is_refused_up_front(engine: &SnapshotEngine, guest: &Guest, scratch: &Scratch) {
    let small = Tmpfs::mount(&scratch.dir.path().join("small"), "1m");
    let mut cfg = scratch.config();
    cfg.snapshots_directory = small.0.join("snapshots");
    let tight = SnapshotEngine::open(cfg).unwrap();
    match snap(&tight, guest, QuiescePolicy::default(), None) {
        Err(SnapshotError::InsufficientSpace { needed, available, .. }) => {
            assert!(needed > available);
            eprintln!("refused: {needed} bytes needed, {available} available");
        }
        other => panic!("expected InsufficientSpace, got {other:?}"),
    }
    assert!(
        !small.0.join("snapshots").exists() || std::fs::read_dir(small.0.join("snapshots")).unwrap().next().is_none()
    );
    assert_untouched(guest, scratch, engine);
}

/// An RBD root disk (a defined, never started domain): RbdNotSupported.
fn an_rbd_root_disk_is_refused(engine: &SnapshotEngine, guest: &Guest, scratch: &Scratch) {
    let rbd = RbdDomain::define(guest.connection());
    let req = SnapshotRequest {
        instance_uuid: rbd.uuid.clone(),
        name: "rbd".into(),
        quiesce: QuiescePolicy::default(),
        strategy: None,
    };
    match engine.snapshot_blocking(&req, &|_| {}, &CancelToken::new()) {
        Err(SnapshotError::RbdNotSupported { name }) => assert_eq!(name, "vms/lvs-rbd-disk"),
        other => panic!("expected RbdNotSupported, got {other:?}"),
    }
    assert!(scratch.leftovers().is_empty());
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0711"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A persistent, never started domain whose root disk is in RBD.
struct RbdDomain {
    dom: virt::domain::Domain,
    uuid: String,
}

impl RbdDomain {
    fn define(conn: &virt::connect::Connect) -> Self {
        let name = format!("lvs-rbd-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let xml = format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>\
             <os><type arch='x86_64'>hvm</type></os><devices>\
             <disk type='network' device='disk'><driver name='qemu' type='raw'/>\
             <source protocol='rbd' name='vms/lvs-rbd-disk'><host name='127.0.0.1' port='6789'/></source>\
             <target dev='vda' bus='virtio'/></disk></devices></domain>"
        );
        let dom = conn.define_domain_xml(&xml).unwrap_or_else(|e| panic!("define rbd domain: {e}"));
        let uuid = dom.uuid_string().unwrap();
        RbdDomain { dom, uuid }
    }
}

impl Drop for RbdDomain {
    fn drop(&mut self) {
        let _ = self.dom.undefine();
    }
}
