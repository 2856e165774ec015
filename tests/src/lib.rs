//! End-to-end tests against the real stack that `deploy/dev/stack up` starts:
//! RabbitMQ, MariaDB, libvirtd + QEMU with the guest fixture, Glance,
//! nova-conductor.
//!
//! This library holds what the tests share: where the stack lives and how to
//! reach its parts. The tests themselves are in `tests/tests/`.
//!
//! Two rules hold for every test built on it:
//!
//! * **A missing stack is a failure, never a skip.** Call [`require`] first; it
//!   panics with "the real stack is not up: run deploy/dev/stack up" and says
//!   which part is missing. A green run must mean the code was exercised.
//! * **Tests do not share guests.** Each test boots its own [`Guest`] (a fresh
//!   qcow2 overlay on the fixture's base disk, a uniquely named persistent
//!   libvirt domain) and the guest is destroyed and undefined when the value
//!   is dropped, also when an assertion fails. Tests can therefore kill QEMU,
//!   snapshot, freeze or corrupt their guest without affecting each other.
//!
//! ```no_run
//! use stack_tests::{require, Component, Guest};
//!
//! require(&[Component::Libvirt, Component::GuestFixture]);
//! let guest = Guest::boot("example").expect("guest boots");
//! guest.sh("echo hello > /data/hello").unwrap();
//! assert_eq!(guest.read_file("/data/hello").unwrap(), b"hello\n");
//! ```
//!
//! The guest fixture itself (kernel, initramfs, base disk, domain template) is
//! built by `deploy/dev/guest.sh`; see `docs/guest-fixture.md`.

mod error;
mod guest;
mod peers;
mod stack;

pub use error::Error;
pub use guest::{ExecOutput, Guest, GuestOptions};
pub use peers::{nova_peer, stack_sql};
pub use stack::{
    libvirt_auth_file, libvirt_pki_dir, libvirt_tcp_uri_with_authfile, libvirt_tls_uri, libvirt_up, libvirtd_pid,
    qemu_img_info, repo_dir, require, stack_dir, Component, LIBVIRT_TCP_URI, LIBVIRT_URI,
};
