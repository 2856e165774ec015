//! The engine's entry points: configuration, a snapshot request and its
//! outcome, strategy selection for a domain, and the orchestration around a
//! strategy (discovery, free space, journal, work directory, error-path
//! undo). Blocking work runs on `spawn_blocking` for async callers.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use error_chain::Chain;
use virt::domain::Domain;

use crate::config::EngineConfig;
use crate::disk::{BackingChain, RootDisk};
use crate::error::SnapshotError;
use crate::format::ImageFormat;
use crate::hypervisor::{read_domain_state, DomainState, HostCapabilities, HostVersions, Hypervisor};
use crate::journal::{Journal, JournalEntry, Step};
use crate::output::{ensure_space, CancelToken, FileSink, ImageSink, Progress, ProgressFn, WorkDir};
use crate::quiesce::{self, QuiescePolicy, QuiesceWindow};
use crate::recovery::{self, RecoveryReport};
use crate::strategy::{self, select_strategy, Ctx, SelectionInput, SnapshotStrategy};

/// One snapshot to take.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The instance UUID (= the libvirt domain UUID).
    pub instance_uuid: String,
    /// File name of the output inside its private directory (nova: a dashless UUID).
    pub name: String,
    /// From the image metadata (`hw_qemu_guest_agent`, `os_require_quiesce`).
    pub quiesce: QuiescePolicy,
    /// Overrides the configured preference for this snapshot only.
    pub strategy: Option<SnapshotStrategy>,
}

/// A standalone image, in its private directory; the directory (and the
/// journal record that would let `recover()` remove it) goes on drop — so
/// upload it before dropping this.
#[derive(Debug)]
pub struct SnapshotImage {
    path: PathBuf,
    format: ImageFormat,
    virtual_size: u64,
    workdir: Option<WorkDir>,
    journal: Option<JournalEntry>,
}

impl SnapshotImage {
    /// The image file (what an upload reads).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Its format (Glance's `disk_format`).
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// Bytes the guest saw: the root disk's virtual size.
    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    /// Bytes of the file (what an upload sends).
    pub fn size(&self) -> Result<u64, SnapshotError> {
        std::fs::metadata(&self.path).map(|m| m.len()).map_err(|e| SnapshotError::io("stat snapshot image", e))
    }
}

impl Drop for SnapshotImage {
    fn drop(&mut self) {
        drop(self.workdir.take());
        if let Some(entry) = self.journal.take() {
            if let Err(e) = entry.finish() {
                tracing::error!(error = %Chain(&e), "cannot remove the journal record");
            }
        }
    }
}

/// How a snapshot was taken (without its output).
#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    /// The strategy that took it.
    pub strategy: SnapshotStrategy,
    /// The format the sink was asked to write.
    pub format: ImageFormat,
    /// Bytes the guest saw: the root disk's virtual size.
    pub virtual_size: u64,
    /// The freeze window, when the guest was quiesced.
    pub quiesce: Option<QuiesceWindow>,
    /// The root disk it copied.
    pub disk: RootDisk,
    /// The domain's state when the snapshot started (it decided live vs. cold).
    pub domain_state: DomainState,
    /// From the request to the written image.
    pub elapsed: Duration,
}

/// A sink's output with what still has to be released.
struct Taken<O> {
    output: O,
    workdir: WorkDir,
    entry: JournalEntry,
    summary: SnapshotSummary,
}

/// What a snapshot produced and how.
#[derive(Debug)]
pub struct SnapshotOutcome {
    /// The standalone image (removed, with its directory, when dropped).
    pub image: SnapshotImage,
    /// The strategy that took it.
    pub strategy: SnapshotStrategy,
    /// The freeze window, when the guest was quiesced.
    pub quiesce: Option<QuiesceWindow>,
    /// The root disk it copied.
    pub disk: RootDisk,
    /// The domain's state when the snapshot started (it decided live vs. cold).
    pub domain_state: DomainState,
    /// From the request to the written image.
    pub elapsed: Duration,
}

/// The snapshot engine: one libvirt connection, a config, a journal.
pub struct SnapshotEngine {
    hv: Hypervisor,
    cfg: EngineConfig,
    journal: Journal,
}

/// A snapshot about to be taken: the domain as found, how, and into what.
struct Plan {
    found: Discovery,
    strategy: SnapshotStrategy,
    out_format: ImageFormat,
}

/// What the engine found out about a domain before choosing a strategy.
struct Discovery {
    domain: Domain,
    disk: RootDisk,
    chain: BackingChain,
    domain_state: DomainState,
    caps: HostCapabilities,
    agent_channel: bool,
}

impl SnapshotEngine {
    /// Connects to libvirt and opens the journal (blocking).
    pub fn open(cfg: EngineConfig) -> Result<Self, SnapshotError> {
        let hv = Hypervisor::open(&cfg.connection_uri)?;
        let journal = Journal::open(&cfg.journal_directory)?;
        Ok(SnapshotEngine { hv, cfg, journal })
    }

    /// [`SnapshotEngine::open`] off the async runtime.
    pub async fn connect(cfg: EngineConfig) -> Result<Arc<Self>, SnapshotError> {
        blocking("connect", move || Self::open(cfg).map(Arc::new)).await
    }

    /// The libvirt connection (blocking calls: versions, jobs, states).
    pub fn hypervisor(&self) -> &Hypervisor {
        &self.hv
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The crash journal of snapshots in flight.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    fn discover(&self, uuid: &str) -> Result<Discovery, SnapshotError> {
        let domain = self.hv.domain(uuid)?;
        let xml = domain.xml_desc(0).map_err(|e| SnapshotError::for_domain("XMLDesc", uuid, e))?;
        let disk = RootDisk::from_domain_xml(&xml)?;
        let path = disk.ensure_local()?.to_owned();
        let domain_state = read_domain_state(&domain, uuid)?;
        let caps = self.hv.capabilities(&virt_type(&xml))?;
        let chain = BackingChain::read(&path, &disk.format)?;
        // nova trusts hw_qemu_guest_agent; the XML tells whether a freeze can work.
        let agent_channel = crate::disk::has_agent_channel(&xml);
        Ok(Discovery { domain, disk, chain, domain_state, caps, agent_channel })
    }

    /// The strategy a snapshot of this instance would use now (blocking).
    pub fn strategy_for(&self, uuid: &str) -> Result<SnapshotStrategy, SnapshotError> {
        let d = self.discover(uuid)?;
        self.choose(&d, None)
    }

    fn choose(&self, d: &Discovery, forced: Option<SnapshotStrategy>) -> Result<SnapshotStrategy, SnapshotError> {
        let input = SelectionInput {
            disable_libvirt_livesnapshot: self.cfg.disable_libvirt_livesnapshot,
            preferred: self.cfg.live_strategy,
            domain_state: d.domain_state,
            caps: d.caps,
            disk: &d.disk,
        };
        let chosen = select_strategy(&input)?;
        match forced {
            None => Ok(chosen),
            Some(SnapshotStrategy::Cold) => Ok(SnapshotStrategy::Cold),
            Some(live) if chosen == SnapshotStrategy::Cold => Err(SnapshotError::StrategyUnavailable {
                strategy: live.as_str(),
                reason: "live snapshots are not possible for this domain now".into(),
            }),
            Some(SnapshotStrategy::Backup) if !d.caps.backup => Err(SnapshotError::StrategyUnavailable {
                strategy: "backup",
                reason: "libvirt/QEMU on this host lack push-mode backup".into(),
            }),
            Some(SnapshotStrategy::Mirror) if !d.caps.block_copy_transient => Err(SnapshotError::StrategyUnavailable {
                strategy: "mirror",
                reason: "libvirt on this host lacks transient block copy jobs".into(),
            }),
            Some(other) => Ok(other),
        }
    }

    /// Bytes the snapshot needs under `snapshots_directory` at its peak.
    fn space_needed(&self, strategy: SnapshotStrategy, chain: &BackingChain, out: ImageFormat) -> u64 {
        let data = chain.allocation();
        let converts = self.cfg.snapshot_compression || !matches!(out, ImageFormat::Raw | ImageFormat::Qcow2);
        let peak = match strategy {
            // The backup target, plus the converted output when not adopted.
            SnapshotStrategy::Backup => data + if converts { data } else { 0 },
            // The delta (top layer plus writes meanwhile) and the output.
            SnapshotStrategy::Mirror => chain.top().actual_size + data,
            SnapshotStrategy::Cold => data,
        };
        peak + peak / 100 + (16 << 20)
    }

    /// Takes a snapshot into a standalone image file (blocking). `cancel` is
    /// polled throughout; whatever happens, the guest ends thawed, resumed,
    /// persistent and job-free, and nothing is left on disk but the returned
    /// image (which goes when the outcome is dropped).
    pub fn snapshot_blocking(
        &self,
        req: &SnapshotRequest,
        progress: &dyn Fn(Progress),
        cancel: &CancelToken,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        let name = req.name.clone();
        let compress = self.cfg.snapshot_compression;
        let taken = self.take(
            req,
            |workdir, format| FileSink { path: workdir.join(&name), format, compress },
            progress,
            cancel,
        )?;
        Ok(SnapshotOutcome {
            image: SnapshotImage {
                path: taken.output,
                format: taken.summary.format,
                virtual_size: taken.summary.virtual_size,
                workdir: Some(taken.workdir),
                journal: Some(taken.entry),
            },
            strategy: taken.summary.strategy,
            quiesce: taken.summary.quiesce,
            disk: taken.summary.disk,
            domain_state: taken.summary.domain_state,
            elapsed: taken.summary.elapsed,
        })
    }

    /// Takes a snapshot and writes the view into a caller-made sink (e.g. a
    /// future streaming sink): `make_sink` gets the private work directory
    /// and the output format. The work directory is removed before this
    /// returns, so the sink's output must live elsewhere.
    pub fn snapshot_with_sink_blocking<S: ImageSink>(
        &self,
        req: &SnapshotRequest,
        make_sink: impl FnOnce(&Path, ImageFormat) -> S,
        progress: &dyn Fn(Progress),
        cancel: &CancelToken,
    ) -> Result<(S::Output, SnapshotSummary), SnapshotError> {
        let taken = self.take(req, make_sink, progress, cancel)?;
        drop(taken.workdir);
        if let Err(e) = taken.entry.finish() {
            tracing::error!(error = %Chain(&e), "cannot remove the journal record");
        }
        Ok((taken.output, taken.summary))
    }

    /// Plans, journals and runs one snapshot; on failure (or a panic) undoes
    /// what the journal lists before returning (or resuming the panic).
    fn take<S: ImageSink>(
        &self,
        req: &SnapshotRequest,
        make_sink: impl FnOnce(&Path, ImageFormat) -> S,
        progress: &dyn Fn(Progress),
        cancel: &CancelToken,
    ) -> Result<Taken<S::Output>, SnapshotError> {
        let started = Instant::now();
        let plan = self.plan(req)?;
        let span = tracing::info_span!("snapshot", domain = req.instance_uuid, strategy = plan.strategy.as_str());
        let _enter = span.enter();
        tracing::info!(
            disk = plan.found.disk.target,
            format = plan.out_format.as_str(),
            state = ?plan.found.domain_state,
            "snapshot starting"
        );
        let needed = self.space_needed(plan.strategy, &plan.found.chain, plan.out_format);
        ensure_space(&self.cfg.snapshots_directory, needed)?;

        let mut entry = self.journal.begin(&req.instance_uuid, plan.strategy.as_str())?;
        // A panic (e.g. in a caller's progress callback or sink) is undone
        // like an error — the guards have run by then — and then resumed.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_strategy(&plan, req, make_sink, &mut entry, progress, cancel)
        }));
        let (workdir, output, quiesce) = match result {
            Ok(Ok(taken)) => taken,
            Ok(Err(err)) => {
                tracing::error!(error = %Chain(&err), "snapshot failed; undoing");
                self.undo_failed(entry);
                return Err(err);
            }
            Err(panic) => {
                tracing::error!("snapshot panicked; undoing");
                self.undo_failed(entry);
                std::panic::resume_unwind(panic);
            }
        };
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "snapshot taken");
        let summary = SnapshotSummary {
            strategy: plan.strategy,
            format: plan.out_format,
            virtual_size: plan.found.chain.virtual_size(),
            quiesce,
            disk: plan.found.disk,
            domain_state: plan.found.domain_state,
            elapsed: started.elapsed(),
        };
        Ok(Taken { output, workdir, entry, summary })
    }

    /// What a snapshot of `req` will do: the domain as found, the strategy
    /// and the output format. Fails before anything is touched when the
    /// snapshot cannot work.
    fn plan(&self, req: &SnapshotRequest) -> Result<Plan, SnapshotError> {
        let found = self.discover(&req.instance_uuid)?;
        let strategy = self.choose(&found, req.strategy)?;
        if req.quiesce.required && req.quiesce.agent_enabled && found.caps.qemu && !found.agent_channel {
            // The freeze cannot work.
            return Err(quiesce::no_agent_channel());
        }
        let out_format = match self.cfg.snapshot_image_format {
            Some(f) => f,
            None => default_format(&found.disk)?,
        };
        Ok(Plan { found, strategy, out_format })
    }

    /// Creates the work directory (journaled first), runs the strategy and
    /// hands its view to the sink.
    fn run_strategy<S: ImageSink>(
        &self,
        plan: &Plan,
        req: &SnapshotRequest,
        make_sink: impl FnOnce(&Path, ImageFormat) -> S,
        entry: &mut JournalEntry,
        progress: &dyn Fn(Progress),
        cancel: &CancelToken,
    ) -> Result<(WorkDir, S::Output, Option<QuiesceWindow>), SnapshotError> {
        let d = &plan.found;
        let planned = WorkDir::plan(&self.cfg.snapshots_directory);
        entry.push(Step::TempDir { path: planned.clone() })?;
        let workdir = WorkDir::create(planned)?;
        let mut sink = make_sink(workdir.path(), plan.out_format);
        let mut written = None;
        let mut write = |view: &crate::output::DiskView| {
            written = Some(sink.write(view, progress, cancel)?);
            Ok(())
        };
        let mut ctx = Ctx {
            cfg: &self.cfg,
            domain: &d.domain,
            uuid: &req.instance_uuid,
            disk: &d.disk,
            chain: &d.chain,
            domain_state: d.domain_state,
            caps: d.caps,
            agent_channel: d.agent_channel,
            workdir: workdir.path(),
            name: &req.name,
            out_format: plan.out_format,
            quiesce: req.quiesce,
            journal: entry,
            progress,
            cancel,
        };
        let window = match plan.strategy {
            SnapshotStrategy::Backup => strategy::backup::run(&mut ctx, &mut write)?,
            SnapshotStrategy::Mirror => strategy::mirror::run(&mut ctx, &mut write)?,
            SnapshotStrategy::Cold => strategy::cold::run(&mut ctx, &mut write)?,
        };
        let output =
            written.ok_or_else(|| SnapshotError::JobFailed { job: "snapshot", message: "no image written".into() })?;
        Ok((workdir, output, window))
    }

    /// After a failure (guards have already run): undo whatever the journal
    /// still lists, and drop the record unless something could not be undone.
    fn undo_failed(&self, entry: JournalEntry) {
        let conn = match self.hv.connection() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %Chain(&e), "cannot reach libvirt to undo; recover() will");
                return;
            }
        };
        let (actions, complete) = recovery::undo(&conn, entry.record());
        for a in &actions {
            tracing::info!(action = ?a, "undone");
        }
        if complete {
            if let Err(e) = entry.finish() {
                tracing::error!(error = %Chain(&e), "cannot remove the journal record");
            }
        } else {
            tracing::error!(record = entry.record().id, "not everything could be undone; left for recover()");
        }
    }

    /// [`SnapshotEngine::snapshot_blocking`] on a blocking thread, for async
    /// callers. `cancel` resolves when the caller wants the snapshot stopped
    /// (e.g. the service is stopping; pass `std::future::pending()` for
    /// never): the snapshot is then cancelled, and this still waits until
    /// the blocking side has put the guest back (thawed, resumed, persistent,
    /// job-free) before returning — [`SnapshotError::Cancelled`], or the
    /// outcome when the snapshot finished first. Dropping the future cancels
    /// too, without waiting. A panic in the worker thread (the undo has run
    /// by then) is [`SnapshotError::WorkerFailed`].
    pub async fn snapshot(
        self: &Arc<Self>,
        req: SnapshotRequest,
        progress: Option<ProgressFn>,
        cancel: impl Future<Output = ()>,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        let token = CancelToken::new();
        let _on_drop = CancelOnDrop(token.clone());
        let uuid = req.instance_uuid.clone();
        let engine = Arc::clone(self);
        let worker_token = token.clone();
        let mut job = tokio::task::spawn_blocking(move || {
            let report = |p: Progress| {
                if let Some(f) = &progress {
                    f(p)
                }
            };
            engine.snapshot_blocking(&req, &report, &worker_token)
        });
        let cancel = std::pin::pin!(cancel);
        let joined = tokio::select! {
            joined = &mut job => joined,
            () = cancel => {
                tracing::warn!(domain = uuid, "snapshot cancelled by the caller; waiting until the guest is back");
                token.cancel();
                job.await
            }
        };
        joined.map_err(|source| SnapshotError::WorkerFailed { operation: "snapshot", source })?
    }

    /// Whether a domain with this UUID is defined on this host (nova's
    /// `_host.get_guest`): `Ok(false)` when libvirt has none.
    pub async fn domain_exists(self: &Arc<Self>, uuid: &str) -> Result<bool, SnapshotError> {
        let engine = Arc::clone(self);
        let uuid = uuid.to_owned();
        blocking("domain lookup", move || match engine.hv.domain(&uuid) {
            Ok(_) => Ok(true),
            Err(SnapshotError::DomainNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    /// [`Hypervisor::domain_state`] on a blocking thread: the domain's state
    /// read fresh from libvirt ([`SnapshotError::DomainNotFound`] when it is gone).
    pub async fn domain_state(self: &Arc<Self>, uuid: &str) -> Result<DomainState, SnapshotError> {
        let engine = Arc::clone(self);
        let uuid = uuid.to_owned();
        blocking("domain state", move || engine.hv.domain_state(&uuid)).await
    }

    /// [`Hypervisor::versions`] on a blocking thread (for the start-up log).
    pub async fn host_versions(self: &Arc<Self>) -> Result<HostVersions, SnapshotError> {
        let engine = Arc::clone(self);
        blocking("host versions", move || engine.hv.versions()).await
    }

    /// Undoes what crashed snapshots left (blocking); run once at start-up.
    pub fn recover_blocking(&self) -> Result<RecoveryReport, SnapshotError> {
        let report = recovery::recover(&self.hv, &self.journal)?;
        if report.records > 0 {
            tracing::warn!(records = report.records, actions = report.actions.len(), "recovery done");
        }
        Ok(report)
    }

    /// [`SnapshotEngine::recover_blocking`] off the async runtime.
    pub async fn recover(self: &Arc<Self>) -> Result<RecoveryReport, SnapshotError> {
        let engine = Arc::clone(self);
        blocking("recover", move || engine.recover_blocking()).await
    }

    /// nova `quiesce_instance`: freezes the guest's filesystems and leaves
    /// them frozen (until [`SnapshotEngine::unquiesce_blocking`]).
    pub fn quiesce_blocking(&self, uuid: &str, policy: QuiescePolicy) -> Result<(), SnapshotError> {
        let domain = self.hv.domain(uuid)?;
        let caps = self.hv.capabilities("qemu")?;
        if !caps.qemu {
            return Err(SnapshotError::QuiesceNotSupported { reason: "the hypervisor is not QEMU/KVM".into() });
        }
        if !policy.agent_enabled {
            return Err(SnapshotError::AgentNotEnabled);
        }
        quiesce::freeze(&domain, self.cfg.quiesce_timeout)?.keep_frozen();
        Ok(())
    }

    /// nova `unquiesce_instance`.
    pub fn unquiesce_blocking(&self, uuid: &str) -> Result<u32, SnapshotError> {
        let domain = self.hv.domain(uuid)?;
        crate::ffi::fs_thaw(&domain).map_err(|e| SnapshotError::for_domain("fsThaw", uuid, e))
    }

    /// [`SnapshotEngine::quiesce_blocking`] off the async runtime.
    pub async fn quiesce(self: &Arc<Self>, uuid: String, policy: QuiescePolicy) -> Result<(), SnapshotError> {
        let engine = Arc::clone(self);
        blocking("quiesce", move || engine.quiesce_blocking(&uuid, policy)).await
    }

    /// [`SnapshotEngine::unquiesce_blocking`] off the async runtime.
    pub async fn unquiesce(self: &Arc<Self>, uuid: String) -> Result<u32, SnapshotError> {
        let engine = Arc::clone(self);
        blocking("unquiesce", move || engine.unquiesce_blocking(&uuid)).await
    }
}

/// Sets the token when the owning future is dropped.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs the blocking engine call `operation` on tokio's blocking pool; a
/// worker that panicked (or was cancelled) is [`SnapshotError::WorkerFailed`].
async fn blocking<T: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, SnapshotError> {
    tokio::task::spawn_blocking(f).await.map_err(|source| SnapshotError::WorkerFailed { operation, source })?
}

/// nova's default snapshot format for this disk (`snapshot_image_format` unset).
fn default_format(disk: &RootDisk) -> Result<ImageFormat, SnapshotError> {
    ImageFormat::for_source(&disk.source_type())
        .ok_or_else(|| SnapshotError::NoSnapshotFormat { format: disk.format.clone() })
}

/// The domain XML's `type` (`qemu`, `kvm`).
fn virt_type(xml: &str) -> String {
    roxmltree::Document::parse(xml)
        .ok()
        .and_then(|d| d.root_element().attribute("type").map(str::to_owned))
        .unwrap_or_else(|| "kvm".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default domain of libvirt's in-process test driver (no daemon).
    const TEST_DOMAIN: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";
    const MISSING: &str = "00000000-0000-0000-0000-000000000001";

    fn test_engine(root: &Path) -> Arc<SnapshotEngine> {
        let cfg = EngineConfig {
            connection_uri: "test:///default".into(),
            snapshots_directory: root.join("snapshots"),
            journal_directory: root.join("journal"),
            ..EngineConfig::default()
        };
        Arc::new(SnapshotEngine::open(cfg).expect("test driver"))
    }

    #[tokio::test]
    async fn async_lookups_need_no_blocking_thread_of_the_caller() {
        let root = tempfile::tempdir().unwrap();
        let engine = test_engine(root.path());
        assert!(engine.domain_exists(TEST_DOMAIN).await.unwrap());
        assert!(!engine.domain_exists(MISSING).await.unwrap());
        assert_eq!(engine.domain_state(TEST_DOMAIN).await.unwrap(), DomainState::Running);
        assert!(matches!(engine.domain_state(MISSING).await, Err(SnapshotError::DomainNotFound { .. })));
        assert_eq!(engine.host_versions().await.unwrap().hypervisor_type, "TEST");
    }

    #[tokio::test]
    async fn a_cancelled_snapshot_still_returns_what_the_worker_ended_with() {
        let root = tempfile::tempdir().unwrap();
        let engine = test_engine(root.path());
        let req = SnapshotRequest {
            instance_uuid: MISSING.into(),
            name: "n".into(),
            quiesce: QuiescePolicy::default(),
            strategy: None,
        };
        // Cancelled at once: the worker is still awaited, and its own result comes back.
        let r = engine.snapshot(req, None, std::future::ready(())).await;
        assert!(matches!(r, Err(SnapshotError::DomainNotFound { .. }) | Err(SnapshotError::Cancelled)), "{r:?}");
        assert!(root.path().join("journal").read_dir().unwrap().next().is_none(), "no journal record left");
    }

    #[tokio::test]
    async fn a_panicked_worker_is_a_typed_error_with_its_cause() {
        let r: Result<(), _> = blocking("snapshot", || panic!("boom")).await;
        match r {
            Err(SnapshotError::WorkerFailed { operation: "snapshot", source }) => assert!(source.is_panic()),
            other => panic!("{other:?}"),
        }
    }
}
