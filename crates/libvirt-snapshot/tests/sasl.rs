//! SASL on `qemu+tcp://` (Kolla's default `libvirt_enable_sasl: true`), the
//! ways it goes wrong, on the real libvirtd of `deploy/dev/libvirt.sh`
//! (`auth_tcp = "sasl"`, DIGEST-MD5, sasldb user `nova`):
//!
//! * no auth.conf anywhere libvirt looks: `CredentialsMissing` naming
//!   `authname` and `password` and the URI, within seconds (the engine's
//!   auth callback refuses; nothing prompts, nothing waits on a terminal);
//!   an auth.conf with only the user name: exactly `password` is named; an
//!   auth.conf for another host only: both are named;
//! * a wrong password: `AuthFailed` (libvirt's VIR_ERR_AUTH_FAILED) naming
//!   the URI, within seconds; the control — the same code path with the
//!   stack's file — connects as SASL user `nova`;
//! * reconnects take the same path: libvirtd drops the engine's SASL client
//!   (`virt-admin client-disconnect`), the engine notices and re-opens with
//!   the same auth.conf, authenticated as `nova` again; after the file's
//!   password is changed, the next reconnect fails with `AuthFailed`
//!   instead of hanging or prompting.
//!
//! Its own binary: libvirt's auth.conf lookup reads the process environment
//! (`LIBVIRT_AUTH_FILE` wins over everything, `$XDG_CONFIG_HOME` is cached on
//! first use). Here, before any libvirt call, `LIBVIRT_AUTH_FILE` is removed
//! and `XDG_CONFIG_HOME` / `HOME` point at an empty directory; each test
//! names its file with the URI's `authfile=` parameter.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use libvirt_snapshot::{EngineConfig, SnapshotEngine, SnapshotError};
use stack_tests::{libvirt_auth_file, libvirt_tcp_uri_with_authfile, require, Component, LIBVIRT_TCP_URI};

/// An auth failure must be reported at once, not after a timeout.
const BOUND: Duration = Duration::from_secs(10);

/// The process environment libvirt's auth.conf lookup sees, fixed once
/// before this process makes any libvirt call: no `LIBVIRT_AUTH_FILE`, and
/// an empty `$XDG_CONFIG_HOME` / `$HOME`. `/etc/libvirt/auth.conf` cannot be
/// redirected: it must not exist on the test host.
fn no_auth_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let empty = std::env::temp_dir().join("lvs-sasl-empty-home");
        std::fs::create_dir_all(&empty).unwrap();
        std::env::remove_var("LIBVIRT_AUTH_FILE");
        std::env::set_var("XDG_CONFIG_HOME", empty.join(".config"));
        std::env::set_var("HOME", &empty);
    });
    assert!(
        !Path::new("/etc/libvirt/auth.conf").exists(),
        "/etc/libvirt/auth.conf exists on this host: the 'no auth.conf' cases cannot be made"
    );
}

/// The tests identify the engine's client among libvirtd's tcp clients by
/// "new since before": they take turns, so another test's connection (also
/// SASL user nova) cannot be mistaken for it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup() -> std::sync::MutexGuard<'static, ()> {
    no_auth_env();
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_stack();
    require(&[Component::LibvirtListeners]);
    guard
}

fn config(scratch: &Scratch, uri: &str) -> EngineConfig {
    EngineConfig { connection_uri: uri.into(), ..scratch.config() }
}

/// The stack's (valid) credentials, as `deploy/dev/libvirt.sh` wrote them.
fn stack_credentials() -> (String, String) {
    let text = std::fs::read_to_string(libvirt_auth_file())
        .unwrap_or_else(|e| panic!("{}: {e}", libvirt_auth_file().display()));
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {key}= in the stack's auth.conf"))
    };
    (get("authname"), get("password"))
}

fn write_auth_conf(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).unwrap();
    path.to_path_buf()
}

fn auth_conf(authname: &str, password: Option<&str>, host_section: &str) -> String {
    let mut s = format!("[credentials-x]\nauthname={authname}\n");
    if let Some(p) = password {
        s.push_str(&format!("password={p}\n"));
    }
    s.push_str(&format!("\n[auth-libvirt-{host_section}]\ncredentials=x\n"));
    s
}

/// Opens an engine on `uri`, expecting an error; returns it and the time taken.
fn open_err(scratch: &Scratch, uri: &str) -> (SnapshotError, Duration) {
    let started = Instant::now();
    let res = SnapshotEngine::open(config(scratch, uri));
    let took = started.elapsed();
    match res {
        Ok(_) => panic!("{uri}: connected although authentication must fail"),
        Err(e) => {
            eprintln!("MEASURE {uri}: refused in {took:?}: {e}");
            assert!(took < BOUND, "{uri}: took {took:?} to fail");
            (e, took)
        }
    }
}

/// libvirtd's tcp clients (id) and the SASL user of each.
fn tcp_clients() -> Vec<(String, Option<String>)> {
    let out = Command::new("virt-admin").args(["srv-clients-list", "libvirtd"]).output().expect("virt-admin");
    assert!(out.status.success(), "virt-admin srv-clients-list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("tcp"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .map(|id| {
            let info = Command::new("virt-admin")
                .args(["client-info", "libvirtd", &id])
                .output()
                .expect("virt-admin client-info");
            let user = String::from_utf8_lossy(&info.stdout).lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "sasl_user_name").then(|| v.trim().to_owned())
            });
            (id, user)
        })
        .collect()
}

/// The tcp clients that appeared since `before`.
fn new_tcp_clients(before: &[(String, Option<String>)]) -> Vec<(String, Option<String>)> {
    tcp_clients().into_iter().filter(|(id, _)| !before.iter().any(|(b, _)| b == id)).collect()
}

#[test]
fn without_the_credentials_in_any_auth_conf_the_error_names_them_and_the_uri() {
    let _serial = setup();
    let scratch = Scratch::new("lvs-sasl-none-");
    let (authname, _) = stack_credentials();

    // 1. No auth.conf at all (no LIBVIRT_AUTH_FILE, none under the empty
    //    $XDG_CONFIG_HOME, none in /etc/libvirt): both credentials missing.
    let (err, _) = open_err(&scratch, LIBVIRT_TCP_URI);
    match &err {
        SnapshotError::CredentialsMissing { uri, credentials, source } => {
            let message = source.message();
            assert_eq!(uri, LIBVIRT_TCP_URI);
            // libvirt's words when the auth callback refuses (nova's
            // behaviour), rather than SASL running on with empty answers.
            assert!(message.contains("Failed to collect auth credentials"), "the callback did not refuse: {message}");
            assert!(
                credentials.iter().any(|c| c == "authname") && credentials.iter().any(|c| c == "password"),
                "credentials named: {credentials:?}"
            );
        }
        other => panic!("expected CredentialsMissing, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(LIBVIRT_TCP_URI) && text.contains("authname") && text.contains("password"),
        "unclear message: {text}"
    );
    assert_eq!(err.libvirt_code(), Some(45), "VIR_ERR_AUTH_FAILED");

    // 2. auth.conf with the user name only: exactly the password is missing.
    let file = write_auth_conf(&scratch.dir.path().join("no-password.conf"), &auth_conf(&authname, None, "default"));
    let uri = libvirt_tcp_uri_with_authfile(&file);
    match open_err(&scratch, &uri).0 {
        SnapshotError::CredentialsMissing { uri: u, credentials, .. } => {
            assert_eq!(u, uri);
            assert_eq!(credentials, vec!["password".to_string()]);
        }
        other => panic!("expected CredentialsMissing(password), got {other:?}"),
    }

    // 3. Credentials only for another host: none apply to 127.0.0.1.
    let file = write_auth_conf(
        &scratch.dir.path().join("other-host.conf"),
        &auth_conf(&authname, Some("whatever"), "compute-9.example.org"),
    );
    match open_err(&scratch, &libvirt_tcp_uri_with_authfile(&file)).0 {
        SnapshotError::CredentialsMissing { credentials, .. } => {
            assert!(
                credentials.contains(&"authname".to_string()) && credentials.contains(&"password".to_string()),
                "{credentials:?}"
            );
        }
        other => panic!("expected CredentialsMissing, got {other:?}"),
    }

    // Control: with the stack's file the same path connects.
    let engine = SnapshotEngine::open(config(&scratch, &libvirt_tcp_uri_with_authfile(&libvirt_auth_file())))
        .unwrap_or_else(|e| panic!("the stack's auth.conf must connect: {e}"));
    assert!(engine.hypervisor().is_connected());
}

#[test]
fn a_wrong_password_is_a_clear_auth_error_at_once() {
    let _serial = setup();
    let scratch = Scratch::new("lvs-sasl-wrong-");
    let (authname, password) = stack_credentials();
    let wrong = format!("{password}x");
    let file = write_auth_conf(&scratch.dir.path().join("wrong.conf"), &auth_conf(&authname, Some(&wrong), "default"));
    let uri = libvirt_tcp_uri_with_authfile(&file);
    let (err, _) = open_err(&scratch, &uri);
    match &err {
        SnapshotError::AuthFailed { uri: u, source } => {
            assert_eq!(u, &uri);
            assert_eq!(source.code().to_raw(), 45, "VIR_ERR_AUTH_FAILED");
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    assert!(err.to_string().contains(&uri), "{err}");

    // Control: the same file with the right password connects, as `nova`.
    let before = tcp_clients();
    write_auth_conf(&file, &auth_conf(&authname, Some(&password), "default"));
    let engine =
        SnapshotEngine::open(config(&scratch, &uri)).unwrap_or_else(|e| panic!("the right password must connect: {e}"));
    assert_eq!(engine.hypervisor().versions().unwrap().hypervisor_type, "QEMU");
    let new = new_tcp_clients(&before);
    assert!(
        new.iter().any(|(_, u)| u.as_deref() == Some(authname.as_str())),
        "no new tcp client authenticated as {authname}: {new:?}"
    );
}

#[test]
fn reconnects_authenticate_through_the_same_auth_conf() {
    let _serial = setup();
    let scratch = Scratch::new("lvs-sasl-reconnect-");
    let (authname, password) = stack_credentials();
    let file =
        write_auth_conf(&scratch.dir.path().join("auth.conf"), &auth_conf(&authname, Some(&password), "default"));
    let uri = libvirt_tcp_uri_with_authfile(&file);

    let before = tcp_clients();
    let engine = SnapshotEngine::open(config(&scratch, &uri)).unwrap_or_else(|e| panic!("engine over {uri}: {e}"));
    let hv = engine.hypervisor();
    assert!(hv.keepalive_enabled());
    let mine: Vec<String> = new_tcp_clients(&before)
        .into_iter()
        .filter(|(_, u)| u.as_deref() == Some(authname.as_str()))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(mine.len(), 1, "the engine's SASL client: {mine:?}");

    // libvirtd drops the engine's client: the close callback notices.
    let dropped = Instant::now();
    let st = Command::new("virt-admin").args(["client-disconnect", "libvirtd", &mine[0]]).status().unwrap();
    assert!(st.success(), "virt-admin client-disconnect");
    while hv.is_connected() {
        assert!(dropped.elapsed() < Duration::from_secs(15), "the dropped connection was not noticed");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("MEASURE client dropped → noticed in {:?}", dropped.elapsed());

    // The next use re-opens through open_auth with the same auth.conf.
    let before = tcp_clients();
    let reopened = Instant::now();
    assert_eq!(hv.versions().unwrap().hypervisor_type, "QEMU");
    eprintln!("MEASURE SASL reconnect: {:?}", reopened.elapsed());
    assert!(hv.is_connected());
    let new = new_tcp_clients(&before);
    assert!(
        new.iter().any(|(_, u)| u.as_deref() == Some(authname.as_str())),
        "the reconnect is not SASL user {authname}: {new:?}"
    );

    // The password in auth.conf changes (rotated on the server, stale here):
    // the next reconnect is a clear auth error, at once.
    write_auth_conf(&file, &auth_conf(&authname, Some("stale"), "default"));
    let id = new.iter().find(|(_, u)| u.as_deref() == Some(authname.as_str())).map(|(id, _)| id.clone()).unwrap();
    let st = Command::new("virt-admin").args(["client-disconnect", "libvirtd", &id]).status().unwrap();
    assert!(st.success());
    let dropped = Instant::now();
    while hv.is_connected() {
        assert!(dropped.elapsed() < Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    match hv.connection() {
        Err(SnapshotError::AuthFailed { uri: u, .. }) => assert_eq!(u, uri),
        Err(other) => panic!("expected AuthFailed on reconnect, got {other:?}"),
        Ok(_) => panic!("reconnected with a stale password"),
    }
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
}
