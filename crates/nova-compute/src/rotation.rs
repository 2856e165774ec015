//! `_rotate_backups` (`@wrap_instance_fault`): keep the `rotation` newest
//! backups of this instance and type, delete the rest, oldest first.
//! `rotation = 0` deletes every matching backup, the new one included, as
//! nova does. A failed delete is logged and the next image tried.

use glance_client::ImageQuery;
use nova_objects::Instance;
use tracing::{debug, info};

use crate::context::Request;
use crate::exceptions::ComputeError;
use crate::manager::ComputeManager;

/// How many images of a newest-first list to delete for `rotation`.
pub fn excess(found: usize, rotation: i64) -> usize {
    let keep = usize::try_from(rotation.max(0)).unwrap_or(usize::MAX);
    found.saturating_sub(keep)
}

impl ComputeManager {
    pub async fn rotate_backups(
        &self,
        req: &Request,
        instance: &Instance,
        backup_type: &str,
        rotation: i64,
    ) -> Result<(), ComputeError> {
        let result = self.rotate_backups_body(req, instance, backup_type, rotation).await;
        if let Err(e) = &result {
            self.wrap_instance_fault(req, instance.uuid(), e).await;
        }
        result
    }

    async fn rotate_backups_body(
        &self,
        req: &Request,
        instance: &Instance,
        backup_type: &str,
        rotation: i64,
    ) -> Result<(), ComputeError> {
        let mut images = self.glance.list(&req.glance, &ImageQuery::backups(instance.uuid(), backup_type)).await?;
        debug!("Found {} images (rotation: {rotation})", images.len());
        let excess = excess(images.len(), rotation);
        if excess == 0 {
            return Ok(());
        }
        debug!("Rotating out {excess} backups");
        for _ in 0..excess {
            // The list is newest first: pop() takes the oldest.
            let Some(image) = images.pop() else { break };
            debug!("Deleting image {}", image.id);
            match self.glance.delete(&req.glance, &image.id).await {
                Ok(()) => info!("Deleted backup image {} (rotation {rotation})", image.id),
                Err(glance_client::GlanceError::ImageNotFound { .. }) => {
                    info!("Failed to find image {} to delete", image.id)
                }
                Err(e) => info!(
                    "Failed to delete image {} during deleting excess backups. Continuing for next image.. {e}",
                    image.id
                ),
            }
        }
        Ok(())
    }
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
