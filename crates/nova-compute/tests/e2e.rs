//! End to end through real nova 34: nova's own API code (`nova_peer.py`)
//! reserves images, sets task states and casts to our `nova-compute`, which
//! reports through the real nova-conductor; we assert on nova's database,
//! Glance and the image contents. Needs `deploy/dev/stack up`.
//!
//! Each test boots its own TCG guest and runs a service against it; the
//! harness runs them one at a time (`common::stack()` holds the turn) so a
//! 2-core machine is not asked to emulate several guests at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use stack_tests::Guest;

const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Test 1: a live snapshot with each live strategy and a cold one.
#[test]
fn snapshot_each_strategy_through_nova_api() {
    let _lock = stack();
    let guest = Guest::boot("e2e-snap").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let work = tempfile::tempdir().unwrap();
    let cases = [
        ("backup", "[snapshot_engine]\nlive_strategy = backup\n"),
        ("mirror", "[snapshot_engine]\nlive_strategy = mirror\n"),
        ("cold", "[workarounds]\ndisable_libvirt_livesnapshot = True\n"),
    ];
    let mut first = true;
    for (name, extra) in cases {
        let compute = Compute::start(extra);
        if first {
            create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);
            first = false;
        } else {
            // The same domain, now served by this compute host.
            peer(&["purge-instance", "--uuid", &uuid]);
            create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);
        }
        let marker = format!("{name} {}", uuid::Uuid::new_v4());
        guest.sh(&format!("echo '{marker}' > /data/e2e.txt")).unwrap();
        let reply = peer(&["snapshot", "--uuid", &uuid, "--name", &format!("e2e-{name}")]);
        let image = image_id(&reply);
        let report = wait_task_state_none(&uuid, SNAPSHOT_TIMEOUT);
        assert!(report["faults"].as_array().unwrap().is_empty(), "{name}: {report}");
        assert_eq!(event_results(&report, "compute_snapshot_instance"), vec!["Success"], "{name}: {report}");
        let glance = glance_image(&image).expect("image kept");
        assert_eq!(glance["status"], "active", "{name}: {glance}");
        assert_eq!(glance["disk_format"], "qcow2");
        assert_eq!(glance["container_format"], "bare");
        assert_eq!(glance["image_location"], "snapshot");
        assert_eq!(glance["image_state"], "available");
        assert_eq!(glance["owner_id"], "peer-project");
        assert_eq!(glance["os_type"], "linux");
        let (info, content) = file_in_image(&image, "/e2e.txt", work.path());
        assert!(info[0].get("backing-filename").is_none(), "{name}: image not standalone: {info}");
        assert_eq!(content.trim(), marker, "{name}: the guest's file is not in the image");
        let states = saved_task_states(&compute.log(), &uuid);
        let expected = [
            ("Some(\"image_snapshot\")", "Is(Some(ImageSnapshotPending))"),
            ("Some(\"image_snapshot\")", "Any"), // power-state refresh
            ("Some(\"image_pending_upload\")", "Is(Some(ImageSnapshot))"),
            ("Some(\"image_uploading\")", "Is(Some(ImagePendingUpload))"),
            ("Some(\"image_pending_upload\")", "Is(Some(ImageUploading))"),
            ("Some(\"image_uploading\")", "Is(Some(ImagePendingUpload))"),
            ("None", "Is(Some(ImageUploading))"),
        ];
        let got: Vec<(&str, &str)> = states.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(got, expected, "{name}: task-state sequence");
        glance_delete(&image);
    }
    peer(&["purge-instance", "--uuid", &uuid]);
}

/// Test 2 and test 4 (failures): backup rotation; a deleted reserved image;
/// a domain absent from this host.
#[test]
fn backup_rotation_and_failure_semantics() {
    let _lock = stack();
    let guest = Guest::boot("e2e-bak").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let compute = Compute::start("");
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);

    // Backup, rotation 2, three times: the two newest remain.
    let mut made = Vec::new();
    for i in 0..3 {
        let reply = peer(&["backup", "--uuid", &uuid, "--name", &format!("bak-{i}"), "--rotation", "2"]);
        made.push(image_id(&reply));
        let report = wait_task_state_none(&uuid, SNAPSHOT_TIMEOUT);
        assert_eq!(event_results(&report, "compute_backup_instance").last().map(String::as_str), Some("Success"));
        std::thread::sleep(Duration::from_millis(1100)); // distinct created_at
    }
    let left: Vec<String> = glance_list(&format!("instance_uuid={uuid}&image_type=backup"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let mut want = made[1..].to_vec();
    want.sort();
    let mut got = left.clone();
    got.sort();
    assert_eq!(got, want, "rotation 2 keeps the two newest backups");
    for id in &left {
        assert_eq!(glance_image(id).unwrap()["status"], "active");
    }
    // rotation = 0 deletes every backup, the new one included.
    peer(&["backup", "--uuid", &uuid, "--name", "bak-zero", "--rotation", "0"]);
    wait_task_state_none(&uuid, SNAPSHOT_TIMEOUT);
    wait_until(Duration::from_secs(30), "rotation 0 deleted everything", || {
        glance_list(&format!("instance_uuid={uuid}&image_type=backup")).is_empty()
    });

    // The reserved image deleted right after nova-api reserved it: nova's
    // ImageNotFound handling — task state None, no fault, nothing leaked.
    let faults_before = show(&uuid)["faults"].as_array().unwrap().len();
    let reply = peer(&["snapshot", "--uuid", &uuid, "--name", "deleted-early"]);
    let image = image_id(&reply);
    glance_delete(&image);
    let report = wait_task_state_none(&uuid, SNAPSHOT_TIMEOUT);
    wait_until(Duration::from_secs(30), "no image left", || {
        glance_image(&image).is_none_or(|i| i["status"] == "deleted")
    });
    assert_eq!(report["faults"].as_array().unwrap().len(), faults_before, "no fault for ImageNotFound: {report}");

    // A domain absent from this host: the image is deleted and the task
    // state reset (nova would leave image_snapshot behind).
    let ghost = uuid::Uuid::new_v4().to_string();
    create_instance(&ghost, &compute.host, &[]);
    let reply = peer(&["snapshot", "--uuid", &ghost, "--name", "ghost"]);
    let image = image_id(&reply);
    let report = wait_task_state_none(&ghost, SNAPSHOT_TIMEOUT);
    wait_until(Duration::from_secs(30), "ghost image deleted", || glance_image(&image).is_none());
    assert!(report["faults"].as_array().unwrap().is_empty(), "{report}");

    // os_require_quiesce on an image without a working agent in the guest:
    // InstanceQuiesceFailed recorded as a fault (409), image deleted, task
    // state None.
    let noagent = stack_tests::GuestOptions { agent: false, ..stack_tests::GuestOptions::new("e2e-noag") }
        .define()
        .expect("define guest without agent");
    noagent.start().expect("start guest");
    let na = noagent.uuid().to_string();
    create_instance(&na, &compute.host, &["hw_qemu_guest_agent=yes", "os_require_quiesce=yes"]);
    let reply = peer(&["snapshot", "--uuid", &na, "--name", "must-quiesce"]);
    let image = image_id(&reply);
    let report = wait_task_state_none(&na, SNAPSHOT_TIMEOUT);
    wait_until(Duration::from_secs(30), "image deleted", || glance_image(&image).is_none());
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{report}");
    assert_eq!(faults[0]["code"], 409, "{report}");
    assert!(faults[0]["message"].as_str().unwrap().starts_with("Failed to quiesce instance"), "{report}");
    let state = noagent.domain().state().unwrap().0;
    assert!(noagent.domain().is_active().unwrap(), "the guest keeps running: {state:?}");
    for u in [&uuid, &ghost, &na] {
        peer(&["purge-instance", "--uuid", u]);
    }
}

/// Tests 3, 5 and 6: quiesce/unquiesce through nova's rpcapi, unsupported
/// methods, SIGTERM during a snapshot and a restart.
#[test]
fn quiesce_unsupported_and_restart() {
    let _lock = stack();
    let guest = Guest::boot("e2e-q").expect("boot guest");
    let uuid = guest.uuid().to_string();
    // Glance through a proxy, so the SIGTERM below lands while the upload is under way.
    let proxy = GlanceProxy::start("127.0.0.1:9292");
    let cleanup = Cleanup::default();
    let mut compute =
        Compute::start(&format!("[DEFAULT]\ngraceful_shutdown_timeout = 1\n\n{}", glance_conf(&proxy, 1)));
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);

    let r = peer(&["quiesce", "--uuid", &uuid]);
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(guest.fsfreeze_status().unwrap(), "frozen");
    peer(&["unquiesce", "--uuid", &uuid]);
    wait_until(Duration::from_secs(30), "thawed", || guest.fsfreeze_status().unwrap() == "thawed");

    // No agent in the image metadata: QemuGuestAgentNotEnabled reaches nova-api.
    let plain = uuid::Uuid::new_v4().to_string();
    create_instance(&plain, &compute.host, &[]);
    let r = peer(&["quiesce", "--uuid", &plain]);
    // nova-api rebuilds the remote exception as `<Class>_Remote`, a subclass of nova's.
    assert_eq!(r["error"]["class"], "QemuGuestAgentNotEnabled_Remote", "{r}");
    assert!(r["error"]["module"].as_str().unwrap().starts_with("nova.exception"), "{r}");

    // An unsupported call: NoSuchMethod, promptly.
    let started = Instant::now();
    let r = peer(&["rpc", "--uuid", &uuid, "--method", "get_console_output", "--kwargs", "{\"tail_length\": 10}"]);
    // As from a Python server: oslo's dispatcher errors reach nova as RemoteError.
    assert_eq!(r["error"]["class"], "RemoteError", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("NoSuchMethod"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(20), "NoSuchMethod took {:?}", started.elapsed());

    // An unsupported cast after nova-api set a task state: fault + reset.
    peer_ok(&["set-task-state", "--uuid", &uuid, "--task-state", "rebooting"]);
    peer(&[
        "rpc",
        "--uuid",
        &uuid,
        "--method",
        "reboot_instance",
        "--kwargs",
        "{\"block_device_info\": null, \"reboot_type\": \"SOFT\"}",
    ]);
    let report = wait_task_state_none(&uuid, Duration::from_secs(60));
    let faults = report["faults"].as_array().unwrap();
    assert!(
        faults.iter().any(|f| f["message"].as_str().unwrap().contains("reboot_instance is not supported")),
        "{report}"
    );

    // SIGTERM while a snapshot uploads, then a restart: nothing stuck, nothing leaked.
    let image = snapshot_uploading(&uuid, "sigterm", &proxy, &cleanup);
    let offset = compute.log().len();
    let code = compute.stop(); // SIGTERM; graceful_shutdown_timeout = 1 then aborts the snapshot
    assert_eq!(code, Some(0), "clean exit");
    let stop_log = compute.log()[offset..].to_owned();
    assert!(stop_log.contains("Waiting up to 1s for 1 running task(s)"), "{stop_log}");
    compute.restart();
    let report = wait_task_state_none(&uuid, SNAPSHOT_TIMEOUT);
    let img = glance_image(&image);
    assert!(
        img.as_ref().is_none_or(|i| i["status"] == "active"),
        "the image is either complete or deleted: {img:?} {report}"
    );
    assert_eq!(guest.fsfreeze_status().unwrap(), "thawed");
    assert!(guest.domain().is_persistent().unwrap());
    let leftovers: Vec<_> = std::fs::read_dir(compute.dir.join("state/instances/snapshots")).unwrap().collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    if let Some(i) = img {
        glance_delete(i["id"].as_str().unwrap());
    }
    for u in [&uuid, &plain] {
        peer(&["purge-instance", "--uuid", u]);
    }
}
