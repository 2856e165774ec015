//! `[libvirt] connection_uri` over the network: the engine connected through
//! libvirtd's TCP listener (`qemu+tcp://127.0.0.1/system`, `auth_tcp =
//! "sasl"` as Kolla's default, credentials from the stack's auth.conf found
//! through `LIBVIRT_AUTH_FILE`) and its TLS listener
//! (`qemu+tls://localhost/system?pkipath=…`, the stack CA of
//! `deploy/dev/pki.sh`, client certificate required) takes a live snapshot
//! (default strategy, quiesced) of a real guest; libvirtd's own client list
//! shows the engine's connection on that transport, over TCP authenticated
//! as the SASL user `nova`. A pkipath whose CA is not the stack's, and a
//! client certificate of the stack CA whose subject is not on libvirtd's
//! `tls_allowed_dn_list`, give a clear connection error (no panic, no hang).
//!
//! `LIBVIRT_AUTH_FILE` is process-wide: every test of this binary sets it to
//! the same file first ([`stack_auth_env`]). The SASL failure cases (no
//! auth.conf, wrong password) need a process without it: `tests/sasl.rs`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use libvirt_snapshot::{
    CancelToken, EngineConfig, QuiescePolicy, SnapshotEngine, SnapshotError, SnapshotRequest, SnapshotStrategy,
};
use stack_tests::{
    libvirt_auth_file, libvirt_pki_dir, libvirt_tls_uri, require, stack_dir, Component, Guest, LIBVIRT_TCP_URI,
};

/// Points libvirt's auth.conf lookup at the stack's file (what Kolla puts in
/// nova's `~/.config/libvirt/auth.conf`), once, before this process opens
/// any libvirt connection. Every test here calls it first, so all of them
/// see the same environment whatever order they run in.
fn stack_auth_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let file = libvirt_auth_file();
        assert!(file.is_file(), "{} missing: run deploy/dev/stack up", file.display());
        std::env::set_var("LIBVIRT_AUTH_FILE", &file);
    });
}

/// libvirtd's clients on `transport` (`tcp`, `tls`, `unix`) by id, from its
/// admin interface.
fn client_ids(transport: &str) -> Vec<String> {
    let out = Command::new("virt-admin").args(["srv-clients-list", "libvirtd"]).output().expect("virt-admin");
    assert!(out.status.success(), "virt-admin: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(transport))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The SASL user libvirtd authenticated client `id` as (`virt-admin
/// client-info`), if any.
fn sasl_user(id: &str) -> Option<String> {
    let out = Command::new("virt-admin").args(["client-info", "libvirtd", id]).output().expect("virt-admin");
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "sasl_user_name").then(|| v.trim().to_owned())
    })
}

/// The two tests of this binary count libvirtd's TLS clients: they take
/// turns, so the other's connections cannot skew the count.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn remote_config(scratch: &Scratch, uri: &str) -> EngineConfig {
    EngineConfig { connection_uri: uri.into(), ..scratch.config() }
}

#[test]
fn live_snapshots_over_qemu_tcp_and_qemu_tls() {
    stack_auth_env();
    let _serial = serial();
    require_stack();
    require(&[Component::LibvirtListeners]);
    let scratch = Scratch::new("lvs-remote-");
    let guest = boot("lvs-remote");
    let tls_uri = libvirt_tls_uri(&libvirt_pki_dir());

    for (transport, uri) in [("tcp", LIBVIRT_TCP_URI), ("tls", tls_uri.as_str())] {
        let engine = open_over(&scratch, transport, uri);
        a_quiesced_snapshot_over(&engine, &guest, &scratch, transport);
        drop(engine);
        assert!(scratch.leftovers().is_empty(), "temp files left: {:?}", scratch.leftovers());
        assert!(scratch.journal_records().is_empty());
    }
    assert!(guest.domain().is_persistent().unwrap());
}

/// An engine over `uri`: a new libvirtd client (SASL user nova over tcp),
/// with keepalive, talking to QEMU.
fn open_over(scratch: &Scratch, transport: &str, uri: &str) -> SnapshotEngine {
    let before = client_ids(transport);
    let opened = std::time::Instant::now();
    let engine = SnapshotEngine::open(remote_config(scratch, uri)).unwrap_or_else(|e| panic!("engine over {uri}: {e}"));
    eprintln!("MEASURE open over {transport}: {:?}", opened.elapsed());
    assert_eq!(engine.hypervisor().uri(), uri);
    let new: Vec<String> = client_ids(transport).into_iter().filter(|id| !before.contains(id)).collect();
    assert!(!new.is_empty(), "libvirtd shows no new {transport} client for the engine");
    if transport == "tcp" {
        // auth_tcp = "sasl": the engine answered SASL from auth.conf.
        let users: Vec<Option<String>> = new.iter().map(|id| sasl_user(id)).collect();
        assert!(
            users.iter().any(|u| u.as_deref() == Some("nova")),
            "the engine's tcp client is not SASL user nova: {users:?}"
        );
    }
    assert!(engine.hypervisor().keepalive_enabled(), "keepalive must be on over {transport}");
    assert_eq!(engine.hypervisor().versions().unwrap().hypervisor_type, "QEMU");
    engine
}

/// Written without sync: only the quiesce (through the remote connection)
/// puts the file on the disk before the point in time.
fn a_quiesced_snapshot_over(engine: &SnapshotEngine, guest: &Guest, scratch: &Scratch, transport: &str) {
    let file = format!("remote-{transport}.txt");
    let content = format!("{transport} {}\n", uuid::Uuid::new_v4());
    sh(guest, &format!("printf '%s' '{content}' > /data/{file}"));
    let req = SnapshotRequest {
        instance_uuid: guest.uuid().to_string(),
        name: format!("remote-{transport}"),
        quiesce: QuiescePolicy { agent_enabled: true, required: true },
        strategy: None,
    };
    let out = engine
        .snapshot_blocking(&req, &|_| {}, &CancelToken::new())
        .unwrap_or_else(|e| panic!("snapshot over {transport}: {e}"));
    eprintln!(
        "MEASURE snapshot over {transport}: {:?}, freeze window {:?}",
        out.elapsed,
        out.quiesce.map(|w| w.duration)
    );
    assert_eq!(out.strategy, SnapshotStrategy::Backup, "the default live strategy");
    assert!(out.quiesce.is_some_and(|w| w.filesystems >= 1));
    assert_standalone(out.image.path());
    let got = read_back_replayed(out.image.path(), &format!("/{file}"), scratch.dir.path());
    assert_eq!(got.as_deref(), Some(content.as_bytes()), "{transport}: the guest's file is not in the image");
    assert_eq!(guest.fsfreeze_status().unwrap(), "thawed");
}

/// A private pkipath with the stack's client certificate and key and `ca`
/// as `cacert.pem`.
fn pkipath_with(dir: &Path, ca: &Path, cert: &Path, key: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(ca, dir.join("cacert.pem")).unwrap();
    std::fs::copy(cert, dir.join("clientcert.pem")).unwrap();
    std::fs::copy(key, dir.join("clientkey.pem")).unwrap();
}

/// Asserts a connection error from `open` for `uri`, and returns its message.
fn open_fails(scratch: &Scratch, uri: &str) -> String {
    let started = std::time::Instant::now();
    let res = SnapshotEngine::open(remote_config(scratch, uri));
    let elapsed = started.elapsed();
    match res {
        Err(SnapshotError::Libvirt { operation: "open", source }) => {
            let (code, message) = (source.code().to_raw(), source.message().to_owned());
            eprintln!("{uri}: refused in {elapsed:?}: {message} (code {code})");
            assert_ne!(code, 0);
            assert!(elapsed < std::time::Duration::from_secs(30), "took {elapsed:?}");
            message
        }
        // A peer certificate libvirt cannot verify is VIR_ERR_AUTH_FAILED.
        Err(SnapshotError::AuthFailed { uri: u, source }) => {
            let (code, message) = (source.code().to_raw(), source.message().to_owned());
            eprintln!("{uri}: refused in {elapsed:?}: {message} (auth, code {code})");
            assert_eq!(u, uri);
            assert!(elapsed < std::time::Duration::from_secs(30), "took {elapsed:?}");
            message
        }
        Err(other) => panic!("{uri}: expected a libvirt open error, got {other:?}"),
        Ok(_) => panic!("{uri}: connected despite the bad credentials"),
    }
}

/// A client certificate and key for `CN=<cn>` signed by `ca`, in `dir`.
fn issue_client_cert(dir: &Path, ca: &Path, ca_key: &Path, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("key.pem");
    let csr = dir.join("req.csr");
    let cert = dir.join("cert.pem");
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let subject = format!("/CN={cn}");
    run(&["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &p(&key), "-out", &p(&csr)]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(ca),
        "-CAkey",
        &p(ca_key),
        "-CAcreateserial",
        "-CAserial",
        &p(&dir.join("ca.srl")),
        "-days",
        "1",
        "-sha256",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&cert),
    ]);
    (cert, key)
}

#[test]
fn tls_with_a_wrong_ca_or_an_unlisted_client_is_a_clear_connection_error() {
    stack_auth_env();
    let _serial = serial();
    require_stack();
    require(&[Component::LibvirtListeners]);
    let scratch = Scratch::new("lvs-badtls-");
    let pki = stack_dir().join("pki");
    let good = libvirt_pki_dir();

    // The CA we trust is not the one that signed libvirtd's certificate
    // (nor ours): refused before anything is sent.
    let wrong_ca = scratch.dir.path().join("wrong-ca");
    pkipath_with(&wrong_ca, &pki.join("other-ca.pem"), &good.join("clientcert.pem"), &good.join("clientkey.pem"));
    let msg = open_fails(&scratch, &libvirt_tls_uri(&wrong_ca));
    assert!(msg.contains("certificate") || msg.contains("issuer"), "unclear error: {msg}");

    // Our CA and client certificate are consistent (both of the unrelated
    // CA), so the handshake happens: libvirtd's certificate is not trusted.
    let (cert, key) = issue_client_cert(
        &scratch.dir.path().join("other-client"),
        &pki.join("other-ca.pem"),
        &pki.join("other-ca.key"),
        "stack-client",
    );
    let other = scratch.dir.path().join("other");
    pkipath_with(&other, &pki.join("other-ca.pem"), &cert, &key);
    let msg = open_fails(&scratch, &libvirt_tls_uri(&other));
    assert!(msg.contains("certificate") || msg.contains("TLS"), "unclear error: {msg}");

    // A client certificate of the right CA, but not CN=stack-client: the
    // server refuses it (tls_allowed_dn_list in deploy/dev/libvirt.sh).
    let (cert, key) =
        issue_client_cert(&scratch.dir.path().join("intruder"), &pki.join("ca.pem"), &pki.join("ca.key"), "intruder");
    let unlisted = scratch.dir.path().join("unlisted");
    pkipath_with(&unlisted, &pki.join("ca.pem"), &cert, &key);
    open_fails(&scratch, &libvirt_tls_uri(&unlisted));

    // The control: the same code path with the stack's own files connects.
    let engine = SnapshotEngine::open(remote_config(&scratch, &libvirt_tls_uri(&good)))
        .unwrap_or_else(|e| panic!("the stack's pkipath must connect: {e}"));
    assert!(engine.hypervisor().is_connected());
}
