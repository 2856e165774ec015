//! The broker socket carries the options oslo.messaging's sockets carry:
//! `TCP_USER_TIMEOUT` = `heartbeat_timeout_threshold` (oslo's
//! `set_transport_socket_timeout`), keepalive 60/10/9 and `TCP_NODELAY`
//! (py-amqp's defaults), on plain and TLS connections alike.
//!
//! Read back from the kernel: the test finds this process's TCP sockets to
//! the broker port (`/proc/self/fd` → socket inode → `/proc/net/tcp*`),
//! duplicates each with `pidfd_getfd` and asks `getsockopt`. A plain lapin
//! connection, which sets nothing, is the control that shows the reading
//! can tell tuned from untuned sockets. One test per binary: every broker
//! socket of the process belongs to it.

mod common;

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::time::Duration;

use common::*;
use lapin::{Connection, ConnectionProperties};
use oslo_messaging::{RabbitOptions, Transport, TransportUrl};
use rustix::net::sockopt;
use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};

/// `(fd number, socket inode)` of every socket this process has open.
fn socket_fds() -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        if let Some(ino) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            out.push((fd, ino.parse().unwrap()));
        }
    }
    out
}

/// Inodes of established TCP sockets whose remote port is `port`.
fn inodes_to_port(port: u16) -> HashSet<u64> {
    let mut out = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local rem st ... inode at index 9
            let (Some(rem), Some(state), Some(inode)) = (cols.get(2), cols.get(3), cols.get(9)) else { continue };
            let rem_port = rem.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if rem_port == Some(port) && *state == "01" {
                out.insert(inode.parse().unwrap());
            }
        }
    }
    out
}

/// Duplicates of this process's established sockets to `port`, keyed by fd number.
fn broker_sockets(port: u16) -> Vec<(i32, OwnedFd)> {
    let wanted = inodes_to_port(port);
    let me = pidfd_open(getpid(), PidfdFlags::empty()).expect("pidfd_open(self)");
    socket_fds()
        .into_iter()
        .filter(|(_, ino)| wanted.contains(ino))
        .filter_map(|(fd, _)| pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()).ok().map(|dup| (fd, dup)))
        .collect()
}

#[derive(Debug, PartialEq)]
struct Tuning {
    user_timeout_ms: u32,
    keepalive: bool,
    keepidle: Duration,
    keepintvl: Duration,
    keepcnt: u32,
    nodelay: bool,
}

fn tuning(fd: &OwnedFd) -> Tuning {
    Tuning {
        user_timeout_ms: sockopt::tcp_user_timeout(fd).unwrap(),
        keepalive: sockopt::socket_keepalive(fd).unwrap(),
        keepidle: sockopt::tcp_keepidle(fd).unwrap(),
        keepintvl: sockopt::tcp_keepintvl(fd).unwrap(),
        keepcnt: sockopt::tcp_keepcnt(fd).unwrap(),
        nodelay: sockopt::tcp_nodelay(fd).unwrap(),
    }
}

fn oslo_tuning(heartbeat_secs: u32) -> Tuning {
    Tuning {
        user_timeout_ms: heartbeat_secs * 1000,
        keepalive: true,
        keepidle: Duration::from_secs(60),
        keepintvl: Duration::from_secs(10),
        keepcnt: 9,
        nodelay: true,
    }
}

/// Connects a transport and returns the tuning of the broker sockets it added.
async fn tuning_of_new_sockets(url: &str, port: u16, options: RabbitOptions) -> (Transport, Vec<Tuning>) {
    let before: HashSet<i32> = broker_sockets(port).into_iter().map(|(fd, _)| fd).collect();
    let transport = Transport::connect(&TransportUrl::parse(url).unwrap(), options, "test").await.expect("connect");
    let added: Vec<Tuning> =
        broker_sockets(port).into_iter().filter(|(fd, _)| !before.contains(fd)).map(|(_, dup)| tuning(&dup)).collect();
    (transport, added)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sockets_carry_oslos_tcp_user_timeout_and_keepalive() {
    init_logs();
    stack_rabbitmq_up();
    let _lock = broker_shared();

    // The control: lapin's own connector leaves the kernel defaults.
    let before: HashSet<i32> = broker_sockets(5672).into_iter().map(|(fd, _)| fd).collect();
    let raw =
        Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default()).await.unwrap();
    let untuned: Vec<Tuning> =
        broker_sockets(5672).into_iter().filter(|(fd, _)| !before.contains(fd)).map(|(_, d)| tuning(&d)).collect();
    assert_eq!(untuned.len(), 1, "found the control connection's socket: {untuned:?}");
    assert_eq!(untuned[0].user_timeout_ms, 0, "untuned socket reads as the kernel default: {untuned:?}");
    assert!(!untuned[0].keepalive);
    let _ = raw.close(200, "OK".into()).await;

    // oslo's default heartbeat (60 s) → 60000 ms.
    let (t1, got) = tuning_of_new_sockets(URL, 5672, RabbitOptions::default()).await;
    assert_eq!(got, vec![oslo_tuning(60)], "default options");

    // Another heartbeat: the value follows it, per transport.
    let (t2, got) =
        tuning_of_new_sockets(URL, 5672, RabbitOptions { heartbeat_timeout_threshold: 7, ..Default::default() }).await;
    assert_eq!(got, vec![oslo_tuning(7)], "heartbeat_timeout_threshold = 7");

    // Heartbeats off: oslo writes 0 (the kernel's default), keepalive stays.
    let (t3, got) =
        tuning_of_new_sockets(URL, 5672, RabbitOptions { heartbeat_timeout_threshold: 0, ..Default::default() }).await;
    assert_eq!(got, vec![oslo_tuning(0)], "heartbeats disabled");

    // TLS connections are tuned the same way (the socket under the TLS stream).
    let tls =
        RabbitOptions { ssl: true, ssl_ca_file: pki("ca.pem"), heartbeat_timeout_threshold: 11, ..Default::default() };
    let (t4, got) = tuning_of_new_sockets("rabbit://guest:guest@127.0.0.1:5671/", 5671, tls).await;
    assert_eq!(got, vec![oslo_tuning(11)], "TLS connection");

    for t in [t1, t2, t3, t4] {
        t.close().await;
    }
}
