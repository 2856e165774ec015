//! Harness for the tests against the real stack (`deploy/dev/stack up`):
//! RabbitMQ on 127.0.0.1:5672 and nova-conductor 34.0.0, with nova's own
//! object code reachable through `deploy/dev/nova_peer.py`. Missing pieces
//! fail the test with "run deploy/dev/stack up", never skip it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use nova_objects::{ConductorApi, OsloConductorTransport, ReadinessPolicy, RequestContext};
use oslo_messaging::{RabbitOptions, Transport, TransportUrl};
use serde_json::Value;

pub const TRANSPORT_URL: &str = "rabbit://guest:guest@127.0.0.1:5672/";

/// A host name no other test uses.
pub fn unique_host() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}

/// A connected conductor client; panics with the fix when the stack is down.
pub async fn conductor() -> (Transport, Arc<ConductorApi<OsloConductorTransport>>) {
    let url = TransportUrl::parse(TRANSPORT_URL).unwrap();
    let connect = Transport::connect(&url, RabbitOptions::default(), "nova");
    let transport = match tokio::time::timeout(Duration::from_secs(15), connect).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            panic!("RabbitMQ at {TRANSPORT_URL} is not reachable ({e}): run deploy/dev/stack up")
        }
        Err(_) => {
            panic!("RabbitMQ at {TRANSPORT_URL} did not answer in 15 s: run deploy/dev/stack up")
        }
    };
    let api = Arc::new(ConductorApi::new(OsloConductorTransport::new(&transport, Duration::from_secs(30))));
    let policy =
        ReadinessPolicy { early_timeout: Duration::from_secs(10), max_attempts: Some(1), ..ReadinessPolicy::default() };
    if let Err(e) = api.wait_until_ready(&RequestContext::admin(), &policy).await {
        panic!("nova-conductor does not answer ping ({e}): run deploy/dev/stack up");
    }
    (transport, api)
}

/// Runs nova_peer.py (nova's own code) and returns its JSON answer; nova
/// refusing is a failed test (every use here sets up a premise).
#[track_caller]
pub fn peer(args: &[&str]) -> Value {
    stack_tests::nova_peer(args).unwrap_or_else(|refusal| panic!("nova_peer {args:?}: {refusal}"))
}

/// `create-instance` on `host`; returns the instance uuid.
pub fn create_instance(host: &str) -> String {
    let uuid = uuid::Uuid::new_v4().to_string();
    let out = peer(&["create-instance", "--host", host, "--uuid", &uuid]);
    assert_eq!(out["uuid"], uuid.as_str(), "{out}");
    uuid
}

pub fn show_instance(uuid: &str) -> Value {
    peer(&["show-instance", "--uuid", uuid])
}

/// A user request's context, as nova-api sends it, with `request_id`.
pub fn user_context(request_id: &str) -> RequestContext {
    let mut ctx = RequestContext::for_user("peer-user", "peer-project", &["member", "reader"], Some("peer-token"));
    ctx.set("request_id", Value::String(request_id.into()));
    ctx
}
