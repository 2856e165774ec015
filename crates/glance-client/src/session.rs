//! What keystoneauth's `Session` and `ServiceTokenAuthWrapper` give nova's Glance and Cinder
//! clients, shared by both: the HTTP client built from a group's TLS options (`cafile`,
//! `certfile`/`keyfile` client identity, `insecure`) and timeout, the service user's token, and
//! the headers of one attempt (`X-Auth-Token` from the request context, `X-Service-Token`,
//! `X-OpenStack-Request-ID`).
//!
//! Must not know: Glance or Cinder paths, retries or how answers are classified.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;

use crate::context::RequestContext;
use crate::error::{ConfigError, KeystoneError};
use crate::keystone::{ServiceToken, ServiceTokenSource};
use crate::options::ServiceUserOptions;

/// The TLS options of one nova.conf group (`[glance]`, `[cinder]`, `[service_user]`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tls<'a> {
    /// `cafile`: PEM bundle trusted in addition to the system roots.
    pub(crate) cafile: Option<&'a Path>,
    /// `certfile`: the client certificate (PEM), possibly with its key in the same file.
    pub(crate) certfile: Option<&'a Path>,
    /// `keyfile`: the client certificate's private key (PEM).
    pub(crate) keyfile: Option<&'a Path>,
    /// `insecure`: skip server certificate verification.
    pub(crate) insecure: bool,
}

/// How a group's `timeout` bounds a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timeout {
    /// No limit beyond the connect timeout.
    None,
    /// Time without progress (uploads of many GiB must not be cut off as a whole).
    Read(Duration),
    /// The whole request, answer included (small JSON calls).
    Request(Duration),
}

/// Builds the HTTP client of one group. Every file is read and parsed here, so a wrong path or
/// a certificate without its key is a start-up error, not a failed first call.
pub(crate) fn http_client(tls: Tls<'_>, timeout: Timeout) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("nova-compute-rs glance-client/", env!("CARGO_PKG_VERSION")));
    builder = match timeout {
        Timeout::None => builder,
        Timeout::Read(t) => builder.read_timeout(t),
        Timeout::Request(t) => builder.timeout(t),
    };
    if let Some(path) = tls.cafile {
        for cert in ca_bundle(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(identity) = client_identity(tls.certfile, tls.keyfile)? {
        builder = builder.identity(identity);
    }
    if tls.insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| ConfigError::caused("HTTP client", e))
}

fn read_pem(option: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::caused(format!("{option} {}", path.display()), e))
}

fn ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let pem = read_pem("cafile", path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| ConfigError::caused(format!("cafile {}", path.display()), e))?;
    // An empty or garbled bundle would otherwise surface only at the first call, as an
    // "unknown issuer" that points away from the real mistake.
    if certs.is_empty() {
        return Err(ConfigError::new(format!("cafile {}: no PEM certificate in it", path.display())));
    }
    Ok(certs)
}

/// The client identity from `certfile` and `keyfile`, as keystoneauth's `cert=(certfile,
/// keyfile)`. A `certfile` alone must hold the key too (requests' combined PEM); a `keyfile`
/// without a `certfile` is refused rather than silently ignored.
fn client_identity(certfile: Option<&Path>, keyfile: Option<&Path>) -> Result<Option<reqwest::Identity>, ConfigError> {
    let (cert_path, pem) = match (certfile, keyfile) {
        (None, None) => return Ok(None),
        (None, Some(key)) => {
            return Err(ConfigError::new(format!("keyfile {} is set without a certfile", key.display())))
        }
        (Some(cert), key) => {
            let mut pem = read_pem("certfile", cert)?;
            if let Some(key) = key {
                pem.push(b'\n');
                pem.extend(read_pem("keyfile", key)?);
            }
            (cert, pem)
        }
    };
    let (certs, keys) = pem_sections(&pem);
    let named = format!("certfile {}", cert_path.display());
    if certs == 0 {
        return Err(ConfigError::new(format!("{named}: no PEM certificate in it")));
    }
    if keys == 0 {
        let hint = if keyfile.is_some() { "the keyfile holds no PEM private key" } else { "no keyfile is set" };
        return Err(ConfigError::new(format!("{named}: no private key for the client certificate ({hint})")));
    }
    reqwest::Identity::from_pem(&pem).map(Some).map_err(|e| ConfigError::caused(named, e))
}

/// Counts the certificates and private keys of a PEM text.
fn pem_sections(pem: &[u8]) -> (usize, usize) {
    let text = String::from_utf8_lossy(pem);
    let begins = |kind: &str| text.lines().filter(|l| l.starts_with("-----BEGIN ") && l.contains(kind)).count();
    (begins("CERTIFICATE-----"), begins("PRIVATE KEY-----"))
}

/// The `[service_user]` token source, when `send_service_user_token` is on.
#[derive(Debug)]
pub(crate) struct ServiceAuth(Option<ServiceTokenSource>);

/// The credentials of one attempt.
pub(crate) struct Credentials {
    pub(crate) service_token: Option<ServiceToken>,
}

impl ServiceAuth {
    /// Builds the Keystone HTTP client from `[service_user]` (its own TLS options and timeout).
    pub(crate) fn new(service_user: Option<&ServiceUserOptions>) -> Result<Self, ConfigError> {
        let Some(s) = service_user.filter(|s| s.send_service_user_token) else {
            return Ok(Self(None));
        };
        let tls = Tls {
            cafile: s.cafile.as_deref(),
            certfile: s.certfile.as_deref(),
            keyfile: s.keyfile.as_deref(),
            insecure: s.insecure,
        };
        let timeout = s.timeout.map_or(Timeout::None, Timeout::Read);
        Ok(Self(Some(ServiceTokenSource::new(http_client(tls, timeout)?, s))))
    }

    /// The service token for this attempt (cached), when configured.
    pub(crate) async fn credentials(&self) -> Result<Credentials, KeystoneError> {
        let service_token = match &self.0 {
            Some(source) => Some(source.token().await?),
            None => None,
        };
        Ok(Credentials { service_token })
    }

    /// After a 401: drops the service token that was refused. Returns whether a retry can help
    /// (only when a service token was involved; the user's token cannot be renewed here).
    pub(crate) async fn renew(&self, credentials: &Credentials) -> bool {
        match (&self.0, &credentials.service_token) {
            (Some(source), Some(token)) => {
                source.invalidate(&token.id).await;
                true
            }
            _ => false,
        }
    }
}

/// `X-Auth-Token`, `X-Service-Token` and `X-OpenStack-Request-ID` for one attempt. Values that
/// are not valid header text are left out rather than sent mangled.
pub(crate) fn auth_headers(ctx: &RequestContext, credentials: &Credentials) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: Option<&str>| {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    };
    put("x-auth-token", ctx.auth_token.as_deref());
    put("x-service-token", credentials.service_token.as_ref().map(|t| t.id.as_str()));
    put("x-openstack-request-id", ctx.global_request_id.as_deref());
    headers
}

/// The server as nova names it in `GlanceConnectionFailed`: the endpoint URL (`scheme://host:port`),
/// as configured or found in the catalog.
pub(crate) fn server_of(url: &Url) -> String {
    url[..url::Position::BeforePath].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyfile_without_certfile_is_refused() {
        let err = client_identity(None, Some(Path::new("/k.pem"))).unwrap_err();
        assert!(err.what.contains("without a certfile"), "{err}");
    }

    #[test]
    fn unreadable_certfile_names_the_file_and_keeps_the_cause() {
        let err = client_identity(Some(Path::new("/nonexistent/cert.pem")), None).unwrap_err();
        assert!(err.what.contains("/nonexistent/cert.pem"), "{err}");
        assert!(err.source.is_some());
    }

    #[test]
    fn counts_pem_sections() {
        let pem = b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\ny\n";
        assert_eq!(pem_sections(pem), (1, 1));
        assert_eq!(pem_sections(b"nothing"), (0, 0));
    }
}
