//! Test 4: every queue-mode combination, configured identically on the Rust
//! and the Python (real oslo.messaging) side, declares the same topology —
//! both servers share the topic queues without PRECONDITION_FAILED and each
//! side's client reaches the other's server; a mismatch is a clear error;
//! oslo's non-durable fallback works.

mod common;

use std::time::Duration;

use common::*;
use oslo_messaging::{Context, Dispatcher, Endpoint, Error, RabbitOptions, RpcClient, RpcServer, Target};
use serde_json::{json, Value};

fn dispatcher(seen: std::sync::Arc<std::sync::Mutex<Vec<Value>>>) -> Dispatcher {
    Dispatcher::new().endpoint(Endpoint::new(None, "1.3").raw_method("echo", move |_ctx, args| {
        seen.lock().unwrap().push(Value::Object(args.clone()));
        async move { Ok(json!({"args": args})) }
    }))
}

fn combos() -> Vec<(String, RabbitOptions)> {
    let mut out = Vec::new();
    for quorum in [false, true] {
        for transient in [false, true] {
            for stream in [false, true] {
                if stream && !transient {
                    continue; // oslo refuses stream fanout without transient quorum queues
                }
                for qmanager in [false, true] {
                    let o = RabbitOptions {
                        rabbit_quorum_queue: quorum,
                        rabbit_transient_quorum_queue: transient,
                        rabbit_stream_fanout: stream,
                        use_queue_manager: qmanager,
                        rabbit_qos_prefetch_count: if stream { 10 } else { 0 },
                        ..Default::default()
                    };
                    out.push((format!("quorum={quorum} transient={transient} stream={stream} qmanager={qmanager}"), o));
                }
            }
        }
    }
    let extra = [
        ("ha", RabbitOptions { rabbit_ha_queues: true, ..Default::default() }),
        ("durable", RabbitOptions { amqp_durable_queues: true, ..Default::default() }),
        ("auto_delete", RabbitOptions { amqp_auto_delete: true, ..Default::default() }),
        (
            "cancel_on_failover+prefetch",
            RabbitOptions { enable_cancel_on_failover: true, rabbit_qos_prefetch_count: 5, ..Default::default() },
        ),
        ("no transient ttl", RabbitOptions { rabbit_transient_queues_ttl: 0, ..Default::default() }),
        (
            "quorum limits",
            RabbitOptions {
                rabbit_quorum_queue: true,
                rabbit_transient_quorum_queue: true,
                rabbit_quorum_delivery_limit: 5,
                rabbit_quorum_max_memory_length: 1000,
                rabbit_quorum_max_memory_bytes: 1_000_000,
                ..Default::default()
            },
        ),
    ];
    out.extend(extra.into_iter().map(|(n, o)| (n.to_owned(), o)));
    out
}

/// One combination: Rust server + Python probe (server, then client) + Rust client.
async fn run_combo(name: String, mut options: RabbitOptions) {
    let exchange = unique("test");
    let topic = unique("qm");
    let host = unique("host");
    options.hostname = host.clone();
    options.processname = "rust-side".into();
    let mut py_options = options.clone();
    py_options.processname = "py-side".into();

    let transport = transport(&exchange, options.clone()).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server =
        RpcServer::start(&transport, vec![Target::topic(&topic).with_server("rust")], dispatcher(seen.clone()))
            .await
            .unwrap_or_else(|e| panic!("[{name}] Rust server: {e}"));

    let opts = options_json(&py_options);
    let mut peer = Peer::spawn(&["probe", URL, &exchange, &topic, &opts, "rust"]);
    let first = tokio::task::block_in_place(|| peer.next_line(Duration::from_secs(60)));
    assert_eq!(first, "READY", "[{name}] Python server could not share the Rust topology: {first}");

    let client = RpcClient::new(&transport, Target::topic(&topic).with_server("py").with_version("1.3"))
        .with_timeout(Duration::from_secs(20));
    let r = client
        .call(&Context::new(), "echo", json!({"via": "rust"}))
        .await
        .unwrap_or_else(|e| panic!("[{name}] Rust → Python call: {e}"));
    assert_eq!(r["args"], json!({"via": "rust"}), "[{name}]");

    peer.write_line("go");
    let report = tokio::task::block_in_place(|| peer.next_json(Duration::from_secs(60)));
    assert_eq!(report["results"][0]["ok"], json!({"args": {"via": "python"}}), "[{name}] Python → Rust call: {report}");
    // The fanout cast reaches the Rust server's fanout queue (or the stream).
    for _ in 0..50 {
        if seen.lock().unwrap().iter().any(|v| v["via"] == "fanout") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.lock().unwrap().iter().any(|v| v["via"] == "fanout"), "[{name}] fanout cast not received");
    tokio::task::block_in_place(|| peer.finish());

    server.shutdown().await;
    let mut queues = broker_queues(&topic);
    queues.extend(broker_queues(&host));
    queues.extend(transport.reply_queue());
    queues.extend(report["reply_q"].as_str().map(str::to_owned));
    cleanup(&transport, &queues, &[exchange, format!("{topic}_fanout")]).await;
    transport.close().await;
    for side in ["rust-side", "py-side"] {
        let _ = std::fs::remove_file(format!("/dev/shm/{host}_{side}_qmanager"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_mode_combination_interoperates() {
    init_logs();
    let _lock = broker_shared();
    let combos = combos();
    assert!(combos.len() >= 16);
    // A few at a time: each one starts a Python interpreter.
    for chunk in combos.chunks(4) {
        let mut set = tokio::task::JoinSet::new();
        for (name, o) in chunk.iter().cloned() {
            set.spawn(run_combo(name, o));
        }
        while let Some(r) = set.join_next().await {
            if let Err(e) = r {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_queue_type_is_a_clear_error_and_durable_mismatch_falls_back() {
    init_logs();
    let _lock = broker_shared();
    let exchange = unique("test");
    let topic = unique("qm");
    let classic = transport(&exchange, RabbitOptions::default()).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = RpcServer::start(&classic, vec![Target::topic(&topic).with_server("a")], dispatcher(seen.clone()))
        .await
        .unwrap();

    let quorum = transport(&exchange, RabbitOptions { rabbit_quorum_queue: true, ..Default::default() }).await;
    match RpcServer::start(&quorum, vec![Target::topic(&topic).with_server("a")], dispatcher(seen.clone())).await {
        Err(Error::Declare { what, reason }) => {
            assert!(reason.contains("PRECONDITION_FAILED") || reason.contains("PreconditionFailed"), "{reason}");
            assert!(reason.contains("inequivalent arg"), "{reason}");
            eprintln!("mismatch error: declaring {what} was refused by the broker: {reason}");
        }
        other => panic!("expected a declare error, got {other:?}"),
    }

    // amqp_durable_queues on one side only: oslo re-declares non-durable and serves.
    let durable = transport(&exchange, RabbitOptions { amqp_durable_queues: true, ..Default::default() }).await;
    let second = RpcServer::start(&durable, vec![Target::topic(&topic).with_server("a")], dispatcher(seen.clone()))
        .await
        .expect("oslo's non-durable fallback");
    let client = RpcClient::new(&durable, Target::topic(&topic).with_server("a").with_version("1.0"))
        .with_timeout(Duration::from_secs(10));
    assert_eq!(client.call(&Context::new(), "echo", json!({"x": 1})).await.unwrap(), json!({"args": {"x": 1}}));
    // A refused declaration closes a channel, not the connection: no reconnects.
    for (name, t) in [("classic", &classic), ("quorum", &quorum), ("durable", &durable)] {
        assert_eq!(t.connection_count(), 1, "{name} transport reconnected after a channel-level refusal");
        assert!(t.is_connected(), "{name}");
    }

    second.shutdown().await;
    first.shutdown().await;
    let mut queues = broker_queues(&topic);
    queues.extend(durable.reply_queue());
    cleanup(&classic, &queues, &[exchange, format!("{topic}_fanout")]).await;
    for t in [classic, quorum, durable] {
        t.close().await;
    }
}

/// `rabbit_stream_fanout` across a reconnect: like oslo, the first subscribe
/// reads from "last" and a re-subscribe continues one past the last offset
/// delivered. Casts made while the server is cut off are all served after it
/// reconnects, none twice. ("last" again would skip all but the newest chunk;
/// "first" would repeat the cast already served.) The server runs as its own
/// broker user so it alone can be cut off: permissions revoked, its
/// connections closed, and restored after two more fanout casts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_fanout_resumes_after_the_last_offset_on_reconnect() {
    init_logs();
    let _lock = broker_shared();
    let exchange = unique("test");
    let topic = unique("stream");
    let user = unique("test_user");
    let stream = RabbitOptions {
        rabbit_transient_quorum_queue: true,
        rabbit_stream_fanout: true,
        rabbit_qos_prefetch_count: 10,
        rabbit_retry_interval: 1,
        rabbit_retry_backoff: 1,
        rabbit_interval_max: 1,
        ..Default::default()
    };
    rabbitmqctl(&["add_user", &user, "pw"]);
    let grant = || rabbitmqctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"]);
    grant();

    let url = oslo_messaging::TransportUrl::parse(&format!("rabbit://{user}:pw@127.0.0.1:5672/")).unwrap();
    let server_side =
        oslo_messaging::Transport::connect(&url, stream.clone(), &exchange).await.expect("connect as the test user");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server =
        RpcServer::start(&server_side, vec![Target::topic(&topic).with_server("rust")], dispatcher(seen.clone()))
            .await
            .unwrap();
    let client_side = transport(&exchange, stream).await;
    let fanout = RpcClient::new(&client_side, Target::topic(&topic).with_fanout(true));
    let served = |n: i64| seen.lock().unwrap().iter().filter(|v| v["n"] == n).count();
    let wait_for = |pred: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !pred() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        pred()
    };

    fanout.cast(&Context::new(), "echo", json!({"n": 1})).await.unwrap();
    assert!(tokio::task::block_in_place(|| wait_for(&|| served(1) == 1)), "first fanout cast served");

    // Cut the server off; it keeps retrying with oslo's backoff.
    rabbitmqctl(&["clear_permissions", "-p", "/", &user]);
    rabbitmqctl(&["close_all_user_connections", &user, "stream offset test"]);
    tokio::task::block_in_place(|| wait_for(&|| !server_side.is_connected()));
    assert!(!server_side.is_connected(), "the server's connection was closed");
    let generation = server_side.connection_count();
    for n in [2, 3] {
        fanout.cast(&Context::new(), "echo", json!({"n": n})).await.unwrap();
        // Separate publishes: separate stream chunks.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(served(2) + served(3), 0, "nothing is served while cut off");
    grant();
    server_side.wait_connected(Duration::from_secs(30)).await.expect("the server reconnects by itself");
    assert!(server_side.connection_count() > generation);

    let all = tokio::task::block_in_place(|| wait_for(&|| served(2) == 1 && served(3) == 1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got: Vec<Value> = seen.lock().unwrap().clone();
    assert!(all, "both casts made while cut off were served after the reconnect: {got:?}");
    assert_eq!((served(1), served(2), served(3)), (1, 1, 1), "each fanout cast served exactly once: {got:?}");

    server.shutdown().await;
    let mut queues = broker_queues(&topic);
    queues.extend(client_side.reply_queue());
    cleanup(&client_side, &queues, &[exchange, format!("{topic}_fanout")]).await;
    server_side.close().await;
    client_side.close().await;
    rabbitmqctl(&["delete_user", &user]);
}
