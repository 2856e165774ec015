//! Every message of `tests/vectors/nova-34.0.0`, replayed.
//!
//! `conductor-conversation.jsonl` is a real exchange between nova's own
//! compute-side object code and nova-conductor 34.0.0. The test drives this
//! crate through the same steps — ping, service lookup and heartbeat, action
//! events, three `Instance.save`s (the last a lost compare-and-swap),
//! `get_by_uuid`, a fault, a final save — against a transport that checks
//! each request equals the captured one (change lists compared as sets, as
//! Python builds them from sets) and answers with the captured reply. The
//! four captured compute casts are decoded as `Instance`s.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use nova_objects::{
    ConductorApi, ConductorCall, ConductorError, ConductorTransport, EventOutcome, ExpectedTaskState, FaultInfo,
    Instance, InstanceActionEvent, InstanceFault, PowerState, RemoteFailure, RequestContext, Service, TaskState,
    TransportError, VmState,
};
use serde_json::{Map, Value};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/nova-34.0.0")
}

/// The inner oslo message of a captured AMQP body (two JSON layers).
fn inner(record: &Value) -> Map<String, Value> {
    let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["oslo.version"], "2.0");
    serde_json::from_str(body["oslo.message"].as_str().unwrap()).unwrap()
}

fn context_of(msg: &Map<String, Value>) -> RequestContext {
    RequestContext::from_dict(
        msg.iter().filter_map(|(k, v)| k.strip_prefix("_context_").map(|k| (k.to_owned(), v.clone()))).collect(),
    )
}

/// Equality where `nova_object.changes` lists compare as sets.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.get(k).is_some_and(|w| {
                        if k == "nova_object.changes" {
                            let set = |v: &Value| {
                                v.as_array().unwrap().iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
                            };
                            set(v) == set(w)
                        } else {
                            same(v, w)
                        }
                    })
                })
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w)),
        _ => a == b,
    }
}

struct Exchange {
    request: Map<String, Value>,
    expiration: Option<String>,
    reply: Map<String, Value>,
}

/// A conductor that is the recording: checks each call, answers the capture.
struct Replay {
    exchanges: Mutex<VecDeque<Exchange>>,
}

impl ConductorTransport for Replay {
    async fn call(&self, ctx: &RequestContext, call: ConductorCall) -> Result<Value, TransportError> {
        let ex = self.exchanges.lock().unwrap().pop_front().expect("more calls than the capture has");
        let req = &ex.request;
        assert_eq!(call.method, req["method"], "method");
        assert_eq!(
            call.namespace.map(Value::from).unwrap_or(Value::Null),
            req.get("namespace").cloned().unwrap_or(Value::Null)
        );
        assert_eq!(call.version, req["version"]);
        let ours = Value::Object(call.args.clone());
        assert!(same(&ours, &req["args"]), "args differ for {}:\nours: {ours}\nnova: {}", call.method, req["args"]);
        // The conductor finds actions by request id: it must be the request's.
        assert_eq!(ctx.request_id(), req["_context_request_id"].as_str());
        if let Some(timeout) = call.timeout {
            assert_eq!(ex.expiration.as_deref(), Some(timeout.as_millis().to_string().as_str()));
        }
        assert_eq!(ex.reply["ending"], true);
        match ex.reply["failure"].as_str() {
            None => Ok(ex.reply["result"].clone()),
            Some(failure) => {
                let f: Value = serde_json::from_str(failure).unwrap();
                Err(TransportError::Remote(Box::new(RemoteFailure {
                    class: f["class"].as_str().unwrap().into(),
                    module: f["module"].as_str().unwrap().into(),
                    message: f["message"].as_str().unwrap().into(),
                    kwargs: f["kwargs"].as_object().unwrap().clone(),
                })))
            }
        }
    }
}

fn conversation() -> (Replay, RequestContext, Vec<Map<String, Value>>) {
    let text = std::fs::read_to_string(vectors_dir().join("conductor-conversation.jsonl"))
        .expect("tests/vectors/nova-34.0.0 is missing");
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut exchanges = VecDeque::new();
    let mut casts = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let r = &records[i];
        if r["routing_key"] == "conductor" {
            let reply = &records[i + 1];
            assert_eq!(reply["exchange"], "", "replies go to the default exchange");
            let request = inner(r);
            assert_eq!(reply["routing_key"], request["_reply_q"]);
            let reply = inner(reply);
            assert_eq!(reply["_msg_id"], request["_msg_id"]);
            exchanges.push_back(Exchange {
                expiration: r["properties"]["expiration"].as_str().map(str::to_owned),
                request,
                reply,
            });
            i += 2;
        } else {
            casts.push(inner(r));
            i += 1;
        }
    }
    let ctx = context_of(&exchanges[0].request);
    (Replay { exchanges: Mutex::new(exchanges) }, ctx, casts)
}

fn cast_instance(name: &str) -> (Instance, RequestContext) {
    let record: Value = serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(name)).unwrap()).unwrap();
    let msg = inner(&record);
    (Instance::from_primitive(&msg["args"]["instance"]).unwrap(), context_of(&msg))
}

#[tokio::test]
async fn replays_the_real_conductor_conversation() {
    let (replay, ctx, casts) = conversation();
    let api = ConductorApi::new(replay);

    api.ping(&ctx, Some(Duration::from_secs(10))).await.unwrap();

    let mut service = Service::get_by_host_and_binary(&api, &ctx, "cmp1", "nova-compute").await.unwrap().unwrap();
    assert_eq!((service.id(), service.version(), service.report_count()), (Some(2), Some(74), 1));
    service.bump_report_count();
    service.save(&api, &ctx).await.unwrap();
    assert_eq!(service.last_seen_up(), Some("2026-11-22T13:45:03Z"));
    assert!(service.primitive().changes().is_empty());

    let (mut instance, _) = cast_instance("cast-snapshot_instance.json");
    let uuid = instance.uuid().to_owned();
    let event = InstanceActionEvent::compute_event_name("snapshot_instance");
    InstanceActionEvent::event_start(&api, &ctx, &uuid, &event, "cmp1").await.unwrap();

    instance.set_task_state(Some(TaskState::ImageSnapshot));
    instance.save(&api, &ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshotPending))).await.unwrap();
    // The conductor's updates were applied; what it left changed stays changed.
    assert_eq!(instance.field("updated_at").unwrap(), "2026-11-22T13:44:49Z");
    assert_eq!(instance.primitive().changes(), ["flavor"]);

    InstanceActionEvent::event_finish_with_failure(&api, &ctx, &uuid, &event, &EventOutcome::Success).await.unwrap();

    instance.set_task_state(Some(TaskState::ImagePendingUpload));
    instance.save(&api, &ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshot))).await.unwrap();

    instance.set_task_state(Some(TaskState::ImageUploading));
    let err = instance.save(&api, &ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshot))).await.unwrap_err();
    match &err {
        ConductorError::UnexpectedTaskState(c) => {
            assert_eq!(c.instance_uuid, uuid);
            assert_eq!(c.expected["task_state"][0], "image_snapshot");
            assert_eq!(c.actual_task_state(), Some("image_pending_upload"));
        }
        other => panic!("expected UnexpectedTaskState, got {other:?}"),
    }
    assert!(err.is_unexpected_task_state());

    let mut fresh = Instance::get_by_uuid(&api, &ctx, &uuid, &[]).await.unwrap();
    assert_eq!(fresh.task_state().unwrap(), Some(TaskState::ImagePendingUpload));

    let traceback = "Traceback (most recent call last):\n  File \"novaharness.py\", line 132, in conductor_calls\n    raise RuntimeError('harness fault')\nRuntimeError: harness fault\n";
    let info = FaultInfo { code: 500, message: "RuntimeError".into(), traceback: traceback.into() };
    let mut fault = InstanceFault::from_exc(&uuid, "vm", &info);
    fault.create(&api, &ctx).await.unwrap();
    assert_eq!(fault.id(), Some(1));

    fresh.set_task_state(None);
    fresh.save(&api, &ctx, ExpectedTaskState::Any).await.unwrap();
    assert!(api.transport().exchanges.lock().unwrap().is_empty(), "every captured call was made");

    // The two compute casts in the capture decode as instances too.
    let methods: Vec<&str> = casts.iter().map(|c| c["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["unquiesce_instance", "backup_instance"]);
    let backup = Instance::from_primitive(&casts[1]["args"]["instance"]).unwrap();
    assert_eq!(backup.task_state().unwrap(), Some(TaskState::ImageBackup));
}

#[test]
fn compute_casts_decode_with_every_typed_field() {
    for (file, method, task_state) in [
        ("cast-snapshot_instance.json", "snapshot_instance", Some(TaskState::ImageSnapshotPending)),
        ("cast-backup_instance.json", "backup_instance", Some(TaskState::ImageBackup)),
        ("cast-unquiesce_instance.json", "unquiesce_instance", Some(TaskState::ImageBackup)),
        ("call-quiesce_instance.json", "quiesce_instance", None),
    ] {
        let record: Value = serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(file)).unwrap()).unwrap();
        let msg = inner(&record);
        assert_eq!(msg["method"], method);
        let (instance, ctx) = cast_instance(file);
        assert!(ctx.request_id().unwrap().starts_with("req-"), "{file}");
        assert_eq!(ctx.user_id(), Some("u-harness"));
        assert_eq!(instance.task_state().unwrap(), task_state, "{file}");
        assert_eq!(instance.uuid(), "2e2ecf39-53b7-4cc8-a76c-bc41139af391");
        assert_eq!((instance.host(), instance.node()), (Some("cmp1"), Some("cmp1")));
        assert_eq!(instance.vm_state(), Some(VmState::Active));
        assert_eq!(instance.power_state(), Some(PowerState::Running));
        assert_eq!(instance.image_ref(), Some("a025c47d-b206-4622-8701-02c28a668b83"));
        assert_eq!((instance.project_id(), instance.user_id()), (Some("p-harness"), Some("u-harness")));
        assert_eq!((instance.os_type(), instance.kernel_id(), instance.ramdisk_id()), (Some("linux"), None, None));
        assert_eq!(instance.flavor_data().unwrap()["name"], "m1.tiny");
        let meta = instance.image_meta();
        assert!(meta.hw_qemu_guest_agent(), "{file}");
        assert!(!meta.os_require_quiesce());
        assert_eq!((meta.disk_format.as_deref(), meta.container_format.as_deref()), (Some("qcow2"), Some("bare")));
        assert_eq!((meta.min_ram_mb(), meta.min_disk_gb()), (Some(0), Some(1)));
        assert_eq!(meta.base_image_ref(), Some("a025c47d-b206-4622-8701-02c28a668b83"));
        // Verbatim: re-encoding changes nothing, nested versions included.
        assert_eq!(instance.to_primitive(), msg["args"]["instance"], "{file}");
    }
}
