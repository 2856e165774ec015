//! A call made while no server consumes its topic — the server not started
//! yet, or re-declaring its queues after a broker restart — reaches the
//! server once it is there, within the call's timeout, instead of being
//! dropped by the broker as unroutable and waited out. A call no server
//! ever takes still ends in `Timeout` at its deadline, as in oslo.

mod common;

use std::time::{Duration, Instant};

use common::*;
use oslo_messaging::{Context, Dispatcher, Endpoint, Error, RabbitOptions, RpcClient, RpcServer, Target};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Echo {
    value: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_waits_for_a_server_that_comes_late() {
    init_logs();
    let _broker = broker_shared();
    let exchange = unique("late");
    let topic = unique("t");
    let client_side = transport(&exchange, RabbitOptions::default()).await;
    let server_side = transport(&exchange, RabbitOptions::default()).await;
    let target = Target::topic(&topic).with_server("h").with_version("1.0");
    let client = RpcClient::new(&client_side, target).with_timeout(Duration::from_secs(30));

    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(&Context::new(), "echo", json!({"value": "late"})).await }
    });
    // The call is out and has nowhere to go for two seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!call.is_finished(), "the call must still be waiting");
    let dispatcher = Dispatcher::new()
        .endpoint(Endpoint::new(None, "1.0").method("echo", |_ctx, e: Echo| async move { Ok(Value::String(e.value)) }));
    let server =
        RpcServer::start(&server_side, vec![Target::topic(&topic).with_server("h")], dispatcher).await.unwrap();
    let reply = call.await.unwrap().expect("the late server answers the call");
    assert_eq!(reply, json!("late"));
    server.stop().await;

    // Nobody ever listens: Timeout at the deadline, not earlier, not an error of another kind.
    let nobody = RpcClient::new(&client_side, Target::topic(unique("nobody")).with_version("1.0"))
        .with_timeout(Duration::from_secs(3));
    let started = Instant::now();
    let err = nobody.call(&Context::new(), "echo", json!({"value": "x"})).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(2500), "waited for the deadline: {:?}", started.elapsed());
}
