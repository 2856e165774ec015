//! Client certificates (`certfile`/`keyfile`) of `[glance]`, `[service_user]` and `[cinder]`
//! against an in-process TLS server that requires one (no services needed): refused without
//! them, accepted with them, and the option mistakes reported when the client is built.

mod fake_http;
mod pki;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fake_http::{Answer, FakeServer, Recorded};
use glance_client::{
    CinderClient, CinderError, CinderOptions, GlanceClient, GlanceError, GlanceOptions, PasswordCredentials,
    RequestContext, ServiceCredentials, ServiceUserOptions, SnapshotStatus,
};
use pki::{make_pki, Pki};
use serde_json::json;

const IMAGE: &str = "8f0e8d3c-image";

/// Keystone, Glance and Cinder in one: just enough of each for one call.
fn answer(request: &Recorded) -> Answer {
    match request.path.as_str() {
        "/v3/auth/tokens" => Answer::json(201, json!({"token": {"expires_at": "2999-01-01T00:00:00Z"}}))
            .header("x-subject-token", "svc-token"),
        p if p.starts_with("/v2/images/") => Answer::json(200, json!({"id": IMAGE, "status": "queued"})),
        p if p.contains("/snapshots/") => Answer::json(200, json!({"snapshot": {"status": "available"}})),
        _ => Answer::json(404, json!({})),
    }
}

async fn mtls_server(pki: &Pki) -> FakeServer {
    FakeServer::start(Some(pki.acceptor(true)), answer).await
}

fn glance_options(server: &FakeServer, pki: &Pki, with_cert: bool) -> GlanceOptions {
    GlanceOptions {
        api_servers: vec![server.url.clone()],
        num_retries: 0,
        cafile: Some(pki.ca_file.clone()),
        certfile: with_cert.then(|| pki.client_cert_file.clone()),
        keyfile: with_cert.then(|| pki.client_key_file.clone()),
        timeout: Some(Duration::from_secs(5)),
        ..GlanceOptions::default()
    }
}

fn service_user(server: &FakeServer, pki: &Pki, with_cert: bool) -> ServiceUserOptions {
    ServiceUserOptions {
        send_service_user_token: true,
        auth_url: format!("{}/v3", server.url),
        credentials: ServiceCredentials::Password(PasswordCredentials {
            username: Some("nova".into()),
            password: "pw".into(),
            ..Default::default()
        }),
        cafile: Some(pki.ca_file.clone()),
        certfile: with_cert.then(|| pki.client_cert_file.clone()),
        keyfile: with_cert.then(|| pki.client_key_file.clone()),
        insecure: false,
        timeout: Some(Duration::from_secs(5)),
    }
}

fn cinder_options(server: &FakeServer, pki: &Pki, with_cert: bool) -> CinderOptions {
    CinderOptions {
        endpoint_template: Some(format!("{}/v3/%(project_id)s", server.url)),
        cafile: Some(pki.ca_file.clone()),
        certfile: with_cert.then(|| pki.client_cert_file.clone()),
        keyfile: with_cert.then(|| pki.client_key_file.clone()),
        http_retries: 0,
        ..CinderOptions::default()
    }
}

fn context() -> RequestContext {
    RequestContext { auth_token: Some("user".into()), project_id: Some("p".into()), ..RequestContext::default() }
}

#[tokio::test]
async fn glance_without_a_client_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = mtls_server(&pki).await;
    let glance = GlanceClient::new(&glance_options(&server, &pki, false), None).unwrap();
    let err = glance.get(&context(), IMAGE).await.unwrap_err();
    assert!(matches!(err, GlanceError::GlanceConnectionFailed { .. }), "{err:?}");
    assert_eq!(server.tls_refused.load(Ordering::SeqCst), 1);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn glance_and_keystone_with_client_certificates_work() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = mtls_server(&pki).await;
    let glance =
        GlanceClient::new(&glance_options(&server, &pki, true), Some(&service_user(&server, &pki, true))).unwrap();
    let image = glance.get(&context(), IMAGE).await.expect("get over mutual TLS");
    assert_eq!(image.id, IMAGE);
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/v3/auth/tokens", "/v2/images/8f0e8d3c-image"]
    );
    assert_eq!(seen[1].headers.get("x-service-token").map(String::as_str), Some("svc-token"));
    assert_eq!(server.tls_refused.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn keystone_without_the_service_user_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = mtls_server(&pki).await;
    let glance =
        GlanceClient::new(&glance_options(&server, &pki, true), Some(&service_user(&server, &pki, false))).unwrap();
    let err = glance.get(&context(), IMAGE).await.unwrap_err();
    assert!(matches!(err, GlanceError::ServiceAuth(_)), "{err:?}");
    assert_eq!(server.tls_refused.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cinder_needs_its_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = mtls_server(&pki).await;
    let without = CinderClient::new(&cinder_options(&server, &pki, false), None).unwrap();
    let err = without.snapshot_status(&context(), "s1").await.unwrap_err();
    assert!(matches!(err, CinderError::CinderConnectionFailed { .. }), "{err:?}");

    let with =
        CinderClient::new(&cinder_options(&server, &pki, true), Some(&service_user(&server, &pki, true))).unwrap();
    assert_eq!(with.snapshot_status(&context(), "s1").await.unwrap(), SnapshotStatus::Available);
}

#[test]
fn a_certfile_holding_its_key_needs_no_keyfile() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let combined = dir.path().join("combined.pem");
    let mut pem = std::fs::read(&pki.client_cert_file).unwrap();
    pem.extend(std::fs::read(&pki.client_key_file).unwrap());
    std::fs::write(&combined, pem).unwrap();
    let options = GlanceOptions { certfile: Some(combined), ..GlanceOptions::default() };
    GlanceClient::new(&options, None).expect("combined certificate and key");
}

fn config_error(options: GlanceOptions) -> String {
    match GlanceClient::new(&options, None) {
        Err(e @ GlanceError::InvalidConfig(_)) => error_chain::error_chain(&e),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn certificate_option_mistakes_are_configuration_errors_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let cert = Some(pki.client_cert_file.clone());
    let shown = |p: &Path| p.display().to_string();

    let no_key = config_error(GlanceOptions { certfile: cert.clone(), ..GlanceOptions::default() });
    assert!(no_key.contains("no keyfile is set") && no_key.contains(&shown(&pki.client_cert_file)), "{no_key}");

    let missing = dir.path().join("missing-key.pem");
    let unreadable = config_error(GlanceOptions {
        certfile: cert.clone(),
        keyfile: Some(missing.clone()),
        ..GlanceOptions::default()
    });
    assert!(unreadable.contains(&shown(&missing)) && unreadable.contains("No such file"), "{unreadable}");

    let key_only =
        config_error(GlanceOptions { keyfile: Some(pki.client_key_file.clone()), ..GlanceOptions::default() });
    assert!(key_only.contains("without a certfile"), "{key_only}");

    let not_a_key =
        config_error(GlanceOptions { certfile: cert, keyfile: Some(pki.ca_file.clone()), ..GlanceOptions::default() });
    assert!(not_a_key.contains("no private key"), "{not_a_key}");

    let s = ServiceUserOptions { keyfile: Some(pki.client_key_file.clone()), ..service_user_stub() };
    assert!(matches!(GlanceClient::new(&GlanceOptions::default(), Some(&s)), Err(GlanceError::InvalidConfig(_))));
    let c = CinderOptions { certfile: Some(pki.ca_file.clone()), ..CinderOptions::default() };
    assert!(matches!(CinderClient::new(&c, None), Err(CinderError::InvalidConfig(_))));
}

fn service_user_stub() -> ServiceUserOptions {
    ServiceUserOptions {
        send_service_user_token: true,
        auth_url: "http://127.0.0.1:9".into(),
        credentials: ServiceCredentials::Password(PasswordCredentials::default()),
        cafile: None,
        certfile: None,
        keyfile: None,
        insecure: false,
        timeout: None,
    }
}
