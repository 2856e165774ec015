//! Where the stack lives and whether it is up.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::guest::Error;

/// The libvirt connection the stack's guests live on (`LIBVIRT_URI` in
/// `deploy/dev/libvirt.sh`).
pub const LIBVIRT_URI: &str = "qemu:///system";

const RABBITMQ_ADDR: &str = "127.0.0.1:5672";
const GLANCE_ADDR: &str = "127.0.0.1:9292";

/// The repository root (the workspace this crate belongs to).
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the repository")
        .to_path_buf()
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
}

impl Component {
    /// Why this component is not usable, or `Ok` when it is.
    pub fn check(self) -> Result<(), String> {
        match self {
            Component::Libvirt => crate::guest::connect()
                .map(drop)
                .map_err(|e| format!("cannot connect to {LIBVIRT_URI}: {}", e.message())),
            Component::GuestFixture => {
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
            Component::RabbitMq => tcp_check(RABBITMQ_ADDR),
            Component::Glance => tcp_check(GLANCE_ADDR),
        }
    }
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
    let problems: Vec<String> = components
        .iter()
        .filter_map(|c| c.check().err().map(|why| format!("  - {c:?}: {why}")))
        .collect();
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
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json", "--backing-chain"])
        .arg(path)
        .output()
        .map_err(|e| Error::Command {
            command: format!("qemu-img info {}", path.display()),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("qemu-img info {}", path.display()),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| Error::Command {
        command: format!("qemu-img info {}", path.display()),
        detail: format!("unparsable output: {e}"),
    })
}
