//! The versioned `instance.snapshot.*` payload:
//! `InstanceActionSnapshotPayload` (nova 34: 1.10), built on
//! `InstancePayload` 1.9 with its nested `FlavorPayload` and `IpPayload`s.
//!
//! Owns: which instance field becomes which payload field, and the
//! coercions nova's payload field types apply.

use serde_json::{json, Map, Value};

use super::{payload_primitive, PayloadOptions};
use crate::context::RequestContext;
use crate::instance::Instance;
use crate::states::PowerState;

/// `InstanceActionSnapshotPayload.VERSION` in nova 34.
pub const SNAPSHOT_PAYLOAD_VERSION: &str = "1.10";
/// `FlavorPayload.VERSION` in nova 34.
pub const FLAVOR_PAYLOAD_VERSION: &str = "1.4";
/// `IpPayload.VERSION` in nova 34.
pub const IP_PAYLOAD_VERSION: &str = "1.0";

/// `InstanceActionSnapshotPayload(context, instance, fault=None,
/// snapshot_image_id)` as a primitive with no changes list (nova resets the
/// payload's changes before emitting).
pub fn instance_action_snapshot_payload(
    ctx: &RequestContext,
    instance: &Instance,
    snapshot_image_id: &str,
    opts: &PayloadOptions,
) -> Value {
    let mut data = instance_payload_data(ctx, instance, opts);
    data.insert("fault".into(), Value::Null);
    data.insert("snapshot_image_id".into(), Value::String(snapshot_image_id.into()));
    payload_primitive("InstanceActionSnapshotPayload", SNAPSHOT_PAYLOAD_VERSION, data)
}

/// `InstancePayload.SCHEMA`: payload field ← instance field, copied as is
/// (strings, ints, and DateTime fields already in nova's `...Z` format).
const INSTANCE_SCHEMA: &[(&str, &str)] = &[
    ("uuid", "uuid"),
    ("user_id", "user_id"),
    ("tenant_id", "project_id"),
    ("reservation_id", "reservation_id"),
    ("display_name", "display_name"),
    ("display_description", "display_description"),
    ("host_name", "hostname"),
    ("host", "host"),
    ("node", "node"),
    ("os_type", "os_type"),
    ("architecture", "architecture"),
    ("availability_zone", "availability_zone"),
    ("image_uuid", "image_ref"),
    ("key_name", "key_name"),
    ("kernel_id", "kernel_id"),
    ("ramdisk_id", "ramdisk_id"),
    ("created_at", "created_at"),
    ("launched_at", "launched_at"),
    ("terminated_at", "terminated_at"),
    ("deleted_at", "deleted_at"),
    ("updated_at", "updated_at"),
    ("state", "vm_state"),
    ("task_state", "task_state"),
    ("progress", "progress"),
];

/// The fields of nova's `InstancePayload.__init__` (version 1.9), in nova's
/// order: the schema's verbatim copies, the fields nova coerces, the nested
/// payloads, the per-request ones.
fn instance_payload_data(ctx: &RequestContext, instance: &Instance, opts: &PayloadOptions) -> Map<String, Value> {
    let mut data = Map::new();
    for (payload_field, instance_field) in INSTANCE_SCHEMA {
        data.insert((*payload_field).into(), instance.field(instance_field).cloned().unwrap_or(Value::Null));
    }
    insert_coerced_fields(&mut data, instance);
    data.insert("flavor".into(), flavor_payload(instance));
    data.insert("ip_addresses".into(), Value::Array(ip_payloads(&instance.network_info())));
    data.insert("block_devices".into(), opts.block_devices.clone().map_or(Value::Null, Value::Array));
    data.insert("shares".into(), opts.shares.clone().map_or(Value::Null, Value::Array));
    insert_initiator_fields(&mut data, ctx);
    let locked_reason = instance.system_metadata().and_then(|s| s.get("locked_reason")).cloned().unwrap_or(Value::Null);
    data.insert("locked_reason".into(), locked_reason);
    data
}

/// The instance fields the payload's field types turn into something else
/// than the instance holds.
fn insert_coerced_fields(data: &mut Map<String, Value>, instance: &Instance) {
    // InstancePowerStateField stores the STATE_MAP name, not the code.
    let power_state = instance.power_state().map_or(Value::Null, |p: PowerState| Value::String(p.name().into()));
    data.insert("power_state".into(), power_state);
    data.insert("metadata".into(), Value::Object(instance.metadata()));
    data.insert("locked".into(), Value::Bool(instance.field("locked").and_then(Value::as_bool).unwrap_or(false)));
    // DiskConfigField coerces the instance's bool to AUTO / MANUAL.
    let auto = instance.field("auto_disk_config").and_then(Value::as_bool).unwrap_or(false);
    data.insert("auto_disk_config".into(), Value::String(if auto { "AUTO" } else { "MANUAL" }.into()));
}

/// Who asked: the request id and the initiating user and project.
fn insert_initiator_fields(data: &mut Map<String, Value>, ctx: &RequestContext) {
    let string = |s: Option<&str>| s.map_or(Value::Null, |s| Value::String(s.into()));
    // nova leaves request_id out for contexts without a user and project
    // (periodic tasks).
    let request_id = match (ctx.project_id(), ctx.user_id()) {
        (Some(_), Some(_)) => string(ctx.request_id()),
        _ => Value::Null,
    };
    data.insert("request_id".into(), request_id);
    data.insert("action_initiator_user".into(), string(ctx.user_id()));
    data.insert("action_initiator_project".into(), string(ctx.project_id()));
}

/// `FlavorPayload(flavor=instance.flavor)`: the schema fields, null when
/// the flavor does not carry them (nova's `populate_schema(set_none=True)`).
fn flavor_payload(instance: &Instance) -> Value {
    const FIELDS: &[&str] = &[
        "flavorid",
        "memory_mb",
        "vcpus",
        "root_gb",
        "ephemeral_gb",
        "name",
        "swap",
        "rxtx_factor",
        "vcpu_weight",
        "disabled",
        "is_public",
        "extra_specs",
        "projects",
        "description",
    ];
    let flavor = instance.flavor_data().cloned().unwrap_or_default();
    let data = FIELDS.iter().map(|f| ((*f).to_owned(), flavor.get(*f).cloned().unwrap_or(Value::Null))).collect();
    payload_primitive("FlavorPayload", FLAVOR_PAYLOAD_VERSION, data)
}

/// `IpPayload.from_network_info`: one entry per fixed IP of every VIF.
fn ip_payloads(network_info: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for vif in network_info {
        for ip in fixed_ips(vif) {
            let address = ip.get("address").cloned().unwrap_or(Value::Null);
            let version = ip.get("version").filter(|v| !v.is_null()).cloned().unwrap_or_else(|| ip_version(&address));
            let mut data = Map::new();
            data.insert("label".into(), vif.pointer("/network/label").cloned().unwrap_or(Value::Null));
            data.insert("mac".into(), vif.get("address").cloned().unwrap_or(Value::Null));
            data.insert("meta".into(), vif.get("meta").cloned().unwrap_or_else(|| json!({})));
            data.insert("port_uuid".into(), vif.get("id").cloned().unwrap_or(Value::Null));
            data.insert("version".into(), version);
            data.insert("address".into(), address);
            data.insert("device_name".into(), vif.get("devname").cloned().unwrap_or(Value::Null));
            out.push(payload_primitive("IpPayload", IP_PAYLOAD_VERSION, data));
        }
    }
    out
}

/// `VIF.fixed_ips()`: every IP of every subnet of the VIF's network.
fn fixed_ips(vif: &Value) -> Vec<&Value> {
    let subnets = vif.pointer("/network/subnets").and_then(Value::as_array);
    subnets.into_iter().flatten().filter_map(|s| s.get("ips").and_then(Value::as_array)).flatten().collect()
}

/// nova's model derives a missing IP version from the address.
fn ip_version(address: &Value) -> Value {
    match address.as_str() {
        Some(a) if a.contains(':') => json!(6),
        Some(_) => json!(4),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_payloads_follow_vif_fixed_ips() {
        let vif = json!({"id": "port-1", "address": "fa:16:3e:4c:2c:30", "devname": "tapport-1",
            "meta": {}, "network": {"label": "private", "subnets": [
                {"ips": [{"address": "192.168.1.3", "type": "fixed", "version": 4}]},
                {"ips": [{"address": "fd00::3", "type": "fixed"}]}]}});
        let ips = ip_payloads(&[vif]);
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[0]["nova_object.data"]["label"], "private");
        assert_eq!(ips[1]["nova_object.data"]["version"], 6);
        assert_eq!(ips[0]["nova_object.version"], "1.0");
    }
}
