//! Against the REAL nova-conductor 34.0.0 of `deploy/dev/stack up`: rows are
//! created and read back with nova's own objects (`deploy/dev/nova_peer.py`),
//! and every change is made by this crate through the conductor.

mod common;

use std::time::Duration;

use common::{conductor, create_instance, peer, show_instance, unique_host, user_context};
use nova_objects::{
    info_from_instance, instance_action_snapshot_payload, register_service, ConductorError, EventOutcome,
    ExpectedTaskState, FaultInfo, Heartbeat, Instance, InstanceActionEvent, InstanceFault, InstanceList,
    PayloadOptions, PowerState, RequestContext, ServiceOptions, TaskState, SERVICE_VERSION,
};
use serde_json::{json, Value};

fn service_row(host: &str, down_time: u32) -> Value {
    peer(&["service", "--host", host, "--service-down-time", &down_time.to_string()])["service"].clone()
}

/// 1. Registration, heartbeat, down after service_down_time, restart reuses
/// the row, and a stale version is updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_registers_heartbeats_goes_down_and_is_reused() {
    let (_transport, api) = conductor().await;
    let host = unique_host();
    let ctx = RequestContext::admin();
    let opts = ServiceOptions::with_interval(&host, Duration::from_secs(1));

    let service = register_service(&api, &ctx, &opts).await.unwrap();
    let id = service.id().expect("created row has an id");
    let hb = Heartbeat::start(api.clone(), ctx.clone(), service, &opts);
    let mut status = hb.subscribe();
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.beats_ok >= 2)).await.unwrap().unwrap();

    // nova's own Service.get_by_host_and_binary and servicegroup API.
    let row = service_row(&host, 3);
    assert_eq!(row["id"], id);
    assert_eq!(row["binary"], "nova-compute");
    assert_eq!(row["topic"], "compute");
    assert_eq!(row["version"], SERVICE_VERSION);
    assert!(row["report_count"].as_i64().unwrap() >= 2, "{row}");
    assert_eq!(row["up"], true, "{row}");
    assert!(row["last_seen_up"].is_string(), "{row}");

    let stopped = hb.stop().await;
    let count_at_stop = stopped.report_count();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let row = service_row(&host, 3);
    assert_eq!(row["up"], false, "down after service_down_time: {row}");
    assert_eq!(row["report_count"], count_at_stop, "no beat after stop: {row}");

    // An older build left its version behind: re-registering updates it, same row.
    let row = peer(&["set-service-version", "--host", &host, "--version", "73"])["service"].clone();
    assert_eq!(row["version"], 73);
    let service = register_service(&api, &ctx, &opts).await.unwrap();
    assert_eq!(service.id(), Some(id), "restart reuses the row");
    assert_eq!(service.version(), Some(SERVICE_VERSION));
    let hb = Heartbeat::start(api.clone(), ctx.clone(), service, &opts);
    let mut status = hb.subscribe();
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.beats_ok >= 1)).await.unwrap().unwrap();
    let row = service_row(&host, 3);
    assert_eq!(
        (row["id"].clone(), row["version"].clone(), row["up"].clone()),
        (json!(id), json!(SERVICE_VERSION), json!(true))
    );
    assert!(row["report_count"].as_i64().unwrap() > count_at_stop, "count continues: {row}");
    hb.stop().await;
}

/// 2. Instance.save: happy path, compare-and-swap conflicts (including a
/// deleting instance) and a deleted instance, each with its typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_save_compare_and_swap() {
    let (_transport, api) = conductor().await;
    let host = unique_host();
    let uuid = create_instance(&host);
    peer(&["set-task-state", "--uuid", &uuid, "--task-state", "image_snapshot_pending"]);
    let ctx = user_context(&nova_objects::generate_request_id()).elevated();

    let mut inst = Instance::get_by_uuid(&api, &ctx, &uuid, &["system_metadata", "flavor"]).await.unwrap();
    assert_eq!(inst.task_state().unwrap(), Some(TaskState::ImageSnapshotPending));
    assert_eq!(inst.host(), Some(host.as_str()));
    inst.set_task_state(Some(TaskState::ImageSnapshot));
    inst.save(&api, &ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshotPending))).await.unwrap();
    let before = show_instance(&uuid);
    assert_eq!(before["task_state"], "image_snapshot");

    // Only the saved field changes: power_state, nothing else.
    inst.set_power_state(PowerState::Paused);
    inst.save(&api, &ctx, ExpectedTaskState::Any).await.unwrap();
    let after = show_instance(&uuid);
    assert_eq!(after["power_state"], PowerState::Paused.code());
    for field in ["task_state", "vm_state", "display_name", "progress", "locked", "system_metadata", "host"] {
        assert_eq!(after[field], before[field], "{field} must not change");
    }

    // A stale expectation loses the compare-and-swap; the row keeps its state.
    inst.set_task_state(Some(TaskState::ImagePendingUpload));
    let err = inst.save(&api, &ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshotPending))).await.unwrap_err();
    match &err {
        ConductorError::UnexpectedTaskState(c) => {
            assert_eq!(c.instance_uuid, uuid);
            assert_eq!(c.actual_task_state(), Some("image_snapshot"));
        }
        other => panic!("expected UnexpectedTaskState, got {other:?}"),
    }
    assert_eq!(show_instance(&uuid)["task_state"], "image_snapshot");

    // "Must be None" is sent as [None], as nova-api does.
    let mut other = Instance::get_by_uuid(&api, &ctx, &uuid, &[]).await.unwrap();
    other.set_task_state(Some(TaskState::ImageBackup));
    let err = other.save(&api, &ctx, ExpectedTaskState::Is(None)).await.unwrap_err();
    assert!(matches!(err, ConductorError::UnexpectedTaskState(_)), "{err:?}");

    // Being deleted: the subclass, so the snapshot stops quietly.
    peer(&["set-task-state", "--uuid", &uuid, "--task-state", "deleting"]);
    inst.set_task_state(Some(TaskState::ImagePendingUpload));
    let err = inst.save(&api, &ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshot))).await.unwrap_err();
    match &err {
        ConductorError::UnexpectedDeletingTaskState(c) => {
            assert_eq!(c.actual_task_state(), Some("deleting"))
        }
        other => panic!("expected UnexpectedDeletingTaskState, got {other:?}"),
    }
    assert!(err.is_unexpected_task_state());
    assert_eq!(show_instance(&uuid)["task_state"], "deleting");

    // Gone.
    peer(&["delete-instance", "--uuid", &uuid]);
    inst.set_task_state(None);
    let err = inst.save(&api, &ctx, ExpectedTaskState::Any).await.unwrap_err();
    assert!(matches!(err, ConductorError::InstanceNotFound { .. }), "{err:?}");
    let err = Instance::get_by_uuid(&api, &ctx, &uuid, &[]).await.unwrap_err();
    assert!(matches!(&err, ConductorError::InstanceNotFound { instance_id } if *instance_id == uuid), "{err:?}");
}

/// 3. Action events land on the action of the request id, with the result;
/// a request without an action gives InstanceActionNotFound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_events_land_on_the_requests_action() {
    let (_transport, api) = conductor().await;
    let host = unique_host();
    let uuid = create_instance(&host);
    let request_id = nova_objects::generate_request_id();
    peer(&["--request-id", &request_id, "start-action", "--uuid", &uuid, "--action", "createImage"]);
    let ctx = user_context(&request_id);

    let ok = InstanceActionEvent::compute_event_name("snapshot_instance");
    InstanceActionEvent::event_start(&api, &ctx, &uuid, &ok, &host).await.unwrap();
    InstanceActionEvent::event_finish_with_failure(&api, &ctx, &uuid, &ok, &EventOutcome::Success).await.unwrap();
    let bad = InstanceActionEvent::compute_event_name("backup_instance");
    InstanceActionEvent::event_start(&api, &ctx, &uuid, &bad, &host).await.unwrap();
    let failure = EventOutcome::Failure {
        message: "ImageNotFound".into(),
        traceback: "Traceback (most recent call last):\n  boom\n".into(),
    };
    InstanceActionEvent::event_finish_with_failure(&api, &ctx, &uuid, &bad, &failure).await.unwrap();

    let shown = show_instance(&uuid);
    let action =
        shown["actions"].as_array().unwrap().iter().find(|a| a["request_id"] == request_id.as_str()).unwrap().clone();
    assert_eq!(action["action"], "createImage");
    let events = action["events"].as_array().unwrap();
    let find =
        |name: &str| events.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("{name} in {action}")).clone();
    let e = find(&ok);
    assert_eq!(
        (e["result"].clone(), e["host"].clone(), e["finished"].clone()),
        (json!("Success"), json!(host), json!(true))
    );
    assert_eq!(e["traceback"], Value::Null);
    let e = find(&bad);
    assert_eq!((e["result"].clone(), e["finished"].clone()), (json!("Error"), json!(true)));
    assert_eq!(e["traceback"], "Traceback (most recent call last):\n  boom\n");

    let stray = user_context(&nova_objects::generate_request_id());
    let err = InstanceActionEvent::event_start(&api, &stray, &uuid, &ok, &host).await.unwrap_err();
    assert!(
        matches!(&err, ConductorError::InstanceActionNotFound { request_id, instance_uuid }
            if Some(request_id.as_str()) == stray.request_id() && *instance_uuid == uuid),
        "{err:?}"
    );
    assert!(err.to_string().contains("not found"), "{err}");
}

/// 4. Faults land as nova's add_instance_fault_from_exc writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_land_as_nova_writes_them() {
    let (_transport, api) = conductor().await;
    let host = unique_host();
    let uuid = create_instance(&host);
    let ctx = user_context(&nova_objects::generate_request_id()).elevated();

    let traceback = "Traceback (most recent call last):\n  File \"x\", line 1\nRuntimeError: disk full\n";
    let internal = FaultInfo { code: 500, message: "RuntimeError".into(), traceback: traceback.into() };
    InstanceFault::from_exc(&uuid, &host, &internal).create(&api, &ctx).await.unwrap();
    let long = format!("Conflict {}", "é".repeat(200));
    let conflict = FaultInfo { code: 409, message: long.clone(), traceback: traceback.into() };
    let mut fault = InstanceFault::from_exc(&uuid, &host, &conflict);
    fault.create(&api, &ctx).await.unwrap();
    assert!(fault.id().is_some());

    // nova's own exception_to_dict for the same message and code.
    let expected = peer(&["fault-expected", "--message", &long, "--code", "409"]);
    let faults = show_instance(&uuid)["faults"].as_array().unwrap().clone();
    assert_eq!(faults.len(), 2, "{faults:?}");
    let f409 = faults.iter().find(|f| f["code"] == 409).unwrap();
    assert_eq!(f409["message"], expected["message"]);
    assert_eq!(f409["details"], "", "no traceback for non-500 codes");
    assert_eq!(f409["host"], host.as_str());
    let f500 = faults.iter().find(|f| f["code"] == 500).unwrap();
    assert_eq!(
        (f500["message"].clone(), f500["details"].clone(), f500["host"].clone()),
        (json!("RuntimeError"), json!(traceback), json!(host))
    );
}

/// 5b. Snapshot payloads equal the ones nova's own code builds for the same
/// instance (as received over RPC) and the same request, field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_payloads_equal_novas_own() {
    let host = unique_host();
    let uuid = create_instance(&host);
    let ctx = user_context(&nova_objects::generate_request_id());
    let image_id = uuid::Uuid::new_v4().to_string();
    let ctx_json = Value::Object(ctx.to_dict().clone()).to_string();
    let nova = peer(&["snapshot-payloads", "--uuid", &uuid, "--image-id", &image_id, "--context-json", &ctx_json]);
    let instance = Instance::from_primitive(&nova["instance"]).unwrap();
    let opts = PayloadOptions { glance_api_server: Some("http://127.0.0.1:9292".into()), ..PayloadOptions::default() };

    let ours = instance_action_snapshot_payload(&ctx, &instance, &image_id, &opts);
    let theirs = &nova["versioned"];
    for key in ["nova_object.name", "nova_object.namespace", "nova_object.version"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    let (ours_data, theirs_data) =
        (ours["nova_object.data"].as_object().unwrap(), theirs["nova_object.data"].as_object().unwrap());
    for (field, value) in theirs_data {
        assert_eq!(ours_data.get(field), Some(value), "versioned field {field}");
    }
    assert_eq!(ours_data.len(), theirs_data.len(), "same field set");
    assert!(ours.get("nova_object.changes").is_none());

    let legacy = Value::Object(info_from_instance(&ctx, &instance, &opts));
    for (field, value) in nova["legacy"].as_object().unwrap() {
        assert_eq!(legacy.get(field), Some(value), "legacy field {field}");
    }
    assert_eq!(legacy.as_object().unwrap().len(), nova["legacy"].as_object().unwrap().len());
}

/// `InstanceList.get_by_host`: the conductor accepts our manifest and answers
/// with exactly the instances of the host, in the shape we decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_list_get_by_host_returns_the_hosts_instances() {
    let (_transport, api) = conductor().await;
    let host = unique_host();
    let mut created = vec![create_instance(&host), create_instance(&host)];
    let _elsewhere = create_instance(&unique_host());
    peer(&["set-task-state", "--uuid", &created[0], "--task-state", "image_uploading"]);
    let ctx = RequestContext::admin();

    let instances = InstanceList::get_by_host(&api, &ctx, &host).await.unwrap();
    let mut got: Vec<String> = instances.iter().map(|i| i.uuid().to_owned()).collect();
    got.sort();
    created.sort();
    assert_eq!(got, created);
    assert!(instances.iter().all(|i| i.host() == Some(host.as_str())));
    let uploading = instances.iter().filter(|i| i.task_state().unwrap() == Some(TaskState::ImageUploading)).count();
    assert_eq!(uploading, 1);
    assert!(InstanceList::get_by_host(&api, &ctx, &unique_host()).await.unwrap().is_empty());
}
