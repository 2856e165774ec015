//! End-to-end tests against the real stack that `deploy/dev/stack up` starts:
//! RabbitMQ, libvirtd + QEMU with the guest fixture, Glance, nova-conductor.
//!
//! This library holds what the tests share: where the stack lives and how to
//! reach its parts. The tests themselves are in `tests/tests/`.
