//! nova's error-handling decorators, implemented once for every handler.
//!
//! In nova each handler is wrapped in a stack of decorators
//! (`nova/compute/manager.py`, `nova/exception_wrapper.py`):
//! `@wrap_exception` → `@reverts_task_state` → `@wrap_instance_event` →
//! `@wrap_instance_fault` → `@delete_image_on_error` → the body. Here a
//! handler names its stack as a [`Decorators`] value, and on error
//! [`Decorators::unwind`] runs the steps innermost first, as nova's stack
//! unwinds:
//!
//! 1. `delete_image_on_error`: delete the reserved image;
//! 2. `wrap_instance_fault`: record an instance fault (not for
//!    `InstanceNotFound`: there is no instance to attach it to);
//! 3. `wrap_instance_event`: finish the action event with the failure;
//! 4. `reverts_task_state`: task_state back to None (not after a lost
//!    compare-and-swap: someone else owns the task state then);
//! 5. `wrap_exception`: the error notifications.
//!
//! Each step is best effort, as in nova: a failing cleanup is logged and
//! never hides the original error.

use error_chain::Chain;
use nova_objects::{
    ConductorError, EventOutcome, ExpectedTaskState, Instance, InstanceActionEvent, InstanceFault, TaskState,
};
use serde_json::Value;
use tracing::{debug, error, info, warn};

use crate::context::Request;
use crate::exceptions::{ComputeError, NovaException};
use crate::manager::ComputeManager;

/// How `@reverts_task_state` puts the task state back.
#[derive(Debug, Clone, Copy)]
pub enum Revert {
    /// nova's: task_state None, whatever it is now (`_instance_update`).
    ToNone,
    /// Ours, for casts this service does not serve: None only while the
    /// task state is still the one read (a concurrent change wins).
    ToNoneFrom(TaskState),
}

/// The decorators around one handler, as nova stacks them; each
/// constructor is one of nova's functions and says its stack.
#[derive(Default)]
pub struct Decorators<'a> {
    /// `@wrap_exception`: the function name nova's notification carries,
    /// and its arguments.
    pub wrap_exception: Option<(String, Value)>,
    /// `@reverts_task_state`.
    pub reverts_task_state: Option<Revert>,
    /// `@wrap_instance_event`, started before the body ran.
    pub wrap_instance_event: Option<EventReporter<'a>>,
    /// `@wrap_instance_fault`.
    pub wrap_instance_fault: bool,
    /// `@delete_image_on_error`, with the image to delete.
    pub delete_image_on_error: Option<String>,
}

impl<'a> Decorators<'a> {
    /// `snapshot_instance`: `@wrap_exception @reverts_task_state
    /// @wrap_instance_event @wrap_instance_fault @delete_image_on_error`.
    pub fn snapshot_instance(call_args: Value, event: EventReporter<'a>, image_id: &str) -> Self {
        Decorators {
            wrap_exception: Some(("snapshot_instance".into(), call_args)),
            reverts_task_state: Some(Revert::ToNone),
            wrap_instance_event: Some(event),
            wrap_instance_fault: true,
            delete_image_on_error: Some(image_id.to_owned()),
        }
    }

    /// `_snapshot_instance`: `@wrap_exception @reverts_task_state
    /// @wrap_instance_fault @delete_image_on_error` (no action event).
    pub fn _snapshot_instance(call_args: Value, image_id: &str) -> Self {
        Decorators {
            wrap_exception: Some(("_snapshot_instance".into(), call_args)),
            reverts_task_state: Some(Revert::ToNone),
            wrap_instance_fault: true,
            delete_image_on_error: Some(image_id.to_owned()),
            ..Decorators::default()
        }
    }

    /// `_do_snapshot_instance`: `@delete_image_on_error` alone.
    pub fn _do_snapshot_instance(image_id: &str) -> Self {
        Decorators { delete_image_on_error: Some(image_id.to_owned()), ..Decorators::default() }
    }

    /// `backup_instance`: `@wrap_exception @reverts_task_state
    /// @wrap_instance_event @wrap_instance_fault` (the image is deleted one
    /// level down, by `_do_snapshot_instance`).
    pub fn backup_instance(call_args: Value, event: EventReporter<'a>) -> Self {
        Decorators {
            wrap_exception: Some(("backup_instance".into(), call_args)),
            reverts_task_state: Some(Revert::ToNone),
            wrap_instance_event: Some(event),
            wrap_instance_fault: true,
            ..Decorators::default()
        }
    }

    /// `_rotate_backups`: `@wrap_instance_fault` alone.
    pub fn _rotate_backups() -> Self {
        Decorators { wrap_instance_fault: true, ..Decorators::default() }
    }

    /// `@wrap_exception()` alone (`quiesce_instance`, `unquiesce_instance`).
    pub fn wrap_exception(function: &str, call_args: Value) -> Self {
        Decorators { wrap_exception: Some((function.to_owned(), call_args)), ..Decorators::default() }
    }

    /// Runs the error path of this stack for `err`, innermost first.
    pub async fn unwind(self, m: &ComputeManager, req: &Request, instance: &mut Instance, err: &ComputeError) {
        let exc = err.nova();
        if let Some(image_id) = &self.delete_image_on_error {
            delete_image(m, req, image_id).await;
        }
        if self.wrap_instance_fault && !err.is_instance_not_found() {
            add_instance_fault(m, req, instance.uuid(), &exc).await;
        }
        if let Some(event) = self.wrap_instance_event {
            event.finish(Some(&exc)).await;
        }
        match self.reverts_task_state {
            Some(_) if err.is_unexpected_task_state() => info!("Task possibly preempted: {}", Chain(err)),
            Some(Revert::ToNone) => revert_task_state(m, req, instance).await,
            Some(Revert::ToNoneFrom(state)) => reset_task_state_from(m, req, instance, state).await,
            None => {}
        }
        if let Some((function, call_args)) = self.wrap_exception {
            m.notifier.exception(&req.ctx, &function, call_args, &exc).await;
            warn!("{function} failed: {} ({})", Chain(err), exc.qualified_class());
        }
    }
}

/// `compute_utils.delete_image`: `ImageNotFound` is fine, anything else logged.
pub async fn delete_image(m: &ComputeManager, req: &Request, image_id: &str) {
    info!("Cleaning up image {image_id}");
    match m.image_api.delete(&req.auth, image_id).await {
        Ok(()) | Err(glance_client::GlanceError::ImageNotFound { .. }) => {}
        Err(e) => error!("Error while trying to clean up image {image_id}: {}", Chain(&e)),
    }
}

/// `compute_utils.add_instance_fault_from_exc`.
pub async fn add_instance_fault(m: &ComputeManager, req: &Request, instance_uuid: &str, exc: &NovaException) {
    let mut fault = InstanceFault::from_exc(instance_uuid, &m.host, &exc.fault_info());
    if let Err(e) = fault.create(&m.conductor, &req.ctx).await {
        error!("Cannot record an instance fault ({}): {}", exc.class, Chain(&e));
    }
}

/// `_instance_update(context, instance, task_state=None)`, no expected state:
/// what `@reverts_task_state` does.
pub async fn revert_task_state(m: &ComputeManager, req: &Request, instance: &mut Instance) {
    instance.set_task_state(None);
    match instance.save(&m.conductor, &req.ctx, ExpectedTaskState::Any).await {
        Ok(()) => {}
        Err(ConductorError::InstanceNotFound { .. }) => debug!("Instance disappeared while reverting its task state"),
        Err(e) => error!("Failed to revert task state for instance. Error: {}", Chain(&e)),
    }
}

/// task_state None, compare-and-swap on `state` (the state read).
async fn reset_task_state_from(m: &ComputeManager, req: &Request, instance: &mut Instance, state: TaskState) {
    instance.set_task_state(None);
    match instance.save(&m.conductor, &req.ctx, ExpectedTaskState::Is(Some(state))).await {
        Ok(()) => warn!("Task state {} reset", state.as_str()),
        Err(e) => error!("Cannot reset task state {}: {}", state.as_str(), Chain(&e)),
    }
}

/// `@wrap_instance_event(prefix='compute')`: nova's `EventReporter`, started
/// before the body runs and finished with its outcome.
pub struct EventReporter<'a> {
    m: &'a ComputeManager,
    req: &'a Request,
    instance_uuid: String,
    event: String,
}

impl<'a> EventReporter<'a> {
    /// `event_start`; a missing action (no nova-api record for this request
    /// id) is logged and the work goes on.
    pub async fn start(m: &'a ComputeManager, req: &'a Request, instance_uuid: &str, method: &str) -> Self {
        let event = InstanceActionEvent::compute_event_name(method);
        if let Err(e) = InstanceActionEvent::event_start(&m.conductor, &req.ctx, instance_uuid, &event, &m.host).await {
            warn!("Cannot record the start of instance action event {event}: {}", Chain(&e));
        }
        EventReporter { m, req, instance_uuid: instance_uuid.to_owned(), event }
    }

    /// `event_finish_with_failure(exc_val, exc_tb)`: success when `exc` is None.
    pub async fn finish(self, exc: Option<&NovaException>) {
        let outcome = match exc {
            None => EventOutcome::Success,
            Some(exc) => EventOutcome::Failure { message: exc.message.clone(), traceback: exc.traceback() },
        };
        let finished = InstanceActionEvent::event_finish_with_failure(
            &self.m.conductor,
            &self.req.ctx,
            &self.instance_uuid,
            &self.event,
            &outcome,
        )
        .await;
        if let Err(e) = finished {
            warn!("Cannot record the end of instance action event {}: {}", self.event, Chain(&e));
        }
    }
}
