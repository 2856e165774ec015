//! `CinderClient`: the Cinder v3 calls nova-compute makes on the snapshot path — today the
//! volume snapshot status nova's `_wait_for_snapshots_completion` polls before it thaws a guest
//! (`nova/volume/cinder.py` `API.get_snapshot`).
//!
//! The endpoint is `[cinder] endpoint_template` (with `%(project_id)s` from the request), else
//! the catalog entry `catalog_info` names in `os_region_name`, looked up in the request's
//! catalog then the service user's. Requests carry the same headers as Glance's (user token,
//! `X-Service-Token`, request id), are bounded by `[cinder] timeout` each, and connection
//! errors, timeouts and 5xx are tried `http_retries` more times with keystoneauth's doubling
//! pause (0.5 s, 1 s, 2 s, ...).
//!
//! Must not know: instances, block device mappings or how long the caller polls.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;
use tracing::{debug, warn};
use url::Url;

use crate::context::{RequestContext, ServiceCatalog};
use crate::error::{summarize_body, CinderError, ConfigError, ConnectionFailure};
use crate::options::{CinderOptions, ServiceUserOptions};
use crate::session::{auth_headers, http_client, server_of, Credentials, ServiceAuth, Timeout, Tls};

/// keystoneauth's first pause between connection retries; it doubles on each retry.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// keystoneauth's cap on that pause.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);
/// nova's cinderclient speaks the base v3 API.
const API_VERSION: &str = "volume 3.0";
/// Catalog types that name Cinder's v3 API (os-service-types aliases), tried after the
/// configured one.
const VOLUME_V3_TYPES: [&str; 2] = ["block-storage", "volumev3"];

/// A volume snapshot's `status` as Cinder reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// `creating`: the storage is still taking the snapshot (nova keeps the guest frozen).
    Creating,
    /// `available`: taken.
    Available,
    /// `backing-up`.
    BackingUp,
    /// `deleting`.
    Deleting,
    /// `deleted`.
    Deleted,
    /// `error`: the snapshot failed.
    Error,
    /// `error_deleting`.
    ErrorDeleting,
    /// `restoring`.
    Restoring,
    /// `unmanaging`.
    Unmanaging,
    /// A status this client does not know, as Cinder spelled it.
    Other(String),
}

impl SnapshotStatus {
    /// Reads Cinder's spelling.
    pub fn parse(status: &str) -> Self {
        match status {
            "creating" => Self::Creating,
            "available" => Self::Available,
            "backing-up" => Self::BackingUp,
            "deleting" => Self::Deleting,
            "deleted" => Self::Deleted,
            "error" => Self::Error,
            "error_deleting" => Self::ErrorDeleting,
            "restoring" => Self::Restoring,
            "unmanaging" => Self::Unmanaging,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Cinder's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Creating => "creating",
            Self::Available => "available",
            Self::BackingUp => "backing-up",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
            Self::Error => "error",
            Self::ErrorDeleting => "error_deleting",
            Self::Restoring => "restoring",
            Self::Unmanaging => "unmanaging",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for SnapshotStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Cinder v3 client for one nova-compute service; cheap to share (`Arc`) across requests.
#[derive(Debug)]
pub struct CinderClient {
    http: reqwest::Client,
    endpoint: VolumeEndpoint,
    service_auth: ServiceAuth,
    http_retries: u32,
    timeout: Duration,
}

/// Where the volume API is: nova's `_get_cinderclient_parameters`.
#[derive(Debug)]
enum VolumeEndpoint {
    Template(EndpointTemplate),
    Catalog(CatalogInfo),
}

/// `[cinder] catalog_info`, split, with `os_region_name`.
#[derive(Debug)]
struct CatalogInfo {
    configured: String,
    service_type: String,
    service_name: Option<String>,
    interface: String,
    region: Option<String>,
}

impl CatalogInfo {
    /// `<service_type>:<service_name>:<interface>`, exactly three parts, a non-empty type and
    /// interface (nova's regex `^[\w-]+:\w*:.*$` and its `split(':')`).
    fn parse(catalog_info: &str, region: Option<&str>) -> Result<Self, ConfigError> {
        let invalid = || {
            ConfigError::new(format!(
                "catalog_info {catalog_info:?}: expected <service_type>:<service_name>:<endpoint_type>"
            ))
        };
        let parts: Vec<&str> = catalog_info.split(':').collect();
        let [service_type, service_name, interface] = parts[..] else {
            return Err(invalid());
        };
        if service_type.is_empty() || interface.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            configured: catalog_info.to_owned(),
            service_type: service_type.to_owned(),
            service_name: Some(service_name).filter(|n| !n.is_empty()).map(str::to_owned),
            interface: interface.to_owned(),
            region: region.map(str::to_owned),
        })
    }

    /// The endpoint in the first catalog that has one: the configured type, then its v3 aliases.
    fn find(&self, catalogs: &[&ServiceCatalog]) -> Option<String> {
        let interfaces = [self.interface.clone()];
        let types = std::iter::once(self.service_type.as_str()).chain(VOLUME_V3_TYPES);
        let region = self.region.as_deref();
        let name = self.service_name.as_deref();
        types.into_iter().find_map(|service_type| {
            catalogs.iter().find_map(|c| c.named_endpoint(service_type, name, &interfaces, region)).map(str::to_owned)
        })
    }
}

/// `[cinder] endpoint_template`, checked once: only the context keys it can fill.
#[derive(Debug)]
struct EndpointTemplate(String);

impl EndpointTemplate {
    /// The context keys a template may name (nova formats it with `context.to_dict()`).
    const KEYS: [&'static str; 2] = ["project_id", "tenant"];

    fn parse(template: &str) -> Result<Self, ConfigError> {
        let checked = Self(template.to_owned());
        checked.expand(Some("x")).map(|_| checked).map_err(|key| {
            ConfigError::new(format!(
                "endpoint_template {template:?}: unsupported placeholder {key:?} (only %(project_id)s and %(tenant)s)"
            ))
        })
    }

    /// The URL for a request of `project_id`; `Err` names a placeholder that cannot be filled.
    fn expand(&self, project_id: Option<&str>) -> Result<String, String> {
        let mut out = String::with_capacity(self.0.len());
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix("%%") {
                out.push('%');
                rest = after;
                continue;
            }
            let Some((key, after)) = rest.strip_prefix("%(").and_then(|r| r.split_once(")s")) else {
                return Err(rest.to_owned());
            };
            if !Self::KEYS.contains(&key) {
                return Err(key.to_owned());
            }
            out.push_str(project_id.ok_or_else(|| key.to_owned())?);
            rest = after;
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl CinderClient {
    /// Builds the client from `[cinder]` (endpoint selection, TLS trust, client certificate,
    /// timeout, retries) and, when `send_service_user_token` is set, the service token source
    /// from `[service_user]`. Every file named by the options is read here.
    pub fn new(options: &CinderOptions, service_user: Option<&ServiceUserOptions>) -> Result<Self, CinderError> {
        let endpoint = match &options.endpoint_template {
            Some(template) => VolumeEndpoint::Template(EndpointTemplate::parse(template)?),
            None => {
                VolumeEndpoint::Catalog(CatalogInfo::parse(&options.catalog_info, options.os_region_name.as_deref())?)
            }
        };
        let tls = Tls {
            cafile: options.cafile.as_deref(),
            certfile: options.certfile.as_deref(),
            keyfile: options.keyfile.as_deref(),
            insecure: options.insecure,
        };
        let timeout = options.timeout.unwrap_or(CinderOptions::DEFAULT_TIMEOUT);
        Ok(Self {
            http: http_client(tls, Timeout::Request(timeout))?,
            endpoint,
            service_auth: ServiceAuth::new(service_user)?,
            http_retries: options.http_retries,
            timeout,
        })
    }

    /// `GET /snapshots/{id}`: the snapshot's status (nova `get_snapshot(...)['status']`).
    pub async fn snapshot_status(
        &self,
        ctx: &RequestContext,
        snapshot_id: &str,
    ) -> Result<SnapshotStatus, CinderError> {
        let response = self.get(ctx, snapshot_id, &format!("snapshots/{snapshot_id}")).await?;
        let status = response.status();
        let malformed = |source: crate::error::BoxError| CinderError::MalformedResponse {
            status,
            snapshot_id: snapshot_id.to_owned(),
            source,
        };
        let body: Value = response.json().await.map_err(|e| malformed(e.into()))?;
        let text = body.pointer("/snapshot/status").and_then(Value::as_str);
        let text = text.ok_or_else(|| malformed("no snapshot.status in the answer".into()))?;
        Ok(SnapshotStatus::parse(text))
    }

    /// A GET with the retry policy; the first success is returned, a refusal at once.
    async fn get(&self, ctx: &RequestContext, snapshot_id: &str, path: &str) -> Result<Response, CinderError> {
        let mut renewed = false;
        let mut retries = 0;
        loop {
            let credentials = self.service_auth.credentials().await.map_err(CinderError::ServiceAuth)?;
            let url = self.url(ctx, &credentials, path)?;
            debug!(%url, request_id = ctx.global_request_id.as_deref(), retries, "cinder request");
            let request = self.http.get(url.clone()).headers(auth_headers(ctx, &credentials));
            let failure = match request.header("openstack-api-version", API_VERSION).send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !renewed => {
                    renewed = true;
                    if self.service_auth.renew(&credentials).await {
                        continue;
                    }
                    return Err(status_error(snapshot_id, response).await);
                }
                Ok(response) if response.status().is_server_error() => status_error(snapshot_id, response).await,
                Ok(response) => return Err(status_error(snapshot_id, response).await),
                Err(e) => CinderError::CinderConnectionFailed {
                    server: server_of(&url),
                    source: ConnectionFailure::from_send(e, Some(self.timeout)),
                },
            };
            if retries >= self.http_retries {
                return Err(failure);
            }
            let pause = FIRST_RETRY_PAUSE.saturating_mul(1 << retries.min(16)).min(MAX_RETRY_PAUSE);
            retries += 1;
            let error = error_chain::Chain(&failure);
            warn!(%url, retries, of = self.http_retries, %error, "cinder call failed; retrying in {pause:?}");
            tokio::time::sleep(pause).await;
        }
    }

    /// `<endpoint>/<path>` for this request.
    fn url(&self, ctx: &RequestContext, credentials: &Credentials, path: &str) -> Result<Url, CinderError> {
        let base = match &self.endpoint {
            VolumeEndpoint::Template(template) => template.expand(ctx.project_id.as_deref()).map_err(|key| {
                ConfigError::new(format!("endpoint_template needs {key:?}, which the request context lacks"))
            })?,
            VolumeEndpoint::Catalog(info) => {
                let service_catalog = credentials.service_token.as_ref().map(|t| &t.catalog);
                let catalogs: Vec<&ServiceCatalog> =
                    std::iter::once(&ctx.service_catalog).chain(service_catalog).collect();
                info.find(&catalogs).ok_or_else(|| CinderError::EndpointNotFound {
                    catalog_info: info.configured.clone(),
                    region: info.region.clone(),
                })?
            }
        };
        let joined = format!("{}/{path}", base.trim_end_matches('/'));
        Url::parse(&joined).map_err(|e| ConfigError::caused(format!("volume endpoint {base:?}"), e).into())
    }
}

/// The error for a non-success answer, as nova's `translate_snapshot_exception` and
/// `translate_cinder_exception` name them.
async fn status_error(snapshot_id: &str, response: Response) -> CinderError {
    let status = response.status();
    let server = server_of(response.url());
    let reason = summarize_body(&response.text().await.unwrap_or_default());
    let snapshot_id = snapshot_id.to_owned();
    match status {
        StatusCode::NOT_FOUND => CinderError::SnapshotNotFound { snapshot_id },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CinderError::NotAuthorized { snapshot_id, reason },
        StatusCode::BAD_REQUEST => CinderError::BadRequest { snapshot_id, reason },
        s if s.is_server_error() => {
            CinderError::CinderConnectionFailed { server, source: ConnectionFailure::ServerError { status: s, reason } }
        }
        _ => CinderError::UnexpectedResponse { status, reason },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn catalog_info_has_three_parts() {
        let info = CatalogInfo::parse("volumev3::publicURL", Some("R1")).unwrap();
        assert_eq!((info.service_type.as_str(), info.service_name.as_deref()), ("volumev3", None));
        assert_eq!(info.interface, "publicURL");
        assert_eq!(
            CatalogInfo::parse("volumev3:cinderv3:internalURL", None).unwrap().service_name.as_deref(),
            Some("cinderv3")
        );
        for bad in ["volumev3", "volumev3:publicURL", ":x:publicURL", "a:b:c:d", "volumev3::"] {
            assert!(CatalogInfo::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn catalog_lookup_uses_interface_name_region_and_v3_aliases() {
        let catalog = ServiceCatalog::from_json(&json!([
            {"type": "block-storage", "name": "cinder", "endpoints": [
                {"region": "R1", "publicURL": "http://pub1/v3/p", "internalURL": "http://int1/v3/p"},
                {"region": "R2", "publicURL": "http://pub2/v3/p"}]}
        ]));
        let find = |info: &str, region: Option<&str>| CatalogInfo::parse(info, region).unwrap().find(&[&catalog]);
        assert_eq!(find("volumev3::publicURL", Some("R2")).as_deref(), Some("http://pub2/v3/p"));
        assert_eq!(find("volumev3::internalURL", None).as_deref(), Some("http://int1/v3/p"));
        assert_eq!(find("volumev3:cinder:publicURL", Some("R1")).as_deref(), Some("http://pub1/v3/p"));
        assert_eq!(find("volumev3:other:publicURL", None), None);
        assert_eq!(find("volumev3::adminURL", None), None);
    }

    #[test]
    fn endpoint_template_takes_the_project() {
        let t = EndpointTemplate::parse("http://c:8776/v3/%(project_id)s").unwrap();
        assert_eq!(t.expand(Some("p1")).unwrap(), "http://c:8776/v3/p1");
        assert_eq!(t.expand(None).unwrap_err(), "project_id");
        let t = EndpointTemplate::parse("http://c/100%%/%(tenant)s").unwrap();
        assert_eq!(t.expand(Some("p")).unwrap(), "http://c/100%/p");
        assert_eq!(EndpointTemplate::parse("http://c/v3").unwrap().expand(None).unwrap(), "http://c/v3");
        assert!(EndpointTemplate::parse("http://c/%(user_id)s").is_err());
        assert!(EndpointTemplate::parse("http://c/%(project_id)").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["creating", "available", "backing-up", "deleting", "deleted", "error", "error_deleting", "restoring"]
        {
            assert_eq!(SnapshotStatus::parse(s).as_str(), s);
        }
        assert_eq!(SnapshotStatus::parse("unmanaging"), SnapshotStatus::Unmanaging);
        assert_eq!(SnapshotStatus::parse("new-one"), SnapshotStatus::Other("new-one".into()));
    }
}
