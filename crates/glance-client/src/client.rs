//! `GlanceClient`: the authenticated, retried request path shared by every call, and the small
//! image calls (get, update, add location, delete, list). The upload lives in `upload.rs`.
//!
//! Every request carries the user's token (`X-Auth-Token`), the service token when
//! `[service_user] send_service_user_token` (`X-Service-Token`) and the global request id
//! (`X-OpenStack-Request-ID`). Connection errors and 5xx move to the next server, up to
//! `[glance] num_retries` times, one second apart (nova's `GlanceClientWrapper.call`); a 401 drops
//! the cached service token and tries once more.
//!
//! Must not know: instances, task states, or what the metadata means to nova.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tracing::{debug, info, warn};
use url::Url;

use crate::context::{RequestContext, ServiceCatalog};
use crate::endpoint::ImageEndpoints;
use crate::error::{summarize_body, ConfigError, ConnectionFailure, GlanceError};
use crate::image::{ImageMeta, ImagePatch, ImageUpdate};
use crate::list::ImageQuery;
use crate::options::{GlanceOptions, ServiceUserOptions};
use crate::session::{auth_headers, http_client, server_of, Credentials, ServiceAuth, Timeout, Tls};

/// nova's pause between attempts.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_secs(1);
const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// A Glance v2 client for one nova-compute service; cheap to share (`Arc`) across requests.
#[derive(Debug)]
pub struct GlanceClient {
    pub(crate) http: reqwest::Client,
    endpoints: ImageEndpoints,
    service_auth: ServiceAuth,
    pub(crate) num_retries: u32,
    /// `[glance] timeout`, to name it when a request runs into it.
    pub(crate) timeout: Option<Duration>,
}

/// One request of a call, rebuilt for each attempt.
struct Call<'a> {
    method: Method,
    path: &'a str,
    body: Option<(&'static str, Vec<u8>)>,
}

impl GlanceClient {
    /// Builds the HTTP clients from `[glance]` (TLS trust, client certificate, timeout) and, when
    /// `send_service_user_token` is set, the service token source from `[service_user]`. Every
    /// file named by the options is read here: a missing or unusable one is `InvalidConfig`.
    pub fn new(options: &GlanceOptions, service_user: Option<&ServiceUserOptions>) -> Result<Self, GlanceError> {
        let tls = Tls {
            cafile: options.cafile.as_deref(),
            certfile: options.certfile.as_deref(),
            keyfile: options.keyfile.as_deref(),
            insecure: options.insecure,
        };
        // keystoneauth's `timeout` is per socket operation: a read timeout, so a multi-GiB upload
        // is not cut off as a whole.
        let http = http_client(tls, options.timeout.map_or(Timeout::None, Timeout::Read))?;
        Ok(Self {
            http,
            endpoints: ImageEndpoints::new(options)?,
            service_auth: ServiceAuth::new(service_user)?,
            num_retries: options.num_retries,
            timeout: options.timeout,
        })
    }

    /// `GET /v2/images/{id}`; a deleted image Glance still shows is `ImageNotFound` ([`not_deleted`]).
    pub async fn get(&self, ctx: &RequestContext, image_id: &str) -> Result<ImageMeta, GlanceError> {
        let path = format!("v2/images/{image_id}");
        let response = self.call(ctx, image_id, Call { method: Method::GET, path: &path, body: None }).await?;
        not_deleted(image_id, image_from_response(image_id, response).await?)
    }

    /// Glance refuses a change to an image deleted meanwhile with 403 (the admin-visible
    /// `deleted` status cannot be patched) or 409 (a PUT racing the delete). The deleter meant
    /// "image gone", which callers handle as such (nova: `ImageNotFound` during a snapshot is a
    /// warning, not a failure); a refusal of an image that still exists stays what it was.
    pub(crate) async fn explain_refusal(
        &self,
        ctx: &RequestContext,
        image_id: &str,
        refusal: GlanceError,
    ) -> GlanceError {
        if !matches!(refusal, GlanceError::ImageConflict { .. } | GlanceError::ImageNotAuthorized { .. }) {
            return refusal;
        }
        match self.get(ctx, image_id).await {
            Err(not_found @ GlanceError::ImageNotFound { .. }) => {
                info!(image_id, refused = %refusal, "image was deleted meanwhile");
                not_found
            }
            _ => refusal,
        }
    }

    /// nova's `update(..., purge_props=False)`: GET, PATCH the changed keys only, then add the
    /// location (if any) through the locations API. Returns the image as Glance now has it.
    pub async fn update(
        &self,
        ctx: &RequestContext,
        image_id: &str,
        update: &ImageUpdate,
    ) -> Result<ImageMeta, GlanceError> {
        let current = self.get(ctx, image_id).await?;
        let patch = ImagePatch::between(&current, update);
        let mut image = current;
        if !patch.is_empty() {
            let body = serde_json::to_vec(&patch).map_err(|e| ConfigError::caused("image update", e))?;
            let path = format!("v2/images/{image_id}");
            let call = Call { method: Method::PATCH, path: &path, body: Some((JSON_PATCH, body)) };
            let response = match self.call(ctx, image_id, call).await {
                Ok(response) => response,
                Err(refusal) => return Err(self.explain_refusal(ctx, image_id, refusal).await),
            };
            image = image_from_response(image_id, response).await?;
            info!(
                image_id,
                request_id = ctx.global_request_id.as_deref(),
                ops = patch.0.len(),
                "updated image metadata"
            );
        }
        if let Some(url) = update.location_url() {
            self.add_location(ctx, image_id, url).await?;
            image = self.get(ctx, image_id).await?;
        }
        Ok(image)
    }

    /// Registers data already in a store (RBD direct snapshots): `POST /v2/images/{id}/locations`
    /// (API ≥ 2.17), falling back to the json-patch `add /locations/-` on older Glance, as nova's
    /// `_add_location` does.
    pub async fn add_location(&self, ctx: &RequestContext, image_id: &str, url: &str) -> Result<(), GlanceError> {
        let body = serde_json::json!({"url": url, "validation_data": {}});
        let path = format!("v2/images/{image_id}/locations");
        let call =
            Call { method: Method::POST, path: &path, body: Some(("application/json", body.to_string().into_bytes())) };
        match self.call(ctx, image_id, call).await {
            Err(GlanceError::UnexpectedResponse { status, .. })
                if status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_IMPLEMENTED =>
            {
                debug!(image_id, "locations API unavailable; adding the location by json-patch");
                let patch =
                    serde_json::json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}]);
                let path = format!("v2/images/{image_id}");
                let call = Call {
                    method: Method::PATCH,
                    path: &path,
                    body: Some((JSON_PATCH, patch.to_string().into_bytes())),
                };
                self.call(ctx, image_id, call).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    /// `DELETE /v2/images/{id}`; an image that is already gone counts as deleted.
    pub async fn delete(&self, ctx: &RequestContext, image_id: &str) -> Result<(), GlanceError> {
        let path = format!("v2/images/{image_id}");
        match self.call(ctx, image_id, Call { method: Method::DELETE, path: &path, body: None }).await {
            Ok(_) => {
                info!(image_id, request_id = ctx.global_request_id.as_deref(), "deleted image");
                Ok(())
            }
            Err(GlanceError::ImageNotFound { .. }) => {
                debug!(image_id, "image already deleted");
                Ok(())
            }
            // Glance answers 400 ("deleted to deleted") for an image whose own delete stopped
            // half-way; nothing more can be deleted through the API.
            Err(refusal @ GlanceError::ImageBadRequest { .. }) => match self.get(ctx, image_id).await {
                Err(GlanceError::ImageNotFound { .. }) => {
                    warn!(image_id, %refusal, "image is already deleted (Glance's own delete of it did not finish)");
                    Ok(())
                }
                _ => Err(refusal),
            },
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/images` with `query`'s filters and sort, following `next` links until the last
    /// page (nova's backup rotation query).
    pub async fn list(&self, ctx: &RequestContext, query: &ImageQuery) -> Result<Vec<ImageMeta>, GlanceError> {
        let mut images = Vec::new();
        let mut next = Some(query.first_page_path());
        while let Some(path) = next.take() {
            let response = self.call(ctx, "", Call { method: Method::GET, path: &path, body: None }).await?;
            let status = response.status();
            let page: Value = response.json().await.map_err(|e| malformed(status, "image list page", e))?;
            for image in page.get("images").and_then(Value::as_array).into_iter().flatten() {
                images.push(ImageMeta::from_json(image.clone()).map_err(|e| malformed(status, "image list entry", e))?);
            }
            next = page.get("next").and_then(Value::as_str).map(|n| n.trim_start_matches('/').to_owned());
        }
        Ok(images)
    }

    /// Sends `call` with nova's retry policy and returns the first success; `image_id` names the
    /// image in errors.
    async fn call(&self, ctx: &RequestContext, image_id: &str, call: Call<'_>) -> Result<Response, GlanceError> {
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let credentials = self.credentials().await?;
            let base = self.base_url(ctx, &credentials)?;
            let url = join(&base, call.path)?;
            let mut request =
                self.http.request(call.method.clone(), url.clone()).headers(auth_headers(ctx, &credentials));
            if let Some((content_type, body)) = &call.body {
                request = request.header(CONTENT_TYPE, *content_type).body(body.clone());
            }
            debug!(method = %call.method, %url, request_id = ctx.global_request_id.as_deref(), attempt, "glance request");
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !renewed => {
                    renewed = true;
                    if self.renew(&credentials).await {
                        continue;
                    }
                    return Err(unauthorized_hint(status_error(image_id, response).await, &credentials));
                }
                Ok(response) if response.status().is_server_error() => status_error(image_id, response).await,
                Ok(response) => return Err(status_error(image_id, response).await),
                Err(e) => GlanceError::GlanceConnectionFailed {
                    server: server_of(&base),
                    source: ConnectionFailure::from_send(e, self.timeout),
                },
            };
            if attempt > self.num_retries {
                return Err(failure);
            }
            warn!(%url, attempt, retries = self.num_retries, error = %failure, request_id = ctx.global_request_id.as_deref(), "glance call failed; retrying");
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The service token for this attempt (cached), when configured.
    pub(crate) async fn credentials(&self) -> Result<Credentials, GlanceError> {
        self.service_auth.credentials().await.map_err(GlanceError::ServiceAuth)
    }

    /// After a 401: drops the refused service token; whether a retry can help.
    pub(crate) async fn renew(&self, credentials: &Credentials) -> bool {
        self.service_auth.renew(credentials).await
    }

    /// The next server's base URL (the context's catalog first, then the service token's).
    pub(crate) fn base_url(&self, ctx: &RequestContext, credentials: &Credentials) -> Result<Url, GlanceError> {
        let empty = ServiceCatalog::default();
        let service_catalog = credentials.service_token.as_ref().map_or(&empty, |t| &t.catalog);
        self.endpoints.next(&[&ctx.service_catalog, service_catalog])
    }
}

/// Joins a path relative to the versionless base (`next` links keep the base's path prefix,
/// as keystoneauth does).
pub(crate) fn join(base: &Url, path: &str) -> Result<Url, GlanceError> {
    base.join(path).map_err(|e| ConfigError::caused(format!("URL {base}{path}"), e).into())
}

/// An image Glance still shows as `deleted`/`pending_delete` (to an admin, or after its own delete
/// stopped half-way) is `ImageNotFound`: whoever deleted it meant it gone.
pub(crate) fn not_deleted(image_id: &str, image: ImageMeta) -> Result<ImageMeta, GlanceError> {
    if image.status.is_deleted() {
        debug!(image_id, status = %image.status, "image is deleted");
        return Err(GlanceError::ImageNotFound { image_id: image_id.to_owned() });
    }
    Ok(image)
}

/// The error for a non-success response, mapped like nova's `_reraise_translated_image_exception`
/// (plus 410 = deleted meanwhile, 415 = refused data, 409 = wrong state).
pub(crate) async fn status_error(image_id: &str, response: Response) -> GlanceError {
    let status = response.status();
    let server = server_of(response.url());
    let reason = summarize_body(&response.text().await.unwrap_or_default());
    let image_id = image_id.to_owned();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => GlanceError::ImageNotAuthorized { image_id, reason },
        StatusCode::NOT_FOUND | StatusCode::GONE => GlanceError::ImageNotFound { image_id },
        StatusCode::BAD_REQUEST => GlanceError::ImageBadRequest { image_id, reason },
        StatusCode::PAYLOAD_TOO_LARGE => GlanceError::ImageQuotaExceeded { image_id, reason },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => GlanceError::ImageUnacceptable { image_id, reason },
        StatusCode::CONFLICT => GlanceError::ImageConflict { image_id, reason },
        s if s.is_server_error() => {
            GlanceError::GlanceConnectionFailed { server, source: ConnectionFailure::ServerError { status: s, reason } }
        }
        _ => GlanceError::UnexpectedResponse { status, reason },
    }
}

/// A 401 without a service token is almost always an expired user token: say what fixes it.
fn unauthorized_hint(error: GlanceError, credentials: &Credentials) -> GlanceError {
    match error {
        GlanceError::ImageNotAuthorized { image_id, reason } if credentials.service_token.is_none() => {
            GlanceError::ImageNotAuthorized {
                image_id,
                reason: format!(
                    "{reason} (the user token was refused and no service token was sent; \
                     [service_user] send_service_user_token = true lets Glance accept an expired user token)"
                ),
            }
        }
        other => other,
    }
}

fn malformed(status: StatusCode, what: impl Into<String>, source: impl Into<crate::error::BoxError>) -> GlanceError {
    GlanceError::MalformedResponse { status, what: what.into(), source: source.into() }
}

pub(crate) async fn image_from_response(image_id: &str, response: Response) -> Result<ImageMeta, GlanceError> {
    let status = response.status();
    let what = || format!("image {image_id}");
    let json: Value = response.json().await.map_err(|e| malformed(status, what(), e))?;
    ImageMeta::from_json(json).map_err(|e| malformed(status, what(), e))
}
