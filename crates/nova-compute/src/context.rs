//! nova's `RequestContext` for one RPC request, in the two shapes the
//! crates below need: the full `_context_*` map (forwarded verbatim on every
//! conductor call, so the conductor finds the instance action by request id)
//! and what the HTTP services' calls need (the user's token, the global
//! request id, the service catalog, the project), as nova's `image.glance`
//! and `volume.cinder` take them from the same context.

use nova_objects::RequestContext;
use oslo_messaging::Context;
use serde_json::Value;

/// One request's identity, as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The context conductor calls and notifications carry.
    pub ctx: RequestContext,
    /// The user's credentials for Glance and Cinder calls.
    pub auth: glance_client::RequestContext,
}

impl Request {
    /// The identity of one RPC message.
    pub fn from_rpc(ctx: Context) -> Self {
        let ctx = RequestContext::from(ctx);
        let auth = http_auth(&ctx);
        Request { ctx, auth }
    }

    /// A request no user made (start-up recovery): the admin context, no
    /// user token for Glance or Cinder.
    pub fn admin() -> Self {
        Request { ctx: RequestContext::admin(), auth: glance_client::RequestContext::default() }
    }

    /// `context.elevated()`: admin for conductor calls, the same user token for Glance and Cinder.
    pub fn elevated(&self) -> Self {
        Request { ctx: self.ctx.elevated(), auth: self.auth.clone() }
    }

    pub fn request_id(&self) -> &str {
        self.ctx.request_id().unwrap_or("-")
    }

    pub fn global_request_id(&self) -> &str {
        self.ctx.global_request_id().unwrap_or("None")
    }

    /// oslo.context's `user_identity`: `user project domain user_domain project_domain`.
    pub fn user_identity(&self) -> String {
        if let Some(identity) = self.ctx.get("user_identity").and_then(Value::as_str) {
            return identity.to_owned();
        }
        let part = |k: &str| self.ctx.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        format!(
            "{} {} {} {} {}",
            part("user_id"),
            part("project_id"),
            part("domain"),
            part("user_domain"),
            part("project_domain")
        )
    }

    /// The span every log line of this request is written in: the oslo
    /// formatter puts these fields into the `[req-... ...] [instance: ...]` part.
    pub fn span(&self, method: &str, instance: &str) -> tracing::Span {
        tracing::info_span!(
            "request",
            method,
            request_id = self.request_id(),
            global_request_id = self.global_request_id(),
            user_identity = %self.user_identity(),
            instance,
        )
    }
}

/// nova's Glance and Cinder client auth: the user's token and catalog from
/// the context; `X-OpenStack-Request-ID` is the global id, else the request id.
fn http_auth(ctx: &RequestContext) -> glance_client::RequestContext {
    let catalog = ctx.get("service_catalog").cloned().unwrap_or(Value::Null);
    glance_client::RequestContext {
        auth_token: ctx.auth_token().map(str::to_owned),
        global_request_id: ctx.global_request_id().or(ctx.request_id()).map(str::to_owned),
        service_catalog: glance_client::ServiceCatalog::from_json(&catalog),
        project_id: ctx.get("project_id").and_then(Value::as_str).map(str::to_owned),
    }
}
