//! nova's `ComputeManager`, reduced to what it is here: the handles every
//! request shares. The handlers themselves live with their data flow
//! (`snapshot`, `backup`, `quiesce`, `unsupported`, `recovery`) and take the
//! manager as an argument; nova's error handling around them is
//! `decorators`.

use std::sync::Arc;

use crate::concurrency::{InFlight, Limits};
use crate::conductor::Conductor;
use crate::driver::VirtDriver;
use crate::image_api::ImageApi;
use crate::notifier::Notifier;
use crate::volume_api::VolumeApi;

/// nova-compute's RPC API version (nova 34: `ComputeManager.target`).
pub const COMPUTE_RPC_API_VERSION: &str = "6.5";

/// The service's state shared by every request.
pub struct ComputeManager {
    /// `[DEFAULT] host`: this service's name in nova.
    pub host: String,
    /// nova-conductor (task states, faults, action events, instance reads).
    pub conductor: Arc<Conductor>,
    /// The virt driver (libvirt).
    pub driver: Arc<dyn VirtDriver>,
    /// Glance.
    pub image_api: Arc<dyn ImageApi>,
    /// Cinder (volume snapshots of a volume-backed snapshot).
    pub volume_api: Arc<dyn VolumeApi>,
    /// Notifications.
    pub notifier: Notifier,
    /// Concurrency limits and per-instance exclusion.
    pub limits: Limits,
    /// The long-running work a stop waits for.
    pub inflight: Arc<InFlight>,
}
