//! The crate's errors, classified the way nova's `nova/image/glance.py` translates glanceclient
//! exceptions, so the compute service can branch on the variant (rotation skips
//! `ImageNotFound`, a snapshot failure deletes the image, ...).
//!
//! Must not know: how a request was built or retried; it only names outcomes.

use std::io;

use reqwest::StatusCode;

/// Everything a Glance call can fail with.
// Variant fields are named for what they hold (image_id, reason, server, ...).
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlanceError {
    /// HTTP 401/403 (nova `ImageNotAuthorized`); with 401 the service token was already renewed
    /// once.
    #[error("not authorized for image {image_id}: {reason}")]
    ImageNotAuthorized { image_id: String, reason: String },

    /// HTTP 404, or 410 when the image was deleted during an upload (nova `ImageNotFound`).
    #[error("image {image_id} could not be found")]
    ImageNotFound { image_id: String },

    /// HTTP 400 (nova `ImageBadRequest`).
    #[error("request about image {image_id} was refused as invalid: {reason}")]
    ImageBadRequest { image_id: String, reason: String },

    /// HTTP 413: `image_size_cap`, storage quota or Keystone limits (nova `ImageQuotaExceeded`).
    #[error("image {image_id} is over a quota or size limit: {reason}")]
    ImageQuotaExceeded { image_id: String, reason: String },

    /// HTTP 415 on upload: the data failed Glance's format safety checks (for instance a qcow2
    /// with a backing file) or does not match `disk_format` (nova `ImageUnacceptable`).
    #[error("image {image_id} data was refused by Glance: {reason}")]
    ImageUnacceptable { image_id: String, reason: String },

    /// HTTP 409: the image is not in a state that allows the call (nova `ImageDeleteConflict`
    /// for deletes).
    #[error("image {image_id} is in a conflicting state: {reason}")]
    ImageConflict { image_id: String, reason: String },

    /// Connection errors and 5xx after `[glance] num_retries` more attempts (nova
    /// `GlanceConnectionFailed`).
    #[error("connection to glance host {server} failed: {reason}")]
    GlanceConnectionFailed { server: String, reason: String },

    /// Glance stored other bytes than were sent: the sha512 (or size) it computed differs.
    #[error("image {image_id} in Glance does not match the uploaded data: {detail}")]
    ImageDataMismatch { image_id: String, detail: String },

    /// An upload ended with the image in a state that can neither be retried nor accepted; a
    /// `saving` image was abandoned by a Glance restart mid-upload and must be deleted.
    #[error("image {image_id} is left in status {status} by a failed upload and cannot take data again")]
    ImageUploadFailed { image_id: String, status: String },

    /// The image data could not be read from its source.
    #[error("cannot read the data for image {image_id}")]
    SourceRead {
        image_id: String,
        #[source]
        source: io::Error,
    },

    /// No image endpoint: neither `[glance] api_servers`, `endpoint_override` nor a catalog entry.
    #[error("no image endpoint found (service type {service_type}, interfaces {interfaces:?})")]
    EndpointNotFound { service_type: String, interfaces: Vec<String> },

    /// The service user could not get a token from Keystone.
    #[error("service user authentication failed")]
    ServiceAuth(#[source] KeystoneError),

    /// An option value the client cannot use (bad URL, unreadable CA file, ...).
    #[error("invalid glance client configuration: {0}")]
    InvalidConfig(String),

    /// A status or body the client does not know how to interpret.
    #[error("unexpected response from Glance ({status}): {reason}")]
    UnexpectedResponse { status: StatusCode, reason: String },
}

/// Failures of a Keystone v3 token request.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoneError {
    /// Keystone answered with an error status (401: wrong credentials).
    #[error("keystone at {auth_url} refused the token request ({status}): {reason}")]
    Refused { auth_url: String, status: StatusCode, reason: String },

    /// Keystone could not be reached.
    #[error("cannot reach keystone at {auth_url}")]
    Unreachable {
        auth_url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The token response lacks the header or fields a v3 token has.
    #[error("malformed token response from {auth_url}: {reason}")]
    Malformed { auth_url: String, reason: String },
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
