//! The OpenStack HTTP clients of nova-compute's snapshot path: Keystone v3 (service tokens),
//! Glance v2, and the Cinder v3 calls nova-compute makes (volume snapshot status).
//!
//! Owns: every HTTP request nova-compute sends. The TLS options of each group (`cafile`,
//! `certfile`/`keyfile` client certificates, `insecure`) and its timeout; the `[service_user]`
//! Keystone v3 token (password or application credential) sent as
//! `X-Service-Token` next to the user's token from the RPC context; endpoint selection
//! (`[glance] api_servers` round-robin, `endpoint_override`, or the service catalog); image get,
//! json-patch update, location add, delete and filtered, paginated list; and the streaming
//! upload of a reserved image with an exact length, sha512 verification, progress and nova's
//! retry policy; `[cinder]` endpoint selection (`catalog_info`, `os_region_name`,
//! `endpoint_template`) with a per-request deadline and `http_retries`. Errors are classified like
//! nova's (`ImageNotFound`, `ImageNotAuthorized`, `SnapshotNotFound`, ...) and keep their causes.
//!
//! Must not know: instances, task states, libvirt or how nova.conf is parsed. It receives a
//! user token, a request id, options and a data source, and reports what Glance or Cinder said.
//!
//! ```no_run
//! # async fn snapshot_upload() -> Result<(), glance_client::GlanceError> {
//! use glance_client::{FileSource, GlanceClient, GlanceOptions, ImageUpdate, RequestContext};
//!
//! let options = GlanceOptions { api_servers: vec!["http://127.0.0.1:9292".into()], ..Default::default() };
//! let glance = GlanceClient::new(&options, None)?;
//! let ctx = RequestContext { auth_token: Some("user-token".into()), ..Default::default() };
//! let update = ImageUpdate::new().set("disk_format", "qcow2").set("container_format", "bare");
//! glance.update(&ctx, "image-id", &update).await?;
//! let image = glance.upload(&ctx, "image-id", &FileSource::new("/var/lib/nova/snap.qcow2"), None).await?;
//! assert_eq!(image.status, glance_client::ImageStatus::Active);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod cinder;
mod client;
mod context;
mod endpoint;
mod error;
mod image;
mod keystone;
mod list;
mod options;
mod session;
mod upload;

pub use cinder::{CinderClient, SnapshotStatus};
pub use client::GlanceClient;
pub use context::{CatalogEndpoint, RequestContext, ServiceCatalog};
pub use error::{BoxError, CinderError, ConfigError, ConnectionFailure, GlanceError, KeystoneError};
pub use image::{ImageMeta, ImagePatch, ImageStatus, ImageUpdate, PatchOp};
pub use keystone::{ServiceToken, ServiceTokenSource};
pub use list::{ImageQuery, SortDir, DEFAULT_PAGE_SIZE};
pub use options::{
    ApplicationCredential, CinderOptions, GlanceOptions, PasswordCredentials, ServiceCredentials, ServiceUserOptions,
};
pub use upload::{FileSource, ImageSource, OpenedSource, ProgressFn, UploadProgress, UPLOAD_CHUNK};
