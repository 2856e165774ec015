//! Helpers shared by the real-guest tests: an engine on a private scratch
//! directory, reading files out of a produced image with `debugfs`, the
//! standalone / fsck checks, and booting a fresh domain on an image.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use libvirt_snapshot::{EngineConfig, SnapshotEngine};
use stack_tests::{qemu_img_info, require, Component, Guest, GuestOptions};

/// Fails (never skips) when libvirtd or the fixture is missing.
pub fn require_stack() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    require(&[Component::Libvirt, Component::GuestFixture]);
}

/// A scratch directory qemu (libvirt-qemu) can traverse, removed on drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(prefix: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        Scratch { dir }
    }

    pub fn snapshots(&self) -> PathBuf {
        self.dir.path().join("snapshots")
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    pub fn config(&self) -> EngineConfig {
        EngineConfig {
            connection_uri: stack_tests::LIBVIRT_URI.into(),
            snapshots_directory: self.snapshots(),
            journal_directory: self.journal(),
            mirror_ready_timeout: Duration::from_secs(120),
            job_timeout: Duration::from_secs(300),
            ..EngineConfig::default()
        }
    }

    pub fn engine(&self) -> SnapshotEngine {
        SnapshotEngine::open(self.config()).unwrap_or_else(|e| panic!("engine: {e}"))
    }

    /// Entries left in the snapshots directory (must be none after a snapshot's image is dropped).
    pub fn leftovers(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.snapshots()) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn journal_records(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.journal()) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Nothing left behind: no temp files, no journal records.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.leftovers().is_empty(), "temp files left: {:?}", self.leftovers());
        assert!(self.journal_records().is_empty(), "journal records left: {:?}", self.journal_records());
    }
}

pub fn boot(prefix: &str) -> Guest {
    Guest::boot(prefix).unwrap_or_else(|e| panic!("{e}"))
}

pub fn sh(guest: &Guest, script: &str) -> String {
    guest.sh(script).unwrap_or_else(|e| panic!("{e}"))
}

/// The image has no backing file (Glance refuses qcow2 with one).
pub fn assert_standalone(image: &Path) {
    let info = qemu_img_info(image).unwrap_or_else(|e| panic!("{e}"));
    let chain = info.as_array().expect("qemu-img --backing-chain gives an array");
    assert_eq!(chain.len(), 1, "{} has a backing chain: {info}", image.display());
    assert!(chain[0].get("backing-filename").is_none(), "{} has a backing file", image.display());
}

/// A raw copy of `image` (debugfs and e2fsck read raw ext4 only).
pub fn to_raw(image: &Path, scratch: &Path) -> PathBuf {
    let raw = scratch.join(format!("readback-{}.raw", uuid::Uuid::new_v4().simple()));
    let out = Command::new("qemu-img").args(["convert", "-U", "-O", "raw"]).arg(image).arg(&raw).output().unwrap();
    assert!(out.status.success(), "qemu-img convert: {}", String::from_utf8_lossy(&out.stderr));
    raw
}

/// The content of `path` (inside the ext4 filesystem) in `image`, or None
/// when the file is not there.
pub fn read_back(image: &Path, path: &str, scratch: &Path) -> Option<Vec<u8>> {
    let raw = to_raw(image, scratch);
    debugfs_cat(raw, path)
}

/// Like [`read_back`], after replaying the ext4 journal on the raw copy (as
/// a mount would): synced but not yet checkpointed metadata lives only in
/// the journal, which debugfs does not read.
pub fn read_back_replayed(image: &Path, path: &str, scratch: &Path) -> Option<Vec<u8>> {
    let raw = to_raw(image, scratch);
    let out = Command::new("e2fsck").args(["-y", "-E", "journal_only"]).arg(&raw).output().unwrap();
    assert!(out.status.code().unwrap_or(8) < 4, "journal replay: {}", String::from_utf8_lossy(&out.stderr));
    debugfs_cat(raw, path)
}

fn debugfs_cat(raw: PathBuf, path: &str) -> Option<Vec<u8>> {
    let out = Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(&raw).output().unwrap();
    std::fs::remove_file(&raw).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("not found") {
        return None;
    }
    assert!(out.status.success(), "debugfs: {stderr}");
    Some(out.stdout)
}

/// `e2fsck -n -f` on the image's filesystem: exit 0 = clean.
pub fn fsck(image: &Path, scratch: &Path) -> (bool, String) {
    let raw = to_raw(image, scratch);
    let out = Command::new("e2fsck").args(["-n", "-f"]).arg(&raw).output().unwrap();
    std::fs::remove_file(&raw).unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A new fixture domain whose vda is a standalone qcow2 copy of `image`,
/// booted until its agent answers.
pub fn boot_on_image(prefix: &str, image: &Path) -> Guest {
    let guest = GuestOptions::new(prefix).define().unwrap_or_else(|e| panic!("{e}"));
    let disk = guest.disk_path();
    let out = Command::new("qemu-img").args(["convert", "-U", "-O", "qcow2"]).arg(image).arg(&disk).output().unwrap();
    assert!(out.status.success(), "qemu-img convert: {}", String::from_utf8_lossy(&out.stderr));
    guest.start().unwrap_or_else(|e| panic!("{e}"));
    guest.wait_for_agent(Duration::from_secs(180)).unwrap_or_else(|e| panic!("{e}"));
    guest
}

/// Makes dirty data stay in the guest's page cache (ext4 journal commit and
/// writeback every 10 minutes): only a freeze puts it on the disk.
pub fn hold_dirty_data(guest: &Guest) {
    sh(
        guest,
        "mount -o remount,commit=600 /data && echo 60000 > /proc/sys/vm/dirty_expire_centisecs \
         && echo 60000 > /proc/sys/vm/dirty_writeback_centisecs",
    );
}
