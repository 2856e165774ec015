//! `quiesce_instance` (an RPC call) and `unquiesce_instance` (a cast), used
//! by nova-api around the Cinder snapshots of a volume-backed snapshot.
//!
//! Both carry `@messaging.expected_exceptions(InstanceQuiesceNotSupported,
//! QemuGuestAgentNotEnabled, NovaException, NotImplementedError)
//! @wrap_exception()`: errors go back as `nova.exception` classes nova-api
//! re-raises (and decides on with `os_require_quiesce`).

use std::sync::Arc;
use std::time::Duration;

use error_chain::Chain;
use glance_client::SnapshotStatus;
use nova_objects::Instance;
use oslo_messaging::RemoteError;
use serde_json::{json, Value};
use tracing::{info, warn, Instrument};

use crate::context::Request;
use crate::decorators::Decorators;
use crate::exceptions::ComputeError;
use crate::manager::ComputeManager;

/// nova's `_wait_for_snapshots_completion` interval.
const SNAPSHOT_POLL: Duration = Duration::from_millis(500);
/// How long `unquiesce_instance` waits for Cinder before thawing (ours: nova waits without end).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(300);

/// `quiesce_instance`: the guest's filesystems frozen, or nova's reason why not.
pub async fn quiesce_instance(
    m: &Arc<ComputeManager>,
    req: Request,
    mut instance: Instance,
) -> Result<Value, RemoteError> {
    let span = req.span("quiesce_instance", instance.uuid());
    async {
        let image_meta = instance.image_meta();
        let policy = libvirt_snapshot::QuiescePolicy {
            agent_enabled: image_meta.hw_qemu_guest_agent(),
            required: image_meta.os_require_quiesce(),
        };
        // nova's `_set_quiesced` runs `_can_quiesce` before looking the
        // guest up: no agent in the image metadata is reported as such
        // even when the domain is elsewhere.
        let result = if policy.agent_enabled {
            m.driver.quiesce(instance.uuid(), policy).await
        } else {
            Err(libvirt_snapshot::SnapshotError::AgentNotEnabled)
        };
        match result {
            Ok(()) => {
                info!("Instance quiesced (filesystems frozen)");
                Ok(Value::Null)
            }
            Err(e) => {
                let err = ComputeError::from(e);
                let args = json!({"instance": instance.uuid()});
                Decorators::wrap_exception("quiesce_instance", args).unwind(m, &req, &mut instance, &err).await;
                Err(err.nova().to_remote_error())
            }
        }
    }
    .instrument(span)
    .await
}

/// `unquiesce_instance`: after the volume snapshots in `mapping` are taken,
/// the guest thawed.
pub async fn unquiesce_instance(m: &Arc<ComputeManager>, req: Request, mut instance: Instance, mapping: Option<Value>) {
    let span = req.span("unquiesce_instance", instance.uuid());
    async {
        if let Some(mapping) = &mapping {
            wait_for_snapshots_completion(m, &req, mapping).await;
        }
        match m.driver.unquiesce(instance.uuid()).await {
            Ok(n) => info!("Instance unquiesced ({n} filesystems thawed)"),
            Err(e) => {
                let err = ComputeError::from(e);
                let args = json!({"instance": instance.uuid()});
                Decorators::wrap_exception("unquiesce_instance", args).unwind(m, &req, &mut instance, &err).await;
            }
        }
    }
    .instrument(span)
    .await
}

/// `_wait_for_snapshots_completion`: each `source_type == snapshot`
/// mapping until Cinder says it is no longer `creating`. Beyond nova (which
/// waits without end), the whole wait is bounded by [`SNAPSHOT_WAIT`], so a
/// stuck Cinder cannot keep the guest frozen; a failed read ends the wait for
/// that snapshot, as in nova. Either way the guest is thawed next.
async fn wait_for_snapshots_completion(m: &ComputeManager, req: &Request, mapping: &Value) {
    let snapshot_ids: Vec<&str> = mapping
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m.get("source_type").and_then(Value::as_str) == Some("snapshot"))
        .filter_map(|m| m.get("snapshot_id").and_then(Value::as_str))
        .collect();
    let wait = async {
        for id in &snapshot_ids {
            wait_for_snapshot(m, req, id).await;
        }
    };
    if tokio::time::timeout(SNAPSHOT_WAIT, wait).await.is_err() {
        warn!(
            "Volume snapshots {} still creating after {} s: thawing the guest anyway",
            snapshot_ids.join(", "),
            SNAPSHOT_WAIT.as_secs()
        );
    }
}

async fn wait_for_snapshot(m: &ComputeManager, req: &Request, id: &str) {
    loop {
        match m.volume_api.snapshot_status(&req.auth, id).await {
            Ok(SnapshotStatus::Creating) => tokio::time::sleep(SNAPSHOT_POLL).await,
            Ok(status) => {
                info!("Volume snapshot {id} is {status}");
                return;
            }
            Err(e) => {
                warn!("Exception while waiting completion of volume snapshot {id}: {}", Chain(&e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{vector_instance, FakeDriver, FakeImages, Fixture};

    #[tokio::test]
    async fn quiesce_without_an_agent_in_the_image_is_the_nova_class_the_api_expects() {
        let f = Fixture::new(None, FakeImages::default(), FakeDriver::default());
        let mut instance = vector_instance();
        let mut sysmeta = instance.primitive().get("system_metadata").unwrap().clone();
        sysmeta["image_hw_qemu_guest_agent"] = json!("no");
        instance.primitive_mut().set("system_metadata", sysmeta);
        let err = quiesce_instance(&f.m, Request::admin(), instance).await.unwrap_err();
        assert_eq!((err.module.as_str(), err.class.as_str()), ("nova.exception", "QemuGuestAgentNotEnabled"));
        assert_eq!(f.event_types(), ["quiesce_instance", "compute.exception"]);
    }

    #[tokio::test]
    async fn quiesce_with_an_agent_freezes_and_unquiesce_waits_for_cinder_then_thaws() {
        let f = Fixture::new(None, FakeImages::default(), FakeDriver::default());
        assert_eq!(quiesce_instance(&f.m, Request::admin(), vector_instance()).await.unwrap(), Value::Null);
        let mapping = json!([{"source_type": "snapshot", "snapshot_id": "s1"}, {"source_type": "image"}]);
        unquiesce_instance(&f.m, Request::admin(), vector_instance(), Some(mapping)).await;
        assert!(f.event_types().is_empty(), "no error notification");
    }
}
