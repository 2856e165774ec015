//! Test 5: RabbitMQ restarted (`rabbitmqctl stop_app` / `start_app`) while
//! casts keep coming: the Rust server's supervisor reconnects by itself,
//! re-declares its (non-durable, hence vanished) queues and re-subscribes,
//! and a cast sent after the restart is served. Runs in its own test binary
//! and holds the workspace's broker lock exclusively; the broker is always
//! started again by a guard, even when the test fails.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use oslo_messaging::{Context, Dispatcher, Endpoint, RabbitOptions, RpcClient, RpcServer, Target};
use serde::Deserialize;
use serde_json::{json, Value};

/// Starts the broker's application again however the test ends.
struct StartAppGuard;

impl Drop for StartAppGuard {
    fn drop(&mut self) {
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
    }
}

#[derive(Deserialize)]
struct Record {
    value: String,
}

async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// File::lock is Rust 1.89; the machine runs 1.95 and the workspace MSRV
// (1.85) only binds library code. Test-only use.
#[allow(clippy::incompatible_msrv)]
async fn server_resumes_by_itself_after_broker_restart() {
    init_logs();
    require_stack();
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(BROKER_LOCK).unwrap();
    lock.lock().expect("exclusive broker lock");

    let exchange = unique("test");
    let topic = unique("t");
    // Quick reconnects keep the test short; the backoff shape is unit-tested.
    let options = RabbitOptions {
        rabbit_retry_interval: 1,
        rabbit_retry_backoff: 1,
        rabbit_interval_max: 2,
        ..Default::default()
    };
    let server_side = transport(&exchange, options.clone()).await;
    let client_side = transport(&exchange, options).await;
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = received.clone();
    let dispatcher = Dispatcher::new().endpoint(Endpoint::new(None, "1.0").method("record", move |_ctx, r: Record| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(r.value);
            Ok(Value::Null)
        }
    }));
    let server =
        RpcServer::start(&server_side, vec![Target::topic(&topic).with_server("h")], dispatcher).await.unwrap();
    let client = RpcClient::new(&client_side, Target::topic(&topic).with_server("h").with_version("1.0"))
        .with_timeout(Duration::from_secs(30));

    // Load: casts keep coming before, during and after the outage.
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (client.clone(), stop_load.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.cast(&Context::new(), "record", json!({"value": format!("load-{i}")})),
                )
                .await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            i
        })
    };
    assert!(wait_until(Duration::from_secs(10), || received.lock().unwrap().len() > 5).await, "load is being served");

    let generations_before = server_side.connection_count();
    let outage = Instant::now();
    {
        let _guard = StartAppGuard;
        rabbitmqctl(&["stop_app"]);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!("broker outage (stop_app → start_app done): {:?}", outage.elapsed());

    let reconnected = wait_until(Duration::from_secs(30), || {
        server_side.is_connected() && server_side.connection_count() > generations_before
    })
    .await;
    assert!(reconnected, "the server's transport reconnected by itself");
    eprintln!("server reconnected {:?} after the outage began", outage.elapsed());

    // A cast sent after the restart is served (queues were re-declared).
    let served = async {
        for attempt in 0..50 {
            let value = format!("after-restart-{attempt}");
            if client.cast(&Context::new(), "record", json!({"value": value})).await.is_ok()
                && wait_until(Duration::from_millis(500), || received.lock().unwrap().contains(&value)).await
            {
                return Some(attempt);
            }
        }
        None
    }
    .await;
    assert_eq!(served, Some(0), "the first cast after the restart is served");
    eprintln!("first cast after restart served {:?} after the outage began", outage.elapsed());

    stop_load.store(true, Ordering::SeqCst);
    let sent = load.await.unwrap();
    eprintln!("load casts sent: {sent}, served: {}", received.lock().unwrap().len());

    server.shutdown().await;
    let mut queues = vec![topic.clone(), format!("{topic}.h")];
    queues.extend(client_side.reply_queue());
    cleanup(&server_side, &queues, &[exchange, format!("{topic}_fanout")]).await;
    server_side.close().await;
    client_side.close().await;
    drop(lock);
}
