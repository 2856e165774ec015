//! Harness for the tests that need the real stack: RabbitMQ on 127.0.0.1:5672
//! and the nova venv's real oslo.messaging as the Python peer. Both missing
//! is a test failure with instructions, never a skip.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use oslo_messaging::{RabbitOptions, Transport, TransportUrl};
use serde_json::Value;

pub const URL: &str = "rabbit://guest:guest@127.0.0.1:5672/";

/// Lock file shared by every test of the workspace that needs the broker:
/// shared while using it, exclusive while restarting it.
pub const BROKER_LOCK: &str = "/tmp/openstack-rs-rabbitmq.lock";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn python() -> PathBuf {
    stack_tests::stack_dir().join("venvs/nova/bin/python")
}

/// Fails (with the fix) unless RabbitMQ and the oslo.messaging venv exist.
pub fn require_stack() {
    if std::net::TcpStream::connect_timeout(&"127.0.0.1:5672".parse().unwrap(), Duration::from_secs(2)).is_err() {
        panic!("RabbitMQ is not reachable on 127.0.0.1:5672: start the stack with `deploy/dev/stack up` (or run `deploy/dev/test`)");
    }
    let py = python();
    if !py.exists() {
        panic!(
            "the Python peer venv is missing ({}): run `deploy/dev/stack up`, which installs nova and oslo.messaging",
            py.display()
        );
    }
}

/// Holds the shared broker lock for the life of a test.
// File::lock is Rust 1.89; the machine runs 1.95 and the workspace MSRV
// (1.85) only binds library code. Test-only use.
#[allow(clippy::incompatible_msrv)]
pub fn broker_shared() -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(BROKER_LOCK)
        .expect("open broker lock");
    f.lock_shared().expect("lock broker (shared)");
    f
}

/// A name no other test or service uses (`test_<uuid>`).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub async fn transport(exchange: &str, options: RabbitOptions) -> Transport {
    require_stack();
    let url = TransportUrl::parse(URL).unwrap();
    Transport::connect(&url, options, exchange).await.expect("connect to RabbitMQ")
}

/// Options as a JSON object of `[oslo_messaging_rabbit]` overrides for the peer.
pub fn options_json(o: &RabbitOptions) -> String {
    let mut map = serde_json::json!({
        "rabbit_quorum_queue": o.rabbit_quorum_queue,
        "rabbit_transient_quorum_queue": o.rabbit_transient_quorum_queue,
        "rabbit_stream_fanout": o.rabbit_stream_fanout,
        "use_queue_manager": o.use_queue_manager,
        "rabbit_ha_queues": o.rabbit_ha_queues,
        "rabbit_transient_queues_ttl": o.rabbit_transient_queues_ttl,
        "amqp_durable_queues": o.amqp_durable_queues,
        "amqp_auto_delete": o.amqp_auto_delete,
        "rabbit_qos_prefetch_count": o.rabbit_qos_prefetch_count,
        "enable_cancel_on_failover": o.enable_cancel_on_failover,
        "rabbit_quorum_delivery_limit": o.rabbit_quorum_delivery_limit,
        "rabbit_quorum_max_memory_length": o.rabbit_quorum_max_memory_length,
        "rabbit_quorum_max_memory_bytes": o.rabbit_quorum_max_memory_bytes,
        "hostname": o.hostname,
        "processname": o.processname,
    });
    // Only when set, so the peer keeps oslo's defaults otherwise.
    if o.ssl {
        for (key, value) in
            [("ssl_ca_file", &o.ssl_ca_file), ("ssl_cert_file", &o.ssl_cert_file), ("ssl_key_file", &o.ssl_key_file)]
        {
            if !value.is_empty() {
                map[key] = serde_json::json!(value);
            }
        }
        map["ssl"] = serde_json::json!(true);
    }
    if let Some(c) = o.kombu_compression.as_deref().filter(|c| !c.is_empty()) {
        map["kombu_compression"] = serde_json::json!(c);
    }
    map.to_string()
}

/// `pki_up` and `rabbitmq_up` of deploy/dev, once per test binary: the TLS
/// listener on 127.0.0.1:5671 with the stack CA. Call before taking the
/// broker lock (a first-time restart takes it exclusively). Fails, never
/// skips, when the stack cannot provide it.
pub fn stack_rabbitmq_up() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let dev = repo_root().join("deploy/dev");
        let script = "source \"$1/lib.sh\"; source \"$1/pki.sh\"; source \"$1/rabbitmq.sh\"; pki_up; rabbitmq_up";
        let out = Command::new("bash")
            .args(["-c", script, "bash"])
            .arg(&dev)
            .env("STACK_DIR", stack_tests::stack_dir())
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "deploy/dev rabbitmq_up failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The stack CA's files (deploy/dev/pki.sh).
pub fn pki(file: &str) -> String {
    stack_tests::stack_dir().join("pki").join(file).to_string_lossy().into_owned()
}

/// A running `peer.py`; killed on drop.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    pub stderr_path: PathBuf,
}

impl Peer {
    pub fn spawn(args: &[&str]) -> Self {
        require_stack();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peer/peer.py");
        let stderr_path = std::env::temp_dir().join(format!("oslo-peer-{}.log", uuid::Uuid::new_v4().simple()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the Python peer");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, lines, stderr_path }
    }

    /// The peer's process id (oslo's connection names contain it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The next stdout line, failing with the peer's stderr on timeout/exit.
    pub fn next_line(&self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(e) => panic!("Python peer produced no output ({e:?}); its stderr:\n{}", self.stderr()),
        }
    }

    pub fn next_json(&self, timeout: Duration) -> Value {
        let line = self.next_line(timeout);
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("peer printed non-JSON {line:?}: {e}\nstderr:\n{}", self.stderr()))
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = self.next_line(deadline.saturating_duration_since(Instant::now()));
            if line == "READY" {
                return;
            }
        }
    }

    /// Closes stdin (the server peer's stop signal) and waits for exit.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn write_line(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// Runs a Python `RPCClient` script against `topic.server`: one JSON result
/// per step, and the name of the reply queue the peer left behind.
pub fn python_client(
    exchange: &str,
    topic: &str,
    server: &str,
    options: &RabbitOptions,
    script: Value,
) -> (Vec<Value>, Option<String>) {
    let steps = script.as_array().map_or(0, Vec::len);
    let opts = options_json(options);
    let script = script.to_string();
    let peer = Peer::spawn(&["client", URL, exchange, topic, server, &opts, &script]);
    let results = (0..steps).map(|_| peer.next_json(Duration::from_secs(90))).collect();
    let reply_q = peer.next_json(Duration::from_secs(30))["reply_q"].as_str().map(str::to_owned);
    (results, reply_q)
}

/// Deletes queues and exchanges a test declared; missing ones are fine.
pub async fn cleanup(transport: &Transport, queues: &[String], exchanges: &[String]) {
    for q in queues {
        let _ = transport.delete_queue(q).await;
    }
    for e in exchanges {
        let _ = transport.delete_exchange(e).await;
    }
}

pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl").args(args).output().expect("run rabbitmqctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of queues on the broker containing `needle`.
pub fn broker_queues(needle: &str) -> Vec<String> {
    rabbitmqctl(&["-q", "list_queues", "name"])
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}
