//! Where the stack lives and whether it is up.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use virt::connect::{Connect, ConnectAuth, ConnectCredentialType};

use crate::error::Error;

/// The libvirt connection the stack's guests live on (`LIBVIRT_URI` in
/// `deploy/dev/libvirt.sh`).
pub const LIBVIRT_URI: &str = "qemu:///system";

/// libvirtd's TCP listener (`LIBVIRT_TCP_URI` in `deploy/dev/libvirt.sh`:
/// 127.0.0.1:16509, `auth_tcp = "sasl"`, DIGEST-MD5 as Kolla's default):
/// clients need the credentials of [`libvirt_auth_file`].
pub const LIBVIRT_TCP_URI: &str = "qemu+tcp://127.0.0.1/system";

const RABBITMQ_ADDR: &str = "127.0.0.1:5672";
const GLANCE_ADDR: &str = "127.0.0.1:9292";

/// The repository root (the workspace this crate belongs to).
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives inside the repository").to_path_buf()
}

/// `$STACK_DIR` as `deploy/dev/lib.sh` computes it: the environment variable
/// when set, `<repo>/.stack` otherwise.
pub fn stack_dir() -> PathBuf {
    match std::env::var_os("STACK_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_dir().join(".stack"),
    }
}

/// A part of the real stack a test can depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// libvirtd answering on [`LIBVIRT_URI`].
    Libvirt,
    /// The guest fixture built under `$STACK_DIR/guest` (kernel, initramfs,
    /// base data disk); needed by [`crate::Guest`].
    GuestFixture,
    /// RabbitMQ accepting connections on 127.0.0.1:5672.
    RabbitMq,
    /// Glance's API accepting connections on 127.0.0.1:9292.
    Glance,
    /// libvirtd's network listeners: [`LIBVIRT_TCP_URI`] with the SASL
    /// credentials of [`libvirt_auth_file`], and [`libvirt_tls_uri`] with
    /// the stack's client certificate.
    LibvirtListeners,
}

impl Component {
    /// Why this component is not usable, or `Ok` when it is.
    pub fn check(self) -> Result<(), String> {
        match self {
            Component::Libvirt => {
                connect().map(drop).map_err(|e| format!("cannot connect to {LIBVIRT_URI}: {}", e.message()))
            }
            Component::GuestFixture => guest_fixture_check(),
            Component::RabbitMq => tcp_check(RABBITMQ_ADDR),
            Component::Glance => tcp_check(GLANCE_ADDR),
            Component::LibvirtListeners => libvirt_listeners_check(),
        }
    }
}

/// The stack's client credentials for libvirtd's SASL on TCP, in libvirt's
/// auth.conf format (`[credentials-default]` authname `nova` + password,
/// `[auth-libvirt-default]`, as Kolla's `auth.conf.j2` writes it), written
/// by `deploy/dev/libvirt.sh`. libvirt reads it when `LIBVIRT_AUTH_FILE` or
/// the URI's `authfile=` names it.
pub fn libvirt_auth_file() -> PathBuf {
    stack_dir().join("libvirt").join("auth.conf")
}

/// [`LIBVIRT_TCP_URI`] with `?authfile=<auth_file>` (libvirt's per-URI
/// auth.conf; `$LIBVIRT_AUTH_FILE`, when set, takes precedence).
pub fn libvirt_tcp_uri_with_authfile(auth_file: &Path) -> String {
    format!("{LIBVIRT_TCP_URI}?authfile={}", auth_file.display())
}

/// The client side of libvirt's TLS (`cacert.pem`, `clientcert.pem`,
/// `clientkey.pem`, as `deploy/dev/pki.sh` writes them): the `pkipath=` of
/// [`libvirt_tls_uri`].
pub fn libvirt_pki_dir() -> PathBuf {
    stack_dir().join("pki").join("libvirt")
}

/// `qemu+tls://localhost/system?pkipath=<pki>`: libvirtd's TLS listener
/// (127.0.0.1:16514, server certificate for `localhost` from the stack CA).
pub fn libvirt_tls_uri(pki: &Path) -> String {
    format!("qemu+tls://localhost/system?pkipath={}", pki.display())
}

/// The pid of the stack's libvirtd (from its pid file), if it is running.
pub fn libvirtd_pid() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(stack_dir().join("run").join("libvirtd.pid")).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Run `libvirt_up` of `deploy/dev/libvirt.sh` (with `lib.sh` and `pki.sh`,
/// as `stack up` does): starts libvirtd with its listeners if it is not
/// running, and waits until it answers on every URI.
pub fn libvirt_up() -> Result<(), Error> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$0/deploy/dev/lib.sh" && source "$0/deploy/dev/pki.sh" \
               && source "$0/deploy/dev/libvirt.sh" && libvirt_up"#,
        )
        .arg(repo_dir())
        .env("STACK_DIR", stack_dir())
        .output()
        .map_err(|source| Error::Spawn { command: "libvirt_up".into(), source })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: "libvirt_up".into(),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(())
}

/// The fixture files `deploy/dev/guest.sh` builds under `$STACK_DIR/guest`.
fn guest_fixture_check() -> Result<(), String> {
    let dir = stack_dir().join("guest");
    let missing: Vec<String> = ["vmlinuz", "initramfs.img", "base.raw"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("not built, missing {}", missing.join(", ")))
    }
}

/// Both network listeners answer with the stack's credentials (SASL on
/// TCP, the client certificate on TLS).
fn libvirt_listeners_check() -> Result<(), String> {
    let auth_file = libvirt_auth_file();
    if !auth_file.is_file() {
        return Err(format!("no SASL auth.conf at {}", auth_file.display()));
    }
    let tcp = libvirt_tcp_uri_with_authfile(&auth_file);
    let tls = libvirt_tls_uri(&libvirt_pki_dir());
    for uri in [tcp.as_str(), tls.as_str()] {
        virt::error::clear_error_callback();
        // SASL needs an auth callback even when auth.conf holds
        // every credential; this one answers nothing (no prompt).
        let mut auth =
            ConnectAuth::new(vec![ConnectCredentialType::AuthName, ConnectCredentialType::Passphrase], |_| {});
        // Dropping the connection closes it.
        Connect::open_auth(Some(uri), &mut auth, 0)
            .map(drop)
            .map_err(|e| format!("cannot connect to {uri}: {}", e.message()))?;
    }
    Ok(())
}

/// Open [`LIBVIRT_URI`] without libvirt's default error handler, which
/// prints every error to stderr, including the dozens of expected "agent is
/// not connected" while a guest boots. Errors are still returned as values.
pub(crate) fn connect() -> Result<Connect, virt::error::Error> {
    virt::error::clear_error_callback();
    Connect::open(Some(LIBVIRT_URI))
}

fn tcp_check(addr: &str) -> Result<(), String> {
    let sa: SocketAddr = addr.parse().expect("a literal socket address");
    TcpStream::connect_timeout(&sa, Duration::from_secs(2))
        .map(drop)
        .map_err(|e| format!("nothing accepts connections on {addr}: {e}"))
}

/// Panic unless every listed component of the real stack is up.
///
/// Tests call this first. It panics instead of returning so that a missing
/// stack fails the test run with an actionable message rather than letting
/// tests pass without having exercised anything.
#[track_caller]
pub fn require(components: &[Component]) {
    let problems: Vec<String> =
        components.iter().filter_map(|c| c.check().err().map(|why| format!("  - {c:?}: {why}"))).collect();
    if !problems.is_empty() {
        panic!(
            "the real stack is not up: run deploy/dev/stack up (STACK_DIR={})\n{}",
            stack_dir().display(),
            problems.join("\n")
        );
    }
}

/// `qemu-img info --output=json --backing-chain` of an image, as JSON (an
/// array, the image first, then its backing files).
///
/// `-U` (force share) because the image usually belongs to a running guest:
/// QEMU holds a write lock on it and a plain `qemu-img info` is refused.
pub fn qemu_img_info(path: &Path) -> Result<serde_json::Value, Error> {
    let command = format!("qemu-img info {}", path.display());
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json", "--backing-chain"])
        .arg(path)
        .output()
        .map_err(|source| Error::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        let detail = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        return Err(Error::Command { command, detail });
    }
    serde_json::from_slice(&out.stdout).map_err(|source| Error::Unparsable { command, source })
}
