//! `quiesce_instance` (an RPC call) and `unquiesce_instance` (a cast), used
//! by nova-api around the Cinder snapshots of a volume-backed snapshot.
//!
//! Both carry `@messaging.expected_exceptions(InstanceQuiesceNotSupported,
//! QemuGuestAgentNotEnabled, NovaException, NotImplementedError)
//! @wrap_exception()`: errors go back as `nova.exception` classes nova-api
//! re-raises (and decides on with `os_require_quiesce`).

use std::sync::Arc;
use std::time::Duration;

use nova_objects::Instance;
use oslo_messaging::RemoteError;
use serde_json::{json, Value};
use tracing::{info, warn, Instrument};

use crate::context::Request;
use crate::exceptions::ComputeError;
use crate::manager::ComputeManager;

/// nova's `_wait_for_snapshots_completion` interval.
const SNAPSHOT_POLL: Duration = Duration::from_millis(500);
/// Catalog types of Cinder's v3 API, newest name first.
const VOLUME_SERVICE_TYPES: [&str; 2] = ["block-storage", "volumev3"];

impl ComputeManager {
    pub async fn quiesce_instance(self: &Arc<Self>, req: Request, instance: Instance) -> Result<Value, RemoteError> {
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
                self.engine.quiesce(instance.uuid().to_owned(), policy).await
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
                    self.wrap_exception(&req, "quiesce_instance", json!({"instance": instance.uuid()}), &err).await;
                    let exc = err.nova();
                    warn!("Quiesce failed: {} ({})", exc.message, exc.qualified_class());
                    Err(exc.to_remote_error())
                }
            }
        }
        .instrument(span)
        .await
    }

    pub async fn unquiesce_instance(self: &Arc<Self>, req: Request, instance: Instance, mapping: Option<Value>) {
        let span = req.span("unquiesce_instance", instance.uuid());
        async {
            if let Some(mapping) = &mapping {
                self.wait_for_snapshots_completion(&req, mapping).await;
            }
            match self.engine.unquiesce(instance.uuid().to_owned()).await {
                Ok(n) => info!("Instance unquiesced ({n} filesystems thawed)"),
                Err(e) => {
                    let err = ComputeError::from(e);
                    self.wrap_exception(&req, "unquiesce_instance", json!({"instance": instance.uuid()}), &err).await;
                    warn!("Unquiesce failed: {err}");
                }
            }
        }
        .instrument(span)
        .await
    }

    /// `_wait_for_snapshots_completion`: each `source_type == snapshot`
    /// mapping until Cinder says it is no longer `creating`. No Cinder in the
    /// context's catalog: thaw at once (and say so) rather than keep the
    /// guest frozen on a wait that cannot end.
    async fn wait_for_snapshots_completion(&self, req: &Request, mapping: &Value) {
        let snapshot_ids: Vec<String> = mapping
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m.get("source_type").and_then(Value::as_str) == Some("snapshot"))
            .filter_map(|m| m.get("snapshot_id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        if snapshot_ids.is_empty() {
            return;
        }
        let interfaces = vec!["internal".to_owned(), "public".to_owned()];
        let endpoint = VOLUME_SERVICE_TYPES
            .iter()
            .find_map(|t| req.glance.service_catalog.endpoint(t, &interfaces, None))
            .map(|u| u.trim_end_matches('/').to_owned());
        let Some(endpoint) = endpoint else {
            warn!(
                "No Cinder endpoint in the request's service catalog: not waiting for volume snapshots {} before thawing",
                snapshot_ids.join(", ")
            );
            return;
        };
        let http = reqwest::Client::new();
        for id in snapshot_ids {
            loop {
                let mut get = http.get(format!("{endpoint}/snapshots/{id}"));
                if let Some(token) = &req.glance.auth_token {
                    get = get.header("X-Auth-Token", token);
                }
                let status = match get.send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v.pointer("/snapshot/status").and_then(Value::as_str).map(str::to_owned)),
                    Err(e) => {
                        // nova logs and stops waiting for this snapshot.
                        warn!("Cannot read volume snapshot {id}: {e}");
                        None
                    }
                };
                if status.as_deref() != Some("creating") {
                    info!("Volume snapshot {id} is {}", status.as_deref().unwrap_or("unknown"));
                    break;
                }
                tokio::time::sleep(SNAPSHOT_POLL).await;
            }
        }
    }
}
