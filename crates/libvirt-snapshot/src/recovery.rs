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
    BackupAborted {
        domain: String,
    },
    MirrorAborted {
        domain: String,
        disk: String,
    },
    Resumed {
        domain: String,
    },
    Thawed {
        domain: String,
        filesystems: u32,
    },
    Redefined {
        domain: String,
    },
    TempDirRemoved {
        path: PathBuf,
    },
    /// The record belongs to a process that is still alive: left alone.
    SkippedLiveOwner {
        record: String,
        pid: u32,
    },
    /// A record that cannot be parsed (removed after logging).
    Unreadable {
        path: PathBuf,
        error: String,
    },
    Failed {
        domain: String,
        step: &'static str,
        error: String,
    },
}

/// What `recover()` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub records: usize,
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
    let uuid = record.domain_uuid.as_str();
    let mut actions = Vec::new();
    let mut complete = true;
    let domain = match conn.lookup_domain_by_uuid_string(uuid) {
        Ok(d) => Some(d),
        Err(e) if e.code().to_raw() == VIR_ERR_NO_DOMAIN => None,
        Err(e) => {
            let error = error_chain(&SnapshotError::libvirt("lookupByUUIDString", e));
            actions.push(RecoveryAction::Failed { domain: uuid.into(), step: "lookup", error });
            return (actions, false);
        }
    };
    let mut fail = |actions: &mut Vec<RecoveryAction>, step, e: SnapshotError| {
        tracing::error!(domain = uuid, step, error = %Chain(&e), "recovery step failed");
        actions.push(RecoveryAction::Failed { domain: uuid.into(), step, error: error_chain(&e) });
        complete = false;
    };
    if let Some(dom) = &domain {
        for step in &record.steps {
            let result = match step {
                Step::MirrorJob { disk, dest } => abort_mirror(dom, disk, dest).map(|done| {
                    done.then(|| RecoveryAction::MirrorAborted { domain: uuid.into(), disk: disk.clone() })
                }),
                Step::BackupJob { target } => abort_backup(dom, target)
                    .map(|done| done.then(|| RecoveryAction::BackupAborted { domain: uuid.into() })),
                _ => Ok(None),
            };
            match result {
                Ok(Some(a)) => actions.push(a),
                Ok(None) => {}
                Err(e) => fail(&mut actions, "abort job", e),
            }
        }
        if record.steps.contains(&Step::Paused) {
            match resume_if_paused(dom) {
                Ok(true) => actions.push(RecoveryAction::Resumed { domain: uuid.into() }),
                Ok(false) => {}
                Err(e) => fail(&mut actions, "resume", e),
            }
        }
        if record.steps.contains(&Step::Quiesce) {
            match thaw_if_running(dom) {
                Ok(Some(n)) => actions.push(RecoveryAction::Thawed { domain: uuid.into(), filesystems: n }),
                Ok(None) => {}
                Err(e) => fail(&mut actions, "thaw", e),
            }
        }
    }
    for step in &record.steps {
        if let Step::PersistentDefinition { xml } = step {
            let transient = domain.as_ref().map(|d| !d.is_persistent().unwrap_or(true)).unwrap_or(true);
            if transient {
                match conn.define_domain_xml(xml) {
                    Ok(_) => actions.push(RecoveryAction::Redefined { domain: uuid.into() }),
                    Err(e) => fail(&mut actions, "define", SnapshotError::libvirt("defineXML", e)),
                }
            }
        }
    }
    for step in &record.steps {
        if let Step::TempDir { path } = step {
            if path.exists() {
                match remove_tree(path) {
                    Ok(()) => actions.push(RecoveryAction::TempDirRemoved { path: path.clone() }),
                    Err(e) => fail(&mut actions, "remove temp dir", e),
                }
            }
        }
    }
    (actions, complete)
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
