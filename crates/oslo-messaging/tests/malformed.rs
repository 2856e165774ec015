//! Test 6 (first half): malformed input published straight to a Rust RPC
//! server's queue — not JSON, wrong envelope version, no content type,
//! invalid UTF-8, a huge body, deep nesting, wrongly typed and unknown
//! members, an unsupported compression — is dropped with a logged reason,
//! and the same consumer then serves a valid call.

mod common;

use std::time::Duration;

use common::*;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use oslo_messaging::{Context, Dispatcher, Endpoint, RabbitOptions, RpcClient, RpcServer, Target};
use serde_json::{json, Value};

fn json_props() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dropped_and_the_consumer_lives_on() {
    init_logs();
    let _lock = broker_shared();
    let exchange = unique("test");
    let topic = unique("t");
    let transport = transport(&exchange, RabbitOptions::default()).await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let dispatcher = Dispatcher::new().endpoint(Endpoint::new(None, "1.0").raw_method("echo", move |_ctx, args| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { Ok(Value::Object(args)) }
    }));
    let server = RpcServer::start(&transport, vec![Target::topic(&topic).with_server("h")], dispatcher).await.unwrap();

    let conn =
        Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let huge = format!("{{\"method\": \"echo\", \"args\": {{\"pad\": \"{}\"}}}}", "x".repeat(33 * 1024 * 1024));
    // kombu knows lzma; this side does not (only gzip and bzip2).
    let mut lzma = FieldTable::default();
    lzma.insert("compression".into(), AMQPValue::LongString("application/x-lzma".into()));
    let mut bad_bz2 = FieldTable::default();
    bad_bz2.insert("compression".into(), AMQPValue::LongString("application/x-bz2".into()));
    let cases: Vec<(&str, Vec<u8>, BasicProperties)> = vec![
        ("not JSON", b"this is not json".to_vec(), json_props()),
        (
            "wrong envelope version",
            br#"{"oslo.version": "3.0", "oslo.message": "{\"method\": \"echo\", \"args\": {}}"}"#.to_vec(),
            json_props(),
        ),
        ("no content type", br#"{"method": "echo", "args": {}}"#.to_vec(), BasicProperties::default()),
        ("invalid UTF-8", b"{\"method\": \"echo\", \"args\": {\"s\": \"\xff\xfe\"}}".to_vec(), json_props()),
        ("huge body", huge.into_bytes(), json_props()),
        ("deep nesting", deep.into_bytes(), json_props()),
        ("method not a string", br#"{"method": ["echo"], "args": {}}"#.to_vec(), json_props()),
        ("args not an object", br#"{"method": "echo", "args": [1, 2]}"#.to_vec(), json_props()),
        (
            "inner message not a string",
            br#"{"oslo.version": "2.0", "oslo.message": {"method": "echo"}}"#.to_vec(),
            json_props(),
        ),
        ("lzma compression", br#"{"method": "echo", "args": {}}"#.to_vec(), json_props().with_headers(lzma)),
        ("corrupt bzip2 body", b"BZh9 not a bzip2 stream".to_vec(), json_props().with_headers(bad_bz2)),
        ("a JSON array", b"[1, 2, 3]".to_vec(), json_props()),
    ];
    let routing_key = format!("{topic}.h");
    for (what, body, props) in &cases {
        ch.basic_publish(
            exchange.as_str().into(),
            routing_key.as_str().into(),
            BasicPublishOptions::default(),
            body,
            props.clone(),
        )
        .await
        .unwrap()
        .await
        .unwrap_or_else(|e| panic!("publishing {what}: {e}"));
    }
    // Unknown members are tolerated (oslo ignores them): this cast is served.
    let unknown = br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"echo\", \"args\": {}, \"surprise\": [1], \"_context_new_key\": 1}"}"#;
    ch.basic_publish(
        exchange.as_str().into(),
        routing_key.as_str().into(),
        BasicPublishOptions::default(),
        unknown,
        json_props(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let client =
        RpcClient::new(&transport, Target::topic(&topic).with_server("h")).with_timeout(Duration::from_secs(20));
    let r = client
        .call(&Context::new(), "echo", json!({"still": "alive"}))
        .await
        .expect("the consumer survived the malformed input");
    assert_eq!(r, json!({"still": "alive"}));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "only the unknown-member cast and the call were dispatched"
    );
    let depth = transport.delete_queue(&routing_key).await.unwrap();
    assert_eq!(depth, 0, "malformed messages were rejected, not left in the queue");

    server.shutdown().await;
    let _ = conn.close(200, "OK".into()).await;
    let mut queues = vec![topic.clone()];
    queues.extend(transport.reply_queue());
    cleanup(&transport, &queues, &[exchange, format!("{topic}_fanout")]).await;
    transport.close().await;
}
