//! `Instance` (version 2.8 in nova 34), as received in an RPC message and
//! saved through the conductor.
//!
//! Typed accessors cover what the snapshot path reads; everything else stays
//! in the verbatim primitive. Setting `task_state` or `power_state` marks the
//! field changed, exactly like assigning the attribute in Python.

use error_chain::Chain;
use serde_json::{Map, Value};
use tracing::{debug, info};

use crate::conductor::{ConductorApi, ConductorTransport};
use crate::context::RequestContext;
use crate::error::{ConductorError, ObjectError};
use crate::image_meta::ImageMeta;
use crate::primitive::ObjectPrimitive;
use crate::states::{PowerState, TaskState, VmState};

/// The instance object version nova 34 sends and expects.
pub const INSTANCE_VERSION: &str = "2.8";

/// `obj_tree_get_versions('Instance')` in nova 34: sent with class calls so
/// the conductor backports its answer to what nova 34 understands.
pub const INSTANCE_MANIFEST: &[(&str, &str)] = &[
    ("Instance", "2.8"),
    ("ServiceList", "1.19"),
    ("Service", "1.22"),
    ("ComputeNode", "1.19"),
    ("HVSpec", "1.2"),
    ("PciDevicePoolList", "1.1"),
    ("PciDevicePool", "1.1"),
    ("InstanceInfoCache", "1.5"),
    ("SecurityGroupList", "1.1"),
    ("SecurityGroup", "1.2"),
    ("InstanceFault", "1.2"),
    ("PciDeviceList", "1.3"),
    ("PciDevice", "1.7"),
    ("InstanceNUMATopology", "1.3"),
    ("InstanceNUMACell", "1.6"),
    ("VirtCPUTopology", "1.0"),
    ("InstancePCIRequests", "1.1"),
    ("InstancePCIRequest", "1.4"),
    ("InstanceDeviceMetadata", "1.0"),
    ("DeviceMetadata", "1.0"),
    ("DeviceBus", "1.0"),
    ("TagList", "1.1"),
    ("Tag", "1.1"),
    ("Flavor", "1.2"),
    ("VirtCPUModel", "1.0"),
    ("VirtCPUFeature", "1.0"),
    ("EC2Ids", "1.0"),
    ("MigrationContext", "1.2"),
    ("ResourceList", "1.0"),
    ("Resource", "1.0"),
    ("ResourceMetadata", "1.0"),
    ("KeyPairList", "1.3"),
    ("KeyPair", "1.4"),
    ("TrustedCerts", "1.0"),
];

/// `Instance.save(expected_task_state=...)`: the compare-and-swap the
/// conductor applies in the same UPDATE as the new values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedTaskState {
    /// No check (`save()` without the argument).
    Any,
    /// The task state must be exactly this (`None`: no task in progress).
    Is(Option<TaskState>),
    /// The task state must be one of these.
    OneOf(Vec<Option<TaskState>>),
}

impl ExpectedTaskState {
    /// The `expected_task_state` kwarg as nova's callers pass it: a single
    /// state as a string, "must be None" as `[None]` (a bare `None` would
    /// mean "no check" in nova).
    fn to_kwarg(&self) -> Option<Value> {
        let state = |s: &Option<TaskState>| s.map_or(Value::Null, |s| Value::String(s.as_str().into()));
        match self {
            ExpectedTaskState::Any => None,
            ExpectedTaskState::Is(Some(s)) => Some(Value::String(s.as_str().into())),
            ExpectedTaskState::Is(None) => Some(Value::Array(vec![Value::Null])),
            ExpectedTaskState::OneOf(states) => Some(Value::Array(states.iter().map(state).collect())),
        }
    }
}

/// nova's `Instance`: the verbatim primitive with typed accessors for what
/// the snapshot path reads, and change tracking for what it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    primitive: ObjectPrimitive,
}

impl Instance {
    /// Decodes an `Instance` primitive; one without a `uuid` is malformed.
    pub fn from_primitive(value: &Value) -> Result<Self, ObjectError> {
        let primitive = ObjectPrimitive::from_value(value, "Instance")?;
        if primitive.get_str("uuid").is_none() {
            return Err(ObjectError::Malformed("Instance without a uuid".into()));
        }
        Ok(Instance { primitive })
    }

    /// The primitive as nova serializes it, changes list included.
    pub fn to_primitive(&self) -> Value {
        self.primitive.to_value()
    }

    /// The primitive, for fields without a typed accessor.
    pub fn primitive(&self) -> &ObjectPrimitive {
        &self.primitive
    }

    /// The primitive, to set fields without a typed setter (marks them changed).
    pub fn primitive_mut(&mut self) -> &mut ObjectPrimitive {
        &mut self.primitive
    }

    /// The instance's uuid (always present: [`Instance::from_primitive`] checks it).
    pub fn uuid(&self) -> &str {
        self.primitive.get_str("uuid").unwrap_or_default()
    }

    /// The compute host the instance lives on (`[DEFAULT] host` of that service).
    pub fn host(&self) -> Option<&str> {
        self.primitive.get_str("host")
    }

    /// The hypervisor node name (the libvirt host name).
    pub fn node(&self) -> Option<&str> {
        self.primitive.get_str("node")
    }

    /// The owning project's id.
    pub fn project_id(&self) -> Option<&str> {
        self.primitive.get_str("project_id")
    }

    /// The id of the user who created the instance.
    pub fn user_id(&self) -> Option<&str> {
        self.primitive.get_str("user_id")
    }

    /// The Glance image the instance was booted from (empty for volume-backed ones).
    pub fn image_ref(&self) -> Option<&str> {
        self.primitive.get_str("image_ref")
    }

    /// `os_type` (`linux`, `windows`), copied into snapshot properties.
    pub fn os_type(&self) -> Option<&str> {
        self.primitive.get_str("os_type")
    }

    /// The image id of the instance's kernel, if it boots one.
    pub fn kernel_id(&self) -> Option<&str> {
        self.primitive.get_str("kernel_id")
    }

    /// The image id of the instance's ramdisk, if it boots one.
    pub fn ramdisk_id(&self) -> Option<&str> {
        self.primitive.get_str("ramdisk_id")
    }

    /// The user-visible name.
    pub fn display_name(&self) -> Option<&str> {
        self.primitive.get_str("display_name")
    }

    /// The raw task_state string (`None` when null or unset).
    pub fn task_state_str(&self) -> Option<&str> {
        self.primitive.get_str("task_state")
    }

    /// The task state; a value this build does not know is reported as an error
    /// rather than guessed.
    pub fn task_state(&self) -> Result<Option<TaskState>, ObjectError> {
        match self.task_state_str() {
            None => Ok(None),
            Some(s) => {
                TaskState::parse(s).map(Some).ok_or_else(|| ObjectError::Malformed(format!("unknown task_state {s:?}")))
            }
        }
    }

    /// Sets `task_state` (`None`: no task) and marks it changed for the next save.
    pub fn set_task_state(&mut self, state: Option<TaskState>) {
        let value = state.map_or(Value::Null, |s| Value::String(s.as_str().to_owned()));
        self.primitive.set("task_state", value);
    }

    /// The vm state; `None` when unset or not one nova defines.
    pub fn vm_state(&self) -> Option<VmState> {
        self.primitive.get_str("vm_state").and_then(VmState::parse)
    }

    /// The power state nova last recorded; `None` when unset or not a nova code.
    pub fn power_state(&self) -> Option<PowerState> {
        self.primitive.get("power_state").and_then(Value::as_i64).and_then(PowerState::from_code)
    }

    /// Sets `power_state` and marks it changed for the next save.
    pub fn set_power_state(&mut self, state: PowerState) {
        self.primitive.set("power_state", Value::from(state.code()));
    }

    /// The flavor's nested primitive, if loaded.
    pub fn flavor(&self) -> Option<&Value> {
        self.primitive.get("flavor").filter(|v| !v.is_null())
    }

    /// `system_metadata`, if loaded: nova's private keys, the `image_*` ones included.
    pub fn system_metadata(&self) -> Option<&Map<String, Value>> {
        self.primitive.get("system_metadata").and_then(Value::as_object)
    }

    /// `Instance.get_by_uuid(ctx, uuid, expected_attrs=...)` through the
    /// conductor; `InstanceNotFound` when the row is gone.
    pub async fn get_by_uuid<T: ConductorTransport>(
        api: &ConductorApi<T>,
        ctx: &RequestContext,
        uuid: &str,
        expected_attrs: &[&str],
    ) -> Result<Self, ConductorError> {
        let mut kwargs = Map::new();
        if !expected_attrs.is_empty() {
            let attrs = expected_attrs.iter().map(|a| Value::String((*a).into())).collect();
            kwargs.insert("expected_attrs".into(), Value::Array(attrs));
        }
        let reply = api
            .class_action(ctx, "Instance", INSTANCE_MANIFEST, "get_by_uuid", vec![Value::String(uuid.into())], kwargs)
            .await?;
        Ok(Instance::from_primitive(&reply)?)
    }

    /// `Instance.save(expected_task_state=...)`: sends the changed fields;
    /// on success the conductor's updates are applied and the changes
    /// cleared. A lost compare-and-swap is `UnexpectedTaskState` (or
    /// `UnexpectedDeletingTaskState` when the instance is being deleted).
    pub async fn save<T: ConductorTransport>(
        &mut self,
        api: &ConductorApi<T>,
        ctx: &RequestContext,
        expected: ExpectedTaskState,
    ) -> Result<(), ConductorError> {
        let mut kwargs = Map::new();
        if let Some(value) = expected.to_kwarg() {
            kwargs.insert("expected_task_state".into(), value);
        }
        let uuid = self.uuid().to_owned();
        debug!(request_id = ctx.request_id(), instance = %uuid, task_state = ?self.task_state_str(),
            expected = ?expected, changes = ?self.primitive.changes(), "saving instance");
        match api.object_action(ctx, &mut self.primitive, "save", Vec::new(), kwargs).await {
            Ok(_) => Ok(()),
            Err(e) => {
                info!(request_id = ctx.request_id(), instance = %uuid, error = %Chain(&e), "instance save failed");
                Err(e)
            }
        }
    }

    /// The guest's host name (nova's sanitized display name).
    pub fn hostname(&self) -> Option<&str> {
        self.primitive.get_str("hostname")
    }

    /// `metadata` (user metadata), empty when not loaded.
    pub fn metadata(&self) -> Map<String, Value> {
        self.primitive.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default()
    }

    /// A field's raw value (`None` when not set in the primitive).
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.primitive.get(name)
    }

    /// The flavor's fields (`nova_object.data` of the nested Flavor).
    pub fn flavor_data(&self) -> Option<&Map<String, Value>> {
        self.flavor().and_then(|f| f.get("nova_object.data")).and_then(Value::as_object)
    }

    /// `info_cache.network_info`, decoded (it travels as a JSON string).
    pub fn network_info(&self) -> Vec<Value> {
        let raw = self
            .primitive
            .get("info_cache")
            .and_then(|c| c.get("nova_object.data"))
            .and_then(|d| d.get("network_info"));
        match raw {
            Some(Value::String(text)) => {
                serde_json::from_str::<Value>(text).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
            }
            Some(Value::Array(vifs)) => vifs.clone(),
            _ => Vec::new(),
        }
    }

    /// `objects.ImageMeta.from_instance`: the instance's image metadata from
    /// its system_metadata (empty when system_metadata was not sent).
    pub fn image_meta(&self) -> ImageMeta {
        self.system_metadata().map(ImageMeta::from_system_metadata).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance() -> Value {
        json!({
            "nova_object.name": "Instance", "nova_object.namespace": "nova",
            "nova_object.version": "2.8",
            "nova_object.data": {
                "uuid": "2e2ecf39-53b7-4cc8-a76c-bc41139af391", "host": "cmp1",
                "task_state": "image_snapshot_pending", "vm_state": "active", "power_state": 1,
                "system_metadata": {"image_hw_qemu_guest_agent": "yes"},
                "flavor": {"nova_object.name": "Flavor", "nova_object.version": "1.2",
                           "nova_object.namespace": "nova", "nova_object.data": {"id": 1}},
            },
            "nova_object.changes": ["flavor"],
        })
    }

    #[test]
    fn typed_fields() {
        let inst = Instance::from_primitive(&instance()).unwrap();
        assert_eq!(inst.uuid(), "2e2ecf39-53b7-4cc8-a76c-bc41139af391");
        assert_eq!(inst.task_state().unwrap(), Some(TaskState::ImageSnapshotPending));
        assert_eq!(inst.vm_state(), Some(VmState::Active));
        assert_eq!(inst.power_state(), Some(PowerState::Running));
        assert!(inst.image_meta().hw_qemu_guest_agent());
    }

    #[test]
    fn setting_task_state_adds_it_to_the_received_changes() {
        // nova-api's primitive arrives with `flavor` changed; Python's save
        // sends both, so must we.
        let mut inst = Instance::from_primitive(&instance()).unwrap();
        inst.set_task_state(Some(TaskState::ImageSnapshot));
        let out = inst.to_primitive();
        assert_eq!(out["nova_object.changes"], json!(["flavor", "task_state"]));
        assert_eq!(out["nova_object.data"]["task_state"], "image_snapshot");
        inst.set_task_state(None);
        assert_eq!(inst.to_primitive()["nova_object.data"]["task_state"], Value::Null);
    }

    #[test]
    fn unknown_task_state_is_an_error_not_a_guess() {
        let mut v = instance();
        v["nova_object.data"]["task_state"] = json!("teleporting");
        let inst = Instance::from_primitive(&v).unwrap();
        assert!(inst.task_state().is_err());
        assert_eq!(inst.task_state_str(), Some("teleporting"));
    }

    #[test]
    fn instance_without_uuid_is_refused() {
        let mut v = instance();
        v["nova_object.data"].as_object_mut().unwrap().remove("uuid");
        assert!(Instance::from_primitive(&v).is_err());
    }
}
