//! Start-up recovery: undo what a crashed snapshot left, from its journal
//! record. Only what this service started is touched — a block job is
//! aborted only if its destination is the file we journaled, a backup only
//! if its target is ours. In order: abort jobs, resume guests we paused,
//! thaw, re-define persistent definitions, remove temp directories.
//!
//! The same undo runs on a snapshot's own error path, after its guards.

use std::path::PathBuf;

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};

use error_chain::{error_chain, Chain};

use crate::disk;
use crate::error::VIR_ERR_NO_DOMAIN;
use crate::ffi;
use crate::journal::{process_start, Journal, JournalRecord, Step};
use crate::output::remove_tree;
use crate::{Hypervisor, SnapshotError};

/// One thing recovery did (or could not do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryAction {
    /// Our backup job was still running: aborted.
    BackupAborted {
        /// The domain UUID.
        domain: String,
    },
    /// Our block copy was still running: aborted without pivot.
    MirrorAborted {
        /// The domain UUID.
        domain: String,
        /// The disk's target name (`vda`).
        disk: String,
    },
    /// The guest was still paused by us: resumed.
    Resumed {
        /// The domain UUID.
        domain: String,
    },
    /// The guest may still have been frozen by us: thawed.
    Thawed {
        /// The domain UUID.
        domain: String,
        /// Filesystems the agent thawed (0: nothing was frozen).
        filesystems: u32,
    },
    /// The domain was gone or transient: its persistent definition restored.
    Redefined {
        /// The domain UUID.
        domain: String,
    },
    /// A snapshot's temp directory removed.
    TempDirRemoved {
        /// The directory.
        path: PathBuf,
    },
    /// The record belongs to a process that is still alive: left alone.
    SkippedLiveOwner {
        /// The record's id.
        record: String,
        /// The live owner.
        pid: u32,
    },
    /// A record that cannot be parsed (removed after logging).
    Unreadable {
        /// The record file.
        path: PathBuf,
        /// Why, with its causes (`error_chain`).
        error: String,
    },
    /// A step could not be undone (its record is kept and retried next time).
    Failed {
        /// The domain UUID.
        domain: String,
        /// What was being undone (`abort job`, `resume`, `thaw`, `define`, ...).
        step: &'static str,
        /// Why, with its causes (`error_chain`).
        error: String,
    },
}

/// What `recover()` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Journal records found.
    pub records: usize,
    /// What was done (or could not be), in order.
    pub actions: Vec<RecoveryAction>,
    /// Records kept because some step could not be undone (retried next time).
    pub kept: Vec<PathBuf>,
}

/// Undoes every stale record in `journal`.
pub fn recover(hv: &Hypervisor, journal: &Journal) -> Result<RecoveryReport, SnapshotError> {
    let mut report = RecoveryReport::default();
    let conn = hv.connection()?;
    for (path, record) in journal.pending()? {
        report.records += 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %Chain(&e), "unreadable journal record removed");
                report.actions.push(RecoveryAction::Unreadable { path: path.clone(), error: error_chain(&e) });
                journal.remove(&path)?;
                continue;
            }
        };
        if owner_alive(&record) {
            report.actions.push(RecoveryAction::SkippedLiveOwner { record: record.id.clone(), pid: record.pid });
            continue;
        }
        tracing::warn!(
            record = record.id,
            domain = record.domain_uuid,
            strategy = record.strategy,
            "recovering an interrupted snapshot"
        );
        let (actions, complete) = undo(&conn, &record);
        report.actions.extend(actions);
        if complete {
            journal.remove(&path)?;
        } else {
            report.kept.push(path);
        }
    }
    Ok(report)
}

fn owner_alive(record: &JournalRecord) -> bool {
    record.process_start.is_some() && process_start(record.pid) == record.process_start
}

/// Undoes `record`'s steps; `complete` is false when some step failed.
pub(crate) fn undo(conn: &Connect, record: &JournalRecord) -> (Vec<RecoveryAction>, bool) {
    let mut undone = Undone { uuid: &record.domain_uuid, actions: Vec::new(), complete: true };
    let domain = match conn.lookup_domain_by_uuid_string(&record.domain_uuid) {
        Ok(d) => Some(d),
        Err(e) if e.code().to_raw() == VIR_ERR_NO_DOMAIN => None,
        Err(e) => {
            undone.record("lookup", Err(SnapshotError::libvirt("lookupByUUIDString", e)));
            return (undone.actions, false);
        }
    };
    if let Some(dom) = &domain {
        undo_on_domain(dom, record, &mut undone);
    }
    redefine(conn, domain.as_ref(), record, &mut undone);
    remove_temp_dirs(record, &mut undone);
    (undone.actions, undone.complete)
}

/// What an undo has done so far, and whether every step succeeded.
struct Undone<'a> {
    uuid: &'a str,
    actions: Vec<RecoveryAction>,
    complete: bool,
}

impl Undone<'_> {
    /// Records one step's outcome: its action when it did something, a
    /// logged failure (the record is then kept) when it could not.
    fn record(&mut self, step: &'static str, result: Result<Option<RecoveryAction>, SnapshotError>) {
        match result {
            Ok(Some(action)) => self.actions.push(action),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(domain = self.uuid, step, error = %Chain(&e), "recovery step failed");
                self.actions.push(RecoveryAction::Failed { domain: self.uuid.into(), step, error: error_chain(&e) });
                self.complete = false;
            }
        }
    }
}

/// On the live domain, in order: abort our jobs, resume the guest if we
/// paused it, thaw it if we froze it.
fn undo_on_domain(dom: &Domain, record: &JournalRecord, undone: &mut Undone<'_>) {
    let domain = || record.domain_uuid.clone();
    for step in &record.steps {
        let aborted = match step {
            Step::MirrorJob { disk, dest } => abort_mirror(dom, disk, dest)
                .map(|done| done.then(|| RecoveryAction::MirrorAborted { domain: domain(), disk: disk.clone() })),
            Step::BackupJob { target } => {
                abort_backup(dom, target).map(|done| done.then(|| RecoveryAction::BackupAborted { domain: domain() }))
            }
            _ => continue,
        };
        undone.record("abort job", aborted);
    }
    if record.steps.contains(&Step::Paused) {
        let resumed = resume_if_paused(dom).map(|done| done.then(|| RecoveryAction::Resumed { domain: domain() }));
        undone.record("resume", resumed);
    }
    if record.steps.contains(&Step::Quiesce) {
        let thawed =
            thaw_if_running(dom).map(|n| n.map(|filesystems| RecoveryAction::Thawed { domain: domain(), filesystems }));
        undone.record("thaw", thawed);
    }
}

/// Defines the domain again from its journaled persistent definition when
/// it is gone or was left transient.
fn redefine(conn: &Connect, domain: Option<&Domain>, record: &JournalRecord, undone: &mut Undone<'_>) {
    for step in &record.steps {
        if let Step::PersistentDefinition { xml } = step {
            let transient = domain.map(|d| !d.is_persistent().unwrap_or(true)).unwrap_or(true);
            if transient {
                let defined = conn
                    .define_domain_xml(xml)
                    .map(|_| Some(RecoveryAction::Redefined { domain: record.domain_uuid.clone() }))
                    .map_err(|e| SnapshotError::libvirt("defineXML", e));
                undone.record("define", defined);
            }
        }
    }
}

/// Removes the snapshot's temp directories that are still there.
fn remove_temp_dirs(record: &JournalRecord, undone: &mut Undone<'_>) {
    for step in &record.steps {
        if let Step::TempDir { path } = step {
            if path.exists() {
                let removed = remove_tree(path).map(|()| Some(RecoveryAction::TempDirRemoved { path: path.clone() }));
                undone.record("remove temp dir", removed);
            }
        }
    }
}

/// Aborts the disk's copy job if its destination is ours.
fn abort_mirror(dom: &Domain, disk: &str, dest: &std::path::Path) -> Result<bool, SnapshotError> {
    let xml = dom.xml_desc(0).map_err(|e| SnapshotError::libvirt("XMLDesc", e))?;
    match disk::mirror_of(&xml, disk) {
        Some((file, _ready)) if file == dest => {
            ffi::block_job_abort(dom, disk, false, false).map_err(|e| SnapshotError::libvirt("blockJobAbort", e))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Aborts the domain's backup job if it writes our target.
fn abort_backup(dom: &Domain, target: &std::path::Path) -> Result<bool, SnapshotError> {
    if !dom.is_active().unwrap_or(false) || !backup_listed(dom, target) {
        return Ok(false);
    }
    if let Err(e) = ffi::abort_job(dom) {
        // The job can end between the check and the abort — e.g. the
        // strategy's own guard aborted it a moment before this undo ran, and
        // libvirt still listed it while tearing it down ("no job is active",
        // seen on the stack). Gone is what we want; give the teardown a
        // moment before calling it a failure.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while backup_listed(dom, target) {
            if std::time::Instant::now() >= until {
                return Err(SnapshotError::libvirt("abortJob", e));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        return Ok(false);
    }
    Ok(true)
}

/// Whether libvirt still lists a backup job writing `target`.
fn backup_listed(dom: &Domain, target: &std::path::Path) -> bool {
    match ffi::backup_xml_desc(dom) {
        Ok(xml) => disk::backup_targets(&xml).iter().any(|t| t == target),
        Err(_) => false,
    }
}

fn resume_if_paused(dom: &Domain) -> Result<bool, SnapshotError> {
    let (state, _) = dom.state().map_err(|e| SnapshotError::libvirt("getState", e))?;
    if state.known() != Some(DomainState::Paused) {
        return Ok(false);
    }
    dom.resume().map_err(|e| SnapshotError::libvirt("resume", e))?;
    Ok(true)
}

/// Thaws a running guest (a no-op when nothing is frozen); a guest that is
/// not running has nothing frozen.
fn thaw_if_running(dom: &Domain) -> Result<Option<u32>, SnapshotError> {
    let (state, _) = dom.state().map_err(|e| SnapshotError::libvirt("getState", e))?;
    if state.known() != Some(DomainState::Running) {
        return Ok(None);
    }
    ffi::fs_thaw(dom).map(Some).map_err(|e| SnapshotError::libvirt("fsThaw", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recover_removes_temp_dirs_of_dead_owners_and_skips_live_ones() {
        let root = tempfile::tempdir().unwrap();
        let journal = Journal::open(root.path().join("journal")).unwrap();
        let tmp = root.path().join("snapshot-x");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("leftover"), b"x").unwrap();
        // A record "from a dead process": unknown pid, bogus start time.
        let dead = JournalRecord {
            id: "dead".into(),
            pid: u32::MAX - 1,
            process_start: Some(1),
            domain_uuid: "00000000-0000-0000-0000-0000000000aa".into(),
            strategy: "backup".into(),
            steps: vec![Step::TempDir { path: tmp.clone() }, Step::Quiesce],
        };
        std::fs::write(journal.dir().join("dead.json"), serde_json::to_vec(&dead).unwrap()).unwrap();
        // A record of this (live) process.
        let live = journal.begin("00000000-0000-0000-0000-0000000000bb", "mirror").unwrap();
        let hv = Hypervisor::open("test:///default").unwrap();
        let report = recover(&hv, &journal).unwrap();
        assert_eq!(report.records, 2);
        assert!(report.actions.contains(&RecoveryAction::TempDirRemoved { path: tmp.clone() }), "{report:?}");
        assert!(report.actions.iter().any(|a| matches!(a, RecoveryAction::SkippedLiveOwner { .. })));
        assert!(!tmp.exists());
        let left = journal.pending().unwrap();
        assert_eq!(left.len(), 1, "only the live record stays");
        live.finish().unwrap();
    }
}
