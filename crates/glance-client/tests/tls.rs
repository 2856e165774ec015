//! `[glance] cafile`, `insecure` and `certfile`/`keyfile` against a real TLS endpoint: a throwaway
//! CA, a server certificate for 127.0.0.1 and a client certificate are made at test time (rcgen), and an in-process
//! TLS-terminating proxy on 127.0.0.1 (tokio-rustls) forwards to the shared Glance on 9292
//! (plain HTTP, never changed here). The client only ever sees `https://127.0.0.1:<proxy>`.
//! Glance down makes the tests that talk to it fail ("run deploy/dev/stack up"), never skip.

mod pki;
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glance_client::{FileSource, GlanceClient, GlanceError, GlanceOptions, ImageStatus, ImageUpdate};
use pki::{make_pki, Pki};
use serde_json::json;
use support::*;
use tokio::net::{TcpListener, TcpStream};

/// What the proxy saw: TCP connections accepted, TLS handshakes completed and refused (with the
/// server-side reason).
#[derive(Default)]
struct ProxyStats {
    accepted: AtomicU32,
    handshakes: AtomicU32,
    refused: AtomicU32,
    refusals: Mutex<Vec<String>>,
}

/// A TLS-terminating proxy on 127.0.0.1:<ephemeral> in front of the shared Glance. Returns the
/// `https://` URL for `api_servers` and the counters. The accept loop ends with the runtime.
async fn start_proxy(pki: &Pki) -> (String, Arc<ProxyStats>) {
    start_proxy_with(pki, false).await
}

/// As [`start_proxy`]; with `require_client_cert`, only clients presenting a certificate of the
/// test CA get through.
async fn start_proxy_with(pki: &Pki, require_client_cert: bool) -> (String, Arc<ProxyStats>) {
    let acceptor = pki.acceptor(require_client_cert);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stats = Arc::new(ProxyStats::default());
    let counters = Arc::clone(&stats);
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            counters.accepted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(client).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        counters.refused.fetch_add(1, Ordering::SeqCst);
                        counters.refusals.lock().unwrap().push(e.to_string());
                        return;
                    }
                };
                counters.handshakes.fetch_add(1, Ordering::SeqCst);
                let glance = SHARED_GLANCE.trim_start_matches("http://");
                let Ok(mut upstream) = TcpStream::connect(glance).await else {
                    return; // the client sees the connection close: a connection error
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), stats)
}

fn options(server: &str, cafile: Option<&Path>, insecure: bool) -> GlanceOptions {
    GlanceOptions {
        api_servers: vec![server.to_owned()],
        num_retries: 2,
        cafile: cafile.map(Path::to_path_buf),
        insecure,
        timeout: Some(Duration::from_secs(30)),
        ..GlanceOptions::default()
    }
}

/// get, update, a streamed upload and delete, all through TLS; the image is created over plain
/// HTTP like nova-api does and checked over plain HTTP afterwards.
async fn image_round_trip_through(glance: &GlanceClient, name: &str) {
    let id = reserve_image(SHARED_GLANCE, None, name, "raw", json!({})).await;
    let ctx = context(None);

    let image = glance.get(&ctx, &id).await.expect("get through TLS");
    assert_eq!(image.id, id);
    assert_eq!(image.status, ImageStatus::Queued);

    let updated =
        glance.update(&ctx, &id, &ImageUpdate::new().set("image_type", "snapshot")).await.expect("update through TLS");
    assert_eq!(updated.properties.get("image_type").and_then(|v| v.as_str()), Some("snapshot"), "{updated:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), 2 * MIB);
    let uploaded = glance.upload(&ctx, &id, &FileSource::new(&path), None).await.expect("upload through TLS");
    assert_eq!(uploaded.status, ImageStatus::Active);
    assert_eq!(uploaded.os_hash_value.as_deref(), Some(sha512_file(&path).as_str()));

    glance.delete(&ctx, &id).await.expect("delete through TLS");
    let (status, _) = raw_image(SHARED_GLANCE, None, &id).await;
    assert_eq!(status, 404, "image {id} should be gone after the delete");
}

/// (1) `cafile` naming the CA that signed the server certificate: every call works over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cafile_trusts_the_glance_ca() {
    init_tracing();
    require_shared_glance();
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (server, stats) = start_proxy(&pki).await;

    let glance = GlanceClient::new(&options(&server, Some(&pki.ca_file), false), None).expect("client with cafile");
    image_round_trip_through(&glance, "glance-client-tls-cafile").await;

    assert!(stats.handshakes.load(Ordering::SeqCst) >= 1, "the calls did not go through the TLS proxy");
    assert_eq!(stats.refused.load(Ordering::SeqCst), 0, "handshakes refused: {:?}", stats.refusals.lock().unwrap());
}

/// (2) Neither `cafile` nor `insecure`: the unknown CA is refused with a `GlanceConnectionFailed`
/// that names the certificate problem, after `num_retries` more attempts and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ca_is_a_clear_connection_error_without_a_retry_storm() {
    init_tracing();
    require_shared_glance();
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (server, stats) = start_proxy(&pki).await;
    let id = reserve_image(SHARED_GLANCE, None, "glance-client-tls-untrusted", "raw", json!({})).await;

    let opts = options(&server, None, false);
    let glance = GlanceClient::new(&opts, None).expect("client without cafile");
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), glance.get(&context(None), &id))
        .await
        .expect("a refused certificate must not make the call hang");
    let elapsed = started.elapsed();
    // Clean up over plain HTTP before asserting.
    let _ = reqwest::Client::new().delete(format!("{SHARED_GLANCE}/v2/images/{id}")).send().await;

    let err = result.expect_err("an untrusted server certificate must not be accepted");
    eprintln!("unknown CA after {elapsed:?}: {err}");
    match &err {
        GlanceError::GlanceConnectionFailed { server: host, source } => {
            let reason = error_chain::error_chain(source);
            assert_eq!(host, &server, "{err}");
            assert!(
                reason.to_lowercase().contains("certificate"),
                "the reason should name the certificate problem: {reason}"
            );
        }
        other => panic!("expected GlanceConnectionFailed, got {other:?}"),
    }
    let attempts = stats.accepted.load(Ordering::SeqCst);
    assert_eq!(attempts, opts.num_retries + 1, "expected one attempt plus num_retries, got {attempts} connections");
    assert_eq!(stats.handshakes.load(Ordering::SeqCst), 0, "no handshake may succeed");
    // num_retries pauses of 1 s, plus local handshakes.
    assert!(elapsed < Duration::from_secs(u64::from(opts.num_retries) + 5), "took {elapsed:?}");
}

/// (3) `insecure = true` without `cafile`: verification is skipped and the calls work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skips_verification() {
    init_tracing();
    require_shared_glance();
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (server, stats) = start_proxy(&pki).await;

    let glance = GlanceClient::new(&options(&server, None, true), None).expect("insecure client");
    image_round_trip_through(&glance, "glance-client-tls-insecure").await;
    assert!(stats.handshakes.load(Ordering::SeqCst) >= 1);
    assert_eq!(stats.refused.load(Ordering::SeqCst), 0);
}

/// (4) `[glance] certfile`/`keyfile` against a proxy that requires a client certificate: refused
/// without them (a connection error naming the handshake), the whole round trip works with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_is_presented_when_configured() {
    init_tracing();
    require_shared_glance();
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (server, stats) = start_proxy_with(&pki, true).await;

    let without =
        GlanceClient::new(&GlanceOptions { num_retries: 0, ..options(&server, Some(&pki.ca_file), false) }, None)
            .expect("client without a certificate");
    let err = without.get(&context(None), "00000000-0000-0000-0000-000000000000").await.expect_err("no client cert");
    assert!(matches!(err, GlanceError::GlanceConnectionFailed { .. }), "{err:?}");
    assert!(stats.refused.load(Ordering::SeqCst) >= 1, "the proxy should have refused the handshake");

    let with = GlanceOptions {
        certfile: Some(pki.client_cert_file.clone()),
        keyfile: Some(pki.client_key_file.clone()),
        ..options(&server, Some(&pki.ca_file), false)
    };
    let glance = GlanceClient::new(&with, None).expect("client with certfile/keyfile");
    image_round_trip_through(&glance, "glance-client-tls-client-cert").await;
    assert!(stats.handshakes.load(Ordering::SeqCst) >= 1);
}

/// (5) A `cafile` that does not exist is a configuration error when the client is built, naming
/// the path, not a connection error on the first call. Needs no Glance.
#[test]
fn missing_cafile_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let err = GlanceClient::new(&options("https://127.0.0.1:9", Some(&missing), false), None)
        .expect_err("a missing cafile must be refused");
    match &err {
        GlanceError::InvalidConfig(reason) => {
            assert!(reason.what.contains(&missing.display().to_string()), "the error should name the file: {reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    eprintln!("missing cafile: {err}");
}

#[test]
fn cafile_without_a_certificate_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-ca.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = GlanceClient::new(&options("https://127.0.0.1:9", Some(&empty), false), None)
        .expect_err("a cafile with no certificate must be refused");
    match &err {
        GlanceError::InvalidConfig(reason) => {
            assert!(reason.what.contains("no PEM certificate"), "{reason}");
            assert!(reason.what.contains(&empty.display().to_string()), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}
