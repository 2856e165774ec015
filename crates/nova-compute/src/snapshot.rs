//! `snapshot_instance` and the snapshot job it shares with `backup_instance`,
//! in the order the data flows:
//!
//! 1. **claim** (`snapshot_instance` only): task_state `image_snapshot`,
//!    compare-and-swap from `image_snapshot_pending`; then the job is
//!    spawned (nova 34's long-task executor) and the action event records
//!    success;
//! 2. **prepare**: the power state saved, `instance.snapshot.start` sent;
//! 3. **extract**: the domain looked up, the reserved image read, nova's
//!    task-state dance (`image_pending_upload` → `image_uploading` →
//!    `image_pending_upload`, from the direct-snapshot attempt non-RBD
//!    backends make), then the engine's point-in-time copy;
//! 4. **upload**: task_state `image_uploading`, the snapshot metadata and the
//!    data into the reserved image;
//! 5. **finish**: task_state None (expected `image_uploading`),
//!    `instance.snapshot.end`.
//!
//! Any error unwinds through nova's decorators ([`Decorators`]) after
//! nova's own handlers for a vanished instance and a deleted image.

use std::sync::Arc;
use std::time::Instant;

use error_chain::Chain;
use glance_client::{ImageStatus, ImageUpdate};
use libvirt_snapshot::{QuiescePolicy, SnapshotError, SnapshotRequest};
use nova_objects::{ConductorError, ExpectedTaskState, Instance, Phase, PowerState, TaskState};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};

use crate::concurrency::aborted;
use crate::context::Request;
use crate::decorators::{revert_task_state, Decorators, EventReporter};
use crate::driver::ExtractedImage;
use crate::exceptions::ComputeError;
use crate::manager::ComputeManager;

/// The image_* task states a snapshot or backup may leave behind.
pub const IMAGE_TASK_STATES: [TaskState; 5] = [
    TaskState::ImageSnapshotPending,
    TaskState::ImageSnapshot,
    TaskState::ImagePendingUpload,
    TaskState::ImageUploading,
    TaskState::ImageBackup,
];

/// `snapshot_instance` (a cast): `@wrap_exception @reverts_task_state
/// @wrap_instance_event @wrap_instance_fault @delete_image_on_error` around
/// the claim; the job itself runs spawned, after the event is finished.
pub async fn snapshot_instance(m: &Arc<ComputeManager>, req: Request, image_id: String, mut instance: Instance) {
    let span = req.span("snapshot_instance", instance.uuid());
    async {
        let uuid = instance.uuid().to_owned();
        let event = EventReporter::start(m, &req, &uuid, "snapshot_instance").await;
        instance.set_task_state(Some(TaskState::ImageSnapshot));
        let claimed =
            instance.save(&m.conductor, &req.ctx, ExpectedTaskState::Is(Some(TaskState::ImageSnapshotPending))).await;
        match claimed {
            Ok(()) => {
                spawn_snapshot(m, &req, image_id, instance);
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
                let args = json!({"image_id": image_id, "instance": uuid});
                Decorators::snapshot_instance(args, event, &image_id).unwind(m, &req, &mut instance, &err).await;
            }
        }
    }
    .instrument(span)
    .await
}

/// The claimed snapshot, under the snapshot limit and the instance's lock.
/// The job runs in a task of its own so that even a panic in it unwinds
/// through nova's decorators (image deleted, fault, task state reverted).
fn spawn_snapshot(m: &Arc<ComputeManager>, req: &Request, image_id: String, mut instance: Instance) {
    let tracked = m.inflight.track(format!("snapshot of {} into image {image_id}", instance.uuid()));
    let (m, req) = (m.clone(), req.clone());
    let span = tracing::Span::current();
    let job = async move {
        let _permit = m.limits.snapshots.acquire().await;
        let _lock = m.limits.instances.lock(instance.uuid()).await;
        let (jm, jreq, jimage, mut jinstance, mut abort) =
            (m.clone(), req.clone(), image_id.clone(), instance.clone(), tracked.abort.clone());
        let run = async move {
            let job = SnapshotJob::new(&jm, &jreq, &jimage, TaskState::ImageSnapshot);
            let _ = job.run(&mut jinstance, &mut abort).await;
        };
        if let Err(e) = tokio::spawn(run.instrument(tracing::Span::current())).await {
            let err = ComputeError::JobFailed { instance_id: instance.uuid().to_owned(), source: e };
            let args =
                json!({"image_id": image_id, "instance": instance.uuid(), "expected_task_state": "image_snapshot"});
            Decorators::_snapshot_instance(args, &image_id).unwind(&m, &req.elevated(), &mut instance, &err).await;
        }
        drop(tracked);
    };
    tokio::spawn(job.instrument(span));
}

/// One snapshot of one instance into one reserved image: nova's
/// `_snapshot_instance`, for `snapshot_instance` and `backup_instance`.
pub struct SnapshotJob<'a> {
    m: &'a ComputeManager,
    /// `context.elevated()`, as nova's `_snapshot_instance` uses it.
    req: Request,
    image_id: &'a str,
    /// The task state the job starts from: `image_snapshot` or `image_backup`.
    started_from: TaskState,
}

impl<'a> SnapshotJob<'a> {
    /// A job for `image_id`, started from task state `started_from`.
    pub fn new(m: &'a ComputeManager, req: &Request, image_id: &'a str, started_from: TaskState) -> Self {
        SnapshotJob { m, req: req.elevated(), image_id, started_from }
    }

    /// `_snapshot_instance`: `@wrap_exception @reverts_task_state
    /// @wrap_instance_fault @delete_image_on_error` around the steps, with
    /// nova's handlers for a vanished instance and a deleted image. A
    /// vanished instance or image is not a failure of the job.
    pub async fn run(&self, instance: &mut Instance, abort: &mut watch::Receiver<bool>) -> Result<(), ComputeError> {
        let err = match self.steps(instance, abort).await {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        if err.is_instance_not_found() || err.is_deleting() || matches!(err, ComputeError::InstanceNotRunning { .. }) {
            info!("Instance disappeared during snapshot: {}", Chain(&err));
            self.cleanup_unfinished_image().await;
            self.reset_image_task_state(instance).await;
            return Ok(());
        }
        if err.is_image_not_found() {
            warn!("Image not found during snapshot: {}", Chain(&err));
            revert_task_state(self.m, &self.req, instance).await;
            return Ok(());
        }
        let args = json!({
            "image_id": self.image_id,
            "instance": instance.uuid(),
            "expected_task_state": self.started_from.as_str(),
        });
        Decorators::_snapshot_instance(args, self.image_id).unwind(self.m, &self.req, instance, &err).await;
        Err(err)
    }

    async fn steps(&self, instance: &mut Instance, abort: &mut watch::Receiver<bool>) -> Result<(), ComputeError> {
        self.prepare(instance).await?;
        let started = Instant::now();
        let image = self.extract(instance, abort).await?;
        self.upload(instance, &image, abort).await?;
        drop(image);
        info!("Took {:.2} seconds to snapshot the instance on the hypervisor.", started.elapsed().as_secs_f64());
        self.finish(instance).await
    }

    /// The power state saved, the start notification sent.
    async fn prepare(&self, instance: &mut Instance) -> Result<(), ComputeError> {
        let power_state = self.power_state(instance.uuid()).await?;
        instance.set_power_state(power_state);
        instance.save(&self.m.conductor, &self.req.ctx, ExpectedTaskState::Any).await?;
        info!("instance snapshotting");
        if power_state != PowerState::Running {
            warn!(
                "trying to snapshot a non-running instance: (state: {} expected: {})",
                power_state.code(),
                PowerState::Running.code()
            );
        }
        self.m.notifier.snapshot(&self.req.ctx, instance, Phase::Start, self.image_id).await;
        Ok(())
    }

    /// `_get_power_state`: the driver's state, `NOSTATE` when the domain is
    /// gone; any other driver error fails the snapshot, as in nova.
    async fn power_state(&self, uuid: &str) -> Result<PowerState, ComputeError> {
        match self.m.driver.power_state(uuid).await {
            Ok(state) => Ok(state),
            Err(SnapshotError::DomainNotFound { .. }) => Ok(PowerState::NoState),
            Err(e) => Err(e.into()),
        }
    }

    /// `LibvirtDriver.snapshot` up to the copy: the guest and the reserved
    /// image must exist, the task states walk nova's dance, and the engine
    /// takes the point-in-time image.
    async fn extract(
        &self,
        instance: &mut Instance,
        abort: &mut watch::Receiver<bool>,
    ) -> Result<ExtractedImage, ComputeError> {
        let uuid = instance.uuid().to_owned();
        match self.m.driver.lookup(&uuid).await {
            Err(SnapshotError::DomainNotFound { .. }) => {
                return Err(ComputeError::InstanceNotRunning { instance_id: uuid })
            }
            other => other?,
        }
        let reserved = self.m.image_api.get(&self.req.auth, self.image_id).await?;
        debug!("snapshotting into image {} ({:?})", self.image_id, reserved.name);
        self.update_task_state(instance, TaskState::ImagePendingUpload, self.started_from).await?;
        self.update_task_state(instance, TaskState::ImageUploading, TaskState::ImagePendingUpload).await?;
        debug!("direct snapshot is not implemented for this image backend; taking a standard snapshot");
        self.update_task_state(instance, TaskState::ImagePendingUpload, TaskState::ImageUploading).await?;

        let image_meta = instance.image_meta();
        let request = SnapshotRequest {
            instance_uuid: uuid.clone(),
            // nova: `uuidutils.generate_uuid(dashed=False)`.
            name: uuid::Uuid::new_v4().simple().to_string(),
            quiesce: QuiescePolicy {
                agent_enabled: image_meta.hw_qemu_guest_agent(),
                required: image_meta.os_require_quiesce(),
            },
            strategy: None,
        };
        let image = self.take_snapshot(request, abort).await?;
        info!("{}", image.log_line());
        Ok(image)
    }

    /// The engine's copy; a stop cancels it and still waits until the guest
    /// is thawed, resumed and persistent again.
    async fn take_snapshot(
        &self,
        request: SnapshotRequest,
        abort: &mut watch::Receiver<bool>,
    ) -> Result<ExtractedImage, ComputeError> {
        let uuid = request.instance_uuid.clone();
        let mut stop = abort.clone();
        let cancel = Box::pin(async move { aborted(&mut stop).await });
        match self.m.driver.snapshot(request, cancel).await {
            Ok(image) => Ok(image),
            Err(e) if *abort.borrow() => {
                warn!("nova-compute is stopping: snapshot of {uuid} cancelled ({})", Chain(&e));
                Err(ComputeError::ShuttingDown { instance_id: uuid })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Task state `image_uploading`, then the metadata and the data, under
    /// `[compute] max_concurrent_disk_ops`.
    async fn upload(
        &self,
        instance: &mut Instance,
        image: &ExtractedImage,
        abort: &mut watch::Receiver<bool>,
    ) -> Result<(), ComputeError> {
        self.update_task_state(instance, TaskState::ImageUploading, TaskState::ImagePendingUpload).await?;
        let metadata = snapshot_metadata(instance, image);
        let upload = async {
            let _disk_op = self.m.limits.disk_ops.acquire().await;
            // nova's `image_api.update(context, image_id, metadata, image_file)`.
            self.m.image_api.update(&self.req.auth, self.image_id, &metadata).await?;
            let started = Instant::now();
            let uploaded = self.m.image_api.upload(&self.req.auth, self.image_id, &image.path).await?;
            info!(
                "Snapshot image upload complete: image {} {} ({} bytes) in {:.2}s",
                uploaded.id,
                uploaded.status,
                uploaded.size.unwrap_or(0),
                started.elapsed().as_secs_f64()
            );
            Ok::<_, ComputeError>(())
        };
        tokio::select! {
            result = upload => result,
            _ = aborted(abort) => {
                warn!("nova-compute is stopping: upload of image {} aborted", self.image_id);
                Err(ComputeError::ShuttingDown { instance_id: instance.uuid().to_owned() })
            }
        }
    }

    /// Task state None (expected `image_uploading`), the end notification.
    async fn finish(&self, instance: &mut Instance) -> Result<(), ComputeError> {
        instance.set_task_state(None);
        instance.save(&self.m.conductor, &self.req.ctx, ExpectedTaskState::Is(Some(TaskState::ImageUploading))).await?;
        self.m.notifier.snapshot(&self.req.ctx, instance, Phase::End, self.image_id).await;
        Ok(())
    }

    /// nova's `update_task_state` callback of `driver.snapshot`.
    async fn update_task_state(
        &self,
        instance: &mut Instance,
        task_state: TaskState,
        expected: TaskState,
    ) -> Result<(), ComputeError> {
        instance.set_task_state(Some(task_state));
        instance.save(&self.m.conductor, &self.req.ctx, ExpectedTaskState::Is(Some(expected))).await?;
        Ok(())
    }

    /// nova's "Instance disappeared during snapshot" cleanup: the image goes
    /// unless it already became active.
    async fn cleanup_unfinished_image(&self) {
        let (ctx, image_id) = (&self.req.auth, self.image_id);
        match self.m.image_api.get(ctx, image_id).await {
            Ok(image) if image.status == ImageStatus::Active => {}
            Ok(_) => {
                if let Err(e) = self.m.image_api.delete(ctx, image_id).await {
                    warn!("Error while trying to clean up image {image_id}: {}", Chain(&e));
                }
            }
            Err(glance_client::GlanceError::ImageNotFound { .. }) => {
                debug!("Image not found during clean up {image_id}")
            }
            Err(e) => warn!("Error while trying to clean up image {image_id}: {}", Chain(&e)),
        }
    }

    /// Better than nova, which leaves the task state behind when the domain
    /// is gone but the instance is not: None, but only from an image_* state
    /// (never over `deleting`).
    async fn reset_image_task_state(&self, instance: &mut Instance) {
        let expected = ExpectedTaskState::OneOf(IMAGE_TASK_STATES.iter().map(|s| Some(*s)).collect());
        instance.set_task_state(None);
        match instance.save(&self.m.conductor, &self.req.ctx, expected).await {
            Ok(()) => info!("Task state reset after the instance's domain disappeared"),
            Err(ConductorError::InstanceNotFound { .. }) => debug!("Instance is gone; no task state to reset"),
            Err(e) if e.is_unexpected_task_state() => debug!("Task state not reset: {e}"),
            Err(e) => warn!("Cannot reset the task state: {}", Chain(&e)),
        }
    }
}

/// `_create_snapshot_metadata`: what the reserved image learns before its data.
pub fn snapshot_metadata(instance: &Instance, image: &ExtractedImage) -> ImageUpdate {
    let image_meta = instance.image_meta();
    let mut metadata = ImageUpdate::new()
        .set("disk_format", image.format.as_str())
        .set("container_format", image_meta.container_format.clone().unwrap_or_else(|| "bare".into()))
        .set("image_location", "snapshot")
        .set("image_state", "available")
        .set("owner_id", instance.project_id().unwrap_or_default());
    for (key, value) in [("kernel_id", instance.kernel_id()), ("ramdisk_id", instance.ramdisk_id())] {
        if let Some(v) = value.filter(|v| !v.is_empty() && *v != "none") {
            metadata = metadata.set(key, v);
        }
    }
    if let Some(os_type) = instance.os_type().filter(|v| !v.is_empty()) {
        metadata = metadata.set("os_type", os_type);
    }
    metadata
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::fakes::{vector_instance, FakeDriver, FakeImages, Fixture};

    const IMAGE: &str = "3b5e0d4c-1111-4e0e-9d0a-000000000001";

    fn queued() -> FakeImages {
        FakeImages::default().with(IMAGE, "queued", json!({}))
    }

    async fn snapshot(f: &Fixture) {
        snapshot_instance(&f.m, Request::admin(), IMAGE.into(), vector_instance()).await;
        assert!(f.m.inflight.wait_idle(Some(Duration::from_secs(10))).await, "the spawned job ends");
    }

    fn states(list: &[Option<&str>]) -> Vec<Option<String>> {
        list.iter().map(|s| s.map(str::to_owned)).collect()
    }

    #[tokio::test]
    async fn a_snapshot_walks_nova_task_states_and_fills_the_image() {
        let f = Fixture::new(Some("image_snapshot_pending"), queued(), FakeDriver::default());
        snapshot(&f).await;
        assert_eq!(
            f.task_states(),
            states(&[
                Some("image_snapshot"),
                Some("image_snapshot"),
                Some("image_pending_upload"),
                Some("image_uploading"),
                Some("image_pending_upload"),
                Some("image_uploading"),
                None,
            ])
        );
        let db = f.db.lock().unwrap();
        assert_eq!(db.task_state, None);
        assert!(db.faults.is_empty());
        assert_eq!(db.events, [("event_start".to_owned(), false), ("event_finish_with_failure".to_owned(), false)]);
        assert_eq!(f.images.status(IMAGE).as_deref(), Some("active"));
        assert_eq!(
            f.event_types(),
            [
                "compute.instance.snapshot.start",
                "instance.snapshot.start",
                "compute.instance.snapshot.end",
                "instance.snapshot.end"
            ]
        );
    }

    #[tokio::test]
    async fn a_lost_claim_deletes_the_image_records_a_fault_and_leaves_the_task_state() {
        // Someone else changed the task state after nova-api cast.
        let f = Fixture::new(Some("image_backup"), queued(), FakeDriver::default());
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert_eq!(db.saves.len(), 1, "no revert after a lost compare-and-swap");
        assert_eq!(db.task_state.as_deref(), Some("image_backup"));
        assert_eq!(db.faults.len(), 1);
        assert_eq!(db.events.last(), Some(&("event_finish_with_failure".to_owned(), true)));
        assert_eq!(f.images.status(IMAGE), None, "the reserved image is deleted");
        assert_eq!(f.event_types(), ["snapshot_instance", "compute.exception"]);
    }

    #[tokio::test]
    async fn an_instance_being_deleted_ends_the_snapshot_quietly() {
        let f = Fixture::new(Some("deleting"), queued(), FakeDriver::default());
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert!(db.faults.is_empty());
        assert_eq!(db.task_state.as_deref(), Some("deleting"));
        assert_eq!(db.events.last(), Some(&("event_finish_with_failure".to_owned(), false)));
        assert!(f.event_types().is_empty());
    }

    #[tokio::test]
    async fn an_instance_gone_before_the_claim_ends_quietly() {
        let f = Fixture::new(Some("image_snapshot_pending"), queued(), FakeDriver::default());
        f.db.lock().unwrap().deleted = true;
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert_eq!(db.saves.len(), 1, "only the claim was tried");
        assert!(db.faults.is_empty());
        assert_eq!(db.events.last(), Some(&("event_finish_with_failure".to_owned(), false)));
        assert!(f.event_types().is_empty());
    }

    #[tokio::test]
    async fn an_engine_failure_unwinds_through_every_decorator() {
        let driver = FakeDriver::default();
        *driver.snapshot_error.lock().unwrap() =
            Some(SnapshotError::JobFailed { job: "backup", message: "disk gone".into() });
        let f = Fixture::new(Some("image_snapshot_pending"), queued(), driver);
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert_eq!(db.task_state, None, "reverts_task_state");
        assert_eq!(db.faults.len(), 1, "wrap_instance_fault");
        assert_eq!(db.faults[0].0, 500);
        assert!(db.faults[0].1.contains("disk gone"), "{:?}", db.faults);
        assert_eq!(f.images.status(IMAGE), None, "delete_image_on_error");
        assert_eq!(
            f.event_types(),
            ["compute.instance.snapshot.start", "instance.snapshot.start", "_snapshot_instance", "compute.exception"]
        );
        // The action event was finished when the job was spawned.
        assert_eq!(db.events.last(), Some(&("event_finish_with_failure".to_owned(), false)));
    }

    #[tokio::test]
    async fn a_panic_in_the_job_still_unwinds_through_the_decorators() {
        let driver = FakeDriver { snapshot_panics: true, ..FakeDriver::default() };
        let f = Fixture::new(Some("image_snapshot_pending"), queued(), driver);
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert_eq!(db.task_state, None, "reverts_task_state");
        assert_eq!(db.faults.len(), 1, "wrap_instance_fault");
        assert!(db.faults[0].1.contains("snapshot job of instance"), "{:?}", db.faults);
        assert_eq!(f.images.status(IMAGE), None, "delete_image_on_error");
        assert!(f.event_types().contains(&"compute.exception".to_owned()));
    }

    #[tokio::test]
    async fn a_vanished_domain_deletes_the_unfinished_image_and_resets_the_task_state() {
        let driver = FakeDriver { present: false, ..FakeDriver::default() };
        let f = Fixture::new(Some("image_snapshot_pending"), queued(), driver);
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert_eq!(db.task_state, None);
        let (_, expected) = db.saves.last().unwrap();
        assert_eq!(expected.as_ref().unwrap().as_array().unwrap().len(), IMAGE_TASK_STATES.len(), "only from image_*");
        assert!(db.faults.is_empty());
        assert_eq!(f.images.status(IMAGE), None);
        assert!(!f.event_types().contains(&"compute.exception".to_owned()));
    }

    #[tokio::test]
    async fn an_instance_deleted_mid_snapshot_is_not_a_failure() {
        let f = Fixture::new(Some("image_snapshot_pending"), queued(), FakeDriver::default());
        // Save 2 is the first image_pending_upload: the row is gone then.
        f.db.lock().unwrap().fail_save = Some((2, "InstanceNotFound"));
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert!(db.faults.is_empty());
        assert_eq!(f.images.status(IMAGE), None, "the unfinished image is cleaned up");
        assert!(!f.event_types().contains(&"compute.exception".to_owned()));
    }

    #[tokio::test]
    async fn a_deleted_image_resets_the_task_state_without_a_fault() {
        let f = Fixture::new(Some("image_snapshot_pending"), FakeImages::default(), FakeDriver::default());
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert_eq!(db.task_state, None);
        assert!(db.faults.is_empty());
        assert!(f.images.deleted.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_upload_deletes_the_image_and_reverts() {
        let images = queued();
        *images.fail_upload.lock().unwrap() = Some(glance_client::GlanceError::GlanceConnectionFailed {
            server: "http://glance:9292".into(),
            source: glance_client::ConnectionFailure::ServerError {
                status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
                reason: "no backend".into(),
            },
        });
        let f = Fixture::new(Some("image_snapshot_pending"), images, FakeDriver::default());
        snapshot(&f).await;
        let db = f.db.lock().unwrap();
        assert_eq!(db.task_state, None);
        assert_eq!(db.faults.len(), 1);
        assert!(db.faults[0].1.contains("Connection to glance host http://glance:9292 failed"), "{:?}", db.faults);
        assert_eq!(f.images.status(IMAGE), None);
    }
}
