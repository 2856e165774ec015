//! The crate's errors, classified the way nova's `nova/image/glance.py` translates glanceclient
//! exceptions (and `nova/volume/cinder.py` cinderclient's), so the compute service can branch on
//! the variant (rotation skips `ImageNotFound`, a snapshot failure deletes the image, ...).
//!
//! Each `Display` says what failed at its own level; what caused it (a refused connection, an
//! unreadable file, a body that is not JSON) is kept as `source()`. Render the whole chain with
//! `error_chain::Chain`.
//!
//! Must not know: how a request was built or retried; it only names outcomes.

use std::error::Error;
use std::io;
use std::time::Duration;

use reqwest::StatusCode;

/// A cause of any type, for the decoding and configuration errors whose cause comes from
/// several libraries (serde_json, reqwest, url, io).
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Everything a Glance call can fail with. `image_id` is always the image the call was about
/// (empty for a list); `reason` is Glance's answer shortened to one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlanceError {
    /// HTTP 401/403 (nova `ImageNotAuthorized`); with 401 the service token was already renewed
    /// once. `reason` is Glance's answer, shortened to one line.
    #[error("not authorized for image {image_id}: {reason}")]
    ImageNotAuthorized {
        /// The image the call was about.
        image_id: String,
        /// Why, as the server put it (one line).
        reason: String,
    },

    /// HTTP 404, or 410 when the image was deleted during an upload (nova `ImageNotFound`).
    #[error("image {image_id} could not be found")]
    ImageNotFound {
        /// The image the call was about.
        image_id: String,
    },

    /// HTTP 400 (nova `ImageBadRequest`); `reason` is Glance's answer.
    #[error("request about image {image_id} was refused as invalid: {reason}")]
    ImageBadRequest {
        /// The image the call was about.
        image_id: String,
        /// Why, as the server put it (one line).
        reason: String,
    },

    /// HTTP 413: `image_size_cap`, storage quota or Keystone limits (nova `ImageQuotaExceeded`).
    #[error("image {image_id} is over a quota or size limit: {reason}")]
    ImageQuotaExceeded {
        /// The image the call was about.
        image_id: String,
        /// Why, as the server put it (one line).
        reason: String,
    },

    /// HTTP 415 on upload: the data failed Glance's format safety checks (for instance a qcow2
    /// with a backing file) or does not match `disk_format` (nova `ImageUnacceptable`).
    #[error("image {image_id} data was refused by Glance: {reason}")]
    ImageUnacceptable {
        /// The image the call was about.
        image_id: String,
        /// Why, as the server put it (one line).
        reason: String,
    },

    /// HTTP 409: the image is not in a state that allows the call (nova `ImageDeleteConflict`
    /// for deletes).
    #[error("image {image_id} is in a conflicting state: {reason}")]
    ImageConflict {
        /// The image the call was about.
        image_id: String,
        /// Why, as the server put it (one line).
        reason: String,
    },

    /// Connection errors and 5xx after `[glance] num_retries` more attempts (nova
    /// `GlanceConnectionFailed`; its `reason` is `error_chain(source)`). `server` is the endpoint
    /// (`scheme://host:port`) of the last attempt.
    #[error("connection to glance host {server} failed")]
    GlanceConnectionFailed {
        /// The endpoint (`scheme://host:port`) of the last attempt.
        server: String,
        /// What went wrong on the last attempt.
        #[source]
        source: ConnectionFailure,
    },

    /// Glance stored other bytes than were sent: the sha512 (or size) it computed differs.
    #[error("image {image_id} in Glance does not match the uploaded data: {detail}")]
    ImageDataMismatch {
        /// The image the call was about.
        image_id: String,
        /// What differs.
        detail: String,
    },

    /// An upload ended with the image in a state that can neither be retried nor accepted; a
    /// `saving` image was abandoned by a Glance restart mid-upload and must be deleted.
    #[error("image {image_id} is left in status {status} by a failed upload and cannot take data again")]
    ImageUploadFailed {
        /// The image the call was about.
        image_id: String,
        /// The image status Glance reports.
        status: String,
    },

    /// The image data could not be read from its source.
    #[error("cannot read the data for image {image_id}")]
    SourceRead {
        /// The image the data was for.
        image_id: String,
        /// The read error.
        #[source]
        source: io::Error,
    },

    /// No image endpoint: neither `[glance] api_servers`, `endpoint_override` nor a catalog entry.
    #[error("no image endpoint found (service type {service_type}, interfaces {interfaces:?})")]
    EndpointNotFound {
        /// `[glance] service_type`.
        service_type: String,
        /// `[glance] valid_interfaces`.
        interfaces: Vec<String>,
    },

    /// The service user could not get a token from Keystone.
    #[error("service user authentication failed")]
    ServiceAuth(#[source] KeystoneError),

    /// An option value the client cannot use (bad URL, unreadable CA or client certificate, ...).
    #[error("invalid glance client configuration")]
    InvalidConfig(#[source] ConfigError),

    /// A status the client does not know how to interpret; `reason` is the body, shortened.
    #[error("unexpected response from Glance ({status}): {reason}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: StatusCode,
        /// Why, as the server put it (one line).
        reason: String,
    },

    /// A success status whose body cannot be read as what it should be (`what`: "image X",
    /// "image list page").
    #[error("Glance answered {status} with an unreadable {what}")]
    MalformedResponse {
        /// The HTTP status.
        status: StatusCode,
        /// What was being read (`image X`, `image list page`).
        what: String,
        /// The decoding error.
        #[source]
        source: BoxError,
    },
}

/// Why a server could not be used for one attempt: what `[glance] num_retries` and
/// `[cinder] http_retries` retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionFailure {
    /// No HTTP answer: refused connection, TLS handshake failure (unknown CA, missing client
    /// certificate), reset.
    #[error(transparent)]
    Transport(reqwest::Error),

    /// No complete answer within the configured per-request timeout.
    #[error("no answer within {after:?}")]
    TimedOut {
        /// The timeout that was applied.
        after: Duration,
        /// reqwest's timeout error.
        #[source]
        source: reqwest::Error,
    },

    /// A 5xx answer.
    #[error("server error {status}: {reason}")]
    ServerError {
        /// The status the server answered.
        status: StatusCode,
        /// The body, shortened to one line.
        reason: String,
    },
}

impl ConnectionFailure {
    /// Classifies a reqwest send error: a timeout (given the timeout that was set) or another
    /// transport failure.
    pub(crate) fn from_send(error: reqwest::Error, timeout: Option<Duration>) -> Self {
        match timeout {
            Some(after) if error.is_timeout() => Self::TimedOut { after, source: error },
            _ => Self::Transport(error),
        }
    }
}

/// An option value that cannot be used, found when a client is built: `what` names the option
/// and value, `source` (when there is one) says why.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct ConfigError {
    /// The option and the problem, e.g. `cafile /etc/nova/ca.pem: no PEM certificate in it`.
    pub what: String,
    /// The underlying failure (an io error reading the file, a parse error), if any.
    #[source]
    pub source: Option<BoxError>,
}

impl ConfigError {
    /// A problem with no underlying error.
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Self { what: what.into(), source: None }
    }

    /// A problem caused by `source`.
    pub(crate) fn caused(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self { what: what.into(), source: Some(source.into()) }
    }
}

impl From<ConfigError> for GlanceError {
    fn from(e: ConfigError) -> Self {
        Self::InvalidConfig(e)
    }
}

/// Failures of a Keystone v3 token request. `auth_url` is the token URL that was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoneError {
    /// Keystone answered with an error status (401: wrong credentials).
    #[error("keystone at {auth_url} refused the token request ({status}): {reason}")]
    Refused {
        /// The token URL.
        auth_url: String,
        /// The HTTP status.
        status: StatusCode,
        /// Why, as the server put it (one line).
        reason: String,
    },

    /// Keystone could not be reached.
    #[error("cannot reach keystone at {auth_url}")]
    Unreachable {
        /// The token URL.
        auth_url: String,
        /// reqwest's error (refused connection, TLS, timeout).
        #[source]
        source: reqwest::Error,
    },

    /// The token response lacks the header or fields a v3 token has.
    #[error("malformed token response from {auth_url}: {reason}")]
    Malformed {
        /// The token URL.
        auth_url: String,
        /// Why, as the server put it (one line).
        reason: String,
    },

    /// The token response body is not JSON.
    #[error("token response from {auth_url} is not JSON")]
    NotJson {
        /// The token URL.
        auth_url: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Everything a Cinder call can fail with, named after the nova exceptions `nova/volume/cinder.py`
/// raises for them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CinderError {
    /// HTTP 404 (nova `SnapshotNotFound`).
    #[error("volume snapshot {snapshot_id} could not be found")]
    SnapshotNotFound {
        /// The snapshot asked for.
        snapshot_id: String,
    },

    /// HTTP 401/403 (nova `Forbidden`); with 401 the service token was already renewed once.
    #[error("not authorized for volume snapshot {snapshot_id}: {reason}")]
    NotAuthorized {
        /// The snapshot asked for.
        snapshot_id: String,
        /// Cinder's answer, shortened to one line.
        reason: String,
    },

    /// HTTP 400 (nova `InvalidInput`).
    #[error("request about volume snapshot {snapshot_id} was refused as invalid: {reason}")]
    BadRequest {
        /// The snapshot asked for.
        snapshot_id: String,
        /// Cinder's answer, shortened to one line.
        reason: String,
    },

    /// Connection errors, timeouts and 5xx after `[cinder] http_retries` more attempts (nova
    /// `CinderConnectionFailed`; its `reason` is `error_chain(source)`).
    #[error("connection to cinder host {server} failed")]
    CinderConnectionFailed {
        /// The endpoint (`scheme://host:port`) of the last attempt.
        server: String,
        /// What went wrong on the last attempt.
        #[source]
        source: ConnectionFailure,
    },

    /// Neither `[cinder] endpoint_template` nor a catalog entry matching `catalog_info` and
    /// `os_region_name` (keystoneauth's `EndpointNotFound`).
    #[error("no volume endpoint found in the service catalog ({catalog_info}, region {region:?})")]
    EndpointNotFound {
        /// `[cinder] catalog_info` as configured.
        catalog_info: String,
        /// `[cinder] os_region_name`.
        region: Option<String>,
    },

    /// The service user could not get a token from Keystone.
    #[error("service user authentication failed")]
    ServiceAuth(#[source] KeystoneError),

    /// An option value the client cannot use (bad `catalog_info`, unreadable certificate, ...).
    #[error("invalid cinder client configuration")]
    InvalidConfig(#[source] ConfigError),

    /// A status the client does not know how to interpret; `reason` is the body, shortened.
    #[error("unexpected response from Cinder ({status}): {reason}")]
    UnexpectedResponse {
        /// The status Cinder answered.
        status: StatusCode,
        /// The body, shortened to one line.
        reason: String,
    },

    /// A success status whose body is not a snapshot document.
    #[error("Cinder answered {status} with an unreadable body for volume snapshot {snapshot_id}")]
    MalformedResponse {
        /// The status Cinder answered.
        status: StatusCode,
        /// The snapshot asked for.
        snapshot_id: String,
        /// The decoding error.
        #[source]
        source: BoxError,
    },
}

impl From<ConfigError> for CinderError {
    fn from(e: ConfigError) -> Self {
        Self::InvalidConfig(e)
    }
}

/// Shortens an error body (HTML or JSON from webob) to one readable line for messages and logs.
pub(crate) fn summarize_body(body: &str) -> String {
    const LIMIT: usize = 400;
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(json) => json_message(&json).unwrap_or_else(|| body.to_owned()),
        // webob's HTML pages repeat the status in <title> and <h1>: keep the body part.
        Err(_) => strip_tags(body.split_once("</head>").map_or(body, |(_, rest)| rest)),
    };
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > LIMIT {
        let mut cut = LIMIT;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

/// Keystone: `{"error": {"message": ...}}`; Glance JSON faults: `{"message": ...}`.
fn json_message(json: &serde_json::Value) -> Option<String> {
    let message = json.pointer("/error/message").or_else(|| json.get("message"))?;
    Some(message.as_str()?.to_owned())
}

fn strip_tags(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_html_json_and_long_bodies() {
        let html = "<html><head><title>413 Request Entity Too Large</title></head>\n<body>Image exceeds\n the cap</body></html>";
        assert_eq!(summarize_body(html), "Image exceeds the cap");
        assert_eq!(summarize_body(r#"{"error": {"message": "bad creds", "code": 401}}"#), "bad creds");
        assert_eq!(summarize_body(&"é".repeat(500)).chars().count(), 203);
    }
}
