//! `CinderClient` against an in-process HTTP server (no Cinder, no Keystone needed): endpoint
//! selection, the headers nova sends, nova's error classes, `[cinder] http_retries` and
//! `timeout`, and the service user's token.

mod fake_http;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_http::{Answer, FakeServer, Recorded};
use glance_client::{
    CinderClient, CinderError, CinderOptions, ConnectionFailure, PasswordCredentials, RequestContext, ServiceCatalog,
    ServiceCredentials, ServiceUserOptions, SnapshotStatus,
};
use serde_json::json;

const SNAP: &str = "5e4f0c1d-snap";

fn snapshot(status: &str) -> Answer {
    Answer::json(200, json!({"snapshot": {"id": SNAP, "status": status, "volume_id": "v1"}}))
}

fn templated(server: &FakeServer) -> CinderOptions {
    CinderOptions {
        endpoint_template: Some(format!("{}/v3/%(project_id)s", server.url)),
        http_retries: 0,
        timeout: Some(Duration::from_secs(5)),
        ..CinderOptions::default()
    }
}

fn context() -> RequestContext {
    RequestContext {
        auth_token: Some("user-token".into()),
        global_request_id: Some("req-cinder-test".into()),
        project_id: Some("proj1".into()),
        ..RequestContext::default()
    }
}

fn error_text(e: &CinderError) -> String {
    error_chain::error_chain(e)
}

#[tokio::test]
async fn reads_the_status_with_novas_headers_from_the_templated_endpoint() {
    let server = FakeServer::start(None, |_| snapshot("creating")).await;
    let cinder = CinderClient::new(&templated(&server), None).unwrap();
    assert_eq!(cinder.snapshot_status(&context(), SNAP).await.unwrap(), SnapshotStatus::Creating);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/v3/proj1/snapshots/5e4f0c1d-snap"));
    let header = |name: &str| request.headers.get(name).map(String::as_str);
    assert_eq!(header("x-auth-token"), Some("user-token"));
    assert_eq!(header("x-openstack-request-id"), Some("req-cinder-test"));
    assert_eq!(header("openstack-api-version"), Some("volume 3.0"));
    assert_eq!(header("x-service-token"), None, "no service user configured");
}

#[tokio::test]
async fn endpoint_comes_from_the_context_catalog_by_catalog_info_and_region() {
    let server = FakeServer::start(None, |_| snapshot("available")).await;
    let catalog = ServiceCatalog::from_json(&json!([{"type": "volumev3", "name": "cinderv3", "endpoints": [
        {"region": "R1", "publicURL": "http://127.0.0.1:9/wrong-region"},
        {"region": "R2", "publicURL": format!("{}/v3/proj1", server.url), "internalURL": "http://127.0.0.1:9/internal"}]}]));
    let ctx = RequestContext { service_catalog: catalog, ..context() };
    let options = CinderOptions { os_region_name: Some("R2".into()), http_retries: 0, ..CinderOptions::default() };
    let cinder = CinderClient::new(&options, None).unwrap();
    assert_eq!(cinder.snapshot_status(&ctx, SNAP).await.unwrap(), SnapshotStatus::Available);
    assert_eq!(server.seen()[0].path, "/v3/proj1/snapshots/5e4f0c1d-snap");

    let elsewhere = CinderOptions { os_region_name: Some("R3".into()), ..options };
    let err = CinderClient::new(&elsewhere, None).unwrap().snapshot_status(&ctx, SNAP).await.unwrap_err();
    assert!(
        matches!(&err, CinderError::EndpointNotFound { catalog_info, .. } if catalog_info == "volumev3::publicURL"),
        "{err:?}"
    );
}

#[tokio::test]
async fn not_found_is_snapshot_not_found() {
    let server = FakeServer::start(None, |_| Answer::json(404, json!({"itemNotFound": {"message": "gone"}}))).await;
    let cinder = CinderClient::new(&CinderOptions { http_retries: 3, ..templated(&server) }, None).unwrap();
    let err = cinder.snapshot_status(&context(), SNAP).await.unwrap_err();
    assert!(matches!(&err, CinderError::SnapshotNotFound { snapshot_id } if snapshot_id == SNAP), "{err:?}");
    assert_eq!(server.seen().len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn server_errors_are_retried_http_retries_times() {
    let server = FakeServer::start(None, |_| Answer::json(503, json!({"message": "cinder-api is restarting"}))).await;
    let cinder = CinderClient::new(&CinderOptions { http_retries: 2, ..templated(&server) }, None).unwrap();
    let err = cinder.snapshot_status(&context(), SNAP).await.unwrap_err();
    assert_eq!(server.seen().len(), 3, "one attempt plus http_retries");
    match &err {
        CinderError::CinderConnectionFailed {
            server: host,
            source: ConnectionFailure::ServerError { status, reason },
        } => {
            assert_eq!(host, &server.url);
            assert_eq!(status.as_u16(), 503);
            assert_eq!(reason, "cinder-api is restarting");
        }
        other => panic!("expected CinderConnectionFailed, got {other:?}"),
    }
    assert!(error_text(&err).contains("cinder-api is restarting"), "{}", error_text(&err));
}

#[tokio::test]
async fn a_server_error_then_success_is_a_success() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let server = FakeServer::start(None, move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => Answer::json(500, json!({})),
        _ => snapshot("error"),
    })
    .await;
    let cinder = CinderClient::new(&CinderOptions { http_retries: 1, ..templated(&server) }, None).unwrap();
    assert_eq!(cinder.snapshot_status(&context(), SNAP).await.unwrap(), SnapshotStatus::Error);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn each_request_is_bounded_by_the_timeout() {
    let server = FakeServer::start(None, |_| snapshot("available").after(Duration::from_secs(10))).await;
    let options = CinderOptions { timeout: Some(Duration::from_millis(300)), http_retries: 1, ..templated(&server) };
    let cinder = CinderClient::new(&options, None).unwrap();
    let started = Instant::now();
    let err = cinder.snapshot_status(&context(), SNAP).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, CinderError::CinderConnectionFailed { source: ConnectionFailure::TimedOut { after, .. }, .. } if *after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert_eq!(server.seen().len(), 2, "a timeout is retried like a connection error");
    // Two 300 ms attempts and one 500 ms pause.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[test]
fn an_unset_timeout_is_a_documented_deadline() {
    assert_eq!(CinderOptions::default().timeout, None);
    assert_eq!(CinderOptions::DEFAULT_TIMEOUT, Duration::from_secs(30));
    assert_eq!(CinderOptions::default().catalog_info, "volumev3::publicURL");
    assert_eq!(CinderOptions::default().http_retries, 3);
}

#[test]
fn bad_catalog_info_and_template_are_config_errors() {
    for options in [
        CinderOptions { catalog_info: "volumev3".into(), ..CinderOptions::default() },
        CinderOptions { endpoint_template: Some("http://c/%(user_name)s".into()), ..CinderOptions::default() },
    ] {
        let err = CinderClient::new(&options, None).unwrap_err();
        assert!(matches!(err, CinderError::InvalidConfig(_)), "{err:?}");
    }
}

/// A fake Keystone on the same server: tokens `svc-1`, `svc-2`, ... in order.
fn keystone_or(
    issued: Arc<AtomicU32>,
    cinder: impl Fn(&Recorded) -> Answer + Send + Sync + 'static,
) -> impl Fn(&Recorded) -> Answer + Send + Sync + 'static {
    move |request| {
        if request.path == "/v3/auth/tokens" {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            return Answer::json(201, json!({"token": {"expires_at": "2999-01-01T00:00:00Z", "catalog": []}}))
                .header("x-subject-token", &format!("svc-{n}"));
        }
        cinder(request)
    }
}

fn service_user(auth_url: &str) -> ServiceUserOptions {
    ServiceUserOptions {
        send_service_user_token: true,
        auth_url: auth_url.to_owned(),
        credentials: ServiceCredentials::Password(PasswordCredentials {
            username: Some("nova".into()),
            password: "pw".into(),
            project_name: Some("service".into()),
            ..Default::default()
        }),
        cafile: None,
        certfile: None,
        keyfile: None,
        insecure: false,
        timeout: Some(Duration::from_secs(5)),
    }
}

#[tokio::test]
async fn the_service_token_is_sent_and_renewed_once_after_a_401() {
    let issued = Arc::new(AtomicU32::new(0));
    let server = FakeServer::start(
        None,
        keystone_or(Arc::clone(&issued), |request| match request.headers.get("x-service-token").map(String::as_str) {
            Some("svc-1") => Answer::json(401, json!({"error": {"message": "token revoked"}})),
            _ => snapshot("available"),
        }),
    )
    .await;
    let cinder = CinderClient::new(&templated(&server), Some(&service_user(&server.url))).unwrap();
    assert_eq!(cinder.snapshot_status(&context(), SNAP).await.unwrap(), SnapshotStatus::Available);
    let sent: Vec<Option<String>> = server
        .seen()
        .iter()
        .filter(|r| r.path.contains("/snapshots/"))
        .map(|r| r.headers.get("x-service-token").cloned())
        .collect();
    assert_eq!(sent, [Some("svc-1".to_owned()), Some("svc-2".to_owned())]);
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    assert!(server.seen().iter().all(|r| r.path != "/v3/auth/tokens" || r.method == "POST"));
}

#[tokio::test]
async fn a_401_without_a_service_token_is_not_authorized() {
    let server = FakeServer::start(None, |_| Answer::json(401, json!({"error": {"message": "expired"}}))).await;
    let cinder = CinderClient::new(&CinderOptions { http_retries: 2, ..templated(&server) }, None).unwrap();
    let err = cinder.snapshot_status(&context(), SNAP).await.unwrap_err();
    assert!(matches!(&err, CinderError::NotAuthorized { reason, .. } if reason == "expired"), "{err:?}");
    assert_eq!(server.seen().len(), 1);
}
