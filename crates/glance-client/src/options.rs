//! The `[glance]` and `[service_user]` options the client reads, as plain structs the service
//! fills from nova.conf. Defaults are nova's and keystoneauth's.
//!
//! Must not know: how nova.conf is parsed (that is the oslo-config crate's job).

use std::path::PathBuf;
use std::time::Duration;

/// The `[glance]` group: endpoint selection, retries and the keystoneauth session/adapter options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlanceOptions {
    /// `api_servers` (deprecated in nova but still used by Kolla): used round-robin, taking the
    /// next server on each retry. Empty means "use the service catalog".
    pub api_servers: Vec<String>,
    /// `num_retries`: extra attempts after the first one on connection errors and 5xx.
    pub num_retries: u32,
    /// `cafile`: a PEM bundle trusted in addition to the system roots.
    pub cafile: Option<PathBuf>,
    /// `certfile`: the PEM client certificate presented to Glance (TLS client authentication);
    /// needs `keyfile` unless the file holds the key too.
    pub certfile: Option<PathBuf>,
    /// `keyfile`: the PEM private key of `certfile`.
    pub keyfile: Option<PathBuf>,
    /// `insecure`: skip TLS certificate verification.
    pub insecure: bool,
    /// `timeout`: keystoneauth's per-request timeout. Applied as a read timeout (time without
    /// progress), never as a whole-request limit, so a long upload is not cut off.
    pub timeout: Option<Duration>,
    /// `endpoint_override`: used as is (version suffix stripped) instead of the catalog.
    pub endpoint_override: Option<String>,
    /// `region_name` for the catalog lookup.
    pub region_name: Option<String>,
    /// `valid_interfaces`, in order of preference.
    pub valid_interfaces: Vec<String>,
    /// `service_type` in the catalog.
    pub service_type: String,
}

impl Default for GlanceOptions {
    fn default() -> Self {
        Self {
            api_servers: Vec::new(),
            num_retries: 3,
            cafile: None,
            certfile: None,
            keyfile: None,
            insecure: false,
            timeout: None,
            endpoint_override: None,
            region_name: None,
            valid_interfaces: vec!["internal".to_owned(), "public".to_owned()],
            service_type: "image".to_owned(),
        }
    }
}

/// The `[cinder]` options the volume client reads (nova's `nova/conf/cinder.py` plus the
/// keystoneauth session options registered in that group). Defaults are nova's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CinderOptions {
    /// `catalog_info`: `<service_type>:<service_name>:<endpoint_type>` matched in the service
    /// catalog (default `volumev3::publicURL`; the name may be empty).
    pub catalog_info: String,
    /// `endpoint_template`: used instead of the catalog, with `%(project_id)s` (or
    /// `%(tenant)s`) replaced from the request context, e.g.
    /// `http://localhost:8776/v3/%(project_id)s`.
    pub endpoint_template: Option<String>,
    /// `os_region_name`: the region picked in the catalog.
    pub os_region_name: Option<String>,
    /// `cafile`: a PEM bundle trusted in addition to the system roots.
    pub cafile: Option<PathBuf>,
    /// `certfile`: the PEM client certificate presented to Cinder; needs `keyfile` unless the
    /// file holds the key too.
    pub certfile: Option<PathBuf>,
    /// `keyfile`: the PEM private key of `certfile`.
    pub keyfile: Option<PathBuf>,
    /// `insecure`: skip TLS certificate verification.
    pub insecure: bool,
    /// `timeout`: bounds each request as a whole (connect, send, answer). Unset (nova: no
    /// timeout) means [`CinderOptions::DEFAULT_TIMEOUT`], so a hung Cinder cannot keep a guest
    /// frozen.
    pub timeout: Option<Duration>,
    /// `http_retries`: extra attempts after a connection error, timeout or 5xx (default 3).
    pub http_retries: u32,
}

impl CinderOptions {
    /// The per-request deadline when `[cinder] timeout` is unset: 30 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for CinderOptions {
    fn default() -> Self {
        Self {
            catalog_info: "volumev3::publicURL".to_owned(),
            endpoint_template: None,
            os_region_name: None,
            cafile: None,
            certfile: None,
            keyfile: None,
            insecure: false,
            timeout: None,
            http_retries: 3,
        }
    }
}

/// The `[service_user]` group: the compute service's own Keystone identity, sent as
/// `X-Service-Token` so Glance accepts a user token that expired during a long snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUserOptions {
    /// `send_service_user_token`; when false the other fields are ignored.
    pub send_service_user_token: bool,
    /// `auth_url`, with or without the `/v3` suffix.
    pub auth_url: String,
    /// `auth_type` and its credentials.
    pub credentials: ServiceCredentials,
    /// `cafile` for Keystone.
    pub cafile: Option<PathBuf>,
    /// `certfile`: the PEM client certificate presented to Keystone; needs `keyfile` unless the
    /// file holds the key too.
    pub certfile: Option<PathBuf>,
    /// `keyfile`: the PEM private key of `certfile`.
    pub keyfile: Option<PathBuf>,
    /// `insecure` for Keystone.
    pub insecure: bool,
    /// `timeout` for token requests.
    pub timeout: Option<Duration>,
}

/// The Keystone v3 methods nova deployments use for `[service_user]`.
#[derive(Clone, PartialEq, Eq)]
pub enum ServiceCredentials {
    /// `auth_type = password` / `v3password`.
    Password(PasswordCredentials),
    /// `auth_type = v3applicationcredential`: the credential carries its own scope.
    ApplicationCredential(ApplicationCredential),
}

/// A user name or id plus a project scope, as keystoneauth's password plugin takes them.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PasswordCredentials {
    /// `user_id`.
    pub user_id: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `user_domain_id`.
    pub user_domain_id: Option<String>,
    /// `user_domain_name`.
    pub user_domain_name: Option<String>,
    /// `password`.
    pub password: String,
    /// `project_id`.
    pub project_id: Option<String>,
    /// `project_name`.
    pub project_name: Option<String>,
    /// `project_domain_id`.
    pub project_domain_id: Option<String>,
    /// `project_domain_name`.
    pub project_domain_name: Option<String>,
}

/// `application_credential_id`, or `_name` with the owning user, plus the secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ApplicationCredential {
    /// `application_credential_id`.
    pub id: Option<String>,
    /// `application_credential_name` (needs the user).
    pub name: Option<String>,
    /// `user_id`.
    pub user_id: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `user_domain_id`.
    pub user_domain_id: Option<String>,
    /// `user_domain_name`.
    pub user_domain_name: Option<String>,
    /// `application_credential_secret`.
    pub secret: String,
}

// Secrets never reach logs: Debug is written by hand for the credential types.
impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password(p) => f
                .debug_struct("Password")
                .field("user", &p.user_id.as_ref().or(p.username.as_ref()))
                .field("project", &p.project_id.as_ref().or(p.project_name.as_ref()))
                .field("password", &"***")
                .finish(),
            Self::ApplicationCredential(a) => f
                .debug_struct("ApplicationCredential")
                .field("credential", &a.id.as_ref().or(a.name.as_ref()))
                .field("secret", &"***")
                .finish(),
        }
    }
}

impl std::fmt::Debug for PasswordCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&ServiceCredentials::Password(self.clone()), f)
    }
}

impl std::fmt::Debug for ApplicationCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&ServiceCredentials::ApplicationCredential(self.clone()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let creds = ServiceCredentials::Password(PasswordCredentials {
            username: Some("nova".into()),
            password: "s3cret".into(),
            ..Default::default()
        });
        let text = format!("{creds:?}");
        assert!(text.contains("nova") && !text.contains("s3cret"), "{text}");
        let app = ApplicationCredential { id: Some("ac".into()), secret: "s3cret".into(), ..Default::default() };
        assert!(!format!("{app:?}").contains("s3cret"));
    }
}
