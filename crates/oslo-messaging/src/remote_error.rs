//! Exceptions that cross the wire: the `failure` member of a reply, a JSON
//! string `{"class", "module", "message", "tb", "args", "kwargs"}` that the
//! Python caller turns back into the real exception class when its module is
//! allowed (`allowed_remote_exmods`), else into `oslo_messaging.RemoteError`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::codec::DecodeError;
use crate::json;

/// The module of oslo's dispatcher exceptions.
pub const DISPATCHER_MODULE: &str = "oslo_messaging.rpc.dispatcher";

/// A serialized exception: what a handler returns to fail a call, and what a
/// client receives when the remote side failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// Exception class name, e.g. `InstanceNotFound`.
    pub class: String,
    /// Python module of the class, e.g. `nova.exception`.
    pub module: String,
    /// `str(exception)`.
    #[serde(default)]
    pub message: String,
    /// Traceback lines, as `traceback.format_exception` gives them.
    #[serde(default)]
    pub tb: Vec<String>,
    /// Positional constructor arguments.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword constructor arguments (nova exceptions: `code` and the message fields).
    #[serde(default)]
    pub kwargs: Map<String, Value>,
}

impl RemoteError {
    /// An exception of `module.class` with `message` as its only argument.
    pub fn new(module: impl Into<String>, class: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            class: class.into(),
            module: module.into(),
            args: vec![Value::String(message.clone())],
            message,
            tb: Vec::new(),
            kwargs: Map::new(),
        }
    }

    /// Replaces the keyword arguments (the Python class is rebuilt with them).
    pub fn with_kwargs(mut self, kwargs: Map<String, Value>) -> Self {
        self.kwargs = kwargs;
        self
    }

    /// Replaces the positional arguments.
    pub fn with_args(mut self, args: Vec<Value>) -> Self {
        self.args = args;
        self
    }

    /// Replaces the traceback lines.
    pub fn with_tb(mut self, tb: Vec<String>) -> Self {
        self.tb = tb;
        self
    }

    /// oslo's `NoSuchMethod`: no compatible endpoint exposes `method`.
    pub fn no_such_method(method: &str) -> Self {
        Self::new(DISPATCHER_MODULE, "NoSuchMethod", format!("Endpoint does not support RPC method {method}"))
    }

    /// oslo's `UnsupportedVersion`: no endpoint accepts `version`.
    pub fn unsupported_version(version: &str, method: Option<&str>) -> Self {
        let mut msg = format!("Endpoint does not support RPC version {version}");
        if let Some(m) = method {
            msg.push_str(&format!(". Attempted method: {m}"));
        }
        Self::new(DISPATCHER_MODULE, "UnsupportedVersion", msg)
    }

    /// Python's `TypeError`, for arguments a handler cannot accept.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("builtins", "TypeError", message)
    }

    /// `<module>.<class>` as Python prints it.
    pub fn qualified_class(&self) -> String {
        format!("{}.{}", self.module, self.class)
    }

    /// The `failure` string of a reply. A traceback is synthesized when the
    /// handler gave none, because Python callers print it.
    pub fn to_failure_string(&self) -> Result<String, serde_json::Error> {
        let mut me = self.clone();
        if me.tb.is_empty() {
            me.tb = vec![
                "Traceback (most recent call last):\n".to_owned(),
                "  (raised by a Rust oslo-messaging endpoint)\n".to_owned(),
                format!("{}: {}\n", me.qualified_class(), me.message),
            ];
        }
        json::dumps(&me)
    }

    /// Parses a `failure` string; tolerates oslo's `_Remote` class suffixes.
    pub fn from_failure_string(failure: &str) -> Result<Self, DecodeError> {
        let mut me: Self = serde_json::from_str(failure).map_err(|e| DecodeError::Failure(std::sync::Arc::new(e)))?;
        if let (Some(c), Some(m)) = (me.class.strip_suffix("_Remote"), me.module.strip_suffix("_Remote")) {
            (me.class, me.module) = (c.to_owned(), m.to_owned());
        }
        Ok(me)
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.qualified_class(), self.message)
    }
}

impl std::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatcher_errors_match_python_text() {
        // Strings from oslo_messaging 18.3.1 serialize_remote_exception.
        let e = RemoteError::unsupported_version("9.0", Some("m"));
        assert_eq!(e.message, "Endpoint does not support RPC version 9.0. Attempted method: m");
        let s = RemoteError::no_such_method("m").to_failure_string().unwrap();
        assert!(s.starts_with(r#"{"class": "NoSuchMethod", "module": "oslo_messaging.rpc.dispatcher", "message": "Endpoint does not support RPC method m", "tb": ["#), "{s}");
        assert!(s.ends_with(r#""args": ["Endpoint does not support RPC method m"], "kwargs": {}}"#), "{s}");
    }

    #[test]
    fn parses_a_real_conductor_failure() {
        let f = r#"{"class": "UnexpectedTaskStateError_Remote", "module": "nova.exception_Remote", "message": "m", "tb": [], "args": [], "kwargs": {"code": 500}}"#;
        let e = RemoteError::from_failure_string(f).unwrap();
        assert_eq!(e.qualified_class(), "nova.exception.UnexpectedTaskStateError");
        assert_eq!(e.kwargs["code"], 500);
    }
}
