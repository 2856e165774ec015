//! Interop with the real oslo.messaging (nova's venv) over the real broker:
//! test 1 (Python RPCClient → Rust RpcServer), test 2 (Rust RpcClient →
//! Python RPCServer), test 3 (Rust Notifier → Python notification
//! listener), and a call to the real nova-conductor's `ping`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use oslo_messaging::{
    Context, Dispatcher, Endpoint, Error, Notifier, RabbitOptions, RemoteError, RpcClient, RpcServer, Target,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
struct FailArgs {
    widget: String,
}

#[derive(Deserialize)]
struct SleepArgs {
    seconds: f64,
}

#[derive(Deserialize)]
struct CastArgs {
    value: String,
}

/// The Rust side of the peer's endpoint: same methods, version 1.3.
fn dispatcher() -> Dispatcher {
    let casts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = casts.clone();
    Dispatcher::new().endpoint(
        Endpoint::new(None, "1.3")
            .raw_method("echo", |ctx: Context, args: Map<String, Value>| async move {
                Ok(json!({"args": args, "request_id": ctx.request_id()}))
            })
            .method("fail", |_ctx, a: FailArgs| async move {
                let mut kwargs = Map::new();
                kwargs.insert("widget".into(), json!(a.widget));
                kwargs.insert("code".into(), json!(404));
                Err::<Value, _>(
                    RemoteError::new(
                        "peer_exceptions",
                        "WidgetNotFound",
                        format!("Widget {} could not be found.", a.widget),
                    )
                    .with_kwargs(kwargs),
                )
            })
            .method("sleep", |_ctx, a: SleepArgs| async move {
                tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
                Ok(a.seconds)
            })
            .method("record_cast", move |_ctx, a: CastArgs| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(a.value);
                    Ok(Value::Null)
                }
            })
            .raw_method("get_casts", move |_ctx, _args| {
                let casts = casts.clone();
                async move { Ok(json!(*casts.lock().unwrap())) }
            })
            .raw_method("_private", |_ctx, _args| async move { Ok(json!("must not be reachable")) }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_calls_and_casts_into_rust_server() {
    init_logs();
    let _lock = broker_shared();
    let exchange = unique("test");
    let topic = unique("t");
    let alt = format!("{topic}-alt");
    let transport = transport(&exchange, RabbitOptions::default()).await;
    let targets = vec![Target::topic(&topic).with_server("host1"), Target::topic(&alt).with_server("host1")];
    let server = RpcServer::start(&transport, targets, dispatcher()).await.expect("start RPC server");

    let script = json!([
        {"op": "call", "method": "echo", "args": {"x": 1, "s": "é"}, "version": "1.0", "context": {"request_id": "req-py-1"}},
        {"op": "cast", "method": "record_cast", "args": {"value": "c1"}, "version": "1.1"},
        {"op": "call", "method": "get_casts", "version": "1.3"},
        {"op": "call", "method": "nope", "version": "1.0"},
        {"op": "call", "method": "echo", "version": "2.0"},
        {"op": "call", "method": "echo", "version": "1.4"},
        {"op": "call", "method": "_private", "version": "1.0"},
        {"op": "call", "method": "fail", "args": {"widget": "w1"}, "version": "1.0"},
        {"op": "call", "method": "sleep", "args": {"seconds": 5}, "version": "1.0", "timeout": 30, "call_monitor_timeout": 2},
        {"op": "call", "method": "echo", "args": {"n": 2}, "version": "1.0"}
    ]);
    let (t, e) = (topic.clone(), exchange.clone());
    let (r, reply_q) =
        tokio::task::spawn_blocking(move || python_client(&e, &t, "host1", &RabbitOptions::default(), script))
            .await
            .unwrap();

    assert_eq!(r[0]["ok"], json!({"args": {"x": 1, "s": "é"}, "request_id": "req-py-1"}), "{r:?}");
    assert_eq!(r[2]["ok"], json!(["c1"]), "the cast was served before the next call: {r:?}");
    assert_eq!(r[3]["error"]["is_no_such_method"], true, "{r:?}");
    assert_eq!(r[3]["error"]["message"], "Endpoint does not support RPC method nope");
    assert_eq!(r[4]["error"]["is_unsupported_version"], true, "{r:?}");
    assert_eq!(r[5]["error"]["is_unsupported_version"], true, "minor above ours: {r:?}");
    assert_eq!(r[6]["error"]["is_no_such_method"], true, "`_` methods are refused: {r:?}");
    let fail = &r[7]["error"];
    assert_eq!(fail["is_widget_not_found"], true, "rebuilt as the allowed class: {r:?}");
    assert_eq!(fail["class"], "WidgetNotFound_Remote");
    assert_eq!(fail["module"], "peer_exceptions_Remote");
    assert_eq!(fail["kwargs"], json!({"widget": "w1", "code": 404}));
    assert_eq!(r[8]["ok"], json!(5.0), "heartbeats kept a 2 s call monitor alive for 5 s: {r:?}");
    eprintln!(
        "python→rust echo call round trip: {:.1} ms (first call, includes reply-queue setup: {:.1} ms)",
        r[9]["seconds"].as_f64().unwrap() * 1e3,
        r[0]["seconds"].as_f64().unwrap() * 1e3
    );

    // The alternative target (nova's compute-alt) is served by the same server.
    let (t, e) = (alt.clone(), exchange.clone());
    let (r2, reply_q2) = tokio::task::spawn_blocking(move || {
        python_client(
            &e,
            &t,
            "host1",
            &RabbitOptions::default(),
            json!([{"op": "call", "method": "echo", "args": {"alt": true}, "version": "1.3"}]),
        )
    })
    .await
    .unwrap();
    assert_eq!(r2[0]["ok"]["args"], json!({"alt": true}), "{r2:?}");

    server.shutdown().await;
    let queues = vec![topic.clone(), format!("{topic}.host1"), alt.clone(), format!("{alt}.host1")];
    cleanup(
        &transport,
        &[queues, reply_q.into_iter().chain(reply_q2).collect()].concat(),
        &[exchange, format!("{topic}_fanout"), format!("{alt}_fanout")],
    )
    .await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_calls_and_casts_into_python_server() {
    init_logs();
    let _lock = broker_shared();
    let exchange = unique("test");
    let topic = unique("t");
    let opts = options_json(&RabbitOptions::default());
    let peer = Peer::spawn(&["server", URL, &exchange, &topic, "host2", &opts]);
    tokio::task::block_in_place(|| peer.wait_ready());

    let transport = transport(&exchange, RabbitOptions::default()).await;
    let client = RpcClient::new(&transport, Target::topic(&topic).with_server("host2").with_version("1.3"))
        .with_timeout(Duration::from_secs(20));
    let ctx = Context::new().with("request_id", json!("req-rust-1")).with("custom_key", json!({"kept": true}));

    let echo = client.call(&ctx, "echo", json!({"a": 1, "u": "ü"})).await.expect("echo");
    assert_eq!(echo, json!({"args": {"a": 1, "u": "ü"}, "request_id": "req-rust-1"}));

    match client.call(&ctx, "fail", json!({"widget": "w9"})).await {
        Err(Error::Remote(e)) => {
            assert_eq!((e.module.as_str(), e.class.as_str()), ("peer_exceptions", "WidgetNotFound"));
            assert_eq!(e.kwargs["widget"], "w9");
            assert_eq!(e.kwargs["code"], 404);
            assert!(e.tb.iter().any(|l| l.contains("Traceback")), "{:?}", e.tb);
        }
        other => panic!("expected a remote WidgetNotFound, got {other:?}"),
    }
    match client.call(&ctx, "nope", json!({})).await {
        Err(Error::Remote(e)) => assert_eq!(e.qualified_class(), "oslo_messaging.rpc.dispatcher.NoSuchMethod"),
        other => panic!("expected NoSuchMethod, got {other:?}"),
    }
    match client
        .prepare(Target::topic(&topic).with_server("host2").with_version("2.0"))
        .call(&ctx, "echo", json!({}))
        .await
    {
        Err(Error::Remote(e)) => assert_eq!(e.class, "UnsupportedVersion"),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }

    client.cast(&ctx, "record_cast", json!({"value": "from-rust"})).await.expect("cast");
    let casts = client.call(&ctx, "get_casts", json!({})).await.unwrap();
    assert_eq!(casts, json!(["from-rust"]));

    // A call the server takes longer than the timeout to answer.
    let short = client.clone().with_timeout(Duration::from_secs(1));
    assert!(matches!(short.call(&ctx, "sleep", json!({"seconds": 2})).await, Err(Error::Timeout { .. })));
    // The Python server heartbeats every second for a 2 s call monitor.
    let monitored = client.clone().with_call_monitor_timeout(Some(Duration::from_secs(2)));
    assert_eq!(monitored.call(&ctx, "sleep", json!({"seconds": 4})).await.unwrap(), json!(4));

    let mut samples = Vec::new();
    for i in 0..50 {
        let t0 = Instant::now();
        client.call(&ctx, "echo", json!({"i": i})).await.unwrap();
        samples.push(t0.elapsed());
    }
    samples.sort();
    eprintln!(
        "rust→python call round trip over 50 calls: median {:?}, p90 {:?}, max {:?}",
        samples[25], samples[45], samples[49]
    );

    drop(peer);
    let mut queues = broker_queues(&topic);
    queues.extend(transport.reply_queue());
    cleanup(&transport, &queues, &[exchange, format!("{topic}_fanout")]).await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_listener_receives_rust_notifications() {
    init_logs();
    let _lock = broker_shared();
    let exchange = unique("test");
    let topic = unique("notifications");
    let opts = options_json(&RabbitOptions::default());
    let peer = Peer::spawn(&["notify-listen", URL, &exchange, &topic, &opts, "2", "30"]);
    tokio::task::block_in_place(|| peer.wait_ready());

    let transport = transport(&exchange, RabbitOptions::default()).await;
    let notifier = Notifier::new(&transport, "compute.host1", vec![topic.clone()]);
    let ctx = Context::new()
        .with("request_id", json!("req-n1"))
        .with("auth_token", json!("secret-token"))
        .with("user_id", json!("u1"));
    notifier
        .info(&ctx, "compute.instance.snapshot.start", json!({"instance_id": "i-1", "state": "active"}))
        .await
        .unwrap();
    notifier.error(&ctx, "compute.instance.snapshot.end", json!({"instance_id": "i-1"})).await.unwrap();

    let (a, b) = tokio::task::block_in_place(|| {
        (peer.next_json(Duration::from_secs(30)), peer.next_json(Duration::from_secs(30)))
    });
    let mut got = [a, b];
    got.sort_by_key(|n| n["priority"].as_str().unwrap_or_default().to_owned());
    assert_eq!(got[0]["priority"], "error");
    assert_eq!(got[1]["priority"], "info");
    assert_eq!(got[1]["event_type"], "compute.instance.snapshot.start");
    assert_eq!(got[1]["publisher_id"], "compute.host1");
    assert_eq!(got[1]["payload"], json!({"instance_id": "i-1", "state": "active"}));
    assert_eq!(got[1]["ctxt"]["request_id"], "req-n1");
    assert_eq!(got[1]["ctxt"]["auth_token"], Value::Null, "context is redacted");
    let ts = got[1]["metadata"]["timestamp"].as_str().unwrap();
    assert!(ts.len() >= 19 && ts.as_bytes()[10] == b' ', "python str(datetime) timestamp: {ts}");
    assert!(got[1]["metadata"]["message_id"].as_str().is_some_and(|m| m.len() == 36));

    drop(peer);
    let queues = vec![format!("{topic}.info"), format!("{topic}.error")];
    cleanup(&transport, &queues, &[exchange]).await;
    transport.close().await;
}

/// The real nova-conductor of the stack answers `ping` in namespace `baseapi`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_conductor_answers_ping() {
    init_logs();
    let _lock = broker_shared();
    let transport = transport("nova", RabbitOptions::default()).await;
    let conductor =
        RpcClient::new(&transport, Target::topic("conductor").with_namespace("baseapi").with_version("1.0"))
            .with_timeout(Duration::from_secs(30));
    let ctx = Context::new().with("request_id", json!(format!("req-{}", uuid::Uuid::new_v4())));
    let pong = conductor.call(&ctx, "ping", json!({"arg": "1.21 GigaWatts"})).await.unwrap_or_else(|e| {
        panic!("nova-conductor did not answer ping ({e}); is it running? `deploy/dev/stack status`")
    });
    assert_eq!(pong, json!({"service": "conductor", "arg": "1.21 GigaWatts"}));
    let t0 = Instant::now();
    conductor.call(&ctx, "ping", json!({"arg": "again"})).await.unwrap();
    eprintln!("rust→nova-conductor ping round trip: {:?}", t0.elapsed());
    if let Some(q) = transport.reply_queue() {
        let _ = transport.delete_queue(&q).await;
    }
    transport.close().await;
}
