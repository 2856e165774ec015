//! The libvirt driver's `snapshot(context, instance, image_id,
//! update_task_state)`: look the guest up, read the reserved image, walk the
//! task states exactly as nova does, let the engine take the point-in-time
//! copy, then PATCH the image metadata and upload the data.
//!
//! Task states (non-RBD backends, where nova's direct snapshot raises
//! `NotImplementedError` and falls back): `image_pending_upload` →
//! `image_uploading` → `image_pending_upload` → copy → `image_uploading` →
//! upload. The caller then sets None (expected `image_uploading`).

use std::sync::Arc;
use std::time::Instant;

use glance_client::{FileSource, ImageUpdate, UploadProgress};
use libvirt_snapshot::{CancelToken, Progress, QuiescePolicy, SnapshotError, SnapshotOutcome, SnapshotRequest};
use nova_objects::{ExpectedTaskState, Instance, TaskState};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::concurrency::aborted;
use crate::context::Request;
use crate::exceptions::ComputeError;
use crate::manager::ComputeManager;

impl ComputeManager {
    /// nova's `update_task_state` callback: `expected_state` defaults to the
    /// state the manager started from (`image_snapshot` or `image_backup`).
    pub async fn update_task_state(
        &self,
        req: &Request,
        instance: &mut Instance,
        task_state: TaskState,
        expected: TaskState,
    ) -> Result<(), ComputeError> {
        instance.set_task_state(Some(task_state));
        instance.save(&self.conductor, &req.ctx, ExpectedTaskState::Is(Some(expected))).await?;
        Ok(())
    }

    /// `LibvirtDriver.snapshot`.
    pub async fn driver_snapshot(
        &self,
        req: &Request,
        instance: &mut Instance,
        image_id: &str,
        default_expected: TaskState,
        abort: &mut watch::Receiver<bool>,
    ) -> Result<(), ComputeError> {
        let uuid = instance.uuid().to_owned();
        // 1. `_host.get_guest`: a domain missing here is InstanceNotRunning.
        let engine = self.engine.clone();
        let lookup_uuid = uuid.clone();
        match tokio::task::spawn_blocking(move || engine.hypervisor().domain(&lookup_uuid).map(drop)).await {
            Ok(Err(SnapshotError::DomainNotFound { .. })) => {
                return Err(ComputeError::InstanceNotRunning { instance_id: uuid })
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(())) => {}
            Err(e) => return Err(ComputeError::BadRequest(format!("libvirt lookup thread failed: {e}"))),
        }
        // 2. The reserved image; ImageNotFound propagates.
        let snapshot = self.glance.get(&req.glance, image_id).await?;
        let image_meta = instance.image_meta();

        // 12. and 14.: nova's fixed dance around the (absent) direct snapshot.
        self.update_task_state(req, instance, TaskState::ImagePendingUpload, default_expected).await?;
        self.update_task_state(req, instance, TaskState::ImageUploading, TaskState::ImagePendingUpload).await?;
        debug!("direct snapshot is not implemented for this image backend; taking a standard snapshot");
        self.update_task_state(req, instance, TaskState::ImagePendingUpload, TaskState::ImageUploading).await?;

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
        let outcome = self.take_snapshot(request, abort).await?;
        info!(
            "Snapshot extracted ({:?}, {}, {} bytes) in {:.2}s{}",
            outcome.strategy,
            outcome.image.format().as_str(),
            outcome.image.size().unwrap_or(0),
            outcome.elapsed.as_secs_f64(),
            outcome.quiesce.map(|w| format!(", guest frozen {} ms", w.duration.as_millis())).unwrap_or_default()
        );

        self.update_task_state(req, instance, TaskState::ImageUploading, TaskState::ImagePendingUpload).await?;

        // `_create_snapshot_metadata`, sent with the upload as nova's
        // `image_api.update(context, image_id, metadata, image_file)` does.
        let mut metadata = ImageUpdate::new()
            .set("disk_format", outcome.image.format().as_str())
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
        debug!("updating image {} ({:?}) before upload", image_id, snapshot.name);

        let upload = async {
            let _disk_op = self.disk_ops.acquire().await;
            self.glance.update(&req.glance, image_id, &metadata).await?;
            let progress: glance_client::ProgressFn = Arc::new(|p: &UploadProgress| {
                debug!("upload of {}: {}/{} bytes (attempt {})", p.image_id, p.bytes_sent, p.total_bytes, p.attempt)
            });
            let started = Instant::now();
            let image = self
                .glance
                .upload(&req.glance, image_id, &FileSource::new(outcome.image.path()), Some(progress))
                .await?;
            info!(
                "Snapshot image upload complete: image {} {} ({} bytes) in {:.2}s",
                image.id,
                image.status,
                image.size.unwrap_or(0),
                started.elapsed().as_secs_f64()
            );
            Ok::<_, ComputeError>(())
        };
        let result = tokio::select! {
            r = upload => r,
            _ = aborted(abort) => {
                warn!("nova-compute is stopping: upload of image {image_id} aborted");
                Err(ComputeError::ShuttingDown { instance_id: uuid.clone() })
            }
        };
        // The temp directory and journal record go with the outcome.
        drop(outcome);
        result
    }

    /// The engine on a blocking thread with our own cancel token, so a stop
    /// can cancel it and still wait until the guest is thawed, resumed and
    /// persistent again before the process exits.
    async fn take_snapshot(
        &self,
        request: SnapshotRequest,
        abort: &mut watch::Receiver<bool>,
    ) -> Result<SnapshotOutcome, ComputeError> {
        let cancel = CancelToken::new();
        let engine = self.engine.clone();
        let token = cancel.clone();
        let uuid = request.instance_uuid.clone();
        let mut job = tokio::task::spawn_blocking(move || {
            let progress = |p: Progress| debug!("snapshot {:?}: {}/{}", p.phase, p.done, p.total);
            engine.snapshot_blocking(&request, &progress, &token)
        });
        let joined = tokio::select! {
            r = &mut job => r,
            _ = aborted(abort) => {
                warn!("nova-compute is stopping: cancelling the snapshot of {uuid}");
                cancel.cancel();
                let r = job.await;
                return match r {
                    Ok(Ok(outcome)) => Ok(outcome),
                    _ => Err(ComputeError::ShuttingDown { instance_id: uuid }),
                };
            }
        };
        match joined {
            Ok(r) => r.map_err(ComputeError::from),
            Err(e) => Err(ComputeError::Snapshot(SnapshotError::JobFailed {
                job: "snapshot",
                message: format!("the snapshot thread failed: {e}"),
            })),
        }
    }
}
