//! The service as Kolla-Ansible runs it in the `nova_compute` container,
//! through real nova 34 (nova's API code, the real conductor), RabbitMQ and
//! Glance: unprivileged as nova (uid 42436, in QEMU's group), libvirt over
//! `qemu+tcp` with SASL credentials from `$HOME/.config/libvirt/auth.conf`,
//! the queue manager's stable queue names, and Kolla's own
//! `healthcheck_port nova-compute 5672`
//! judging it healthy. Needs `deploy/dev/stack up`; deploy/dev/kolla.sh adds
//! the user and fetches Kolla's healthcheck script.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use stack_tests::{repo_dir, stack_dir, Guest};

const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Kolla-Ansible's nova.conf, the parts this service reads that differ from
/// the harness defaults. Kolla's quorum/stream queue options are left out:
/// on this shared broker nova-conductor and the other tests use classic
/// queues, and one broker cannot hold `compute` both ways (the broker
/// refuses, as it would refuse Python nova-compute; the queue modes are
/// tested against real oslo.messaging in the oslo-messaging crate).
const KOLLA_CONF: &str = "\
[libvirt]
connection_uri = qemu+tcp://127.0.0.1/system

[oslo_messaging_rabbit]
use_queue_manager = true
rabbit_qos_prefetch_count = 1
";

/// deploy/dev/kolla.sh: the nova user, its home with auth.conf, Kolla's
/// healthcheck script; returns the script's path.
fn kolla_up() -> PathBuf {
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "source deploy/dev/lib.sh; source deploy/dev/pki.sh; source deploy/dev/libvirt.sh; \
             source deploy/dev/kolla.sh; kolla_up",
        )
        .current_dir(repo_dir())
        .output()
        .expect("bash");
    assert!(out.status.success(), "kolla_up: {}", String::from_utf8_lossy(&out.stderr));
    stack_dir().join("kolla/healthcheck_port")
}

fn healthcheck(script: &Path, port: &str) -> bool {
    Command::new(script).args(["nova-compute", port]).status().expect("healthcheck_port").success()
}

/// The real uid of a process, from /proc.
fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn snapshot_as_kolla_runs_it() {
    let _lock = stack();
    let healthcheck_port = kolla_up();
    let guest = Guest::boot("e2e-kolla").expect("boot guest");
    let uuid = guest.uuid().to_string();
    let run_as = RunAs { user: "nova".into(), home: stack_dir().join("kolla/home") };
    let compute = Compute::start_as(run_as, KOLLA_CONF);

    assert_eq!(uid_of(compute.pid()), 42436, "runs as Kolla's nova user");
    let log = compute.log();
    assert!(log.contains("Connected to libvirt at qemu+tcp://127.0.0.1/system"), "{log}");
    // Kolla's check: a process named like nova-compute holding a connection
    // to RabbitMQ's port. The same check against a port nothing uses fails.
    wait_until(Duration::from_secs(30), "Kolla's healthcheck passes", || healthcheck(&healthcheck_port, "5672"));
    assert!(!healthcheck(&healthcheck_port, "5999"), "the healthcheck can fail");

    create_instance(&uuid, &compute.host, &["hw_qemu_guest_agent=yes"]);
    let marker = format!("kolla {}", uuid::Uuid::new_v4());
    guest.sh(&format!("echo '{marker}' > /data/e2e.txt")).unwrap();
    let reply = peer(&["snapshot", "--uuid", &uuid, "--name", "e2e-kolla"]);
    let image = image_id(&reply);
    let report = wait_task_state_none(&uuid, SNAPSHOT_TIMEOUT);
    assert!(report["faults"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(event_results(&report, "compute_snapshot_instance"), vec!["Success"], "{report}");
    let glance = glance_image(&image).expect("image kept");
    assert_eq!(glance["status"], "active", "{glance}");
    let work = tempfile::tempdir().unwrap();
    let (info, content) = file_in_image(&image, "/e2e.txt", work.path());
    assert!(info[0].get("backing-filename").is_none(), "image not standalone: {info}");
    assert_eq!(content.trim(), marker, "the guest's unsynced file is in the image");

    let leftovers: Vec<_> = std::fs::read_dir(compute.dir.join("state/instances/snapshots")).unwrap().collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    assert!(healthcheck(&healthcheck_port, "5672"), "still healthy after the snapshot");
    glance_delete(&image);
    peer(&["purge-instance", "--uuid", &uuid]);
}
