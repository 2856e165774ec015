//! Start-up recovery, before the RPC servers consume anything:
//!
//! 1. the engine's crash journal (thaw, abort our stale block jobs, resume,
//!    re-define domains, remove temp files) — what a killed process left;
//! 2. nova's `_init_instance` for snapshots: every instance on this host in
//!    an image_* task state gets task_state None. Unlike nova (which leaves
//!    the reserved image `queued` forever and skips `image_backup`), the
//!    instance's unfinished snapshot/backup images — `queued` or `saving`
//!    with this instance's `instance_uuid` — are deleted too.
//!
//! Glance calls here have no user token (there is no request): they work
//! against Glance without auth or with `[service_user]` credentials Glance
//! accepts; a refusal is logged and the image left for the operator.

use error_chain::Chain;
use glance_client::{ImageQuery, ImageStatus};
use nova_objects::{ExpectedTaskState, Instance, InstanceList};
use tracing::{error, info, warn};

use crate::context::Request;
use crate::manager::ComputeManager;
use crate::snapshot::IMAGE_TASK_STATES;

/// What recovery did, for the start-up log and tests.
#[derive(Debug, Default)]
pub struct RecoverySummary {
    /// Crash-journal records found.
    pub journal_records: usize,
    /// Instances whose image_* task state was reset.
    pub instances_reset: Vec<String>,
    /// Unfinished images deleted.
    pub images_deleted: Vec<String>,
}

/// Runs both recoveries; failures are logged, never fatal.
pub async fn recover(m: &ComputeManager) -> RecoverySummary {
    let mut summary = RecoverySummary { journal_records: recover_journal(m).await, ..RecoverySummary::default() };
    let req = Request::admin();
    let instances = match InstanceList::get_by_host(&m.conductor, &req.ctx, &m.host).await {
        Ok(i) => i,
        Err(e) => {
            error!("Cannot list the instances of host {}: {}", m.host, Chain(&e));
            return summary;
        }
    };
    for instance in instances {
        reset_instance(m, &req, instance, &mut summary).await;
    }
    info!(
        "Start-up recovery: {} journal records, {} instances reset, {} images deleted",
        summary.journal_records,
        summary.instances_reset.len(),
        summary.images_deleted.len()
    );
    summary
}

/// The engine's crash journal; the number of records found.
async fn recover_journal(m: &ComputeManager) -> usize {
    match m.driver.recover().await {
        Ok(report) => {
            for action in &report.actions {
                warn!("Snapshot recovery: {action}");
            }
            for kept in &report.kept {
                error!("Snapshot recovery could not undo everything; record kept: {}", kept.display());
            }
            report.records
        }
        Err(e) => {
            error!("Snapshot journal recovery failed: {}", Chain(&e));
            0
        }
    }
}

/// `_init_instance` for an instance left in an image_* task state.
async fn reset_instance(m: &ComputeManager, req: &Request, mut instance: Instance, summary: &mut RecoverySummary) {
    let Ok(Some(state)) = instance.task_state() else { return };
    if !IMAGE_TASK_STATES.contains(&state) {
        return;
    }
    let uuid = instance.uuid().to_owned();
    let _span = req.span("init_instance", &uuid).entered();
    info!("Instance found in task state {} at start-up: resetting it", state.as_str());
    instance.set_task_state(None);
    match instance.save(&m.conductor, &req.ctx, ExpectedTaskState::Is(Some(state))).await {
        Ok(()) => summary.instances_reset.push(uuid.clone()),
        Err(e) => warn!("Cannot reset the task state: {}", Chain(&e)),
    }
    summary.images_deleted.extend(delete_unfinished_images(m, req, &uuid).await);
}

async fn delete_unfinished_images(m: &ComputeManager, req: &Request, uuid: &str) -> Vec<String> {
    let query = ImageQuery::new().filter("instance_uuid", uuid);
    let images = match m.image_api.list(&req.auth, &query).await {
        Ok(i) => i,
        Err(e) => {
            warn!("Cannot list the images of instance {uuid}: {}", Chain(&e));
            return Vec::new();
        }
    };
    let mut deleted = Vec::new();
    for image in images {
        let unfinished = matches!(image.status, ImageStatus::Queued | ImageStatus::Saving);
        let ours = matches!(image.property("image_type"), Some("snapshot") | Some("backup"));
        if !(unfinished && ours) {
            continue;
        }
        match m.image_api.delete(&req.auth, &image.id).await {
            Ok(()) => {
                info!("Deleted unfinished image {} ({}) left by an interrupted snapshot", image.id, image.status);
                deleted.push(image.id);
            }
            Err(e) => warn!("Cannot delete unfinished image {}: {}", image.id, Chain(&e)),
        }
    }
    deleted
}
