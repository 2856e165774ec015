//! The snapshot notifications nova-compute emits: versioned
//! `instance.snapshot.start|end` (`InstanceActionSnapshotPayload` 1.10,
//! publisher `nova-compute:HOST`) and legacy `compute.instance.snapshot.*`
//! (`info_from_instance`, publisher `compute.HOST`), chosen by
//! `[notifications] notification_format` and sent only when a notification
//! driver is configured.
//!
//! Owns: the payloads, field by field as nova builds them, and which
//! notifications a phase produces. Must not know: the envelope, the topics'
//! exchanges or the broker — a `NotificationSink` (oslo-messaging's
//! notifier) sends them, with the context redacted.

use std::future::Future;

use oslo_config::groups::NotificationFormat;
use serde_json::{json, Map, Value};
use tracing::warn;

use crate::context::RequestContext;
use crate::instance::Instance;
use crate::states::PowerState;

/// `InstanceActionSnapshotPayload.VERSION` in nova 34.
pub const SNAPSHOT_PAYLOAD_VERSION: &str = "1.10";
/// `FlavorPayload.VERSION` in nova 34.
pub const FLAVOR_PAYLOAD_VERSION: &str = "1.4";
/// `IpPayload.VERSION` in nova 34.
pub const IP_PAYLOAD_VERSION: &str = "1.0";

/// Which notification families are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPolicy {
    /// Legacy (unversioned) notifications on `[oslo_messaging_notifications] topics`.
    pub legacy: bool,
    /// Versioned notifications on `[notifications] versioned_notifications_topics`.
    pub versioned: bool,
}

impl NotificationPolicy {
    /// nova's `rpc.init`: the format picks the families; a driver list that
    /// is empty or only `noop` disables both (oslo's notifier is then a no-op).
    pub fn new(format: NotificationFormat, drivers: &[String]) -> Self {
        let enabled = drivers.iter().any(|d| !d.trim().is_empty() && d.trim() != "noop");
        NotificationPolicy {
            legacy: enabled && matches!(format, NotificationFormat::Unversioned | NotificationFormat::Both),
            versioned: enabled && matches!(format, NotificationFormat::Versioned | NotificationFormat::Both),
        }
    }
}

/// The phase of an action notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Start,
    End,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::End => "end",
        }
    }
}

/// Legacy or versioned: decides the topics the notifier publishes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    Legacy,
    Versioned,
}

/// One notification, ready for the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub kind: NotificationKind,
    pub publisher_id: String,
    pub event_type: String,
    /// Always `INFO` on the snapshot path.
    pub priority: &'static str,
    pub payload: Value,
}

/// What the payloads need beyond the instance and the context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PayloadOptions {
    /// The Glance endpoint (`http://glance:9292`) for the legacy
    /// `image_ref_url`; without it nova's fallback, the bare image id.
    pub glance_api_server: Option<String>,
    /// `BlockDevicePayload` primitives when `[notifications]
    /// bdms_in_notifications` is on; `None` sends null, nova's default.
    pub block_devices: Option<Vec<Value>>,
    /// `SharePayload` primitives when `include_share_mapping` is on.
    pub shares: Option<Vec<Value>>,
}

/// The notifications of one snapshot phase under `policy`: legacy
/// `compute.instance.snapshot.<phase>` then versioned
/// `instance.snapshot.<phase>`, as `_snapshot_instance` sends them.
pub fn snapshot_notifications(
    policy: &NotificationPolicy,
    ctx: &RequestContext,
    instance: &Instance,
    host: &str,
    phase: Phase,
    snapshot_image_id: &str,
    opts: &PayloadOptions,
) -> Vec<Notification> {
    let mut out = Vec::new();
    if policy.legacy {
        out.push(Notification {
            kind: NotificationKind::Legacy,
            publisher_id: format!("compute.{host}"),
            event_type: format!("compute.instance.snapshot.{}", phase.as_str()),
            priority: "INFO",
            payload: Value::Object(info_from_instance(ctx, instance, opts)),
        });
    }
    if policy.versioned {
        out.push(Notification {
            kind: NotificationKind::Versioned,
            publisher_id: format!("nova-compute:{host}"),
            event_type: format!("instance.snapshot.{}", phase.as_str()),
            priority: "INFO",
            payload: instance_action_snapshot_payload(ctx, instance, snapshot_image_id, opts),
        });
    }
    out
}

/// Sends notifications (oslo-messaging's notifier in the service).
pub trait NotificationSink: Send + Sync {
    /// Sends one notification with an already redacted context.
    fn notify(
        &self,
        ctx: &RequestContext,
        notification: &Notification,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Sends each notification with the redacted context. A failure is logged
/// and never fails the snapshot, as oslo's notifier swallows send errors.
pub async fn emit<S: NotificationSink>(sink: &S, ctx: &RequestContext, notifications: &[Notification]) {
    let redacted = ctx.redacted();
    for n in notifications {
        if let Err(e) = sink.notify(&redacted, n).await {
            warn!(request_id = ctx.request_id(), event_type = %n.event_type, error = %e, "cannot send notification");
        }
    }
}

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

fn payload_primitive(name: &str, version: &str, data: Map<String, Value>) -> Value {
    json!({
        "nova_object.name": name,
        "nova_object.namespace": "nova",
        "nova_object.version": version,
        "nova_object.data": data,
    })
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

/// The fields of nova's `InstancePayload.__init__` (version 1.9).
fn instance_payload_data(ctx: &RequestContext, instance: &Instance, opts: &PayloadOptions) -> Map<String, Value> {
    let mut data = Map::new();
    for (payload_field, instance_field) in INSTANCE_SCHEMA {
        data.insert((*payload_field).into(), instance.field(instance_field).cloned().unwrap_or(Value::Null));
    }
    // InstancePowerStateField stores the STATE_MAP name, not the code.
    let power_state = instance.power_state().map_or(Value::Null, |p: PowerState| Value::String(p.name().into()));
    data.insert("power_state".into(), power_state);
    data.insert("metadata".into(), Value::Object(instance.metadata()));
    data.insert("locked".into(), Value::Bool(instance.field("locked").and_then(Value::as_bool).unwrap_or(false)));
    // DiskConfigField coerces the instance's bool to AUTO / MANUAL.
    let auto = instance.field("auto_disk_config").and_then(Value::as_bool).unwrap_or(false);
    data.insert("auto_disk_config".into(), Value::String(if auto { "AUTO" } else { "MANUAL" }.into()));
    data.insert("flavor".into(), flavor_payload(instance));
    data.insert("ip_addresses".into(), Value::Array(ip_payloads(&instance.network_info())));
    data.insert("block_devices".into(), opts.block_devices.clone().map_or(Value::Null, Value::Array));
    data.insert("shares".into(), opts.shares.clone().map_or(Value::Null, Value::Array));
    // nova leaves request_id out for contexts without a user and project
    // (periodic tasks).
    let request_id = match (ctx.project_id(), ctx.user_id()) {
        (Some(_), Some(_)) => ctx.request_id().map_or(Value::Null, |r| Value::String(r.into())),
        _ => Value::Null,
    };
    data.insert("request_id".into(), request_id);
    data.insert("action_initiator_user".into(), ctx.user_id().map_or(Value::Null, |u| Value::String(u.into())));
    data.insert("action_initiator_project".into(), ctx.project_id().map_or(Value::Null, |p| Value::String(p.into())));
    let locked_reason = instance.system_metadata().and_then(|s| s.get("locked_reason")).cloned().unwrap_or(Value::Null);
    data.insert("locked_reason".into(), locked_reason);
    data
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

/// `notifications.info_from_instance(context, instance, None,
/// populate_image_ref_url=True)`: the legacy payload.
pub fn info_from_instance(ctx: &RequestContext, instance: &Instance, opts: &PayloadOptions) -> Map<String, Value> {
    let _ = ctx; // nova reads the context only to reach Glance's catalog entry.
    let flavor = instance.flavor_data().cloned().unwrap_or_default();
    let flavor_int = |f: &str| flavor.get(f).and_then(Value::as_i64).unwrap_or(0);
    let field = |f: &str| instance.field(f).cloned().unwrap_or(Value::Null);
    let image_ref_url = match (&opts.glance_api_server, instance.image_ref()) {
        (Some(server), Some(image)) => Value::String(format!("{}/images/{image}", server.trim_end_matches('/'))),
        (None, Some(image)) => Value::String(image.into()),
        (_, None) => Value::Null,
    };
    let mut info = Map::new();
    info.insert("tenant_id".into(), field("project_id"));
    info.insert("user_id".into(), field("user_id"));
    info.insert("instance_id".into(), field("uuid"));
    info.insert("display_name".into(), field("display_name"));
    info.insert("reservation_id".into(), field("reservation_id"));
    info.insert("hostname".into(), field("hostname"));
    info.insert("instance_type".into(), flavor.get("name").cloned().unwrap_or_else(|| json!("")));
    info.insert("instance_type_id".into(), field("instance_type_id"));
    info.insert("instance_flavor_id".into(), flavor.get("flavorid").cloned().unwrap_or_else(|| json!("")));
    info.insert("architecture".into(), field("architecture"));
    info.insert("memory_mb".into(), json!(flavor_int("memory_mb")));
    info.insert("disk_gb".into(), json!(flavor_int("root_gb") + flavor_int("ephemeral_gb")));
    info.insert("vcpus".into(), json!(flavor_int("vcpus")));
    info.insert("root_gb".into(), json!(flavor_int("root_gb")));
    info.insert("ephemeral_gb".into(), json!(flavor_int("ephemeral_gb")));
    info.insert("host".into(), field("host"));
    info.insert("node".into(), field("node"));
    info.insert("availability_zone".into(), field("availability_zone"));
    info.insert("cell_name".into(), Value::String(null_safe_str(instance.field("cell_name"))));
    info.insert("created_at".into(), instance.field("created_at").map_or(json!("None"), python_str_datetime));
    info.insert("terminated_at".into(), json!(null_safe_isotime(instance.field("terminated_at"))));
    info.insert("deleted_at".into(), json!(null_safe_isotime(instance.field("deleted_at"))));
    info.insert("launched_at".into(), json!(null_safe_isotime(instance.field("launched_at"))));
    info.insert("image_ref_url".into(), image_ref_url);
    info.insert("os_type".into(), field("os_type"));
    info.insert("kernel_id".into(), field("kernel_id"));
    info.insert("ramdisk_id".into(), field("ramdisk_id"));
    info.insert("state".into(), field("vm_state"));
    info.insert("state_description".into(), Value::String(null_safe_str(instance.field("task_state"))));
    // Legacy quirk kept for consumers: no progress is '' rather than null.
    let progress = instance.field("progress").and_then(Value::as_i64).filter(|p| *p != 0);
    info.insert("progress".into(), progress.map_or(json!(""), Value::from));
    info.insert("access_ip_v4".into(), field("access_ip_v4"));
    info.insert("access_ip_v6".into(), field("access_ip_v6"));
    info.insert("image_meta".into(), Value::Object(legacy_image_meta(instance)));
    info.insert("metadata".into(), Value::Object(instance.metadata()));
    info
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

    fn drivers(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn policy_follows_format_and_driver() {
        let p = NotificationPolicy::new(NotificationFormat::Unversioned, &drivers(&["messagingv2"]));
        assert_eq!(p, NotificationPolicy { legacy: true, versioned: false });
        let p = NotificationPolicy::new(NotificationFormat::Both, &drivers(&["messagingv2"]));
        assert_eq!(p, NotificationPolicy { legacy: true, versioned: true });
        let p = NotificationPolicy::new(NotificationFormat::Versioned, &drivers(&["messagingv2"]));
        assert_eq!(p, NotificationPolicy { legacy: false, versioned: true });
        for none in [&[][..], &["noop"][..]] {
            let p = NotificationPolicy::new(NotificationFormat::Both, &drivers(none));
            assert_eq!(p, NotificationPolicy { legacy: false, versioned: false });
        }
    }

    #[test]
    fn python_datetime_renderings() {
        assert_eq!(python_str_datetime(&json!("2026-11-22T13:44:46Z")), json!("2026-11-22 13:44:46+00:00"));
        assert_eq!(null_safe_isotime(Some(&json!("2026-11-22T13:44:46Z"))), "2026-11-22T13:44:46.000000");
        assert_eq!(null_safe_isotime(Some(&Value::Null)), "");
    }

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
