//! Output: "produce a view" and "write it somewhere" kept apart.
//!
//! A strategy produces a [`DiskView`] — a point-in-time view of the root disk
//! that stays valid while the strategy holds it — and hands it to an
//! [`ImageSink`], which writes it somewhere. [`FileSink`] writes a standalone
//! image file (`qemu-img convert`, or a rename when the view already is one).
//! A streaming sink (pull-mode backup over NBD → streamed qcow2 into Glance)
//! fits beside it: a new `DiskView::Nbd` variant and a sink that reads it.
//!
//! Also here: the private work directory under `snapshots_directory` (mode
//! 0701: qemu must traverse it) and the free-space check.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use error_chain::Chain;

use crate::error::SnapshotError;
use crate::format::{DiskFormat, ImageFormat};
use crate::qemu_img;

/// A point-in-time view of the root disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskView {
    /// An image file that does not change while the view is held. It may
    /// have a backing chain (`standalone == false`); sinks read through it.
    Image {
        /// The image file.
        path: PathBuf,
        /// Its format.
        format: DiskFormat,
        /// It has no backing file (it can be adopted as the output).
        standalone: bool,
        /// Bytes the guest sees.
        virtual_size: u64,
    },
}

/// A caller-side cancellation flag, polled by every wait and copy loop.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop (seen at their next poll, within a
    /// fraction of a second).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub(crate) fn check(&self) -> Result<(), SnapshotError> {
        if self.is_cancelled() {
            Err(SnapshotError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Snapshot phases reported with progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// libvirt copies the disk (backup job, mirror job).
    Copy,
    /// The view is written into the output (`qemu-img convert`).
    Write,
}

/// Bytes done out of total in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The phase reporting.
    pub phase: Phase,
    /// Bytes done so far.
    pub done: u64,
    /// Bytes the phase handles (may grow during a copy while the guest writes).
    pub total: u64,
}

/// Where progress goes (the caller's callback; cheap and non-blocking).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Writes a view somewhere.
pub trait ImageSink {
    /// What the sink produced (a file path for [`FileSink`]).
    type Output;

    /// Writes `view` (valid for the duration of the call), reporting
    /// progress and polling `cancel`.
    fn write(
        &mut self,
        view: &DiskView,
        progress: &dyn Fn(Progress),
        cancel: &CancelToken,
    ) -> Result<Self::Output, SnapshotError>;
}

/// Writes a standalone image file (never with a backing file).
pub struct FileSink {
    /// The image file to write.
    pub path: PathBuf,
    /// Its format (`snapshot_image_format`, or the source's).
    pub format: ImageFormat,
    /// `[libvirt] snapshot_compression` (qcow2 only).
    pub compress: bool,
}

impl FileSink {
    /// Whether `view` can become the output by a rename (no copy at all).
    fn can_adopt(&self, view: &DiskView) -> bool {
        let DiskView::Image { path, format, standalone, .. } = view;
        *standalone
            && *format == DiskFormat::from(self.format)
            && !(self.compress && self.format == ImageFormat::Qcow2)
            && path.parent() == self.path.parent()
    }
}

impl ImageSink for FileSink {
    type Output = PathBuf;

    fn write(
        &mut self,
        view: &DiskView,
        progress: &dyn Fn(Progress),
        cancel: &CancelToken,
    ) -> Result<PathBuf, SnapshotError> {
        cancel.check()?;
        let DiskView::Image { path, format, virtual_size, .. } = view;
        if self.can_adopt(view) {
            fs::rename(path, &self.path).map_err(|e| SnapshotError::io(format!("rename {}", path.display()), e))?;
        } else {
            let total = *virtual_size;
            qemu_img::convert(
                &qemu_img::Convert {
                    source: path,
                    source_format: format,
                    dest: &self.path,
                    dest_format: self.format,
                    compress: self.compress,
                },
                |f| progress(Progress { phase: Phase::Write, done: (f * total as f64) as u64, total }),
                || cancel.is_cancelled(),
            )?;
        }
        progress(Progress { phase: Phase::Write, done: *virtual_size, total: *virtual_size });
        Ok(self.path.clone())
    }
}

/// The private work directory of one snapshot, removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// The path a new work directory will get (journaled before creation).
    pub(crate) fn plan(snapshots_directory: &Path) -> PathBuf {
        snapshots_directory.join(format!("snapshot-{}", uuid::Uuid::new_v4().simple()))
    }

    /// Creates it with mode 0701 (nova: "libvirt needs o+x"); the parent
    /// is created if missing.
    pub(crate) fn create(path: PathBuf) -> Result<Self, SnapshotError> {
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)
                .map_err(|e| SnapshotError::io(format!("create {}", parent.display()), e))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| SnapshotError::io(format!("create {}", path.display()), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o701))
            .map_err(|e| SnapshotError::io(format!("chmod {}", path.display()), e))?;
        Ok(WorkDir { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            // A failure is only logged (nova does the same); the journal
            // record still lists the directory, so recover() retries.
            if let Err(e) = remove_tree(&self.path) {
                tracing::error!(error = %Chain(&e), "cannot remove snapshot temp dir");
            }
        }
    }
}

/// Removes a directory tree; one that is already gone is fine.
pub(crate) fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io(format!("remove {}", path.display()), e)),
    }
}

/// Free bytes for an unprivileged writer in the filesystem holding `dir`
/// (or its nearest existing ancestor).
pub fn available_space(dir: &Path) -> Result<u64, SnapshotError> {
    let mut probe = dir;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    let st =
        rustix::fs::statvfs(probe).map_err(|e| SnapshotError::io(format!("statvfs {}", probe.display()), e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Fails with [`SnapshotError::InsufficientSpace`] when `needed` bytes do
/// not fit under `dir`.
pub fn ensure_space(dir: &Path, needed: u64) -> Result<(), SnapshotError> {
    let available = available_space(dir)?;
    if available < needed {
        return Err(SnapshotError::InsufficientSpace { directory: dir.to_owned(), needed, available });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_is_0701_and_removed_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let path = WorkDir::plan(&root.path().join("snapshots"));
        let wd = WorkDir::create(path.clone()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o701);
        fs::write(path.join("f"), b"x").unwrap();
        drop(wd);
        assert!(!path.exists());
        let mut kept = WorkDir::create(WorkDir::plan(root.path())).unwrap();
        kept.keep();
        assert!(kept.path().exists());
    }

    #[test]
    fn space_check_reports_numbers() {
        let root = tempfile::tempdir().unwrap();
        assert!(available_space(&root.path().join("not/yet")).unwrap() > 0);
        ensure_space(root.path(), 1).unwrap();
        let e = ensure_space(root.path(), u64::MAX).unwrap_err();
        assert!(matches!(e, SnapshotError::InsufficientSpace { needed: u64::MAX, .. }), "{e}");
    }

    #[test]
    fn file_sink_adopts_a_standalone_view_of_its_format_beside_it_by_rename() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("view.qcow2");
        fs::write(&src, b"image bytes").unwrap();
        let view = DiskView::Image { path: src.clone(), format: DiskFormat::Qcow2, standalone: true, virtual_size: 11 };
        let out = root.path().join("out");
        let mut same = FileSink { path: out.clone(), format: ImageFormat::Qcow2, compress: false };
        assert!(same.can_adopt(&view));
        let last = std::cell::Cell::new(None);
        assert_eq!(same.write(&view, &|p| last.set(Some(p)), &CancelToken::new()).unwrap(), out);
        assert!(out.exists() && !src.exists(), "adopted by rename, no qemu-img");
        assert_eq!(last.get(), Some(Progress { phase: Phase::Write, done: 11, total: 11 }));

        // Anything else is converted (qemu-img: tests/qemu_img.rs).
        let other_format = FileSink { path: out.clone(), format: ImageFormat::Raw, compress: false };
        let compressed = FileSink { path: out.clone(), format: ImageFormat::Qcow2, compress: true };
        let elsewhere = FileSink { path: root.path().join("sub/out"), format: ImageFormat::Qcow2, compress: false };
        let chained = DiskView::Image { path: src, format: DiskFormat::Qcow2, standalone: false, virtual_size: 11 };
        assert!(!other_format.can_adopt(&view) && !compressed.can_adopt(&view) && !elsewhere.can_adopt(&view));
        assert!(!same.can_adopt(&chained));
    }

    #[test]
    fn a_cancelled_sink_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let view = DiskView::Image {
            path: root.path().join("view"),
            format: DiskFormat::Raw,
            standalone: true,
            virtual_size: 1,
        };
        let mut sink = FileSink { path: root.path().join("out"), format: ImageFormat::Qcow2, compress: false };
        let cancelled = CancelToken::new();
        cancelled.cancel();
        assert!(matches!(sink.write(&view, &|_| {}, &cancelled), Err(SnapshotError::Cancelled)));
        assert!(!root.path().join("out").exists());
    }
}
