//! nova's `RequestContext`: who asked, under which request id, with which
//! token — the `_context_*` members of every message.
//!
//! Kept as the exact `to_dict()` map received, so a context forwarded to the
//! conductor or into a notification loses nothing, including keys this
//! build does not know. Typed accessors cover what the snapshot path reads;
//! constructors build the contexts nova-compute makes itself (the admin
//! context of the heartbeat, `elevated()`).
//!
//! Must not know: how the context travels (the `_context_` prefix, the
//! envelope): that is oslo-messaging's codec.

use std::ops::{Deref, DerefMut};

use oslo_messaging::Context;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// A nova `RequestContext.to_dict()`: oslo.context's keys (request id, user,
/// project, roles, token — read through [`Context`]) plus nova's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestContext(Context);

impl Deref for RequestContext {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.0
    }
}

impl DerefMut for RequestContext {
    fn deref_mut(&mut self) -> &mut Context {
        &mut self.0
    }
}

impl From<Context> for RequestContext {
    fn from(ctx: Context) -> Self {
        RequestContext(ctx)
    }
}

impl From<RequestContext> for Context {
    fn from(ctx: RequestContext) -> Self {
        ctx.0
    }
}

impl RequestContext {
    /// Wraps a received `to_dict()` map (keys without `_context_`).
    pub fn from_dict(map: Map<String, Value>) -> Self {
        RequestContext(Context::from_map(map))
    }

    /// The `to_dict()` map, in received order.
    pub fn to_dict(&self) -> &Map<String, Value> {
        self.0.as_map()
    }

    /// Consumes the context into its `to_dict()` map.
    pub fn into_dict(self) -> Map<String, Value> {
        self.0.into_map()
    }

    /// `nova.context.get_admin_context()`: what nova-compute uses for its own
    /// calls (service registration, heartbeat): no user, no token, admin,
    /// a fresh request id. The 25 keys nova's `to_dict` produces.
    pub fn admin() -> Self {
        let mut map = Map::new();
        for key in ["user", "project_id", "system_scope", "project", "domain", "user_domain", "project_domain"] {
            map.insert(key.into(), Value::Null);
        }
        map.insert("is_admin".into(), Value::Bool(true));
        map.insert("read_only".into(), Value::Bool(false));
        map.insert("show_deleted".into(), Value::Bool(false));
        map.insert("auth_token".into(), Value::Null);
        map.insert("request_id".into(), Value::String(generate_request_id()));
        map.insert("global_request_id".into(), Value::Null);
        map.insert("resource_uuid".into(), Value::Null);
        map.insert("roles".into(), Value::Array(Vec::new()));
        map.insert("user_identity".into(), Value::String("- - - - -".into()));
        map.insert("is_admin_project".into(), Value::Bool(true));
        map.insert("user_id".into(), Value::Null);
        map.insert("read_deleted".into(), Value::String("no".into()));
        map.insert("remote_address".into(), Value::Null);
        map.insert("timestamp".into(), Value::String(context_timestamp(OffsetDateTime::now_utc())));
        map.insert("quota_class".into(), Value::Null);
        map.insert("user_name".into(), Value::Null);
        map.insert("service_catalog".into(), Value::Array(Vec::new()));
        map.insert("project_name".into(), Value::Null);
        RequestContext::from_dict(map)
    }

    /// A context for a user request, as nova-api would build it (used by
    /// tests and tools; the service itself receives contexts).
    pub fn for_user(user_id: &str, project_id: &str, roles: &[&str], auth_token: Option<&str>) -> Self {
        let mut ctx = RequestContext::admin();
        ctx.set("user", Value::String(user_id.into()));
        ctx.set("user_id", Value::String(user_id.into()));
        ctx.set("project", Value::String(project_id.into()));
        ctx.set("project_id", Value::String(project_id.into()));
        ctx.set("is_admin", Value::Bool(roles.contains(&"admin")));
        ctx.set("roles", Value::Array(roles.iter().map(|r| Value::String((*r).into())).collect()));
        ctx.set("auth_token", auth_token.map_or(Value::Null, |t| Value::String(t.into())));
        ctx.set("user_identity", Value::String(format!("{user_id} {project_id} - - -")));
        ctx
    }

    /// The filtered service catalog nova-api forwarded (may name Glance).
    pub fn service_catalog(&self) -> &[Value] {
        self.get("service_catalog").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }

    /// `RequestContext.elevated()`: the same request as admin — `is_admin`
    /// true and `admin` added to the roles. The token stays the user's.
    pub fn elevated(&self) -> Self {
        let mut copy = self.clone();
        copy.set("is_admin", Value::Bool(true));
        let mut roles: Vec<Value> = copy.get("roles").and_then(Value::as_array).cloned().unwrap_or_default();
        if !roles.iter().any(|r| r.as_str() == Some("admin")) {
            roles.push(Value::String("admin".into()));
        }
        copy.set("roles", Value::Array(roles));
        copy
    }

    /// `redacted_copy()`: what goes on the notification bus — credentials
    /// nulled, everything else kept.
    pub fn redacted(&self) -> Self {
        RequestContext(self.0.redacted())
    }
}

/// `req-<uuid4>`, oslo.context's request id format.
pub fn generate_request_id() -> String {
    format!("req-{}", uuid::Uuid::new_v4())
}

/// The context `timestamp` format, `%Y-%m-%dT%H:%M:%S.%f` (Python's parser
/// requires the fraction).
fn context_timestamp(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The 25 keys of nova 34's `RequestContext.to_dict()` (wire reference §2).
    const NOVA_KEYS: [&str; 25] = [
        "auth_token",
        "domain",
        "global_request_id",
        "is_admin",
        "is_admin_project",
        "project",
        "project_domain",
        "project_id",
        "project_name",
        "quota_class",
        "read_deleted",
        "read_only",
        "remote_address",
        "request_id",
        "resource_uuid",
        "roles",
        "service_catalog",
        "show_deleted",
        "system_scope",
        "timestamp",
        "user",
        "user_domain",
        "user_id",
        "user_identity",
        "user_name",
    ];

    #[test]
    fn admin_context_has_nova_keys_and_shapes() {
        let ctx = RequestContext::admin();
        let mut keys: Vec<&str> = ctx.to_dict().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, NOVA_KEYS);
        assert!(ctx.is_admin());
        assert!(ctx.request_id().unwrap().starts_with("req-"));
        let ts = ctx.get("timestamp").unwrap().as_str().unwrap();
        assert_eq!(ts.len(), "2026-11-22T15:03:41.182520".len(), "{ts}");
        assert_eq!(&ts[10..11], "T");
    }

    #[test]
    fn elevated_adds_admin_once_and_keeps_the_token() {
        let ctx = RequestContext::for_user("u", "p", &["member"], Some("tok"));
        let e = ctx.elevated();
        assert!(e.is_admin());
        assert_eq!(e.roles(), ["member", "admin"]);
        assert_eq!(e.elevated().roles(), ["member", "admin"]);
        assert_eq!(e.auth_token(), Some("tok"));
        assert!(!ctx.is_admin());
    }

    #[test]
    fn unknown_keys_round_trip_and_redaction_nulls_only_credentials() {
        let map = json!({"request_id": "req-1", "x_future": {"a": 1}, "auth_token": "s", "user_id": "u"});
        let ctx = RequestContext::from_dict(map.as_object().unwrap().clone());
        assert_eq!(Value::Object(ctx.to_dict().clone()), map);
        let r = ctx.redacted();
        assert_eq!(r.get("auth_token"), Some(&Value::Null));
        assert_eq!(r.get("x_future"), Some(&json!({"a": 1})));
        assert_eq!(r.user_id(), Some("u"));
    }
}
