//! The snapshot engine: a point-in-time copy of an instance's root disk.
//!
//! Owns, in the order a snapshot meets them: the connection to libvirtd
//! (`hypervisor`: auth as nova opens it, keepalive, reconnects, host
//! capabilities, libvirt's own [`DomainState`]); the small safe wrapper over
//! the libvirt calls the `virt` crate lacks (`ffi`: block copy, block-job
//! info and abort, backup begin, job abort, fs freeze and thaw, domain event
//! callbacks) — the only place in the workspace allowed `unsafe`; the
//! libvirt event loop and per-domain event subscriptions (`events`); disk
//! discovery from the domain XML and the backing chain (`disk`, with the
//! format enums of `format`); the choice and running of a snapshot strategy
//! (`strategy`: `backup`, `mirror`, `cold`; later `rbd`); quiesce through
//! qemu-guest-agent (`quiesce`); `qemu-img` (`qemu_img`); the output sinks,
//! temp space under `snapshots_directory` and the free-space check
//! (`output`); the crash journal and start-up recovery (`journal`,
//! `recovery`); the engine's configuration and the nova.conf spellings of
//! its values (`config`: `FromStr` of [`ImageFormat`] and [`LiveStrategy`]);
//! and [`SnapshotEngine`], the entry point, whose async methods run every
//! blocking libvirt call on a blocking thread so callers never need to.
//!
//! Must not know: RPC, nova-conductor, task states, nova's power states or
//! exception names, oslo.config, or Glance. It produces a point-in-time view
//! of the disk and writes it through a sink (today a standalone image file),
//! reporting progress; the caller decides where the image goes and how
//! libvirt's states and the typed [`SnapshotError`]s map to nova's.
//!
//! ```no_run
//! # async fn demo() -> Result<(), libvirt_snapshot::SnapshotError> {
//! use libvirt_snapshot::{EngineConfig, QuiescePolicy, SnapshotEngine, SnapshotRequest};
//! let engine = SnapshotEngine::connect(EngineConfig::default()).await?;
//! engine.recover().await?; // once, at start-up
//! let outcome = engine
//!     .snapshot(
//!         SnapshotRequest {
//!             instance_uuid: "9ed91fd2-c2b2-45d4-b3bf-e1bcb2723494".into(),
//!             name: "0123456789abcdef0123456789abcdef".into(),
//!             quiesce: QuiescePolicy { agent_enabled: true, required: false },
//!             strategy: None,
//!         },
//!         None,
//!         std::future::pending(), // or: a future that resolves on shutdown
//!     )
//!     .await?;
//! println!("{} ({:?})", outcome.image.path().display(), outcome.strategy);
//! // upload outcome.image.path(), then drop the outcome: the temp dir goes.
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

mod config;
mod disk;
mod engine;
mod error;
mod events;
#[allow(unsafe_code)]
mod ffi;
mod format;
mod hypervisor;
mod journal;
mod output;
mod qemu_img;
mod quiesce;
mod recovery;
mod strategy;

pub use config::{EngineConfig, LiveStrategy, UnknownName};
pub use disk::{BackingChain, ChainLayer, DiskSource, RootDisk};
pub use engine::{SnapshotEngine, SnapshotImage, SnapshotOutcome, SnapshotRequest, SnapshotSummary};
pub use error::{QemuImgFailure, SnapshotError};
pub use events::{BlockJobStatus, BlockJobType, DomainEvent, JobCompleted};
pub use ffi::{BlockCopyFlags, BlockCopyParams, BlockJobInfo};
pub use format::{DiskFormat, ImageFormat, SourceType};
pub use hypervisor::{
    default_connection_uri, DomainState, HostCapabilities, HostVersions, Hypervisor, Version, KEEPALIVE_COUNT,
    KEEPALIVE_INTERVAL_S,
};
pub use journal::{Journal, JournalRecord, Step};
pub use output::{available_space, CancelToken, DiskView, FileSink, ImageSink, Phase, Progress, ProgressFn};
pub use quiesce::{QuiescePolicy, QuiesceWindow};
pub use recovery::{recover, RecoveryAction, RecoveryReport};
pub use strategy::{select_strategy, SelectionInput, SnapshotStrategy};
