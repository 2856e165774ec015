//! nova's `ComputeManager`, for the methods this service serves:
//! `snapshot_instance`, `backup_instance`, `quiesce_instance`,
//! `unquiesce_instance` (and, in `unsupported`, everything else).
//!
//! Each handler is nova's method with its decorator stack unrolled: the body
//! returns a `ComputeError`, and the error path calls the steps of
//! `decorators` in the order nova's decorators unwind.

use std::sync::Arc;
use std::time::Instant;

use glance_client::GlanceClient;
use libvirt_snapshot::{PowerState as HvPowerState, SnapshotEngine, SnapshotError};
use nova_objects::{
    emit, snapshot_notifications, ConductorApi, ConductorError, ExpectedTaskState, Instance, NotificationPolicy,
    OsloConductorTransport, OsloNotificationSink, PayloadOptions, Phase, PowerState, TaskState,
};
use oslo_messaging::{Context, Dispatcher, Endpoint, RemoteError};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};

use crate::concurrency::{InFlight, InstanceLocks, Limit};
use crate::context::Request;
use crate::decorators::EventReporter;
use crate::exceptions::ComputeError;

/// nova-compute's RPC API version (nova 34: `ComputeManager.target`).
pub const COMPUTE_RPC_API_VERSION: &str = "6.5";

/// The image_* task states a snapshot or backup may leave behind.
pub const IMAGE_TASK_STATES: [TaskState; 5] = [
    TaskState::ImageSnapshotPending,
    TaskState::ImageSnapshot,
    TaskState::ImagePendingUpload,
    TaskState::ImageUploading,
    TaskState::ImageBackup,
];

/// The service's state shared by every request.
pub struct ComputeManager {
    pub host: String,
    pub conductor: Arc<ConductorApi<OsloConductorTransport>>,
    pub glance: Arc<GlanceClient>,
    pub engine: Arc<SnapshotEngine>,
    pub notifier: OsloNotificationSink,
    pub notification_policy: NotificationPolicy,
    pub payload_options: PayloadOptions,
    /// `[DEFAULT] max_concurrent_snapshots`.
    pub snapshot_limit: Limit,
    /// `[compute] max_concurrent_disk_ops`.
    pub disk_ops: Limit,
    pub instance_locks: InstanceLocks,
    pub inflight: Arc<InFlight>,
}

#[derive(Debug, Deserialize)]
struct SnapshotArgs {
    instance: Value,
    image_id: String,
}

#[derive(Debug, Deserialize)]
struct BackupArgs {
    instance: Value,
    image_id: String,
    backup_type: String,
    rotation: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct QuiesceArgs {
    pub instance: Value,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UnquiesceArgs {
    pub instance: Value,
    #[serde(default)]
    pub mapping: Option<Value>,
}

/// The `instance` argument; a malformed one fails the request with Python's
/// `ValueError` (boxed: RemoteError is large and this is the rare path).
fn parse_instance(value: &Value) -> Result<Instance, Box<RemoteError>> {
    Instance::from_primitive(value)
        .map_err(|e| Box::new(RemoteError::new("builtins", "ValueError", format!("malformed instance argument: {e}"))))
}

impl ComputeManager {
    /// The RPC endpoint: the four methods, and nova's answer for the rest.
    pub fn dispatcher(self: &Arc<Self>) -> Dispatcher {
        let (m1, m2, m3, m4, m5) = (self.clone(), self.clone(), self.clone(), self.clone(), self.clone());
        let endpoint = Endpoint::new(None, COMPUTE_RPC_API_VERSION)
            .method("snapshot_instance", move |ctx: Context, a: SnapshotArgs| {
                let m = m1.clone();
                async move {
                    let instance = parse_instance(&a.instance).map_err(|e| *e)?;
                    m.snapshot_instance(Request::from_rpc(ctx), a.image_id, instance).await;
                    Ok::<_, RemoteError>(Value::Null)
                }
            })
            .method("backup_instance", move |ctx: Context, a: BackupArgs| {
                let m = m2.clone();
                async move {
                    let instance = parse_instance(&a.instance).map_err(|e| *e)?;
                    m.backup_instance(Request::from_rpc(ctx), a.image_id, instance, a.backup_type, a.rotation).await;
                    Ok::<_, RemoteError>(Value::Null)
                }
            })
            .method("quiesce_instance", move |ctx: Context, a: QuiesceArgs| {
                let m = m3.clone();
                async move {
                    let instance = parse_instance(&a.instance).map_err(|e| *e)?;
                    m.quiesce_instance(Request::from_rpc(ctx), instance).await
                }
            })
            .method("unquiesce_instance", move |ctx: Context, a: UnquiesceArgs| {
                let m = m4.clone();
                async move {
                    let instance = parse_instance(&a.instance).map_err(|e| *e)?;
                    m.unquiesce_instance(Request::from_rpc(ctx), instance, a.mapping).await;
                    Ok::<_, RemoteError>(Value::Null)
                }
            });
        Dispatcher::new().endpoint(endpoint).fallback(move |ctx, unhandled| {
            let m = m5.clone();
            async move { m.unsupported(Request::from_rpc(ctx), unhandled).await }
        })
    }

    /// `snapshot_instance` (a cast): `@wrap_exception @reverts_task_state
    /// @wrap_instance_event @wrap_instance_fault @delete_image_on_error`
    /// around the `image_snapshot` compare-and-swap; the snapshot itself is
    /// spawned (nova 34's long-task executor), so the action event records
    /// success as soon as it is started.
    pub async fn snapshot_instance(self: &Arc<Self>, req: Request, image_id: String, mut instance: Instance) {
        let span = req.span("snapshot_instance", instance.uuid());
        async {
            let uuid = instance.uuid().to_owned();
            let event = EventReporter::start(self, &req, &uuid, "snapshot_instance").await;
            instance.set_task_state(Some(TaskState::ImageSnapshot));
            let saved = instance
                .save(&self.conductor, &req.ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshotPending)))
                .await;
            match saved {
                Ok(()) => {
                    let tracked = self.inflight.track(format!("snapshot of {uuid} into image {image_id}"));
                    let manager = self.clone();
                    let (task_req, task_image) = (req.clone(), image_id.clone());
                    tokio::spawn(
                        async move {
                            let mut tracked = tracked;
                            let _permit = manager.snapshot_limit.acquire().await;
                            let _lock = manager.instance_locks.lock(&uuid).await;
                            let _ = manager
                                .snapshot_instance_task(
                                    &task_req,
                                    &task_image,
                                    &mut instance,
                                    TaskState::ImageSnapshot,
                                    &mut tracked.abort,
                                )
                                .await;
                        }
                        .instrument(tracing::Span::current()),
                    );
                    event.finish(None).await;
                }
                Err(ConductorError::InstanceNotFound { .. }) => {
                    debug!("Instance not found, could not set state image_snapshot for instance.");
                    event.finish(None).await;
                }
                Err(ConductorError::UnexpectedDeletingTaskState(_)) => {
                    info!("Instance being deleted, snapshot cannot continue");
                    event.finish(None).await;
                }
                Err(e) => {
                    let err = ComputeError::from(e);
                    self.delete_image_on_error(&req, &image_id).await;
                    self.wrap_instance_fault(&req, &uuid, &err).await;
                    event.finish(Some(&err)).await;
                    self.reverts_task_state(&req, &mut instance, &err).await;
                    self.wrap_exception(
                        &req,
                        "snapshot_instance",
                        json!({"image_id": image_id, "instance": uuid}),
                        &err,
                    )
                    .await;
                    warn!("snapshot_instance failed: {err}");
                }
            }
        }
        .instrument(span)
        .await
    }

    /// `backup_instance` (a cast, run on the RPC worker as nova does):
    /// `@wrap_exception @reverts_task_state @wrap_instance_event
    /// @wrap_instance_fault` around `_do_snapshot_instance`
    /// (`@delete_image_on_error`) and `_rotate_backups`. The stacks nest as
    /// in nova, so one failure is reported by both (nova records two faults).
    pub async fn backup_instance(
        self: &Arc<Self>,
        req: Request,
        image_id: String,
        mut instance: Instance,
        backup_type: String,
        rotation: i64,
    ) {
        let span = req.span("backup_instance", instance.uuid());
        async {
            let uuid = instance.uuid().to_owned();
            let mut tracked = self.inflight.track(format!("backup of {uuid} into image {image_id}"));
            let _lock = self.instance_locks.lock(&uuid).await;
            let event = EventReporter::start(self, &req, &uuid, "backup_instance").await;
            let mut result = self
                .snapshot_instance_task(&req, &image_id, &mut instance, TaskState::ImageBackup, &mut tracked.abort)
                .await;
            if let Err(e) = &result {
                // `_do_snapshot_instance`'s @delete_image_on_error.
                debug!("backup failed before rotation: {e}");
                self.delete_image_on_error(&req, &image_id).await;
            } else {
                result = self.rotate_backups(&req, &instance, &backup_type, rotation).await;
            }
            match result {
                Ok(()) => event.finish(None).await,
                Err(err) => {
                    self.wrap_instance_fault(&req, &uuid, &err).await;
                    event.finish(Some(&err)).await;
                    self.reverts_task_state(&req, &mut instance, &err).await;
                    self.wrap_exception(
                        &req,
                        "backup_instance",
                        json!({"image_id": image_id, "instance": uuid, "backup_type": backup_type, "rotation": rotation}),
                        &err,
                    )
                    .await;
                    warn!("backup_instance failed: {err}");
                }
            }
        }
        .instrument(span)
        .await
    }

    /// `_snapshot_instance`: `@wrap_exception @reverts_task_state
    /// @wrap_instance_fault @delete_image_on_error` around the body, with
    /// nova's handlers for a vanished instance and a deleted image.
    pub async fn snapshot_instance_task(
        &self,
        req: &Request,
        image_id: &str,
        instance: &mut Instance,
        expected_task_state: TaskState,
        abort: &mut watch::Receiver<bool>,
    ) -> Result<(), ComputeError> {
        let req = req.elevated();
        match self.snapshot_instance_body(&req, image_id, instance, expected_task_state, abort).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.is_instance_not_found()
                    || e.is_deleting()
                    || matches!(e, ComputeError::InstanceNotRunning { .. }) =>
            {
                info!("Instance disappeared during snapshot: {e}");
                self.cleanup_unfinished_image(&req, image_id).await;
                // Better than nova, which leaves the task state behind when
                // the domain is gone but the instance is not: reset it, but
                // only from an image_* state (never over `deleting`).
                self.reset_image_task_state(&req, instance).await;
                Ok(())
            }
            Err(e) if e.is_image_not_found() => {
                self.instance_update_task_state_none(&req, instance).await;
                warn!("Image not found during snapshot: {e}");
                Ok(())
            }
            Err(err) => {
                self.delete_image_on_error(&req, image_id).await;
                self.wrap_instance_fault(&req, instance.uuid(), &err).await;
                self.reverts_task_state(&req, instance, &err).await;
                self.wrap_exception(
                    &req,
                    "_snapshot_instance",
                    json!({"image_id": image_id, "instance": instance.uuid(), "expected_task_state": expected_task_state.as_str()}),
                    &err,
                )
                .await;
                warn!("Snapshot of instance failed: {} ({})", err, err.nova().qualified_class());
                Err(err)
            }
        }
    }

    async fn snapshot_instance_body(
        &self,
        req: &Request,
        image_id: &str,
        instance: &mut Instance,
        expected_task_state: TaskState,
        abort: &mut watch::Receiver<bool>,
    ) -> Result<(), ComputeError> {
        let power_state = self.get_power_state(instance.uuid()).await;
        instance.set_power_state(power_state);
        instance.save(&self.conductor, &req.ctx, ExpectedTaskState::Any).await?;
        info!("instance snapshotting");
        if power_state != PowerState::Running {
            warn!(
                "trying to snapshot a non-running instance: (state: {} expected: {})",
                power_state.code(),
                PowerState::Running.code()
            );
        }
        self.notify_snapshot(req, instance, Phase::Start, image_id).await;
        let started = Instant::now();
        self.driver_snapshot(req, instance, image_id, expected_task_state, abort).await?;
        info!("Took {:.2} seconds to snapshot the instance on the hypervisor.", started.elapsed().as_secs_f64());
        instance.set_task_state(None);
        instance.save(&self.conductor, &req.ctx, ExpectedTaskState::Is(Some(TaskState::ImageUploading))).await?;
        self.notify_snapshot(req, instance, Phase::End, image_id).await;
        Ok(())
    }

    /// `_get_power_state`: the driver's state, `NOSTATE` when the domain is gone.
    pub async fn get_power_state(&self, uuid: &str) -> PowerState {
        let engine = self.engine.clone();
        let uuid = uuid.to_owned();
        let state = tokio::task::spawn_blocking(move || engine.hypervisor().power_state(&uuid)).await;
        match state {
            Ok(Ok(s)) => match s {
                HvPowerState::Running => PowerState::Running,
                HvPowerState::Paused => PowerState::Paused,
                HvPowerState::Shutdown => PowerState::Shutdown,
                HvPowerState::Crashed => PowerState::Crashed,
                HvPowerState::Suspended => PowerState::Suspended,
                HvPowerState::NoState => PowerState::NoState,
            },
            Ok(Err(SnapshotError::DomainNotFound { .. })) => PowerState::NoState,
            Ok(Err(e)) => {
                warn!("cannot read the power state: {e}");
                PowerState::NoState
            }
            Err(_) => PowerState::NoState,
        }
    }

    /// Legacy `compute.instance.snapshot.*` and versioned `instance.snapshot.*`.
    async fn notify_snapshot(&self, req: &Request, instance: &Instance, phase: Phase, image_id: &str) {
        let notifications = snapshot_notifications(
            &self.notification_policy,
            &req.ctx,
            instance,
            &self.host,
            phase,
            image_id,
            &self.payload_options,
        );
        emit(&self.notifier, &req.ctx, &notifications).await;
    }

    /// nova's "Instance disappeared during snapshot" cleanup: delete the
    /// image unless it already became active.
    pub async fn cleanup_unfinished_image(&self, req: &Request, image_id: &str) {
        match self.glance.get(&req.glance, image_id).await {
            Ok(image) if image.status == glance_client::ImageStatus::Active => {}
            Ok(_) => {
                if let Err(e) = self.glance.delete(&req.glance, image_id).await {
                    warn!("Error while trying to clean up image {image_id}: {e}");
                }
            }
            Err(glance_client::GlanceError::ImageNotFound { .. }) => {
                debug!("Image not found during clean up {image_id}")
            }
            Err(e) => warn!("Error while trying to clean up image {image_id}: {e}"),
        }
    }

    /// task_state None, only if it still is one of the image_* states.
    pub async fn reset_image_task_state(&self, req: &Request, instance: &mut Instance) {
        let expected = ExpectedTaskState::OneOf(IMAGE_TASK_STATES.iter().map(|s| Some(*s)).collect());
        instance.set_task_state(None);
        match instance.save(&self.conductor, &req.ctx, expected).await {
            Ok(()) => info!("Task state reset after the instance's domain disappeared"),
            Err(ConductorError::InstanceNotFound { .. }) => debug!("Instance is gone; no task state to reset"),
            Err(e) if e.is_unexpected_task_state() => debug!("Task state not reset: {e}"),
            Err(e) => warn!("Cannot reset the task state: {e}"),
        }
    }
}
