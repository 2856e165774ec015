//! `Instance` (version 2.8 in nova 34), as received in an RPC message and
//! saved through the conductor.
//!
//! Typed accessors cover what the snapshot path reads; everything else stays
//! in the verbatim primitive. Setting `task_state` or `power_state` marks the
//! field changed, exactly like assigning the attribute in Python.

use serde_json::{Map, Value};

use crate::error::ObjectError;
use crate::image_meta::ImageMeta;
use crate::primitive::ObjectPrimitive;
use crate::states::{PowerState, TaskState, VmState};

/// The instance object version nova 34 sends and expects.
pub const INSTANCE_VERSION: &str = "2.8";

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    primitive: ObjectPrimitive,
}

impl Instance {
    pub fn from_primitive(value: &Value) -> Result<Self, ObjectError> {
        let primitive = ObjectPrimitive::from_value(value, "Instance")?;
        if primitive.get_str("uuid").is_none() {
            return Err(ObjectError::Malformed("Instance without a uuid".into()));
        }
        Ok(Instance { primitive })
    }

    pub fn to_primitive(&self) -> Value {
        self.primitive.to_value()
    }

    pub fn primitive(&self) -> &ObjectPrimitive {
        &self.primitive
    }

    pub fn primitive_mut(&mut self) -> &mut ObjectPrimitive {
        &mut self.primitive
    }

    pub fn uuid(&self) -> &str {
        self.primitive.get_str("uuid").unwrap_or_default()
    }

    pub fn host(&self) -> Option<&str> {
        self.primitive.get_str("host")
    }

    pub fn node(&self) -> Option<&str> {
        self.primitive.get_str("node")
    }

    pub fn project_id(&self) -> Option<&str> {
        self.primitive.get_str("project_id")
    }

    pub fn user_id(&self) -> Option<&str> {
        self.primitive.get_str("user_id")
    }

    pub fn image_ref(&self) -> Option<&str> {
        self.primitive.get_str("image_ref")
    }

    pub fn os_type(&self) -> Option<&str> {
        self.primitive.get_str("os_type")
    }

    pub fn kernel_id(&self) -> Option<&str> {
        self.primitive.get_str("kernel_id")
    }

    pub fn ramdisk_id(&self) -> Option<&str> {
        self.primitive.get_str("ramdisk_id")
    }

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
            Some(s) => TaskState::parse(s)
                .map(Some)
                .ok_or_else(|| ObjectError::Malformed(format!("unknown task_state {s:?}"))),
        }
    }

    pub fn set_task_state(&mut self, state: Option<TaskState>) {
        let value = state.map_or(Value::Null, |s| Value::String(s.as_str().to_owned()));
        self.primitive.set("task_state", value);
    }

    pub fn vm_state(&self) -> Option<VmState> {
        self.primitive.get_str("vm_state").and_then(VmState::parse)
    }

    pub fn power_state(&self) -> Option<PowerState> {
        self.primitive.get("power_state").and_then(Value::as_i64).and_then(PowerState::from_code)
    }

    pub fn set_power_state(&mut self, state: PowerState) {
        self.primitive.set("power_state", Value::from(state.code()));
    }

    /// The flavor's nested primitive, if loaded.
    pub fn flavor(&self) -> Option<&Value> {
        self.primitive.get("flavor").filter(|v| !v.is_null())
    }

    pub fn system_metadata(&self) -> Option<&Map<String, Value>> {
        self.primitive.get("system_metadata").and_then(Value::as_object)
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
