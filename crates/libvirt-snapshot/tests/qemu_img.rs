//! `qemu-img` through the engine's public API: the backing chain as the
//! engine reads it, and the file sink's conversion (flattened, compressed,
//! with progress) and its typed failure. Needs the `qemu-img` tool, which is
//! not a build dependency: a `real-stack` target (no service is used).

use std::path::Path;
use std::process::Command;

use libvirt_snapshot::{
    BackingChain, CancelToken, DiskFormat, DiskView, FileSink, ImageFormat, ImageSink, Phase, QemuImgFailure,
    SnapshotError,
};

/// Runs `qemu-img args`; fails (never skips) when the tool is missing.
fn qemu_img(args: &[&str], paths: &[&Path]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .args(paths)
        .output()
        .unwrap_or_else(|e| panic!("qemu-img is needed by this test and cannot be run: {e}"));
    assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn info(path: &Path) -> serde_json::Value {
    serde_json::from_str(&qemu_img(&["info", "-U", "--output=json"], &[path])).unwrap()
}

#[test]
fn the_backing_chain_is_read_top_first() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2"], &[&base, Path::new("4M")]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"], &[&base, &top, Path::new("4M")]);
    let chain = BackingChain::read(&top, &DiskFormat::Qcow2).unwrap();
    assert_eq!(chain.layers.len(), 2);
    assert_eq!(chain.top().path, top);
    assert_eq!(chain.backing().unwrap().path, base);
    assert_eq!(chain.backing().unwrap().format, DiskFormat::Qcow2);
    assert_eq!(chain.virtual_size(), 4 << 20);
}

#[test]
fn the_file_sink_flattens_and_compresses_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2"], &[&base, Path::new("4M")]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"], &[&base, &top, Path::new("4M")]);
    let view =
        DiskView::Image { path: top.clone(), format: DiskFormat::Qcow2, standalone: false, virtual_size: 4 << 20 };
    let flat = dir.path().join("flat.qcow2");
    let mut sink = FileSink { path: flat.clone(), format: ImageFormat::Qcow2, compress: true };
    let reports = std::cell::RefCell::new(Vec::new());
    sink.write(&view, &|p| reports.borrow_mut().push(p), &CancelToken::new()).unwrap();
    let reports = reports.into_inner();
    assert!(reports.iter().all(|p| p.phase == Phase::Write && p.done <= p.total), "{reports:?}");
    assert_eq!(reports.last().map(|p| p.done), Some(4 << 20));
    assert!(info(&flat).get("backing-filename").is_none(), "the output has a backing file");
    assert!(top.exists(), "a view with a chain is converted, never moved");

    let raw = dir.path().join("out.raw");
    FileSink { path: raw.clone(), format: ImageFormat::Raw, compress: false }
        .write(&view, &|_| {}, &CancelToken::new())
        .unwrap();
    assert_eq!(info(&raw)["format"], "raw");
}

#[test]
fn a_failed_conversion_is_a_typed_qemu_img_error_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let view = DiskView::Image {
        path: dir.path().join("missing"),
        format: DiskFormat::Raw,
        standalone: false,
        virtual_size: 1,
    };
    let mut sink = FileSink { path: dir.path().join("out"), format: ImageFormat::Raw, compress: false };
    let err = sink.write(&view, &|_| {}, &CancelToken::new()).unwrap_err();
    match &err {
        SnapshotError::QemuImg { command: "convert", source: QemuImgFailure::Exited { status, stderr } } => {
            assert!(!status.success());
            assert!(stderr.contains("missing"), "{stderr}");
        }
        other => panic!("expected a qemu-img exit, got {other:?}"),
    }
    let chain = error_chain::error_chain(&err);
    assert!(chain.starts_with("qemu-img convert failed: exit status: 1: "), "{chain}");
}
