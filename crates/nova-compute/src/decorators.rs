//! nova's error-handling decorators (`nova/compute/manager.py`,
//! `nova/exception_wrapper.py`, `compute/utils.py`) as composable steps.
//!
//! A handler runs its body and, on error, calls these in the order nova's
//! decorator stack unwinds: innermost first —
//! `delete_image_on_error` → `wrap_instance_fault` → (`wrap_instance_event`)
//! → `reverts_task_state` → `wrap_exception`. Each step is best effort, as in
//! nova: a failure of the cleanup is logged and never hides the original error.

use nova_objects::{
    emit, EventOutcome, ExpectedTaskState, Instance, InstanceActionEvent, InstanceFault, Notification, NotificationKind,
};
use serde_json::{json, Map, Value};
use tracing::{debug, error, info, warn};

use crate::context::Request;
use crate::exceptions::{ComputeError, NovaException};
use crate::manager::ComputeManager;

/// `ExceptionPayload.VERSION` in nova 34.
const EXCEPTION_PAYLOAD_VERSION: &str = "1.1";

impl ComputeManager {
    /// `@delete_image_on_error`: `compute_utils.delete_image`, which swallows
    /// `ImageNotFound` and logs anything else.
    pub async fn delete_image_on_error(&self, req: &Request, image_id: &str) {
        info!("Cleaning up image {image_id}");
        if let Err(e) = self.glance.delete(&req.glance, image_id).await {
            error!("Error while trying to clean up image {image_id}: {e}");
        }
    }

    /// `@wrap_instance_fault`: an `InstanceFault` for every error except
    /// `InstanceNotFound` (there is no instance to attach it to).
    pub async fn wrap_instance_fault(&self, req: &Request, instance_uuid: &str, err: &ComputeError) {
        if err.is_instance_not_found() {
            return;
        }
        self.add_instance_fault(req, instance_uuid, &err.nova()).await;
    }

    /// `compute_utils.add_instance_fault_from_exc`.
    pub async fn add_instance_fault(&self, req: &Request, instance_uuid: &str, exc: &NovaException) {
        let mut fault = InstanceFault::from_exc(instance_uuid, &self.host, &exc.fault_info());
        if let Err(e) = fault.create(&self.conductor, &req.ctx).await {
            error!("Cannot record an instance fault ({}): {e}", exc.class);
        }
    }

    /// `@reverts_task_state`: task_state back to None, unless the error is a
    /// lost compare-and-swap (someone else owns the task state now).
    pub async fn reverts_task_state(&self, req: &Request, instance: &mut Instance, err: &ComputeError) {
        if err.is_unexpected_task_state() {
            info!("Task possibly preempted: {err}");
            return;
        }
        self.instance_update_task_state_none(req, instance).await;
    }

    /// `_instance_update(context, instance, task_state=None)`: no expected state.
    pub async fn instance_update_task_state_none(&self, req: &Request, instance: &mut Instance) {
        instance.set_task_state(None);
        match instance.save(&self.conductor, &req.ctx, ExpectedTaskState::Any).await {
            Ok(()) => {}
            Err(nova_objects::ConductorError::InstanceNotFound { .. }) => {
                debug!("Instance disappeared while reverting its task state")
            }
            Err(e) => error!("Failed to revert task state for instance. Error: {e}"),
        }
    }

    /// `@wrap_exception()`: the legacy error notification (event type = the
    /// function name, payload `{exception, args}`) and the versioned
    /// `compute.exception`, when notifications are enabled.
    pub async fn wrap_exception(&self, req: &Request, function_name: &str, call_args: Value, err: &ComputeError) {
        let exc = err.nova();
        let mut notifications = Vec::new();
        if self.notification_policy.legacy {
            notifications.push(Notification {
                kind: NotificationKind::Legacy,
                publisher_id: format!("compute.{}", self.host),
                event_type: function_name.to_owned(),
                priority: "ERROR",
                payload: json!({ "exception": { "kwargs": exc.kwargs }, "args": cleanse(call_args) }),
            });
        }
        if self.notification_policy.versioned {
            notifications.push(Notification {
                kind: NotificationKind::Versioned,
                publisher_id: format!("nova-compute:{}", self.host),
                event_type: "compute.exception".into(),
                priority: "ERROR",
                payload: json!({
                    "nova_object.name": "ExceptionPayload",
                    "nova_object.namespace": "nova",
                    "nova_object.version": EXCEPTION_PAYLOAD_VERSION,
                    "nova_object.data": {
                        "module_name": "nova.compute.manager",
                        "function_name": function_name,
                        "exception": exc.class,
                        "exception_message": exc.message,
                        "traceback": exc.traceback(),
                    },
                }),
            });
        }
        emit(&self.notifier, &req.ctx, &notifications).await;
    }
}

/// `_cleanse_dict`: no key containing `_pass` goes into a notification.
fn cleanse(args: Value) -> Value {
    match args {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(k, _)| !k.contains("_pass")).collect::<Map<_, _>>()),
        other => other,
    }
}

/// `@wrap_instance_event(prefix='compute')`: nova's `EventReporter`.
pub struct EventReporter<'a> {
    manager: &'a ComputeManager,
    req: &'a Request,
    instance_uuid: String,
    event: String,
}

impl<'a> EventReporter<'a> {
    /// `event_start`; a missing action (no nova-api record for this request
    /// id) is logged and the work goes on.
    pub async fn start(manager: &'a ComputeManager, req: &'a Request, instance_uuid: &str, method: &str) -> Self {
        let event = InstanceActionEvent::compute_event_name(method);
        if let Err(e) =
            InstanceActionEvent::event_start(&manager.conductor, &req.ctx, instance_uuid, &event, &manager.host).await
        {
            warn!("Cannot record the start of instance action event {event}: {e}");
        }
        EventReporter { manager, req, instance_uuid: instance_uuid.to_owned(), event }
    }

    /// `event_finish_with_failure(exc_val, exc_tb)`.
    pub async fn finish(self, err: Option<&ComputeError>) {
        let outcome = match err {
            None => EventOutcome::Success,
            Some(e) => {
                let exc = e.nova();
                EventOutcome::Failure { message: exc.message.clone(), traceback: exc.traceback() }
            }
        };
        if let Err(e) = InstanceActionEvent::event_finish_with_failure(
            &self.manager.conductor,
            &self.req.ctx,
            &self.instance_uuid,
            &self.event,
            &outcome,
        )
        .await
        {
            warn!("Cannot record the end of instance action event {}: {e}", self.event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_notifications() {
        let out = cleanse(json!({"image_id": "i", "admin_password": "x", "rotation": 2}));
        assert_eq!(out, json!({"image_id": "i", "rotation": 2}));
    }
}
