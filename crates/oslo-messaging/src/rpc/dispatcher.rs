//! oslo's `RPCDispatcher`: endpoints with a namespace and a version, typed
//! handler registration, and the exact selection rules — `UnsupportedVersion`
//! when no endpoint of the namespace accepts the version, `NoSuchMethod` when
//! none of the compatible ones has the method, and `_`-prefixed methods
//! refused like oslo's `DefaultRPCAccessPolicy`.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::remote_error::RemoteError;
use crate::target::version_is_compatible;

/// What a handler returns: the JSON result or an exception for the caller.
pub type HandlerResult = Result<Value, RemoteError>;
/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler = Arc<dyn Fn(Context, Map<String, Value>) -> HandlerFuture + Send + Sync>;
type Fallback = Arc<dyn Fn(Context, Unhandled) -> HandlerFuture + Send + Sync>;

/// A request that no endpoint implements, handed to the fallback.
#[derive(Debug, Clone)]
pub struct Unhandled {
    /// The method name as sent.
    pub method: String,
    /// The keyword arguments as sent.
    pub args: Map<String, Value>,
    /// The sender waits for a reply (an oslo `call`: the message carries
    /// `_reply_q`); false for a `cast`, whose result nobody reads.
    pub reply_expected: bool,
}

/// A set of methods exposed under one namespace and version (oslo: an
/// endpoint object with a `target` attribute).
#[derive(Clone)]
pub struct Endpoint {
    namespace: Option<String>,
    version: String,
    methods: HashMap<String, Handler>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.methods.keys().collect();
        names.sort();
        f.debug_struct("Endpoint")
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("methods", &names)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint of `namespace` (None = the default namespace) implementing `version`.
    pub fn new(namespace: Option<&str>, version: &str) -> Self {
        Self { namespace: namespace.map(str::to_owned), version: version.to_owned(), methods: HashMap::new() }
    }

    /// Registers a typed method: the request's `args` are deserialized into
    /// `A` (a struct with one field per keyword argument; unknown keywords are
    /// ignored unless `A` denies them) and the result serialized from `R`.
    /// Arguments that do not fit `A` fail the call with Python's `TypeError`.
    pub fn method<A, R, F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RemoteError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let name_owned = name.to_owned();
        let boxed: Handler = Arc::new(move |ctx, args| {
            let parsed = serde_json::from_value::<A>(Value::Object(args));
            match parsed {
                Err(e) => {
                    let err = RemoteError::type_error(format!("{name_owned}() got invalid arguments: {e}"));
                    Box::pin(std::future::ready(Err(err)))
                }
                Ok(a) => {
                    let fut = handler(ctx, a);
                    Box::pin(async move {
                        let r = fut.await?;
                        serde_json::to_value(r).map_err(|e| {
                            RemoteError::new("builtins", "TypeError", format!("result is not JSON serializable: {e}"))
                        })
                    })
                }
            }
        });
        self.methods.insert(name.to_owned(), boxed);
        self
    }

    /// Registers a method taking the raw keyword-argument map.
    pub fn raw_method<F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Context, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.methods.insert(name.to_owned(), Arc::new(move |ctx, args| Box::pin(handler(ctx, args))));
        self
    }

    fn accepts(&self, namespace: Option<&str>, version: &str) -> bool {
        self.namespace.as_deref() == namespace && version_is_compatible(&self.version, version)
    }
}

/// Routes requests to endpoints, in registration order.
#[derive(Clone, Default)]
pub struct Dispatcher {
    endpoints: Vec<Endpoint>,
    fallback: Option<Fallback>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("endpoints", &self.endpoints)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

/// The outcome of selecting a handler.
enum Selection {
    Found(Handler),
    NoSuchMethod,
    UnsupportedVersion,
}

impl Dispatcher {
    /// An empty dispatcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Called instead of answering `NoSuchMethod` when a compatible endpoint
    /// exists but lacks the method (e.g. to log a cast this service does not
    /// implement and clean up after it). Its result is the reply.
    pub fn fallback<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context, Unhandled) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.fallback = Some(Arc::new(move |ctx, unhandled| Box::pin(handler(ctx, unhandled))));
        self
    }

    fn select(&self, namespace: Option<&str>, version: &str, method: &str) -> Selection {
        let mut found_compatible = false;
        for ep in self.endpoints.iter().filter(|e| e.accepts(namespace, version)) {
            found_compatible = true;
            if method.starts_with('_') {
                continue;
            }
            if let Some(h) = ep.methods.get(method) {
                return Selection::Found(h.clone());
            }
        }
        if found_compatible {
            Selection::NoSuchMethod
        } else {
            Selection::UnsupportedVersion
        }
    }

    /// Dispatches one request. `version` None means `1.0`, as in oslo;
    /// `reply_expected` tells a call from a cast (the fallback needs it).
    /// A panicking handler fails the call instead of the server.
    pub async fn dispatch(
        &self,
        ctx: Context,
        namespace: Option<&str>,
        version: Option<&str>,
        method: &str,
        args: Map<String, Value>,
        reply_expected: bool,
    ) -> HandlerResult {
        let version = version.unwrap_or("1.0");
        let fut = match self.select(namespace, version, method) {
            Selection::Found(h) => h(ctx, args),
            Selection::NoSuchMethod => match &self.fallback {
                Some(f) if !method.starts_with('_') => {
                    f(ctx, Unhandled { method: method.to_owned(), args, reply_expected })
                }
                _ => return Err(RemoteError::no_such_method(method)),
            },
            Selection::UnsupportedVersion => return Err(RemoteError::unsupported_version(version, Some(method))),
        };
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(r) => r,
            Err(_) => Err(RemoteError::new("builtins", "RuntimeError", format!("handler of {method} panicked"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct PingArgs {
        arg: String,
    }

    fn dispatcher() -> Dispatcher {
        Dispatcher::new()
            .endpoint(
                Endpoint::new(Some("baseapi"), "1.1")
                    .method("ping", |_ctx, a: PingArgs| async move { Ok(json!({"service": "x", "arg": a.arg})) }),
            )
            .endpoint(
                Endpoint::new(None, "6.5")
                    .raw_method("echo", |_ctx, args| async move { Ok(Value::Object(args)) })
                    .raw_method("_private", |_ctx, _| async move { Ok(Value::Null) })
                    .raw_method("boom", |_ctx, _| async move { panic!("handler bug") }),
            )
    }

    async fn run(ns: Option<&str>, v: Option<&str>, m: &str, args: Value) -> HandlerResult {
        dispatcher().dispatch(Context::new(), ns, v, m, args.as_object().cloned().unwrap_or_default(), true).await
    }

    #[tokio::test]
    async fn fallback_learns_call_or_cast_and_never_sees_private_methods() {
        let d = dispatcher().fallback(|_ctx, u: Unhandled| async move {
            Ok(json!({"method": u.method, "reply_expected": u.reply_expected, "args": u.args}))
        });
        let args = json!({"x": 1}).as_object().cloned().unwrap();
        let call = d.dispatch(Context::new(), None, Some("6.0"), "reboot", args.clone(), true).await.unwrap();
        assert_eq!(call, json!({"method": "reboot", "reply_expected": true, "args": {"x": 1}}));
        let cast = d.dispatch(Context::new(), None, Some("6.0"), "reboot", args.clone(), false).await.unwrap();
        assert_eq!(cast["reply_expected"], false);
        let private = d.dispatch(Context::new(), None, Some("6.0"), "_secret", args.clone(), true).await;
        assert_eq!(private.unwrap_err().class, "NoSuchMethod");
        let too_new = d.dispatch(Context::new(), None, Some("7.0"), "reboot", args, true).await;
        assert_eq!(too_new.unwrap_err().class, "UnsupportedVersion");
    }

    #[tokio::test]
    async fn selection_follows_oslo() {
        assert_eq!(run(Some("baseapi"), Some("1.0"), "ping", json!({"arg": "a"})).await.unwrap()["arg"], "a");
        assert_eq!(run(None, Some("6.0"), "echo", json!({"x": 1})).await.unwrap(), json!({"x": 1}));
        assert_eq!(run(None, Some("6.0"), "nope", json!({})).await.unwrap_err().class, "NoSuchMethod");
        assert_eq!(run(None, Some("6.0"), "_private", json!({})).await.unwrap_err().class, "NoSuchMethod");
        assert_eq!(run(None, Some("7.0"), "echo", json!({})).await.unwrap_err().class, "UnsupportedVersion");
        // No version means 1.0: no default-namespace endpoint implements 1.x.
        assert_eq!(run(None, None, "echo", json!({})).await.unwrap_err().class, "UnsupportedVersion");
        assert_eq!(run(Some("other"), Some("1.0"), "ping", json!({})).await.unwrap_err().class, "UnsupportedVersion");
    }

    #[tokio::test]
    async fn bad_arguments_and_panics_become_remote_errors() {
        let e = run(Some("baseapi"), Some("1.0"), "ping", json!({"arg": 5})).await.unwrap_err();
        assert_eq!((e.module.as_str(), e.class.as_str()), ("builtins", "TypeError"));
        let e = run(None, Some("6.0"), "boom", json!({})).await.unwrap_err();
        assert_eq!(e.class, "RuntimeError");
    }
}
