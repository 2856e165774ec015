//! The streaming upload of image data into a reserved (`queued`) image: `PUT /v2/images/{id}/file`
//! with an exact `Content-Length` and `x-openstack-image-size`, data read in large chunks and
//! never held whole in memory, sha512 computed while sending and compared with Glance's
//! `os_hash_value`, progress reported to the caller.
//!
//! Retries: a connection error or 5xx (Glance restarted, a proxy in between failed) is retried up
//! to `[glance] num_retries` times on the next server, once Glance has put the image back to
//! `queued` (it does so when a v2 upload fails), by reopening the source from its first byte —
//! nova re-sent its half-read file handle. A 401 renews the service token once. Everything else
//! (410 deleted meanwhile, 413 over a cap, 415 refused data, ...) fails at once.
//!
//! Must not know: where the data comes from (a snapshot file today, an NBD view later: see
//! `ImageSource`), or what nova does with a failed image.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, StatusCode};
use sha2::{Digest, Sha512};
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;
use tracing::{info, warn};

use crate::client::{image_from_response, join, not_deleted, status_error, GlanceClient, RETRY_PAUSE};
use crate::context::RequestContext;
use crate::error::{ConnectionFailure, GlanceError};
use crate::image::{ImageMeta, ImageStatus};
use crate::session::{auth_headers, server_of};

/// Read and send size: the 4 KiB default of `ReaderStream` is several times slower (oVirt
/// imageio measured the same for 256 KiB+ buffers).
pub const UPLOAD_CHUNK: usize = 4 * 1024 * 1024;
/// How long to wait for Glance to answer again after a failed attempt (a restarting Glance must
/// come back within this time).
const REQUEUE_WAIT: Duration = Duration::from_secs(120);
/// How long an image may stay `saving` after a failed attempt before it counts as abandoned.
const STALE_SAVING: Duration = Duration::from_secs(20);
/// Polls of an unreachable Glance allowed per `[glance] num_retries` attempt. nova gives up
/// after `1 + num_retries` attempts one second apart; a uWSGI Glance that restarts takes a few
/// seconds to answer again, and a retried upload beats a failed snapshot, so each attempt here
/// is worth a few polls — but an unreachable Glance still fails the snapshot within seconds,
/// not minutes.
const UNANSWERED_POLLS_PER_ATTEMPT: u32 = 5;
/// How often progress is reported.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// Image data that can be read from its first byte any number of times.
pub trait ImageSource: Send + Sync {
    /// Opens the data at offset 0 and says exactly how many bytes it will yield; called again
    /// for each retry.
    fn open(&self) -> impl Future<Output = io::Result<OpenedSource>> + Send;

    /// What the data is, for logs.
    fn describe(&self) -> String;
}

/// An opened source: a reader and its exact length.
pub struct OpenedSource {
    /// The data.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
    /// The exact number of bytes `reader` yields; sent as `Content-Length`.
    pub len: u64,
}

/// A file on disk (the snapshot the engine produced).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// The file at `path`; it is opened only when the upload starts.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ImageSource for FileSource {
    async fn open(&self) -> io::Result<OpenedSource> {
        let mut file = tokio::fs::File::open(&self.path).await?;
        let len = file.metadata().await?.len();
        // tokio reads at most 2 MiB per blocking call by default; match the chunk size.
        file.set_max_buf_size(UPLOAD_CHUNK);
        Ok(OpenedSource { reader: Box::pin(file), len })
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Where an upload stands, reported about twice a second and once at the end of each attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadProgress {
    /// The image being uploaded.
    pub image_id: String,
    /// 1 for the first PUT, 2 for the first retry, ...
    pub attempt: u32,
    /// Bytes handed to the connection in this attempt.
    pub bytes_sent: u64,
    /// The image size.
    pub total_bytes: u64,
    /// Time since this attempt started.
    pub elapsed: Duration,
}

impl UploadProgress {
    /// Average rate of this attempt, in bytes per second.
    pub fn bytes_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes_sent as f64 / secs
        } else {
            0.0
        }
    }
}

/// A progress callback, called on the runtime thread that drives the upload: keep it short.
pub type ProgressFn = Arc<dyn Fn(&UploadProgress) + Send + Sync>;

/// What one PUT ended with.
enum Attempt {
    /// 204: the data is stored; the digest of what was sent.
    Stored { sha512: String },
    /// Worth another PUT once the image is `queued` again.
    Retryable(GlanceError),
    /// 401 with a service token: renew it and try again (once).
    Unauthorized(GlanceError),
    /// No retry can help.
    Fatal(GlanceError),
}

/// Per-attempt counters shared with the body stream.
struct Sent {
    hasher: Sha512,
    bytes: u64,
    last_report: Instant,
}

impl GlanceClient {
    /// Uploads `source` into the reserved image `image_id` (status `queued`, disk and container
    /// format already set by `update`) and returns the image as Glance reports it, `active`, with
    /// size and sha512 checked against what was sent.
    pub async fn upload<S: ImageSource>(
        &self,
        ctx: &RequestContext,
        image_id: &str,
        source: &S,
        progress: Option<ProgressFn>,
    ) -> Result<ImageMeta, GlanceError> {
        // A GET first gives a clean 401/404 before any data is sent (a refused PUT may surface
        // as a reset connection) and refuses an image that cannot take data.
        let image = self.get(ctx, image_id).await?;
        if image.status != ImageStatus::Queued {
            return Err(GlanceError::ImageConflict {
                image_id: image_id.to_owned(),
                reason: format!("image is {}, an upload needs queued", image.status),
            });
        }
        let started = Instant::now();
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let opened = source.open().await.map_err(|e| source_error(image_id, e))?;
            let len = opened.len;
            info!(image_id, attempt, bytes = len, source = %source.describe(), request_id = ctx.global_request_id.as_deref(), "uploading image data");
            let failure = match self.put_file(ctx, image_id, opened, attempt, progress.clone()).await? {
                Attempt::Stored { sha512 } => {
                    let image = self.get(ctx, image_id).await?;
                    verify_stored(&image, len, &sha512)?;
                    let secs = started.elapsed().as_secs_f64();
                    info!(
                        image_id,
                        bytes = len,
                        seconds = secs,
                        mib_per_s = len as f64 / 1048576.0 / secs.max(1e-9),
                        request_id = ctx.global_request_id.as_deref(),
                        "image uploaded"
                    );
                    return Ok(image);
                }
                Attempt::Fatal(e) => return Err(self.explain_refusal(ctx, image_id, e).await),
                Attempt::Unauthorized(e) => {
                    if renewed {
                        return Err(e);
                    }
                    renewed = true;
                    attempt -= 1;
                    e
                }
                Attempt::Retryable(e) if attempt > self.num_retries => return Err(e),
                Attempt::Retryable(e) => e,
            };
            warn!(image_id, attempt, retries = self.num_retries, error = %failure, request_id = ctx.global_request_id.as_deref(), "image upload failed; retrying once the image is queued again");
            if let Some(image) = self.wait_until_requeued(ctx, image_id, failure).await? {
                // The previous attempt was stored after all (the response was lost).
                warn!(image_id, "image became active after a failed attempt; checking its size only");
                verify_size(&image, len)?;
                return Ok(image);
            }
        }
    }

    /// One PUT of the whole source.
    async fn put_file(
        &self,
        ctx: &RequestContext,
        image_id: &str,
        opened: OpenedSource,
        attempt: u32,
        progress: Option<ProgressFn>,
    ) -> Result<Attempt, GlanceError> {
        let credentials = self.credentials().await?;
        let base = self.base_url(ctx, &credentials)?;
        let url = join(&base, &format!("v2/images/{image_id}/file"))?;
        let len = opened.len;
        let sent = Arc::new(Mutex::new(Sent { hasher: Sha512::new(), bytes: 0, last_report: Instant::now() }));
        let body = hashing_body(opened, Arc::clone(&sent), image_id, attempt, progress.clone());
        let response = self
            .http
            .put(url)
            .headers(auth_headers(ctx, &credentials))
            .header(CONTENT_TYPE, "application/octet-stream")
            // An exact length: no chunked encoding (uWSGI limits chunk sizes), and hyper fails
            // the request if the source yields more or fewer bytes.
            .header(CONTENT_LENGTH, len)
            .header("x-openstack-image-size", len)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) if response.status().is_success() => {
                let sent = sent.lock().unwrap_or_else(|p| p.into_inner());
                if sent.bytes != len {
                    return Ok(Attempt::Fatal(GlanceError::ImageDataMismatch {
                        image_id: image_id.to_owned(),
                        detail: format!("sent {} bytes, the source announced {len}", sent.bytes),
                    }));
                }
                return Ok(Attempt::Stored { sha512: hex::encode(sent.hasher.clone().finalize()) });
            }
            Ok(response) => response,
            Err(e) => {
                if let Some(read_error) = source_failure(&e) {
                    return Ok(Attempt::Fatal(source_error(image_id, read_error)));
                }
                return Ok(Attempt::Retryable(GlanceError::GlanceConnectionFailed {
                    server: server_of(&base),
                    source: ConnectionFailure::from_send(e, self.timeout),
                }));
            }
        };
        let status = response.status();
        let error = status_error(image_id, response).await;
        Ok(match status {
            s if s.is_server_error() => Attempt::Retryable(error),
            StatusCode::UNAUTHORIZED if self.renew(&credentials).await => Attempt::Unauthorized(error),
            _ => Attempt::Fatal(error),
        })
    }

    /// After a failed attempt: polls the image until Glance has put it back to `queued` (returns
    /// `None`) or it turned `active` (returns it). Gone → `ImageNotFound`. Glance restores
    /// `queued` within a moment when it sees the client go away; an image still `saving`
    /// `STALE_SAVING` after Glance answers again was cut off by a Glance restart and can never
    /// take data again (Glance 33 answers 409) → `ImageUploadFailed`, for the caller to delete.
    async fn wait_until_requeued(
        &self,
        ctx: &RequestContext,
        image_id: &str,
        failure: GlanceError,
    ) -> Result<Option<ImageMeta>, GlanceError> {
        let deadline = Instant::now() + REQUEUE_WAIT;
        let unanswered_budget = UNANSWERED_POLLS_PER_ATTEMPT * (1 + self.num_retries);
        let mut unanswered = 0;
        let mut saving_since = None;
        loop {
            tokio::time::sleep(RETRY_PAUSE).await;
            let polled = self.get_once(ctx, image_id).await;
            unanswered = if polled.is_ok() { 0 } else { unanswered + 1 };
            match polled {
                Ok(image) => match image.status {
                    ImageStatus::Queued => return Ok(None),
                    ImageStatus::Active => return Ok(Some(image)),
                    ImageStatus::Saving => {
                        let since = *saving_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= STALE_SAVING {
                            return Err(GlanceError::ImageUploadFailed {
                                image_id: image_id.to_owned(),
                                status: image.status.to_string(),
                            });
                        }
                    }
                    other => {
                        return Err(GlanceError::ImageUploadFailed {
                            image_id: image_id.to_owned(),
                            status: other.to_string(),
                        })
                    }
                },
                Err(e @ (GlanceError::ImageNotFound { .. } | GlanceError::ImageNotAuthorized { .. })) => return Err(e),
                Err(e) => warn!(image_id, error = %e, "image status unavailable; still waiting"),
            }
            if Instant::now() >= deadline || unanswered >= unanswered_budget {
                return Err(failure);
            }
        }
    }

    /// A single GET without the retry loop (the caller polls).
    async fn get_once(&self, ctx: &RequestContext, image_id: &str) -> Result<ImageMeta, GlanceError> {
        let credentials = self.credentials().await?;
        let base = self.base_url(ctx, &credentials)?;
        let url = join(&base, &format!("v2/images/{image_id}"))?;
        let response = self.http.get(url).headers(auth_headers(ctx, &credentials)).send().await.map_err(|e| {
            GlanceError::GlanceConnectionFailed {
                server: server_of(&base),
                source: ConnectionFailure::from_send(e, self.timeout),
            }
        })?;
        if !response.status().is_success() {
            return Err(status_error(image_id, response).await);
        }
        not_deleted(image_id, image_from_response(image_id, response).await?)
    }
}

/// The request body: the source in `UPLOAD_CHUNK` pieces, each hashed and counted as it is
/// handed to the connection.
fn hashing_body(
    opened: OpenedSource,
    sent: Arc<Mutex<Sent>>,
    image_id: &str,
    attempt: u32,
    progress: Option<ProgressFn>,
) -> Body {
    let total = opened.len;
    let started = Instant::now();
    let image_id = image_id.to_owned();
    let stream = ReaderStream::with_capacity(opened.reader, UPLOAD_CHUNK).map(move |chunk| {
        let chunk = chunk?;
        let mut state = sent.lock().unwrap_or_else(|p| p.into_inner());
        state.hasher.update(&chunk);
        state.bytes += chunk.len() as u64;
        let done = state.bytes >= total;
        if let Some(report) = progress.as_ref().filter(|_| done || state.last_report.elapsed() >= PROGRESS_INTERVAL) {
            state.last_report = Instant::now();
            report(&UploadProgress {
                image_id: image_id.clone(),
                attempt,
                bytes_sent: state.bytes,
                total_bytes: total,
                elapsed: started.elapsed(),
            });
        }
        Ok::<_, io::Error>(chunk)
    });
    Body::wrap_stream(stream)
}

/// Glance must report the image active with exactly our size and, when it hashes with sha512
/// (its default `hashing_algorithm`), our digest.
fn verify_stored(image: &ImageMeta, len: u64, sha512: &str) -> Result<(), GlanceError> {
    verify_size(image, len)?;
    match (image.os_hash_algo.as_deref(), image.os_hash_value.as_deref()) {
        (Some("sha512"), Some(value)) if value.eq_ignore_ascii_case(sha512) => Ok(()),
        (Some("sha512"), value) => Err(GlanceError::ImageDataMismatch {
            image_id: image.id.clone(),
            detail: format!("Glance's sha512 is {}, the data sent hashes to {sha512}", value.unwrap_or("missing")),
        }),
        (algo, _) => {
            warn!(image_id = %image.id, algo, "Glance does not hash with sha512; only the size was checked");
            Ok(())
        }
    }
}

fn verify_size(image: &ImageMeta, len: u64) -> Result<(), GlanceError> {
    if image.status != ImageStatus::Active {
        return Err(GlanceError::ImageUploadFailed { image_id: image.id.clone(), status: image.status.to_string() });
    }
    if image.size != Some(len) {
        return Err(GlanceError::ImageDataMismatch {
            image_id: image.id.clone(),
            detail: format!("Glance stored {:?} bytes, {len} were sent", image.size),
        });
    }
    Ok(())
}

fn source_error(image_id: &str, source: io::Error) -> GlanceError {
    GlanceError::SourceRead { image_id: image_id.to_owned(), source }
}

/// A read error of the source, if that is what ended the request (it is wrapped inside
/// reqwest's body error).
fn source_failure(error: &reqwest::Error) -> Option<io::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if error.is_body() && io.kind() != io::ErrorKind::ConnectionReset && io.kind() != io::ErrorKind::BrokenPipe
            {
                return Some(io::Error::new(io.kind(), io.to_string()));
            }
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rate() {
        let p = UploadProgress {
            image_id: "i".into(),
            attempt: 1,
            bytes_sent: 10 << 20,
            total_bytes: 20 << 20,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(p.bytes_per_second(), (5 << 20) as f64);
    }

    #[test]
    fn verify_rejects_other_hash_and_size() {
        let image = |size: u64, hash: &str| {
            ImageMeta::from_json(serde_json::json!({"id": "i", "status": "active", "size": size,
                "os_hash_algo": "sha512", "os_hash_value": hash}))
            .unwrap()
        };
        assert!(verify_stored(&image(3, "ab"), 3, "AB").is_ok());
        assert!(matches!(verify_stored(&image(3, "ab"), 3, "cd"), Err(GlanceError::ImageDataMismatch { .. })));
        assert!(matches!(verify_stored(&image(4, "ab"), 3, "ab"), Err(GlanceError::ImageDataMismatch { .. })));
    }
}
