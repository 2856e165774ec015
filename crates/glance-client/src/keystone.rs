//! Keystone v3 tokens for the `[service_user]` identity (password or application credential),
//! cached and renewed before they expire, the way keystoneauth's plugins behave inside
//! `ServiceTokenAuthWrapper`.
//!
//! Must not know: Glance, or the user's token (that one comes from the RPC context and is never
//! renewed here).

use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tracing::{debug, info};

use crate::context::ServiceCatalog;
use crate::error::{summarize_body, KeystoneError};
use crate::options::{ApplicationCredential, PasswordCredentials, ServiceCredentials, ServiceUserOptions};

/// keystoneauth renews a token when less than this is left (`MIN_TOKEN_LIFE_SECONDS`).
const RENEW_MARGIN: Duration = Duration::from_secs(120);

/// A token issued to the service user.
#[derive(Clone)]
pub struct ServiceToken {
    /// The `X-Subject-Token` value.
    pub id: String,
    /// When Keystone says it expires.
    pub expires_at: OffsetDateTime,
    /// When it was obtained, to size the renewal margin for short-lived tokens.
    issued_at: OffsetDateTime,
    /// The catalog of the token (used when the request context carries none).
    pub catalog: ServiceCatalog,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl ServiceToken {
    /// Whether the token should be replaced now: less than two minutes left, or less than half of
    /// its lifetime when Keystone issues tokens shorter than four minutes.
    fn needs_renewal(&self, now: OffsetDateTime) -> bool {
        let lifetime = self.expires_at - self.issued_at;
        let margin = time::Duration::try_from(RENEW_MARGIN).unwrap_or(time::Duration::ZERO).min(lifetime / 2);
        self.expires_at - now <= margin
    }
}

/// The service user's token source: one Keystone round trip per token lifetime.
#[derive(Debug)]
pub struct ServiceTokenSource {
    http: reqwest::Client,
    tokens_url: String,
    credentials: ServiceCredentials,
    cached: Mutex<Option<ServiceToken>>,
}

impl ServiceTokenSource {
    /// A source for `options`; no request is made until the first token is needed.
    pub fn new(http: reqwest::Client, options: &ServiceUserOptions) -> Self {
        Self {
            http,
            tokens_url: tokens_url(&options.auth_url),
            credentials: options.credentials.clone(),
            cached: Mutex::new(None),
        }
    }

    /// The cached token, or a new one when it is missing or about to expire.
    pub async fn token(&self) -> Result<ServiceToken, KeystoneError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| !t.needs_renewal(OffsetDateTime::now_utc())) {
            return Ok(token.clone());
        }
        let token = self.issue().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Drops the cached token if it is still `rejected`, so the next call asks Keystone (after a
    /// 401, when Keystone may have revoked it early).
    pub async fn invalidate(&self, rejected: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| t.id == rejected) {
            info!("service token rejected; it will be renewed");
            *cached = None;
        }
    }

    async fn issue(&self) -> Result<ServiceToken, KeystoneError> {
        let url = &self.tokens_url;
        debug!(%url, "requesting a service token");
        let response = self
            .http
            .post(url)
            .json(&auth_body(&self.credentials))
            .send()
            .await
            .map_err(|source| KeystoneError::Unreachable { auth_url: url.clone(), source })?;
        let status = response.status();
        let subject = response.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body =
            response.text().await.map_err(|source| KeystoneError::Unreachable { auth_url: url.clone(), source })?;
        if !status.is_success() {
            return Err(KeystoneError::Refused { auth_url: url.clone(), status, reason: summarize_body(&body) });
        }
        let malformed = |reason: &str| KeystoneError::Malformed { auth_url: url.clone(), reason: reason.to_owned() };
        let id = subject.ok_or_else(|| malformed("no X-Subject-Token header"))?;
        let json: Value =
            serde_json::from_str(&body).map_err(|source| KeystoneError::NotJson { auth_url: url.clone(), source })?;
        let expires_at = json
            .pointer("/token/expires_at")
            .and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .ok_or_else(|| malformed("no valid token.expires_at"))?;
        let catalog = ServiceCatalog::from_json(json.pointer("/token/catalog").unwrap_or(&Value::Null));
        info!(%expires_at, "obtained a service token");
        Ok(ServiceToken { id, expires_at, issued_at: OffsetDateTime::now_utc(), catalog })
    }
}

/// `<auth_url>/v3/auth/tokens`, accepting `auth_url` with or without `/v3`.
fn tokens_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    let base = base.strip_suffix("/v3").unwrap_or(base);
    format!("{base}/v3/auth/tokens")
}

fn auth_body(credentials: &ServiceCredentials) -> Value {
    match credentials {
        ServiceCredentials::Password(p) => password_body(p),
        ServiceCredentials::ApplicationCredential(a) => application_credential_body(a),
    }
}

fn password_body(p: &PasswordCredentials) -> Value {
    let mut user = identity_ref(p.user_id.as_deref(), p.username.as_deref());
    user["password"] = json!(p.password);
    if p.user_id.is_none() {
        user["domain"] = domain_ref(p.user_domain_id.as_deref(), p.user_domain_name.as_deref());
    }
    let mut body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}});
    if p.project_id.is_some() || p.project_name.is_some() {
        let mut project = identity_ref(p.project_id.as_deref(), p.project_name.as_deref());
        if p.project_id.is_none() {
            project["domain"] = domain_ref(p.project_domain_id.as_deref(), p.project_domain_name.as_deref());
        }
        body["auth"]["scope"] = json!({"project": project});
    }
    body
}

fn application_credential_body(a: &ApplicationCredential) -> Value {
    let mut credential = identity_ref(a.id.as_deref(), a.name.as_deref());
    credential["secret"] = json!(a.secret);
    if a.id.is_none() {
        let mut user = identity_ref(a.user_id.as_deref(), a.username.as_deref());
        if a.user_id.is_none() {
            user["domain"] = domain_ref(a.user_domain_id.as_deref(), a.user_domain_name.as_deref());
        }
        credential["user"] = user;
    }
    json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": credential}}})
}

/// `{"id": ..}` when the id is known, else `{"name": ..}`.
fn identity_ref(id: Option<&str>, name: Option<&str>) -> Value {
    match (id, name) {
        (Some(id), _) => json!({"id": id}),
        (None, name) => json!({"name": name.unwrap_or_default()}),
    }
}

/// keystoneauth defaults the domain to `default` when neither id nor name is given.
fn domain_ref(id: Option<&str>, name: Option<&str>) -> Value {
    match (id, name) {
        (Some(id), _) => json!({"id": id}),
        (None, Some(name)) => json!({"name": name}),
        (None, None) => json!({"id": "default"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_url_accepts_both_auth_url_forms() {
        assert_eq!(tokens_url("http://ks:5000"), "http://ks:5000/v3/auth/tokens");
        assert_eq!(tokens_url("http://ks:5000/v3/"), "http://ks:5000/v3/auth/tokens");
        assert_eq!(tokens_url("https://ks/identity/v3"), "https://ks/identity/v3/auth/tokens");
    }

    #[test]
    fn password_body_is_project_scoped() {
        let body = password_body(&PasswordCredentials {
            username: Some("nova".into()),
            user_domain_name: Some("Default".into()),
            password: "pw".into(),
            project_name: Some("service".into()),
            project_domain_id: Some("default".into()),
            ..Default::default()
        });
        assert_eq!(
            body,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user":
                    {"name": "nova", "password": "pw", "domain": {"name": "Default"}}}},
                "scope": {"project": {"name": "service", "domain": {"id": "default"}}}}})
        );
    }

    #[test]
    fn application_credential_by_id_has_no_user_or_scope() {
        let body = application_credential_body(&ApplicationCredential {
            id: Some("abc".into()),
            secret: "s".into(),
            ..Default::default()
        });
        assert_eq!(
            body,
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "abc", "secret": "s"}}}})
        );
    }

    #[test]
    fn renews_two_minutes_early_or_at_half_life() {
        let now = OffsetDateTime::now_utc();
        let token = |lifetime: i64, left: i64| ServiceToken {
            id: "t".into(),
            expires_at: now + time::Duration::seconds(left),
            issued_at: now + time::Duration::seconds(left - lifetime),
            catalog: ServiceCatalog::default(),
        };
        assert!(!token(3600, 1800).needs_renewal(now));
        assert!(token(3600, 100).needs_renewal(now));
        assert!(!token(20, 15).needs_renewal(now));
        assert!(token(20, 9).needs_renewal(now));
    }
}
