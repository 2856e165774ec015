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

use glance_client::{ImageQuery, ImageStatus};
use nova_objects::{ExpectedTaskState, Instance, RequestContext, INSTANCE_MANIFEST};
use serde_json::{json, Map, Value};
use tracing::{error, info, warn};

use crate::context::Request;
use crate::manager::{ComputeManager, IMAGE_TASK_STATES};

/// `InstanceList.VERSION` in nova 34.
const INSTANCE_LIST_VERSION: &str = "2.6";

/// What recovery did, for the start-up log and tests.
#[derive(Debug, Default)]
pub struct RecoverySummary {
    pub journal_records: usize,
    pub instances_reset: Vec<String>,
    pub images_deleted: Vec<String>,
}

impl ComputeManager {
    pub async fn recover(&self) -> RecoverySummary {
        let mut summary = RecoverySummary::default();
        match self.engine.recover().await {
            Ok(report) => {
                summary.journal_records = report.records;
                for action in &report.actions {
                    warn!("Snapshot recovery: {action:?}");
                }
                for kept in &report.kept {
                    error!("Snapshot recovery could not undo everything; record kept: {}", kept.display());
                }
            }
            Err(e) => error!("Snapshot journal recovery failed: {e}"),
        }
        let req = Request { ctx: RequestContext::admin(), glance: glance_client::RequestContext::default() };
        let instances = match self.instances_on_host(&req.ctx).await {
            Ok(i) => i,
            Err(e) => {
                error!("Cannot list the instances of host {}: {e}", self.host);
                return summary;
            }
        };
        for mut instance in instances {
            let Ok(Some(state)) = instance.task_state() else { continue };
            if !IMAGE_TASK_STATES.contains(&state) {
                continue;
            }
            let uuid = instance.uuid().to_owned();
            let _span = req.span("init_instance", &uuid).entered();
            info!("Instance found in task state {} at start-up: resetting it", state.as_str());
            instance.set_task_state(None);
            match instance.save(&self.conductor, &req.ctx, ExpectedTaskState::Is(Some(state))).await {
                Ok(()) => summary.instances_reset.push(uuid.clone()),
                Err(e) => warn!("Cannot reset the task state: {e}"),
            }
            summary.images_deleted.extend(self.delete_unfinished_images(&req, &uuid).await);
        }
        info!(
            "Start-up recovery: {} journal records, {} instances reset, {} images deleted",
            summary.journal_records,
            summary.instances_reset.len(),
            summary.images_deleted.len()
        );
        summary
    }

    /// `InstanceList.get_by_host(ctx, host)` through the conductor.
    async fn instances_on_host(&self, ctx: &RequestContext) -> Result<Vec<Instance>, nova_objects::ConductorError> {
        let mut manifest: Vec<(&str, &str)> = INSTANCE_MANIFEST.to_vec();
        manifest.push(("InstanceList", INSTANCE_LIST_VERSION));
        let reply = self
            .conductor
            .class_action(ctx, "InstanceList", &manifest, "get_by_host", vec![json!(self.host)], Map::new())
            .await?;
        Ok(reply
            .pointer("/nova_object.data/objects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| Instance::from_primitive(o).ok())
            .collect())
    }

    async fn delete_unfinished_images(&self, req: &Request, uuid: &str) -> Vec<String> {
        let images = match self.glance.list(&req.glance, &ImageQuery::new().filter("instance_uuid", uuid)).await {
            Ok(i) => i,
            Err(e) => {
                warn!("Cannot list the images of instance {uuid}: {e}");
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
            match self.glance.delete(&req.glance, &image.id).await {
                Ok(()) => {
                    info!("Deleted unfinished image {} ({}) left by an interrupted snapshot", image.id, image.status);
                    deleted.push(image.id);
                }
                Err(e) => warn!("Cannot delete unfinished image {}: {e}", image.id),
            }
        }
        deleted
    }
}
