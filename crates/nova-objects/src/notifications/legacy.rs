//! The legacy `compute.instance.snapshot.*` payload, nova's
//! `notifications.info_from_instance`: a plain dict with Python's
//! renderings of dates and empty values kept, because legacy consumers
//! parse them.

use serde_json::{json, Map, Value};

use super::PayloadOptions;
use crate::context::RequestContext;
use crate::instance::Instance;

/// `notifications.info_from_instance(context, instance, None,
/// populate_image_ref_url=True)`: the legacy payload, its keys in nova's
/// order.
pub fn info_from_instance(ctx: &RequestContext, instance: &Instance, opts: &PayloadOptions) -> Map<String, Value> {
    let _ = ctx; // nova reads the context only to reach Glance's catalog entry.
    let mut info = Map::new();
    copy_fields(&mut info, instance, IDENTITY_FIELDS);
    insert_flavor_fields(&mut info, instance);
    copy_fields(&mut info, instance, &[("host", "host"), ("node", "node"), ("availability_zone", "availability_zone")]);
    info.insert("cell_name".into(), Value::String(null_safe_str(instance.field("cell_name"))));
    insert_dates(&mut info, instance);
    info.insert("image_ref_url".into(), image_ref_url(instance, opts));
    copy_fields(
        &mut info,
        instance,
        &[("os_type", "os_type"), ("kernel_id", "kernel_id"), ("ramdisk_id", "ramdisk_id")],
    );
    insert_states(&mut info, instance);
    copy_fields(&mut info, instance, &[("access_ip_v4", "access_ip_v4"), ("access_ip_v6", "access_ip_v6")]);
    info.insert("image_meta".into(), Value::Object(legacy_image_meta(instance)));
    info.insert("metadata".into(), Value::Object(instance.metadata()));
    info
}

/// Who owns the instance and what it is called: payload key ← instance field.
const IDENTITY_FIELDS: &[(&str, &str)] = &[
    ("tenant_id", "project_id"),
    ("user_id", "user_id"),
    ("instance_id", "uuid"),
    ("display_name", "display_name"),
    ("reservation_id", "reservation_id"),
    ("hostname", "hostname"),
];

/// Copies instance fields verbatim (null when the instance lacks them).
fn copy_fields(info: &mut Map<String, Value>, instance: &Instance, fields: &[(&str, &str)]) {
    for (key, field) in fields {
        info.insert((*key).into(), instance.field(field).cloned().unwrap_or(Value::Null));
    }
}

/// The flavor's name, ids and sizes (0 when absent), with `architecture`
/// where nova puts it, between the ids and the sizes.
fn insert_flavor_fields(info: &mut Map<String, Value>, instance: &Instance) {
    let flavor = instance.flavor_data().cloned().unwrap_or_default();
    let flavor_int = |f: &str| flavor.get(f).and_then(Value::as_i64).unwrap_or(0);
    info.insert("instance_type".into(), flavor.get("name").cloned().unwrap_or_else(|| json!("")));
    copy_fields(info, instance, &[("instance_type_id", "instance_type_id")]);
    info.insert("instance_flavor_id".into(), flavor.get("flavorid").cloned().unwrap_or_else(|| json!("")));
    copy_fields(info, instance, &[("architecture", "architecture")]);
    info.insert("memory_mb".into(), json!(flavor_int("memory_mb")));
    info.insert("disk_gb".into(), json!(flavor_int("root_gb") + flavor_int("ephemeral_gb")));
    info.insert("vcpus".into(), json!(flavor_int("vcpus")));
    info.insert("root_gb".into(), json!(flavor_int("root_gb")));
    info.insert("ephemeral_gb".into(), json!(flavor_int("ephemeral_gb")));
}

/// `created_at` as `str(datetime)`, the others as `null_safe_isotime`.
fn insert_dates(info: &mut Map<String, Value>, instance: &Instance) {
    info.insert("created_at".into(), instance.field("created_at").map_or(json!("None"), python_str_datetime));
    for field in ["terminated_at", "deleted_at", "launched_at"] {
        info.insert(field.into(), json!(null_safe_isotime(instance.field(field))));
    }
}

/// `<glance endpoint>/images/<image>`, or nova's fallback, the bare image id.
fn image_ref_url(instance: &Instance, opts: &PayloadOptions) -> Value {
    match (&opts.glance_api_server, instance.image_ref()) {
        (Some(server), Some(image)) => Value::String(format!("{}/images/{image}", server.trim_end_matches('/'))),
        (None, Some(image)) => Value::String(image.into()),
        (_, None) => Value::Null,
    }
}

/// vm state, task state (as `state_description`) and progress.
fn insert_states(info: &mut Map<String, Value>, instance: &Instance) {
    copy_fields(info, instance, &[("state", "vm_state")]);
    info.insert("state_description".into(), Value::String(null_safe_str(instance.field("task_state"))));
    // Legacy quirk kept for consumers: no progress is '' rather than null.
    let progress = instance.field("progress").and_then(Value::as_i64).filter(|p| *p != 0);
    info.insert("progress".into(), progress.map_or(json!(""), Value::from));
}

/// `notifications.image_meta`: the `image_*` system_metadata keys, prefix
/// stripped (unlike `ImageMeta`, nothing is skipped or moved).
fn legacy_image_meta(instance: &Instance) -> Map<String, Value> {
    let sysmeta = instance.system_metadata().cloned().unwrap_or_default();
    sysmeta.into_iter().filter_map(|(k, v)| k.strip_prefix("image_").map(|k| (k.to_owned(), v))).collect()
}

/// `null_safe_str`: `str(s) if s else ''`.
fn null_safe_str(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(Value::Bool(false)) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `null_safe_isotime`: a datetime as `%Y-%m-%dT%H:%M:%S.%f`, else ''.
fn null_safe_isotime(value: Option<&Value>) -> String {
    match value.and_then(Value::as_str) {
        Some(s) => {
            let base = s.trim_end_matches('Z');
            if base.contains('.') {
                base.to_owned()
            } else {
                format!("{base}.000000")
            }
        }
        None => String::new(),
    }
}

/// `str(datetime)` of an aware UTC datetime: `2026-11-22 13:44:46+00:00`.
fn python_str_datetime(value: &Value) -> Value {
    match value.as_str() {
        Some(s) => Value::String(format!("{}+00:00", s.trim_end_matches('Z').replacen('T', " ", 1))),
        None => Value::String("None".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_datetime_renderings() {
        assert_eq!(python_str_datetime(&json!("2026-11-22T13:44:46Z")), json!("2026-11-22 13:44:46+00:00"));
        assert_eq!(null_safe_isotime(Some(&json!("2026-11-22T13:44:46Z"))), "2026-11-22T13:44:46.000000");
        assert_eq!(null_safe_isotime(Some(&Value::Null)), "");
    }

    #[test]
    fn keys_come_in_novas_order_with_its_renderings() {
        let instance = Instance::from_primitive(&json!({"nova_object.name": "Instance",
            "nova_object.namespace": "nova", "nova_object.version": "2.8", "nova_object.data": {
                "uuid": "u1", "project_id": "p1", "image_ref": "img", "created_at": "2026-11-22T13:44:46Z",
                "progress": 0, "system_metadata": {"image_min_ram": "0", "owner_user_name": "x"},
                "flavor": {"nova_object.name": "Flavor", "nova_object.namespace": "nova",
                    "nova_object.version": "1.2", "nova_object.data": {"name": "m1", "root_gb": 1, "ephemeral_gb": 2}}}}))
        .unwrap();
        let opts =
            PayloadOptions { glance_api_server: Some("http://glance:9292/".into()), ..PayloadOptions::default() };
        let info = info_from_instance(&RequestContext::admin(), &instance, &opts);
        let keys: Vec<&str> = info.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "tenant_id",
                "user_id",
                "instance_id",
                "display_name",
                "reservation_id",
                "hostname",
                "instance_type",
                "instance_type_id",
                "instance_flavor_id",
                "architecture",
                "memory_mb",
                "disk_gb",
                "vcpus",
                "root_gb",
                "ephemeral_gb",
                "host",
                "node",
                "availability_zone",
                "cell_name",
                "created_at",
                "terminated_at",
                "deleted_at",
                "launched_at",
                "image_ref_url",
                "os_type",
                "kernel_id",
                "ramdisk_id",
                "state",
                "state_description",
                "progress",
                "access_ip_v4",
                "access_ip_v6",
                "image_meta",
                "metadata",
            ]
        );
        assert_eq!(info["tenant_id"], "p1");
        assert_eq!(info["instance_type"], "m1");
        assert_eq!(info["disk_gb"], 3);
        assert_eq!(info["created_at"], "2026-11-22 13:44:46+00:00");
        assert_eq!(info["launched_at"], "");
        assert_eq!(info["image_ref_url"], "http://glance:9292/images/img");
        assert_eq!(info["progress"], "");
        assert_eq!(info["cell_name"], "");
        assert_eq!(Value::Object(info["image_meta"].as_object().unwrap().clone()), json!({"min_ram": "0"}));
    }
}
