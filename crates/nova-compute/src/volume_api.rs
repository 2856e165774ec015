//! nova's `volume.cinder.API` for the snapshot path: the one Cinder call
//! `unquiesce_instance` makes (a volume snapshot's status), behind the
//! object-safe [`VolumeApi`] trait; glance-client's [`CinderClient`] in the
//! service.

use glance_client::{CinderClient, CinderError, RequestContext, SnapshotStatus};

use crate::conductor::BoxFuture;

/// The Cinder calls of the snapshot path.
pub trait VolumeApi: Send + Sync + 'static {
    /// `GET /snapshots/{id}`: the volume snapshot's status.
    fn snapshot_status<'a>(
        &'a self,
        ctx: &'a RequestContext,
        snapshot_id: &'a str,
    ) -> BoxFuture<'a, Result<SnapshotStatus, CinderError>>;
}

impl VolumeApi for CinderClient {
    fn snapshot_status<'a>(
        &'a self,
        ctx: &'a RequestContext,
        snapshot_id: &'a str,
    ) -> BoxFuture<'a, Result<SnapshotStatus, CinderError>> {
        Box::pin(CinderClient::snapshot_status(self, ctx, snapshot_id))
    }
}
