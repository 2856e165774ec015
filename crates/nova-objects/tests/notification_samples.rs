//! The versioned payloads against nova's published samples
//! (`doc/notification_samples/instance-snapshot-{start,end}.json` and
//! `compute-exception.json`, copied in `tests/fixtures`): an instance (or a
//! failure) carrying the sample's values must give the sample's payload —
//! same fields, same versions, same values — and the notification's event
//! type, publisher and priority.

use std::path::{Path, PathBuf};

use nova_objects::{
    exception_notifications, snapshot_notifications, ExceptionInfo, Instance, NotificationKind, NotificationPolicy,
    PayloadOptions, Phase, RequestContext,
};
use oslo_config::groups::NotificationFormat;
use serde_json::{json, Map, Value};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notification_samples")
}

/// nova's sample loader: a `$ref` document is the referenced one, deep
/// updated with the keys beside the `$ref`.
fn resolve(value: Value, dir: &Path) -> Value {
    match value {
        Value::Object(mut map) => {
            let base = map.remove("$ref").map(|r| {
                let file = r.as_str().unwrap().trim_end_matches('#').to_owned();
                let path = dir.join(&file);
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                resolve(serde_json::from_str(&text).unwrap(), path.parent().unwrap())
            });
            let resolved: Map<String, Value> = map.into_iter().map(|(k, v)| (k, resolve(v, dir))).collect();
            match base {
                Some(mut base) => {
                    deep_update(&mut base, Value::Object(resolved));
                    base
                }
                None => Value::Object(resolved),
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| resolve(v, dir)).collect()),
        other => other,
    }
}

fn deep_update(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => deep_update(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(samples().join(name)).unwrap();
    resolve(serde_json::from_str(&text).unwrap(), &samples())
}

/// An Instance primitive holding the sample payload's values (the inverse
/// of `InstancePayload.SCHEMA`).
fn instance_from(payload: &Map<String, Value>) -> Instance {
    let p = |k: &str| payload[k].clone();
    let ip = p("ip_addresses")[0]["nova_object.data"].clone();
    let vif = json!([{"id": ip["port_uuid"], "address": ip["mac"], "devname": ip["device_name"], "meta": ip["meta"],
        "network": {"label": ip["label"], "subnets": [{"ips": [{"address": ip["address"], "type": "fixed", "version": ip["version"]}]}]}}]);
    let data = json!({
        "uuid": p("uuid"), "user_id": p("user_id"), "project_id": p("tenant_id"),
        "reservation_id": p("reservation_id"), "display_name": p("display_name"),
        "display_description": p("display_description"), "hostname": p("host_name"), "host": p("host"),
        "node": p("node"), "os_type": p("os_type"), "architecture": p("architecture"),
        "availability_zone": p("availability_zone"), "image_ref": p("image_uuid"), "key_name": p("key_name"),
        "kernel_id": p("kernel_id"), "ramdisk_id": p("ramdisk_id"), "created_at": p("created_at"),
        "launched_at": p("launched_at"), "terminated_at": p("terminated_at"), "deleted_at": p("deleted_at"),
        "updated_at": p("updated_at"), "vm_state": p("state"), "power_state": 1, "task_state": p("task_state"),
        "progress": p("progress"), "metadata": p("metadata"), "locked": p("locked"),
        "auto_disk_config": p("auto_disk_config") == "AUTO", "system_metadata": {},
        "flavor": {"nova_object.name": "Flavor", "nova_object.namespace": "nova", "nova_object.version": "1.2",
                   "nova_object.data": payload["flavor"]["nova_object.data"]},
        "info_cache": {"nova_object.name": "InstanceInfoCache", "nova_object.namespace": "nova",
                       "nova_object.version": "1.5", "nova_object.data": {"network_info": vif.to_string()}},
    });
    Instance::from_primitive(&json!({"nova_object.name": "Instance", "nova_object.namespace": "nova",
        "nova_object.version": "2.8", "nova_object.data": data}))
    .unwrap()
}

fn check(file: &str, phase: Phase) {
    let expected = sample(file);
    let payload = &expected["payload"];
    let data = payload["nova_object.data"].as_object().unwrap();
    let instance = instance_from(data);
    let mut ctx = RequestContext::for_user(
        data["action_initiator_user"].as_str().unwrap(),
        data["action_initiator_project"].as_str().unwrap(),
        &["member"],
        Some("token"),
    );
    ctx.set("request_id", data["request_id"].clone());
    let opts = PayloadOptions {
        block_devices: data["block_devices"].as_array().cloned(),
        shares: data["shares"].as_array().cloned(),
        ..PayloadOptions::default()
    };
    let policy = NotificationPolicy::new(NotificationFormat::Versioned, &["messagingv2".to_owned()]);
    let host = expected["publisher_id"].as_str().unwrap().trim_start_matches("nova-compute:");
    let image_id = data["snapshot_image_id"].as_str().unwrap();
    let sent = snapshot_notifications(&policy, &ctx, &instance, host, phase, image_id, &opts);
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.kind, NotificationKind::Versioned);
    assert_eq!(n.event_type, expected["event_type"]);
    assert_eq!(n.publisher_id, expected["publisher_id"]);
    assert_eq!(n.priority.as_str(), expected["priority"]);
    for key in ["nova_object.name", "nova_object.namespace", "nova_object.version"] {
        assert_eq!(n.payload[key], payload[key], "{file}: {key}");
    }
    let ours = n.payload["nova_object.data"].as_object().unwrap();
    let mut ours_keys: Vec<&String> = ours.keys().collect();
    let mut their_keys: Vec<&String> = data.keys().collect();
    ours_keys.sort();
    their_keys.sort();
    assert_eq!(ours_keys, their_keys, "{file}: field set");
    for (field, value) in data {
        assert_eq!(&ours[field], value, "{file}: field {field}");
    }
    assert_eq!(n.payload, *payload, "{file}: whole payload");
}

#[test]
fn snapshot_start_matches_novas_sample() {
    check("instance-snapshot-start.json", Phase::Start);
}

#[test]
fn snapshot_end_matches_novas_sample() {
    check("instance-snapshot-end.json", Phase::End);
}

/// `compute-exception.json` is nova-api's (`publisher_id` `nova-api:HOST`);
/// ours comes from `nova-compute:HOST`, everything else must match.
#[test]
fn exception_matches_novas_sample() {
    let expected = sample("compute-exception.json");
    let payload = &expected["payload"];
    let data = &payload["nova_object.data"];
    let text = |k: &str| data[k].as_str().unwrap();
    let host = expected["publisher_id"].as_str().unwrap().trim_start_matches("nova-api:");
    let kwargs = Map::new();
    let exc = ExceptionInfo {
        module_name: text("module_name"),
        class: text("exception"),
        message: text("exception_message"),
        kwargs: &kwargs,
        traceback: text("traceback"),
    };
    let policy = NotificationPolicy::new(NotificationFormat::Versioned, &["messagingv2".to_owned()]);
    let sent = exception_notifications(&policy, host, text("function_name"), json!({}), &exc);
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.kind, NotificationKind::Versioned);
    assert_eq!(n.event_type, expected["event_type"]);
    assert_eq!(n.priority.as_str(), expected["priority"]);
    assert_eq!(n.publisher_id, format!("nova-compute:{host}"));
    assert_eq!(n.payload, *payload);
}
