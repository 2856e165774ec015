//! `InstanceList` (version 2.6 in nova 34): the class methods nova-compute
//! calls to find its instances, through the conductor's
//! `object_class_action_versions`.
//!
//! Owns: the call's manifest (the Instance tree plus `InstanceList`) and
//! decoding the reply into [`Instance`]s. An entry that is not an Instance
//! primitive is logged and skipped, so one bad row never hides the others
//! from start-up recovery; a reply that is not an `InstanceList` at all is
//! an error.

use serde_json::{Map, Value};
use tracing::warn;

use crate::conductor::{ConductorApi, ConductorTransport};
use crate::context::RequestContext;
use crate::error::{ConductorError, ObjectError};
use crate::instance::{Instance, INSTANCE_MANIFEST};
use crate::primitive::ObjectPrimitive;

/// `InstanceList.VERSION` in nova 34.
pub const INSTANCE_LIST_VERSION: &str = "2.6";

/// nova's `InstanceList`: a namespace for its class methods (the list
/// itself is returned as a `Vec<Instance>`).
#[derive(Debug)]
pub struct InstanceList;

impl InstanceList {
    /// `InstanceList.get_by_host(context, host)`: every instance whose
    /// `host` is `host`, with nova's default expected attributes.
    pub async fn get_by_host<T: ConductorTransport>(
        conductor: &ConductorApi<T>,
        ctx: &RequestContext,
        host: &str,
    ) -> Result<Vec<Instance>, ConductorError> {
        let manifest = Self::manifest();
        let args = vec![Value::String(host.into())];
        let reply = conductor.class_action(ctx, "InstanceList", &manifest, "get_by_host", args, Map::new()).await?;
        Ok(Self::instances(&reply)?)
    }

    /// `obj_tree_get_versions('InstanceList')`: the Instance tree and the list.
    fn manifest() -> Vec<(&'static str, &'static str)> {
        let mut manifest = INSTANCE_MANIFEST.to_vec();
        manifest.push(("InstanceList", INSTANCE_LIST_VERSION));
        manifest
    }

    /// The Instances of an `InstanceList` primitive; malformed entries are
    /// logged and skipped.
    fn instances(reply: &Value) -> Result<Vec<Instance>, ObjectError> {
        let list = ObjectPrimitive::from_value(reply, "InstanceList")?;
        let objects = list
            .get("objects")
            .and_then(Value::as_array)
            .ok_or_else(|| ObjectError::Malformed("InstanceList without an objects list".into()))?;
        let mut instances = Vec::with_capacity(objects.len());
        for (index, object) in objects.iter().enumerate() {
            match Instance::from_primitive(object) {
                Ok(instance) => instances.push(instance),
                Err(e) => warn!(index, error = %e, "skipping a malformed entry of InstanceList.get_by_host"),
            }
        }
        Ok(instances)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::conductor::fake::FakeTransport;

    fn instance(uuid: &str) -> Value {
        json!({"nova_object.name": "Instance", "nova_object.namespace": "nova", "nova_object.version": "2.8",
            "nova_object.data": {"uuid": uuid, "host": "cmp1"}})
    }

    fn list(objects: Vec<Value>) -> Value {
        json!({"nova_object.name": "InstanceList", "nova_object.namespace": "nova", "nova_object.version": "2.6",
            "nova_object.data": {"objects": objects}})
    }

    #[tokio::test]
    async fn get_by_host_sends_novas_class_call() {
        let api = ConductorApi::new(FakeTransport::replying(vec![Ok(list(vec![instance("u1"), instance("u2")]))]));
        let got = InstanceList::get_by_host(&api, &RequestContext::admin(), "cmp1").await.unwrap();
        assert_eq!(got.iter().map(Instance::uuid).collect::<Vec<_>>(), ["u1", "u2"]);
        let (_, call) = &api.transport().calls()[0];
        assert_eq!(call.method, "object_class_action_versions");
        assert_eq!(call.version, "3.0");
        assert_eq!(call.args["objname"], "InstanceList");
        assert_eq!(call.args["objmethod"], "get_by_host");
        assert_eq!(call.args["args"], json!(["cmp1"]));
        assert_eq!(call.args["kwargs"], json!({}));
        let versions = call.args["object_versions"].as_object().unwrap();
        assert_eq!(versions["InstanceList"], "2.6");
        assert_eq!(versions["Instance"], "2.8");
        assert_eq!(versions.len(), INSTANCE_MANIFEST.len() + 1);
    }

    #[tokio::test]
    async fn malformed_entries_are_skipped_and_a_malformed_list_fails() {
        let bad = json!({"nova_object.name": "Instance", "nova_object.namespace": "nova",
            "nova_object.version": "2.8", "nova_object.data": {"host": "cmp1"}});
        let api = ConductorApi::new(FakeTransport::replying(vec![Ok(list(vec![bad, instance("u2")]))]));
        let got = InstanceList::get_by_host(&api, &RequestContext::admin(), "cmp1").await.unwrap();
        assert_eq!(got.iter().map(Instance::uuid).collect::<Vec<_>>(), ["u2"]);

        for reply in [json!(null), json!({"objects": []}), list(vec![]).pointer("/nova_object.data").cloned().unwrap()]
        {
            let api = ConductorApi::new(FakeTransport::replying(vec![Ok(reply)]));
            let err = InstanceList::get_by_host(&api, &RequestContext::admin(), "cmp1").await.unwrap_err();
            assert!(matches!(err, ConductorError::Malformed(_)), "{err:?}");
        }
    }
}
