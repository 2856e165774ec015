//! Smoke test of the guest fixture itself: if these fail, every end-to-end
//! snapshot test would fail for reasons unrelated to the code under test.
//!
//! Each test boots its own guest (about 10 s under TCG) and the `Guest` value
//! removes it on drop, also when an assertion fails.

use stack_tests::{qemu_img_info, require, Component, Guest, GuestOptions};

fn boot(prefix: &str) -> Guest {
    require(&[Component::Libvirt, Component::GuestFixture]);
    Guest::boot(prefix).unwrap_or_else(|e| panic!("{e}"))
}

/// The property the quiesce logic depends on: data a guest wrote but never
/// synced lives only in the guest's page cache, yet the agent sees it.
#[test]
fn unsynced_write_is_visible_through_the_agent() {
    let guest = boot("smoke-io");
    let token = uuid::Uuid::new_v4();
    let path = format!("/data/smoke-{token}.txt");
    let content = format!("written by {} ({token}), never synced", guest.name());

    // No sync, no fsync: the point is that nothing forces it to the disk.
    let out = guest.exec(&format!("printf '%s' '{content}' > {path}")).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.success(), "write in the guest failed: {out:?}");

    let read = guest.read_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&read), content);

    // guest-file-write and a shell in the guest agree too.
    guest.write_file("/data/via-agent.txt", b"agent wrote this\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guest.sh("cat /data/via-agent.txt").unwrap_or_else(|e| panic!("{e}")), "agent wrote this\n");

    let marker = String::from_utf8(guest.read_file("/data/boot-marker").unwrap_or_else(|e| panic!("{e}")))
        .expect("boot marker is text");
    assert!(marker.lines().any(|l| l == "boot=1"), "a fresh guest's first boot, got:\n{marker}");
    assert!(marker.lines().any(|l| l.starts_with("date=")), "boot marker without a date:\n{marker}");

    // Read through the overlay into the base image's known content.
    let hello = guest.read_file("/data/fixture/hello.txt").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hello, b"hello from the guest fixture base image\n");
}

#[test]
fn disk_is_a_qcow2_overlay_and_fsfreeze_round_trips() {
    let guest = boot("smoke-freeze");

    let info = qemu_img_info(&guest.disk_path()).unwrap_or_else(|e| panic!("{e}"));
    let top = &info[0];
    assert_eq!(top["format"], "qcow2", "{info:#}");
    assert_eq!(
        top["full-backing-filename"].as_str(),
        Some(Guest::base_disk_path().to_str().unwrap()),
        "the overlay must back onto the shared base disk: {info:#}"
    );
    assert_eq!(top["backing-filename-format"], "raw", "{info:#}");

    assert_eq!(guest.fsfreeze_status().unwrap_or_else(|e| panic!("{e}")), "thawed");
    let frozen = guest.fsfreeze().unwrap_or_else(|e| panic!("{e}"));
    // Thaw before asserting anything else: a frozen /data would make every
    // later agent command that touches it hang until the timeout.
    let status = guest.fsfreeze_status();
    let thawed = guest.fsthaw().unwrap_or_else(|e| panic!("{e}"));
    assert!(frozen >= 1, "guest-fsfreeze-freeze froze nothing (is /data mounted?)");
    assert_eq!(status.unwrap_or_else(|e| panic!("{e}")), "frozen");
    assert_eq!(thawed, frozen);
    assert_eq!(guest.fsfreeze_status().unwrap_or_else(|e| panic!("{e}")), "thawed");
    // Writable again after the thaw.
    guest.sh("echo after-thaw > /data/after-thaw && sync").unwrap_or_else(|e| panic!("{e}"));
}

/// Later tests kill QEMU and boot the same guest again: the overlay must keep
/// synced data, and the marker tells which boot wrote the disk.
#[test]
fn hard_power_off_and_reboot_keep_synced_data() {
    let guest = boot("smoke-reboot");
    guest.sh("echo survives > /data/synced && sync").unwrap_or_else(|e| panic!("{e}"));

    guest.destroy().unwrap_or_else(|e| panic!("{e}"));
    guest.start().unwrap_or_else(|e| panic!("{e}"));
    guest.wait_for_agent(std::time::Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(guest.read_file("/data/synced").unwrap_or_else(|e| panic!("{e}")), b"survives\n");
    let marker =
        String::from_utf8_lossy(&guest.read_file("/data/boot-marker").unwrap_or_else(|e| panic!("{e}"))).into_owned();
    assert!(marker.lines().any(|l| l == "boot=2"), "second boot expected, got:\n{marker}");
}

/// nova without `hw_qemu_guest_agent`: quiesce must fail with a clear error,
/// not hang. No boot needed, libvirt refuses before talking to the guest.
#[test]
fn guest_without_agent_channel_refuses_agent_commands() {
    require(&[Component::Libvirt, Component::GuestFixture]);
    let guest =
        GuestOptions { agent: false, ..GuestOptions::new("smoke-noagent") }.define().unwrap_or_else(|e| panic!("{e}"));
    guest.start().unwrap_or_else(|e| panic!("{e}"));

    let err = guest.agent_command("guest-ping", None).expect_err("no agent channel, no answer");
    assert!(err.to_string().contains("not configured"), "unexpected error: {err}");
    assert!(guest.wait_for_agent(std::time::Duration::from_secs(1)).is_err());
}
