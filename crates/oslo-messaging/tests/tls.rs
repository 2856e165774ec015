//! TLS to the broker (`[oslo_messaging_rabbit] ssl*`) against the stack's
//! RabbitMQ TLS listener on 127.0.0.1:5671 (deploy/dev/rabbitmq.sh, CA from
//! deploy/dev/pki.sh), with the real oslo.messaging as the peer, also over
//! TLS: one-way TLS (`ssl_ca_file`), mutual TLS (`ssl_cert_file` /
//! `ssl_key_file`, the broker sees the client certificate), a broker signed
//! by an unknown CA (a prompt, bounded error naming the certificate problem),
//! `ssl_enforce_hostname_verification` (name checked or not, chain always),
//! and unreadable files (configuration errors before any connection).

mod common;

use std::time::{Duration, Instant};

use common::*;
use oslo_messaging::{
    Context, Dispatcher, Endpoint, Error, RabbitOptions, RpcClient, RpcServer, Target, Transport, TransportUrl,
};
use serde_json::json;

const TLS_URL: &str = "rabbit://guest:guest@127.0.0.1:5671/";

fn tls_options(client_cert: bool) -> RabbitOptions {
    let mut o = RabbitOptions { ssl: true, ssl_ca_file: pki("ca.pem"), ..Default::default() };
    if client_cert {
        o.ssl_cert_file = pki("client.pem");
        o.ssl_key_file = pki("client.key");
    }
    o
}

async fn tls_transport(exchange: &str, options: RabbitOptions) -> Transport {
    let url = TransportUrl::parse(TLS_URL).unwrap();
    Transport::connect(&url, options, exchange)
        .await
        .unwrap_or_else(|e| panic!("connect over TLS to 127.0.0.1:5671: {e:?}"))
}

/// The tests that connect run one at a time, so every broker connection of
/// this process (or of the peer it started) belongs to the running test.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn echo_dispatcher() -> Dispatcher {
    Dispatcher::new().endpoint(
        Endpoint::new(None, "1.3")
            .raw_method("echo", |ctx: Context, args| async move {
                Ok(json!({"args": args, "request_id": ctx.request_id()}))
            })
            .raw_method("hold", |_ctx, _args| async move {
                // Keeps the caller's connection open while the test looks at it.
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(json!("held"))
            }),
    )
}

/// The broker's view of the connections of process `pid` (oslo and this
/// crate name connections `<argv0>:<pid>:<uuid>`): `(ssl, peer_cert_subject)`.
fn broker_connections_of(pid: u32) -> Vec<(bool, String)> {
    let needle = format!(":{pid}:");
    let out =
        rabbitmqctl(&["-q", "list_connections", "client_properties", "ssl", "peer_cert_subject", "--no-table-headers"]);
    out.lines()
        .filter(|l| l.contains(&needle))
        .map(|l| {
            let cols: Vec<&str> = l.rsplitn(3, '\t').collect();
            (cols.get(1) == Some(&"true"), cols.first().unwrap_or(&"").to_string())
        })
        .collect()
}

/// Every connection is TLS and presented `subject` (empty: no client certificate).
fn assert_tls(side: &str, conns: &[(bool, String)], subject: &str) {
    assert!(!conns.is_empty(), "{side}: no connection found on the broker");
    assert!(
        conns.iter().all(|(ssl, s)| *ssl && s == subject),
        "{side}: expected TLS with peer certificate {subject:?}, broker says {conns:?}"
    );
}

/// The Python peer calls the Rust server; both speak TLS to the broker.
async fn python_calls_rust_over_tls(client_cert: bool) {
    init_logs();
    stack_rabbitmq_up();
    let _lock = broker_shared();
    let _serial = SERIAL.lock().await;
    let exchange = unique("test");
    let topic = unique("tls");
    let options = tls_options(client_cert);
    let transport = tls_transport(&exchange, options.clone()).await;
    assert_eq!(transport.broker().as_deref(), Some("127.0.0.1:5671"));
    let server = RpcServer::start(&transport, vec![Target::topic(&topic).with_server("rust")], echo_dispatcher())
        .await
        .expect("RPC server over TLS");

    let subject = if client_cert { "CN=stack-client" } else { "" };
    assert_tls("Rust server", &broker_connections_of(std::process::id()), subject);

    let peer_options = options_json(&options);
    let script = json!([
        {"op": "call", "method": "echo", "args": {"over": "tls"}, "version": "1.0", "context": {"request_id": "req-tls"}},
        {"op": "call", "method": "hold", "version": "1.0"}
    ]);
    let peer = Peer::spawn(&["client", TLS_URL, &exchange, &topic, "rust", &peer_options, &script.to_string()]);
    let (result, peer_conns, held, reply_q) = tokio::task::block_in_place(|| {
        let r = peer.next_json(Duration::from_secs(60));
        // Its second call is in flight for 3 s: the peer's connection is up.
        let conns = broker_connections_of(peer.pid());
        let held = peer.next_json(Duration::from_secs(30));
        let q = peer.next_json(Duration::from_secs(30))["reply_q"].as_str().map(str::to_owned);
        (r, conns, held, q)
    });
    assert_eq!(result["ok"], json!({"args": {"over": "tls"}, "request_id": "req-tls"}), "{result}");
    assert_eq!(held["ok"], "held", "{held}");
    assert_tls("Python peer (oslo.messaging/kombu)", &peer_conns, subject);
    eprintln!(
        "python→rust call over TLS (client cert: {client_cert}): {:.1} ms",
        result["seconds"].as_f64().unwrap_or_default() * 1e3
    );

    drop(peer);
    server.shutdown().await;
    let mut queues = broker_queues(&topic);
    queues.extend(reply_q);
    cleanup(&transport, &queues, &[exchange, format!("{topic}_fanout")]).await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_peer_calls_rust_server_over_one_way_tls() {
    python_calls_rust_over_tls(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_peer_calls_rust_server_over_mutual_tls() {
    python_calls_rust_over_tls(true).await;
}

/// The reverse direction with client certificates on both sides: a Rust
/// client over TLS calls a Python server over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_calls_python_server_over_mutual_tls() {
    init_logs();
    stack_rabbitmq_up();
    let _lock = broker_shared();
    let _serial = SERIAL.lock().await;
    let exchange = unique("test");
    let topic = unique("tls");
    let options = tls_options(true);
    let peer = Peer::spawn(&["server", TLS_URL, &exchange, &topic, "py", &options_json(&options)]);
    tokio::task::block_in_place(|| peer.wait_ready());
    let transport = tls_transport(&exchange, options).await;
    let client = RpcClient::new(&transport, Target::topic(&topic).with_server("py").with_version("1.3"))
        .with_timeout(Duration::from_secs(20));
    let r = client
        .call(&Context::new().with("request_id", json!("req-tls-2")), "echo", json!({"x": 1}))
        .await
        .expect("call over TLS");
    assert_eq!(r, json!({"args": {"x": 1}, "request_id": "req-tls-2"}));
    assert_tls("Rust client", &broker_connections_of(std::process::id()), "CN=stack-client");
    assert_tls("Python server", &broker_connections_of(peer.pid()), "CN=stack-client");

    drop(peer);
    let mut queues = broker_queues(&topic);
    queues.extend(transport.reply_queue());
    cleanup(&transport, &queues, &[exchange, format!("{topic}_fanout")]).await;
    transport.close().await;
}

/// A broker whose certificate the configured CA did not sign: the transport
/// refuses it at once with the certificate problem in the error, tries each
/// host of the URL exactly once (no retry loop at start-up), never panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_signed_by_another_ca_is_a_prompt_certificate_error() {
    init_logs();
    stack_rabbitmq_up();
    let _lock = broker_shared();
    let options = RabbitOptions { ssl: true, ssl_ca_file: pki("other-ca.pem"), ..Default::default() };
    // Two hosts (the same listener twice): each is tried once, then the error.
    let url = TransportUrl::parse("rabbit://guest:guest@127.0.0.1:5671,guest:guest@localhost:5671/").unwrap();
    let started = Instant::now();
    let result = Transport::connect(&url, options, "test").await;
    let elapsed = started.elapsed();
    let err = match result {
        Err(e) => e,
        Ok(t) => {
            t.close().await;
            panic!("a broker certificate from an unknown CA was accepted");
        }
    };
    let chain = error_chain::error_chain(&err);
    eprintln!("wrong CA: {chain} (after {elapsed:?})");
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(
        chain.contains("certificate") && chain.contains("UnknownIssuer"),
        "the error names the certificate problem: {chain}"
    );
    assert!(elapsed < Duration::from_secs(5), "bounded: two handshakes, no retry loop ({elapsed:?})");
}

/// A plain TCP forwarder from 127.0.0.2:<ephemeral> to the broker's TLS
/// listener: the broker's certificate (SAN localhost, 127.0.0.1) does not
/// name 127.0.0.2, its chain is still the stack CA's.
async fn forwarder_to_tls_listener() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("bind 127.0.0.2");
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut broker) = tokio::net::TcpStream::connect("127.0.0.1:5671").await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                }
            });
        }
    });
    port
}

/// `ssl_enforce_hostname_verification` as oslo applies it: with
/// `ssl_ca_file` and the option on (the default) a broker certificate that
/// does not name the URL's host is refused; with it off the same broker is
/// accepted, its chain verified against `ssl_ca_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_verification_follows_ssl_enforce_hostname_verification() {
    init_logs();
    stack_rabbitmq_up();
    let _lock = broker_shared();
    let _serial = SERIAL.lock().await;
    let port = forwarder_to_tls_listener().await;
    let url = TransportUrl::parse(&format!("rabbit://guest:guest@127.0.0.2:{port}/")).unwrap();

    let enforced = tls_options(false);
    assert!(enforced.ssl_enforce_hostname_verification, "oslo's default is true");
    let err = match Transport::connect(&url, enforced, "test").await {
        Err(e) => e,
        Ok(t) => {
            t.close().await;
            panic!("a broker certificate without 127.0.0.2 was accepted with hostname verification on");
        }
    };
    let chain = error_chain::error_chain(&err);
    eprintln!("hostname enforced: {chain}");
    assert!(chain.contains("not valid for name"), "the error names the hostname problem: {chain}");

    let relaxed = RabbitOptions { ssl_enforce_hostname_verification: false, ..tls_options(false) };
    let transport = Transport::connect(&url, relaxed, "test").await.expect("chain verified, name not checked");
    assert!(transport.is_connected());
    transport.close().await;

    // Off, but a CA that did not sign the broker: the chain is still refused.
    let other_ca = RabbitOptions {
        ssl_enforce_hostname_verification: false,
        ssl_ca_file: pki("other-ca.pem"),
        ..tls_options(false)
    };
    let err = Transport::connect(&url, other_ca, "test").await.expect_err("unknown CA refused");
    assert!(error_chain::error_chain(&err).contains("UnknownIssuer"), "{}", error_chain::error_chain(&err));
}

/// Unreadable `ssl_*` files are configuration errors naming the option and
/// the path, raised before anything is sent to a broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tls_files_are_configuration_errors() {
    let url = TransportUrl::parse(TLS_URL).unwrap();
    let missing = RabbitOptions { ssl: true, ssl_ca_file: "/nonexistent/stack/ca.pem".into(), ..Default::default() };
    match Transport::connect(&url, missing, "test").await {
        Err(Error::TlsFile { option, path, .. }) => {
            assert_eq!((option, path.as_str()), ("ssl_ca_file", "/nonexistent/stack/ca.pem"));
        }
        other => panic!("expected a TlsFile error for ssl_ca_file, got {other:?}"),
    }
    let no_key = RabbitOptions { ssl_key_file: String::new(), ..tls_options(true) };
    match Transport::connect(&url, no_key, "test").await {
        Err(Error::Config(reason)) => assert!(reason.contains("ssl_cert_file and ssl_key_file"), "{reason}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    let missing_key = RabbitOptions { ssl_key_file: "/nonexistent/client.key".into(), ..tls_options(true) };
    let e = Transport::connect(&url, missing_key, "test").await.expect_err("missing key file refused");
    assert!(e.to_string().contains("ssl_key_file") && e.to_string().contains("/nonexistent/client.key"), "{e}");
}
