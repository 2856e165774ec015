//! `backup_instance` (a cast, run on the RPC worker as nova does): the
//! snapshot job from task state `image_backup`, then `_rotate_backups`.
//!
//! nova's stacks nest: `@wrap_exception @reverts_task_state
//! @wrap_instance_event @wrap_instance_fault` around `_do_snapshot_instance`
//! (`@delete_image_on_error`, around `_snapshot_instance` with its own full
//! stack) and `_rotate_backups` (`@wrap_instance_fault`). So one failure is
//! reported at each level, as nova reports it (two faults).

use std::sync::Arc;

use error_chain::Chain;
use glance_client::{GlanceError, ImageQuery};
use nova_objects::{Instance, TaskState};
use serde_json::json;
use tracing::{debug, info, Instrument};

use crate::context::Request;
use crate::decorators::{Decorators, EventReporter};
use crate::exceptions::ComputeError;
use crate::manager::ComputeManager;
use crate::snapshot::SnapshotJob;

/// What `backup_instance` was asked for.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// The reserved image.
    pub image_id: String,
    /// `daily`, `weekly`, ... (the `backup_type` image property).
    pub backup_type: String,
    /// How many backups of this type to keep.
    pub rotation: i64,
}

/// `backup_instance`.
pub async fn backup_instance(m: &Arc<ComputeManager>, req: Request, backup: BackupRequest, mut instance: Instance) {
    let span = req.span("backup_instance", instance.uuid());
    async {
        let uuid = instance.uuid().to_owned();
        let BackupRequest { image_id, backup_type, rotation } = &backup;
        let mut tracked = m.inflight.track(format!("backup of {uuid} into image {image_id}"));
        let _lock = m.limits.instances.lock(&uuid).await;
        let event = EventReporter::start(m, &req, &uuid, "backup_instance").await;
        let job = SnapshotJob::new(m, &req, image_id, TaskState::ImageBackup);
        let result = match job.run(&mut instance, &mut tracked.abort).await {
            Err(err) => {
                debug!("backup failed before rotation: {}", Chain(&err));
                Decorators::_do_snapshot_instance(image_id).unwind(m, &req, &mut instance, &err).await;
                Err(err)
            }
            Ok(()) => rotate_backups(m, &req, &mut instance, backup_type, *rotation).await,
        };
        match result {
            Ok(()) => event.finish(None).await,
            Err(err) => {
                let args =
                    json!({"image_id": image_id, "instance": uuid, "backup_type": backup_type, "rotation": rotation});
                Decorators::backup_instance(args, event).unwind(m, &req, &mut instance, &err).await;
            }
        }
    }
    .instrument(span)
    .await
}

/// `_rotate_backups` (`@wrap_instance_fault`): keep the `rotation` newest
/// backups of this instance and type, delete the rest, oldest first.
/// `rotation = 0` deletes every matching backup, the new one included, as
/// nova does. A failed delete is logged and the next image tried.
async fn rotate_backups(
    m: &ComputeManager,
    req: &Request,
    instance: &mut Instance,
    backup_type: &str,
    rotation: i64,
) -> Result<(), ComputeError> {
    let query = ImageQuery::backups(instance.uuid(), backup_type);
    let mut images = match m.image_api.list(&req.auth, &query).await {
        Ok(images) => images,
        Err(e) => {
            let err = ComputeError::from(e);
            Decorators::_rotate_backups().unwind(m, req, instance, &err).await;
            return Err(err);
        }
    };
    debug!("Found {} images (rotation: {rotation})", images.len());
    let excess = excess(images.len(), rotation);
    if excess > 0 {
        debug!("Rotating out {excess} backups");
    }
    for _ in 0..excess {
        // The list is newest first: pop() takes the oldest.
        let Some(image) = images.pop() else { break };
        debug!("Deleting image {}", image.id);
        match m.image_api.delete(&req.auth, &image.id).await {
            Ok(()) => info!("Deleted backup image {} (rotation {rotation})", image.id),
            Err(GlanceError::ImageNotFound { .. }) => info!("Failed to find image {} to delete", image.id),
            Err(e) => info!(
                "Failed to delete image {} during deleting excess backups. Continuing for next image.. {}",
                image.id,
                Chain(&e)
            ),
        }
    }
    Ok(())
}

/// How many images of a newest-first list to delete for `rotation`.
fn excess(found: usize, rotation: i64) -> usize {
    let keep = usize::try_from(rotation.max(0)).unwrap_or(usize::MAX);
    found.saturating_sub(keep)
}

#[cfg(test)]
mod tests {
    use super::excess;

    #[test]
    fn rotation_keeps_the_newest() {
        assert_eq!(excess(3, 2), 1);
        assert_eq!(excess(2, 2), 0);
        assert_eq!(excess(1, 0), 1);
        assert_eq!(excess(0, 0), 0);
        assert_eq!(excess(3, -1), 3);
    }
}

#[cfg(test)]
mod cascade {
    use serde_json::json;

    use super::*;
    use crate::fakes::{vector_instance, FakeDriver, FakeImages, Fixture};

    /// Two older daily backups and the reserved image "b3" (ids sort by age).
    fn images() -> FakeImages {
        let daily = json!({"image_type": "backup", "backup_type": "daily"});
        FakeImages::default().with("b1", "active", daily.clone()).with("b2", "active", daily).with(
            "b3",
            "queued",
            json!({}),
        )
    }

    async fn backup(f: &Fixture, rotation: i64) {
        let request = BackupRequest { image_id: "b3".into(), backup_type: "daily".into(), rotation };
        backup_instance(&f.m, Request::admin(), request, vector_instance()).await;
    }

    #[tokio::test]
    async fn a_backup_uploads_then_rotates_out_the_oldest() {
        let f = Fixture::new(Some("image_backup"), images(), FakeDriver::default());
        backup(&f, 2).await;
        assert_eq!(f.images.status("b3").as_deref(), Some("active"));
        assert_eq!(*f.images.deleted.lock().unwrap(), ["b1"]);
        let db = f.db.lock().unwrap();
        assert_eq!(db.task_state, None);
        assert!(db.faults.is_empty());
        assert_eq!(db.events.last(), Some(&("event_finish_with_failure".to_owned(), false)));
    }

    #[tokio::test]
    async fn a_failed_backup_is_reported_at_both_levels_as_nova_does() {
        let driver = FakeDriver::default();
        *driver.snapshot_error.lock().unwrap() = Some(libvirt_snapshot::SnapshotError::Cancelled);
        let f = Fixture::new(Some("image_backup"), images(), driver);
        backup(&f, 2).await;
        assert_eq!(f.images.status("b3"), None, "the reserved image is deleted");
        assert_eq!(f.images.status("b1").as_deref(), Some("active"), "no rotation after a failure");
        let db = f.db.lock().unwrap();
        assert_eq!(db.faults.len(), 2, "_snapshot_instance's and backup_instance's");
        assert_eq!(db.task_state, None);
        assert_eq!(db.events.last(), Some(&("event_finish_with_failure".to_owned(), true)));
        let errors: Vec<String> = f.event_types().into_iter().filter(|e| !e.contains("snapshot.")).collect();
        assert_eq!(errors, ["_snapshot_instance", "compute.exception", "backup_instance", "compute.exception"]);
    }

    #[tokio::test]
    async fn a_failed_rotation_keeps_the_new_backup_and_records_both_faults() {
        let images = images();
        *images.fail_list.lock().unwrap() =
            Some(glance_client::GlanceError::ImageNotAuthorized { image_id: "b3".into(), reason: "403".into() });
        let f = Fixture::new(Some("image_backup"), images, FakeDriver::default());
        backup(&f, 1).await;
        assert_eq!(f.images.status("b3").as_deref(), Some("active"));
        let db = f.db.lock().unwrap();
        assert_eq!(db.faults.len(), 2, "_rotate_backups' and backup_instance's");
        assert_eq!(db.events.last(), Some(&("event_finish_with_failure".to_owned(), true)));
    }
}
