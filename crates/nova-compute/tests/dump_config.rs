//! The `nova-compute` binary: `--dump-config`, `--version` and exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nova-compute")).args(args).env("HOME", home).output().expect("nova-compute runs")
}

#[test]
fn dump_config_prints_effective_json_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nova.conf");
    std::fs::write(
        &conf,
        "[DEFAULT]\nhost = compute07\nstate_path = /srv/nova\n\
         transport_url = rabbit://openstack:topsecret@192.0.2.10:5672//\n\
         [oslo_messaging_rabbit]\nrabbit_quorum_queue = yes\n\
         [service_user]\npassword = alsosecret\n[neutron]\nanything = goes\n",
    )
    .unwrap();
    let confd = dir.path().join("nova.conf.d");
    std::fs::create_dir(&confd).unwrap();
    std::fs::write(confd.join("10-host.conf"), "[DEFAULT]\nhost = compute08\n").unwrap();

    let out = run(
        &["--config-file", conf.to_str().unwrap(), &format!("--config-dir={}", confd.display()), "--dump-config"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("topsecret") && !stdout.contains("alsosecret"));
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["DEFAULT"]["host"], "compute08");
    assert_eq!(json["DEFAULT"]["transport_url"], "rabbit://openstack:***@192.0.2.10:5672//");
    assert_eq!(json["libvirt"]["snapshots_directory"], "/srv/nova/instances/snapshots");
    assert_eq!(json["oslo_messaging_rabbit"]["rabbit_quorum_queue"], true);
    assert_eq!(json["service_user"]["password"], "***");
    assert!(json.get("neutron").is_none());
}

#[test]
fn bad_value_exits_non_zero_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nova.conf");
    std::fs::write(&conf, "[DEFAULT]\ndebug = true\nreport_interval = ten\n").unwrap();
    let out = run(&["--config-file", conf.to_str().unwrap(), "--dump-config"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        format!("nova-compute: {}:3: [DEFAULT] report_interval: invalid integer \"ten\"", conf.display())
    );
}

#[test]
fn missing_config_file_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--config-file=/nonexistent/nova.conf", "--dump-config"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config file not found: /nonexistent/nova.conf"));
}

#[test]
fn unknown_argument_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--frobnicate"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
}

/// What an operator (or the Kolla image build) checks first: the binary
/// says what it is and which nova it speaks, without needing a config.
#[test]
fn version_prints_the_nova_versions_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--version"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("nova-compute "), "{text}");
    assert!(text.contains("compute RPC API 6.5") && text.contains("service version 74"), "{text}");
}

#[test]
fn default_search_uses_home() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".nova")).unwrap();
    std::fs::write(dir.path().join(".nova/nova.conf"), "[DEFAULT]\nhost = from-home\n").unwrap();
    let out = run(&["--dump-config"], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // /etc/nova/nova.conf on this machine (if any) would be read too but ~/.nova wins for nova.conf.
    assert_eq!(json["DEFAULT"]["host"], "from-home");
}

#[test]
fn unreachable_broker_is_a_clear_startup_error() {
    // libvirt's built-in test driver needs no daemon, so start-up gets as far
    // as the broker, which nothing serves on port 1.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nova.conf");
    std::fs::write(
        &conf,
        "[DEFAULT]\nhost = c1\nuse_stderr = true\ntransport_url = rabbit://guest:guest@127.0.0.1:1/\n\
         [libvirt]\nconnection_uri = test:///default\n",
    )
    .unwrap();
    let out = run(&["--config-file", conf.to_str().unwrap()], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("cannot connect to the message broker"), "stderr: {stderr}");
    assert!(!stderr.contains("guest:guest"), "the broker password leaked: {stderr}");
}
