//! The request context that travels as flattened `_context_<key>` members of
//! every message. Kept as the exact key/value map received, so a context
//! forwarded by this crate loses nothing, including keys it does not know.

use serde_json::{Map, Value};

/// The prefix oslo's `pack_context` puts before every context key.
pub const CONTEXT_PREFIX: &str = "_context_";

/// A `RequestContext.to_dict()`, keys without the `_context_` prefix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context(Map<String, Value>);

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps a `to_dict()`-style map.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// The underlying map, in received order.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Consumes the context into its map.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// A value by key (`request_id`, not `_context_request_id`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Sets a value, keeping the key's position if it exists.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        self.0.insert(key.into(), value);
    }

    /// Builder form of [`Context::set`].
    pub fn with(mut self, key: impl Into<String>, value: Value) -> Self {
        self.set(key, value);
        self
    }

    /// A string member, or `None` when missing or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// `request_id` (`req-<uuid>`), the id operators grep logs for.
    pub fn request_id(&self) -> Option<&str> {
        self.get_str("request_id")
    }

    /// `global_request_id`, set when the request came from another service.
    pub fn global_request_id(&self) -> Option<&str> {
        self.get_str("global_request_id")
    }

    /// `user_id` (or legacy `user`).
    pub fn user_id(&self) -> Option<&str> {
        self.get_str("user_id").or_else(|| self.get_str("user"))
    }

    /// `project_id` (or legacy `project` / `tenant`).
    pub fn project_id(&self) -> Option<&str> {
        self.get_str("project_id").or_else(|| self.get_str("project")).or_else(|| self.get_str("tenant"))
    }

    /// `auth_token`, the user's Keystone token.
    pub fn auth_token(&self) -> Option<&str> {
        self.get_str("auth_token")
    }

    /// `is_admin`; missing means false.
    pub fn is_admin(&self) -> bool {
        self.0.get("is_admin").and_then(Value::as_bool).unwrap_or(false)
    }

    /// `roles` as strings.
    pub fn roles(&self) -> Vec<&str> {
        self.0
            .get("roles")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// A copy safe for the notification bus (oslo's notifier sanitizes the
    /// context with `redacted_copy()`): credentials are nulled, other keys kept.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        for key in ["auth_token", "auth_token_info", "service_token"] {
            if copy.0.contains_key(key) {
                copy.0.insert(key.to_owned(), Value::Null);
            }
        }
        copy
    }

    /// Moves every `_context_*` member of `msg` into a context (oslo's `unpack_context`).
    pub fn unpack(msg: &mut Map<String, Value>) -> Self {
        let keys: Vec<String> = msg.keys().filter(|k| k.starts_with(CONTEXT_PREFIX)).cloned().collect();
        let mut map = Map::new();
        for key in keys {
            if let Some(v) = msg.remove(&key) {
                map.insert(key[CONTEXT_PREFIX.len()..].to_owned(), v);
            }
        }
        Self(map)
    }

    /// Appends this context as `_context_*` members of `msg` (oslo's `pack_context`).
    pub fn pack_into(&self, msg: &mut Map<String, Value>) {
        for (k, v) in &self.0 {
            msg.insert(format!("{CONTEXT_PREFIX}{k}"), v.clone());
        }
    }
}

impl From<Map<String, Value>> for Context {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unpack_and_pack_keep_unknown_keys() {
        let mut msg = json!({"method": "m", "_context_request_id": "req-1", "_context_x_custom": {"a": 1}, "_context_is_admin": true})
            .as_object()
            .cloned()
            .unwrap();
        let ctx = Context::unpack(&mut msg);
        assert_eq!(msg.len(), 1);
        assert_eq!(ctx.request_id(), Some("req-1"));
        assert!(ctx.is_admin());
        let mut out = Map::new();
        ctx.pack_into(&mut out);
        assert_eq!(out["_context_x_custom"], json!({"a": 1}));
    }

    #[test]
    fn redaction_nulls_the_token_only() {
        let ctx = Context::new().with("auth_token", json!("secret")).with("user_id", json!("u"));
        let r = ctx.redacted();
        assert_eq!(r.get("auth_token"), Some(&Value::Null));
        assert_eq!(r.user_id(), Some("u"));
    }
}
