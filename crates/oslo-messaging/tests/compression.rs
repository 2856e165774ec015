//! `kombu_compression` against the real oslo.messaging/kombu: with the same
//! codec configured on both sides, calls go Python → Rust and Rust → Python
//! (requests and replies compressed), and a spy queue bound to the same
//! routing keys shows both sides put the same `compression` header and the
//! same compressed format on the wire.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, Consumer};
use oslo_messaging::{Context, Dispatcher, Endpoint, RabbitOptions, RpcClient, RpcServer, Target};
use serde_json::json;

fn echo_dispatcher() -> Dispatcher {
    Dispatcher::new()
        .endpoint(Endpoint::new(None, "1.3").raw_method("echo", |_ctx, args| async move { Ok(json!({"args": args})) }))
}

/// An exclusive queue receiving a copy of everything routed to `keys`.
async fn spy(conn: &Connection, exchange: &str, keys: &[String]) -> Consumer {
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    for key in keys {
        ch.queue_bind(
            q.name().clone(),
            exchange.into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    ch.basic_consume(q.name().clone(), "spy".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap()
}

/// The next spied message: its `compression` header and first body bytes.
async fn next_spied(consumer: &mut Consumer) -> (Option<String>, Vec<u8>) {
    let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("spy saw the message")
        .unwrap()
        .unwrap();
    d.ack(BasicAckOptions::default()).await.unwrap();
    let header = d.properties.headers().as_ref().and_then(|h| match h.inner().get(&ShortString::from("compression")) {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    });
    (header, d.data.iter().take(4).copied().collect())
}

async fn interoperates(codec: &str, content_type: &str, magic: &[u8]) {
    init_logs();
    let _lock = broker_shared();
    let exchange = unique("test");
    let topic = unique("zip");
    let options = RabbitOptions { kombu_compression: Some(codec.into()), ..Default::default() };
    let peer_opts = options_json(&options);
    let peer = Peer::spawn(&["server", URL, &exchange, &topic, "py", &peer_opts]);
    tokio::task::block_in_place(|| peer.wait_ready());

    let transport = transport(&exchange, options.clone()).await;
    let server =
        RpcServer::start(&transport, vec![Target::topic(&topic).with_server("rust")], echo_dispatcher()).await.unwrap();
    let raw =
        Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default()).await.unwrap();
    let mut wire = spy(&raw, &exchange, &[format!("{topic}.py"), format!("{topic}.rust")]).await;

    // Rust → Python: Python decompresses our request, we decompress its reply.
    let client = RpcClient::new(&transport, Target::topic(&topic).with_server("py").with_version("1.3"))
        .with_timeout(Duration::from_secs(20));
    let big = "snapshot ".repeat(2000);
    let r = client
        .call(&Context::new(), "echo", json!({"pad": big}))
        .await
        .unwrap_or_else(|e| panic!("[{codec}] Rust → Python: {e}"));
    assert_eq!(r["args"]["pad"], json!(big), "[{codec}]");
    let (header, head) = next_spied(&mut wire).await;
    assert_eq!(header.as_deref(), Some(content_type), "[{codec}] Rust's request header");
    assert!(head.starts_with(magic), "[{codec}] Rust's request body starts with {magic:?}: {head:?}");

    // Python → Rust: we decompress kombu's request, kombu decompresses our reply.
    let script = json!([{"op": "call", "method": "echo", "args": {"pad": big}, "version": "1.0"}]);
    let (t, e, o) = (topic.clone(), exchange.clone(), options.clone());
    let (r, reply_q) = tokio::task::spawn_blocking(move || python_client(&e, &t, "rust", &o, script)).await.unwrap();
    assert_eq!(r[0]["ok"]["args"]["pad"], json!(big), "[{codec}] Python → Rust: {}", r[0]);
    let (header, head) = next_spied(&mut wire).await;
    assert_eq!(header.as_deref(), Some(content_type), "[{codec}] kombu's request header");
    assert!(head.starts_with(magic), "[{codec}] kombu's request body starts with {magic:?}: {head:?}");

    drop(peer);
    server.shutdown().await;
    let _ = raw.close(200, "OK".into()).await;
    let mut queues = broker_queues(&topic);
    queues.extend(transport.reply_queue());
    queues.extend(reply_q);
    cleanup(&transport, &queues, &[exchange, format!("{topic}_fanout")]).await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_interoperates_with_kombu() {
    // kombu's "gzip" is zlib data (header 0x78).
    interoperates("gzip", "application/x-gzip", &[0x78]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bzip2_interoperates_with_kombu() {
    // kombu 5.7 registers bzip2 as "bzip2"/"bzip"; Python's bz2 writes level 9.
    interoperates("bzip2", "application/x-bz2", b"BZh9").await;
}

/// oslo documents `kombu_compression = bz2`; this side accepts it as bzip2
/// and writes exactly what kombu writes for `bzip2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bz2_name_writes_kombus_bzip2() {
    init_logs();
    let _lock = broker_shared();
    let exchange = unique("test");
    let topic = unique("zip");
    let transport =
        transport(&exchange, RabbitOptions { kombu_compression: Some("bz2".into()), ..Default::default() }).await;
    let server =
        RpcServer::start(&transport, vec![Target::topic(&topic).with_server("rust")], echo_dispatcher()).await.unwrap();
    let raw =
        Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default()).await.unwrap();
    let mut wire = spy(&raw, &exchange, &[format!("{topic}.rust")]).await;
    let client =
        RpcClient::new(&transport, Target::topic(&topic).with_server("rust")).with_timeout(Duration::from_secs(20));
    assert_eq!(client.call(&Context::new(), "echo", json!({"a": 1})).await.unwrap(), json!({"args": {"a": 1}}));
    let (header, head) = next_spied(&mut wire).await;
    assert_eq!(header.as_deref(), Some("application/x-bz2"));
    assert!(head.starts_with(b"BZh9"), "{head:?}");

    server.shutdown().await;
    let _ = raw.close(200, "OK".into()).await;
    let mut queues = broker_queues(&topic);
    queues.extend(transport.reply_queue());
    cleanup(&transport, &queues, &[exchange, format!("{topic}_fanout")]).await;
    transport.close().await;
}
