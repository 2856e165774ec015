//! nova's `image.API` for the snapshot path: the Glance calls the handlers
//! make, behind the object-safe [`ImageApi`] trait (glance-client's
//! [`GlanceClient`] in the service, an in-memory image store in unit tests).

use std::path::Path;
use std::sync::Arc;

use glance_client::{
    FileSource, GlanceClient, GlanceError, ImageMeta, ImageQuery, ImageUpdate, ProgressFn, RequestContext,
    UploadProgress,
};
use tracing::debug;

use crate::conductor::BoxFuture;

/// The Glance calls of the snapshot path.
pub trait ImageApi: Send + Sync + 'static {
    /// `GET /v2/images/{id}`.
    fn get<'a>(&'a self, ctx: &'a RequestContext, image_id: &'a str) -> BoxFuture<'a, Result<ImageMeta, GlanceError>>;

    /// `PATCH /v2/images/{id}` with what `update` changes.
    fn update<'a>(
        &'a self,
        ctx: &'a RequestContext,
        image_id: &'a str,
        update: &'a ImageUpdate,
    ) -> BoxFuture<'a, Result<ImageMeta, GlanceError>>;

    /// `PUT /v2/images/{id}/file` from a local file; the image as Glance shows it after.
    fn upload<'a>(
        &'a self,
        ctx: &'a RequestContext,
        image_id: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<ImageMeta, GlanceError>>;

    /// `DELETE /v2/images/{id}`.
    fn delete<'a>(&'a self, ctx: &'a RequestContext, image_id: &'a str) -> BoxFuture<'a, Result<(), GlanceError>>;

    /// `GET /v2/images` with filters, every page.
    fn list<'a>(
        &'a self,
        ctx: &'a RequestContext,
        query: &'a ImageQuery,
    ) -> BoxFuture<'a, Result<Vec<ImageMeta>, GlanceError>>;
}

impl ImageApi for GlanceClient {
    fn get<'a>(&'a self, ctx: &'a RequestContext, image_id: &'a str) -> BoxFuture<'a, Result<ImageMeta, GlanceError>> {
        Box::pin(GlanceClient::get(self, ctx, image_id))
    }

    fn update<'a>(
        &'a self,
        ctx: &'a RequestContext,
        image_id: &'a str,
        update: &'a ImageUpdate,
    ) -> BoxFuture<'a, Result<ImageMeta, GlanceError>> {
        Box::pin(GlanceClient::update(self, ctx, image_id, update))
    }

    fn upload<'a>(
        &'a self,
        ctx: &'a RequestContext,
        image_id: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<ImageMeta, GlanceError>> {
        let progress: ProgressFn = Arc::new(|p: &UploadProgress| {
            debug!("upload of {}: {}/{} bytes (attempt {})", p.image_id, p.bytes_sent, p.total_bytes, p.attempt)
        });
        Box::pin(async move { GlanceClient::upload(self, ctx, image_id, &FileSource::new(file), Some(progress)).await })
    }

    fn delete<'a>(&'a self, ctx: &'a RequestContext, image_id: &'a str) -> BoxFuture<'a, Result<(), GlanceError>> {
        Box::pin(GlanceClient::delete(self, ctx, image_id))
    }

    fn list<'a>(
        &'a self,
        ctx: &'a RequestContext,
        query: &'a ImageQuery,
    ) -> BoxFuture<'a, Result<Vec<ImageMeta>, GlanceError>> {
        Box::pin(GlanceClient::list(self, ctx, query))
    }
}
