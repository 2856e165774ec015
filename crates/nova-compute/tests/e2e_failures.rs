//! End to end, failure paths (issue #7), through real nova 34: Glance going
//! away mid-upload (for good, and coming back within `[glance] num_retries`),
//! the instance deleted mid-snapshot, the service SIGKILLed mid-upload and
//! restarted, and the notifications on the wire.
//!
//! Glance is reached through an in-process proxy (`common::GlanceProxy`) in
//! front of the shared Glance: the shared Glance itself is never stopped; the
//! proxy plays the outage (an upload cut after N bytes, then connections
//! closed without an answer), throttles upload bodies and can hold the GET of
//! the reserved image, so every race is driven by observable states, never by
//! sleeps. Needs `deploy/dev/stack up`; one test at a time (`common::stack()`).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use stack_tests::Guest;

/// The guest came out of it untouched: running, thawed, still persistent.
fn assert_guest_intact(guest: &Guest) {
    let state = guest.domain().state().unwrap().0;
    assert!(format!("{state:?}").contains("Running"), "guest not running: {state:?}");
    assert_eq!(guest.fsfreeze_status().unwrap(), "thawed");
    assert!(guest.domain().is_persistent().unwrap(), "guest definition lost");
}

/// Our fault must be the one nova's own code stores for
/// `GlanceConnectionFailed(server, reason)`: same msg_fmt, same code.
fn assert_glance_connection_failed_fault(fault: &Value, proxy: &GlanceProxy) {
    let message = fault["message"].as_str().unwrap();
    let rest = message
        .strip_prefix("Connection to glance host ")
        .unwrap_or_else(|| panic!("not a GlanceConnectionFailed fault: {fault}"));
    let (server, reason) = rest.split_once(" failed: ").unwrap_or_else(|| panic!("{fault}"));
    assert_eq!(server, proxy.url, "the fault names the configured server as nova does: {fault}");
    let kwargs = serde_json::json!({"server": server, "reason": reason}).to_string();
    let nova = peer(&["nova-fault", "--exc-class", "GlanceConnectionFailed", "--kwargs", &kwargs]);
    assert_eq!(fault["code"], nova["code"], "nova's code for GlanceConnectionFailed: {nova}");
    assert_eq!(fault["code"], 500);
    assert_eq!(fault["message"], nova["message"], "nova's message for GlanceConnectionFailed");
    assert!(!fault["details"].as_str().unwrap_or("").is_empty(), "code 500 keeps the traceback: {fault}");
}

/// Test 1a: Glance goes away mid-upload and stays away. nova's outcome:
/// GlanceConnectionFailed recorded as a fault (500), `delete_image_on_error`
/// tries to delete the reserved image but cannot reach Glance (logged, as
/// nova's `compute_utils.delete_image` does), task state None. The image is
/// left exactly as Glance put it back when the client vanished: `queued`,
/// no data, with the snapshot metadata of the PATCH that preceded the upload.
#[test]
fn glance_gone_mid_upload() {
    let _lock = stack();
    let guest = Guest::boot("e2e-gone").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let cleanup = Cleanup::default();
    let proxy = GlanceProxy::start("127.0.0.1:9292");
    *proxy.state.cut_put_after.lock().unwrap() = Some(4 * MIB);
    proxy.state.refuse_after_cut.store(-1, Ordering::SeqCst);
    let compute = Compute::start(&glance_conf(&proxy, 1));
    cleanup.instance(&uuid);
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);

    let started = Instant::now();
    let image = image_id(&peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-glance-gone"]));
    cleanup.image(&image);
    // The client waits up to 120 s for Glance to answer again before it
    // gives up (glance-client REQUEUE_WAIT), then nova's error path runs.
    let report = wait_task_state_none(&uuid, Duration::from_secs(200));
    eprintln!("snapshot failed after {:?}", started.elapsed());
    assert_eq!(proxy.state.cuts.load(Ordering::SeqCst), 1, "the upload was cut");

    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{report}");
    assert_glance_connection_failed_fault(&faults[0], &proxy);
    assert_eq!(report["vm_state"], "active");
    assert_eq!(event_results(&report, "compute_snapshot_instance"), vec!["Success"], "spawned: {report}");

    // delete_image_on_error tried: 1 + num_retries DELETEs, none reached Glance.
    let delete = format!("refused DELETE /v2/images/{image}");
    let requests = proxy.requests();
    assert_eq!(requests.iter().filter(|r| **r == delete).count(), 2, "{requests:?}");
    let log = compute.log();
    assert!(log.contains(&format!("Error while trying to clean up image {image}")), "cleanup failure logged");
    assert!(log.contains("nova.exception.GlanceConnectionFailed"), "failure logged with nova's class");

    // What nova leaves: the image, queued again (Glance saw the client go).
    let img = glance_image(&image).expect("the image is still in Glance: its deletion could not reach Glance");
    assert_eq!(img["status"], "queued", "{img}");
    assert!(img["size"].is_null(), "no data kept: {img}");
    assert_eq!(img["disk_format"], "qcow2", "the metadata PATCH before the upload: {img}");
    assert_eq!(img["image_location"], "snapshot");

    assert!(snapshot_leftovers(&compute).is_empty(), "temp files left: {:?}", snapshot_leftovers(&compute));
    assert_guest_intact(&guest);
}

/// Test 1b: the upload is cut and Glance is unreachable for two more
/// connections, then back, within `[glance] num_retries = 3`: the retry
/// re-sends the image from its first byte and completes it (active, Glance's
/// sha512 = the data's), no fault.
#[test]
fn glance_back_within_retries() {
    let _lock = stack();
    let guest = Guest::boot("e2e-back").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let work = tempfile::tempdir().unwrap();
    let cleanup = Cleanup::default();
    let proxy = GlanceProxy::start("127.0.0.1:9292");
    *proxy.state.cut_put_after.lock().unwrap() = Some(4 * MIB);
    proxy.state.refuse_after_cut.store(2, Ordering::SeqCst);
    let compute = Compute::start(&glance_conf(&proxy, 3));
    cleanup.instance(&uuid);
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);
    let marker = format!("retried {}", uuid::Uuid::new_v4());
    guest.sh(&format!("echo '{marker}' > /data/e2e.txt")).unwrap();

    let image = image_id(&peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-glance-back"]));
    cleanup.image(&image);
    let report = wait_task_state_none(&uuid, Duration::from_secs(100));
    assert!(report["faults"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(proxy.state.cuts.load(Ordering::SeqCst), 1, "the upload was cut");
    let requests = proxy.requests();
    let put = format!("PUT /v2/images/{image}/file");
    assert_eq!(requests.iter().filter(|r| **r == put).count(), 2, "one cut attempt, one retry: {requests:?}");
    assert_eq!(requests.iter().filter(|r| r.starts_with("refused ")).count(), 2, "{requests:?}");
    assert!(!requests.iter().any(|r| r.contains("DELETE")), "nothing deleted: {requests:?}");
    assert!(compute.log().contains("image upload failed; retrying"), "the retry is logged");

    let img = glance_image(&image).expect("image kept");
    assert_eq!(img["status"], "active", "{img}");
    let (size, sha512) = glance_download_sha512(&image, work.path());
    assert_eq!(img["size"].as_u64(), Some(size), "{img}");
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"].as_str(), Some(sha512.as_str()), "Glance's hash is the data's");
    let (info, content) = file_in_image(&image, "/e2e.txt", work.path());
    assert!(info[0].get("backing-filename").is_none(), "standalone: {info}");
    assert_eq!(content.trim(), marker, "the guest's file is in the retried image");
    assert!(snapshot_leftovers(&compute).is_empty(), "temp files left: {:?}", snapshot_leftovers(&compute));
    assert_guest_intact(&guest);
}

/// Test 2: the instance deleted mid-snapshot (nova-api's `_delete`: task
/// state `deleting`, saved with no expected state; the compute's terminate
/// then destroys the row). nova's `_snapshot_instance` catches
/// InstanceNotFound / UnexpectedDeletingTaskStateError: "Instance disappeared
/// during snapshot", the image deleted unless active, no fault, the task
/// state left to the delete.
///
/// a) Deleted (and destroyed) while the snapshot waits for Glance before the
///    copy (the proxy holds the GET of the reserved image): the next task
///    state save raises InstanceNotFound; the image, still queued, is deleted.
/// b) Deleted while the upload runs (throttled): the upload completes, then
///    the final save raises UnexpectedDeletingTaskStateError; the image is
///    active, so nova keeps it; the task state stays `deleting`.
#[test]
fn instance_deleted_mid_snapshot() {
    let _lock = stack();
    let guest = Guest::boot("e2e-del").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let cleanup = Cleanup::default();
    let proxy = GlanceProxy::start("127.0.0.1:9292");
    let compute = Compute::start(&glance_conf(&proxy, 1));
    cleanup.instance(&uuid);
    let disappeared = |c: &Compute| c.log().matches("Instance disappeared during snapshot").count();

    // a) before the copy.
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);
    *proxy.state.hold_image.lock().unwrap() = Some("*".into());
    let image = image_id(&peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-deleted-early"]));
    cleanup.image(&image);
    wait_until(Duration::from_secs(60), "the snapshot reached Glance", || proxy.state.held.load(Ordering::SeqCst) > 0);
    let deleted = peer_ok(&["api-delete", "--uuid", &uuid, "--destroy"]);
    assert_eq!(deleted["deleted"], true, "{deleted}");
    proxy.release();
    wait_until(Duration::from_secs(60), "Instance disappeared during snapshot", || disappeared(&compute) == 1);
    wait_until(Duration::from_secs(30), "the unfinished image deleted", || glance_image(&image).is_none());
    let report = show(&uuid);
    assert!(report["faults"].as_array().unwrap().is_empty(), "no fault: {report}");
    assert_eq!(report["task_state"], "deleting", "the delete owns the task state: {report}");
    assert!(proxy.requests().contains(&format!("DELETE /v2/images/{image}")), "{:?}", proxy.requests());
    assert!(snapshot_leftovers(&compute).is_empty(), "temp files left: {:?}", snapshot_leftovers(&compute));
    assert_guest_intact(&guest);

    // b) during the upload: a fresh row for the same domain.
    peer_ok(&["purge-instance", "--uuid", &uuid]);
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);
    proxy.state.put_rate.store(MIB / 2, Ordering::SeqCst);
    let before = proxy.state.put_bytes.load(Ordering::SeqCst);
    let image = image_id(&peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-deleted-uploading"]));
    cleanup.image(&image);
    wait_until(Duration::from_secs(60), "the upload is under way", || {
        proxy.state.put_bytes.load(Ordering::SeqCst) > before + MIB
    });
    let deleting = peer_ok(&["api-delete", "--uuid", &uuid]);
    assert_eq!(deleting["task_state"], "deleting", "{deleting}");
    let put_when_deleted = proxy.state.put_bytes.load(Ordering::SeqCst) - before;
    proxy.state.put_rate.store(0, Ordering::SeqCst);
    wait_until(Duration::from_secs(90), "Instance disappeared during snapshot", || disappeared(&compute) == 2);
    let img = glance_image(&image).expect("an active image is kept");
    assert_eq!(img["status"], "active", "{img}");
    assert!(
        img["size"].as_u64().unwrap() > put_when_deleted,
        "the delete landed during the upload ({put_when_deleted} of {} bytes sent)",
        img["size"]
    );
    let report = show(&uuid);
    assert!(report["faults"].as_array().unwrap().is_empty(), "no fault: {report}");
    assert_eq!(report["task_state"], "deleting", "never reset over deleting: {report}");
    let log = compute.log();
    // nova's UnexpectedDeletingTaskStateError text, from the conductor.
    let lost = format!(
        "Instance disappeared during snapshot: Conflict updating instance {uuid}. \
         Expected: {{'task_state': ['image_uploading']}}. Actual: {{'task_state': 'deleting'}}"
    );
    assert!(log.contains(&lost), "the final save lost to the delete: {lost}");
    assert!(log.contains(&format!("Instance disappeared during snapshot: instance {uuid} could not be found")));
    assert!(!proxy.requests().contains(&format!("DELETE /v2/images/{image}")), "active image not deleted");
    assert!(snapshot_leftovers(&compute).is_empty(), "temp files left: {:?}", snapshot_leftovers(&compute));
    assert_guest_intact(&guest);
    peer_ok(&["api-delete", "--uuid", &uuid, "--destroy"]);
}

/// Drains `queue` until `want` event types have arrived (bounded).
fn wait_notifications(queue: &str, got: &mut Vec<Value>, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = peer(&["drain-notifications", "--queue", queue]);
        got.extend(r["messages"].as_array().cloned().unwrap_or_default());
        if want.iter().all(|w| got.iter().any(|m| m["event_type"] == *w)) {
            return;
        }
        let types: Vec<&Value> = got.iter().map(|m| &m["event_type"]).collect();
        assert!(Instant::now() < deadline, "{queue}: waiting for {want:?}, got {types:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn one<'a>(messages: &'a [Value], event_type: &str) -> &'a Value {
    let found: Vec<&Value> = messages.iter().filter(|m| m["event_type"] == event_type).collect();
    assert_eq!(found.len(), 1, "exactly one {event_type}: {messages:?}");
    found[0]
}

/// Test 3: notifications on the wire, read from the broker. Success: legacy
/// `compute.instance.snapshot.start/.end` (publisher compute.HOST, on
/// `<topic>.info`) and versioned `instance.snapshot.start/.end` (publisher
/// nova-compute:HOST, InstanceActionSnapshotPayload 1.10 with
/// snapshot_image_id). Failure (Glance unreachable): `wrap_exception`'s
/// legacy `_snapshot_instance` and versioned `compute.exception` at ERROR.
#[test]
fn snapshot_notifications_on_the_wire() {
    let _lock = stack();
    let guest = Guest::boot("e2e-notif").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let cleanup = Cleanup::default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (legacy, versioned) = (format!("t_{id}"), format!("v_{id}"));
    for q in [&legacy, &versioned] {
        cleanup.queue(&format!("{q}.info"));
        cleanup.queue(&format!("{q}.error"));
    }
    let proxy = GlanceProxy::start("127.0.0.1:9292");
    let compute = Compute::start(&format!(
        "{}\n[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = {legacy}\n\n\
         [notifications]\nnotification_format = both\nversioned_notifications_topics = {versioned}\n",
        glance_conf(&proxy, 1)
    ));
    let host = compute.host.clone();
    cleanup.instance(&uuid);
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);

    // Success.
    let reply = peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-notify"]);
    let image = image_id(&reply);
    cleanup.image(&image);
    let report = wait_task_state_none(&uuid, Duration::from_secs(120));
    assert!(report["faults"].as_array().unwrap().is_empty(), "{report}");
    let mut info = Vec::new();
    wait_notifications(
        &format!("{legacy}.info"),
        &mut info,
        &["compute.instance.snapshot.start", "compute.instance.snapshot.end"],
    );
    for phase in ["start", "end"] {
        let m = one(&info, &format!("compute.instance.snapshot.{phase}"));
        assert_eq!(m["publisher_id"], format!("compute.{host}"), "{m}");
        assert_eq!(m["priority"], "INFO");
        assert_eq!(m["_context_request_id"], reply["request_id"], "nova-api's request id: {m}");
        assert_eq!(m["payload"]["instance_id"], uuid.as_str());
        assert_eq!(m["payload"]["tenant_id"], "peer-project");
        assert_eq!(m["payload"]["host"], host.as_str());
        assert_eq!(m["payload"]["state"], "active");
    }
    let mut vinfo = Vec::new();
    wait_notifications(&format!("{versioned}.info"), &mut vinfo, &["instance.snapshot.start", "instance.snapshot.end"]);
    for phase in ["start", "end"] {
        let m = one(&vinfo, &format!("instance.snapshot.{phase}"));
        assert_eq!(m["publisher_id"], format!("nova-compute:{host}"), "{m}");
        assert_eq!(m["priority"], "INFO");
        let p = &m["payload"];
        assert_eq!(p["nova_object.name"], "InstanceActionSnapshotPayload", "{m}");
        assert_eq!(p["nova_object.version"], "1.10");
        assert_eq!(p["nova_object.data"]["snapshot_image_id"], image.as_str());
        assert_eq!(p["nova_object.data"]["uuid"], uuid.as_str());
        assert!(p["nova_object.data"]["fault"].is_null(), "{m}");
        if phase == "start" {
            assert_eq!(p["nova_object.data"]["task_state"], "image_snapshot", "{m}");
        } else {
            assert!(p["nova_object.data"]["task_state"].is_null(), "{m}");
        }
    }

    // Failure: Glance unreachable from the first call of the snapshot.
    proxy.state.refuse.store(-1, Ordering::SeqCst);
    let reply = peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-notify-fail"]);
    let failed = image_id(&reply);
    cleanup.image(&failed);
    let report = wait_task_state_none(&uuid, Duration::from_secs(120));
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{report}");
    assert_glance_connection_failed_fault(&faults[0], &proxy);
    let mut errors = Vec::new();
    wait_notifications(&format!("{legacy}.error"), &mut errors, &["_snapshot_instance"]);
    let m = one(&errors, "_snapshot_instance");
    assert_eq!(m["publisher_id"], format!("compute.{host}"), "{m}");
    assert_eq!(m["priority"], "ERROR");
    assert_eq!(m["_context_request_id"], reply["request_id"], "{m}");
    assert_eq!(m["payload"]["args"]["image_id"], failed.as_str(), "{m}");
    assert!(m["payload"].get("exception").is_some(), "{m}");
    let mut verrors = Vec::new();
    wait_notifications(&format!("{versioned}.error"), &mut verrors, &["compute.exception"]);
    let m = one(&verrors, "compute.exception");
    assert_eq!(m["publisher_id"], format!("nova-compute:{host}"), "{m}");
    assert_eq!(m["priority"], "ERROR");
    let data = &m["payload"]["nova_object.data"];
    assert_eq!(m["payload"]["nova_object.name"], "ExceptionPayload", "{m}");
    assert_eq!(data["function_name"], "_snapshot_instance", "{m}");
    assert_eq!(data["module_name"], "nova.compute.manager", "{m}");
    assert_eq!(data["exception"], "GlanceConnectionFailed", "{m}");
    assert_eq!(data["exception_message"], faults[0]["message"], "{m}");
    // The failed snapshot started (start notifications) but never ended.
    wait_notifications(&format!("{legacy}.info"), &mut info, &["compute.instance.snapshot.start"]);
    let starts = info.iter().filter(|m| m["event_type"] == "compute.instance.snapshot.start").count();
    let ends = info.iter().filter(|m| m["event_type"] == "compute.instance.snapshot.end").count();
    assert_eq!((starts, ends), (2, 1), "{info:?}");
    assert_guest_intact(&guest);
}

/// SIGKILL in the middle of an upload (the OOM killer, `docker kill`), then
/// a restart on the same host and state directory. Nothing ran on the way
/// out, so the kill leaves the instance in `image_uploading`, the reserved
/// image unfinished and the snapshot's temp file on disk; start-up recovery
/// must reset the task state (nova's `_init_instance`), delete the
/// unfinished image (nova leaves it `queued` for good) and the temp file,
/// and the guest must be running, thawed and still defined.
#[test]
fn sigkill_mid_upload_then_restart() {
    let _lock = stack();
    let guest = Guest::boot("e2e-kill").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let cleanup = Cleanup::default();
    let proxy = GlanceProxy::start("127.0.0.1:9292");
    let mut compute = Compute::start(&glance_conf(&proxy, 1));
    cleanup.instance(&uuid);
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);
    guest.sh("echo before-kill > /data/kill.txt && sync").unwrap();

    let image = snapshot_uploading(&uuid, "e2e-killed", &proxy, &cleanup);
    compute.kill();

    // What the kill left: the premise of the recovery below.
    let report = show(&uuid);
    assert_eq!(report["task_state"], "image_uploading", "{report}");
    assert!(!snapshot_leftovers(&compute).is_empty(), "the snapshot's temp file was left behind");
    proxy.state.put_rate.store(0, Ordering::SeqCst);
    wait_until(Duration::from_secs(30), "Glance saw the upload end", || {
        glance_image(&image).is_some_and(|i| i["status"] == "queued")
    });

    compute.restart();
    let log = compute.log();
    assert!(
        log.contains("Instance found in task state image_uploading at start-up: resetting it"),
        "recovery logged the reset"
    );
    assert!(log.contains("1 instances reset, 1 images deleted"), "recovery summary");
    let report = show(&uuid);
    assert_eq!(report["task_state"], Value::Null, "{report}");
    assert_eq!(report["vm_state"], "active", "{report}");
    assert!(report["faults"].as_array().unwrap().is_empty(), "no fault, as nova's _init_instance: {report}");
    assert!(glance_image(&image).is_none(), "the unfinished image is deleted");
    assert!(snapshot_leftovers(&compute).is_empty(), "temp files left: {:?}", snapshot_leftovers(&compute));
    assert_guest_intact(&guest);

    // The restarted service snapshots the same guest as if nothing happened.
    let image = image_id(&peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-after-kill"]));
    cleanup.image(&image);
    let report = wait_task_state_none(&uuid, Duration::from_secs(120));
    assert!(report["faults"].as_array().unwrap().is_empty(), "{report}");
    let img = glance_image(&image).expect("the new snapshot");
    assert_eq!(img["status"], "active", "{img}");
    let work = tempfile::tempdir().unwrap();
    let (_, content) = file_in_image(&image, "/kill.txt", work.path());
    assert_eq!(content, "before-kill\n");
}

/// RabbitMQ goes away in the middle of an upload (`rabbitmqctl stop_app`,
/// as a broker restart or a Kolla rabbitmq container restart) and comes back
/// a few seconds later. The upload does not need the broker; the final task
/// state save and the action event do, and our service as well as the real
/// nova-conductor reconnect by themselves: the snapshot completes, no fault,
/// no task state left behind, and the service serves the next snapshot.
#[test]
fn broker_restart_mid_upload() {
    let _lock = stack_owning_broker();
    let guest = Guest::boot("e2e-broker").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let cleanup = Cleanup::default();
    let proxy = GlanceProxy::start("127.0.0.1:9292");
    let compute = Compute::start(&format!(
        "{}\n[oslo_messaging_rabbit]\nrabbit_retry_interval = 1\nrabbit_retry_backoff = 1\nrabbit_interval_max = 2\n",
        glance_conf(&proxy, 1)
    ));
    cleanup.instance(&uuid);
    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);
    guest.sh("echo across-the-outage > /data/broker.txt").unwrap();

    let image = snapshot_uploading(&uuid, "e2e-broker-restart", &proxy, &cleanup);
    let offset = compute.log().len();
    {
        let _back = BrokerBack;
        rabbitmqctl(&["stop_app"]);
        std::thread::sleep(Duration::from_secs(5));
    }
    proxy.state.put_rate.store(0, Ordering::SeqCst);

    let report = wait_task_state_none(&uuid, Duration::from_secs(240));
    assert!(report["faults"].as_array().unwrap().is_empty(), "no fault: {report}");
    assert_eq!(event_results(&report, "compute_snapshot_instance"), vec!["Success"], "{report}");
    let img = glance_image(&image).expect("the snapshot is kept");
    assert_eq!(img["status"], "active", "{img}");
    let work = tempfile::tempdir().unwrap();
    let (_, content) = file_in_image(&image, "/broker.txt", work.path());
    assert_eq!(content, "across-the-outage\n");
    let states = saved_task_states(&compute.log(), &uuid);
    let last = states.last().map(|(state, expected)| (state.as_str(), expected.as_str()));
    assert_eq!(last, Some(("None", "Is(Some(ImageUploading))")), "{states:?}");
    let log = compute.log()[offset..].to_owned();
    assert!(log.contains("connection to the AMQP server was lost"), "the service saw the broker go: {log}");
    assert!(log.contains("reconnected to AMQP server"), "and reconnected by itself: {log}");
    assert!(snapshot_leftovers(&compute).is_empty(), "temp files left: {:?}", snapshot_leftovers(&compute));
    assert_guest_intact(&guest);

    // Still consuming from compute.<host> after the restart.
    let image = image_id(&peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-after-broker"]));
    cleanup.image(&image);
    let report = wait_task_state_none(&uuid, Duration::from_secs(120));
    assert!(report["faults"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(glance_image(&image).expect("second snapshot")["status"], "active");
}
