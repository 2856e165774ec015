//! Everything else nova may send to `compute.HOST`.
//!
//! Calls are answered at once with oslo's `NoSuchMethod`, so nova-api fails
//! fast instead of waiting `rpc_response_timeout`. Casts get no reply; nova-api
//! usually set a task state before casting (`reboot_instance` →
//! `rebooting`, ...), which would stay forever: the instance gets a fault
//! saying the operation is not supported here and its task state is reset,
//! as `reverts_task_state` + `wrap_instance_fault` would do.
//!
//! Which methods are calls comes from nova 34's `compute/rpcapi.py`
//! (`cctxt.call`); the dispatcher does not tell a handler whether the
//! request expects a reply.

use std::sync::Arc;

use nova_objects::{ExpectedTaskState, Instance};
use oslo_messaging::RemoteError;
use serde_json::{json, Map, Value};
use tracing::{error, info, warn, Instrument};

use crate::context::Request;
use crate::exceptions::NovaException;
use crate::manager::ComputeManager;

/// nova 34 `ComputeAPI` methods sent with `call` (the caller waits for a reply).
pub const RPC_CALLS: &[&str] = &[
    "attach_interface",
    "cache_images",
    "check_can_live_migrate_destination",
    "check_can_live_migrate_source",
    "check_instance_shared_storage",
    "confirm_snapshot_based_resize_at_source",
    "drop_move_claim_at_destination",
    "finish_revert_snapshot_based_resize_at_source",
    "finish_snapshot_based_resize_at_dest",
    "get_console_output",
    "get_diagnostics",
    "get_host_uptime",
    "get_instance_diagnostics",
    "get_mks_console",
    "get_serial_console",
    "get_spice_console",
    "get_vnc_console",
    "host_maintenance_mode",
    "host_power_action",
    "post_live_migration_at_destination",
    "pre_live_migration",
    "prep_snapshot_based_resize_at_dest",
    "prep_snapshot_based_resize_at_source",
    "remove_volume_connection",
    "reserve_block_device_name",
    "revert_snapshot_based_resize_at_dest",
    "set_admin_password",
    "set_host_enabled",
    "validate_console_port",
];

/// The fault nova-api and operators see for an unsupported cast.
pub fn not_supported(method: &str, host: &str) -> NovaException {
    let message = format!("Operation {method} is not supported by this compute service (host {host})");
    NovaException {
        module: "builtins",
        class: "NotImplementedError".into(),
        message,
        kwargs: Map::new(),
        code: 500,
    }
}

impl ComputeManager {
    pub async fn unsupported(
        self: &Arc<Self>,
        req: Request,
        method: String,
        args: Map<String, Value>,
    ) -> Result<Value, RemoteError> {
        let instance = args.get("instance").and_then(|v| Instance::from_primitive(v).ok());
        let uuid = instance.as_ref().map(|i| i.uuid().to_owned()).unwrap_or_default();
        let span = req.span(&method, &uuid);
        if RPC_CALLS.contains(&method.as_str()) {
            let _enter = span.enter();
            warn!("RPC call {method} is not supported by this compute service: answering NoSuchMethod");
            return Err(RemoteError::no_such_method(&method));
        }
        async {
            warn!("RPC cast {method} is not supported by this compute service; ignoring it");
            if let Some(instance) = instance {
                self.clean_up_after_cast(&req, &method, instance).await;
            }
        }
        .instrument(span)
        .await;
        // A cast's result is never sent; oslo would have answered NoSuchMethod.
        Err(RemoteError::no_such_method(&method))
    }

    /// Reads the instance as it is now (nova-api may have set the task
    /// state after serializing it) and, if it is in a task state, records
    /// the fault and resets the task state — compare-and-swap on the state
    /// read, so a concurrent change by someone else wins.
    async fn clean_up_after_cast(&self, req: &Request, method: &str, instance: Instance) {
        let elevated = req.elevated();
        let mut current = match Instance::get_by_uuid(&self.conductor, &elevated.ctx, instance.uuid(), &[]).await {
            Ok(i) => i,
            Err(e) => {
                info!("Cannot read the instance after unsupported {method}: {e}");
                return;
            }
        };
        let Ok(Some(task_state)) = current.task_state() else {
            info!("Instance has no task state; nothing to reset after unsupported {method}");
            return;
        };
        let exc = not_supported(method, &self.host);
        self.add_instance_fault(&elevated, current.uuid(), &NovaException { module: "nova.exception", ..exc.clone() })
            .await;
        current.set_task_state(None);
        match current.save(&self.conductor, &elevated.ctx, ExpectedTaskState::Is(Some(task_state))).await {
            Ok(()) => warn!("Task state {} reset after unsupported {method}", task_state.as_str()),
            Err(e) => error!("Cannot reset task state {} after unsupported {method}: {e}", task_state.as_str()),
        }
        self.wrap_exception(
            &elevated,
            method,
            json!({"instance": current.uuid()}),
            &crate::exceptions::ComputeError::BadRequest(exc.message),
        )
        .await;
    }
}
