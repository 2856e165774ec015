//! The `nova-compute` Service row: registration at start-up and the
//! heartbeat that keeps the servicegroup API reporting this host "up".
//!
//! Registration is nova's `Service.start`: `get_by_host_and_binary`; if the
//! row exists, update its `version` when it differs; else `create` it with
//! `topic=compute`, `report_count=0` and our service version. The heartbeat
//! is nova's `DbDriver._report_state`: every `report_interval`,
//! `report_count += 1; save()` — the conductor stamps `last_seen_up` when the
//! count grows. A failed beat is logged once and retried on the next tick,
//! forever: a compute that stops heartbeating during a broker or conductor
//! outage looks dead and invites evacuation, so the loop never exits on
//! errors, only on `stop`.
//!
//! Must not know: anything about RPC servers or the compute manager.

use std::sync::Arc;
use std::time::Duration;

use error_chain::{error_chain, Chain};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::conductor::{ConductorApi, ConductorTransport};
use crate::context::RequestContext;
use crate::error::ConductorError;
use crate::primitive::ObjectPrimitive;

/// `nova.objects.service.SERVICE_VERSION` in nova 34 (compute RPC 6.5).
pub const SERVICE_VERSION: i64 = 74;
/// The Service object version nova 34 uses.
pub const SERVICE_OBJECT_VERSION: &str = "1.22";
/// `obj_tree_get_versions('Service')` in nova 34.
pub const SERVICE_MANIFEST: &[(&str, &str)] = &[
    ("Service", "1.22"),
    ("ComputeNode", "1.19"),
    ("HVSpec", "1.2"),
    ("PciDevicePoolList", "1.1"),
    ("PciDevicePool", "1.1"),
];
/// The binary of the service this crate registers (`Service.binary`).
pub const COMPUTE_BINARY: &str = "nova-compute";
/// The RPC topic of the service this crate registers (`Service.topic`).
pub const COMPUTE_TOPIC: &str = "compute";

/// A `Service` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    primitive: ObjectPrimitive,
}

impl Service {
    /// A not-yet-created service row, as `_create_service_ref` fills it.
    pub fn new(host: &str, binary: &str, topic: &str, version: i64) -> Self {
        let mut primitive = ObjectPrimitive::new("Service", SERVICE_OBJECT_VERSION);
        primitive.set("host", Value::String(host.into()));
        primitive.set("binary", Value::String(binary.into()));
        primitive.set("topic", Value::String(topic.into()));
        primitive.set("report_count", Value::from(0));
        primitive.set("version", Value::from(version));
        Service { primitive }
    }

    /// Decodes a `Service` primitive from the conductor.
    pub fn from_primitive(value: &Value) -> Result<Self, crate::ObjectError> {
        Ok(Service { primitive: ObjectPrimitive::from_value(value, "Service")? })
    }

    /// The primitive, for fields without an accessor.
    pub fn primitive(&self) -> &ObjectPrimitive {
        &self.primitive
    }

    /// The row id, once created.
    pub fn id(&self) -> Option<i64> {
        self.primitive.get("id").and_then(Value::as_i64)
    }

    /// The service's host (`[DEFAULT] host`).
    pub fn host(&self) -> Option<&str> {
        self.primitive.get_str("host")
    }

    /// The service version the row records (nova's `SERVICE_VERSION` of the running code).
    pub fn version(&self) -> Option<i64> {
        self.primitive.get("version").and_then(Value::as_i64)
    }

    /// How many heartbeats were saved (0 when unset).
    pub fn report_count(&self) -> i64 {
        self.primitive.get("report_count").and_then(Value::as_i64).unwrap_or(0)
    }

    /// When the conductor last stamped a heartbeat, in nova's datetime format.
    pub fn last_seen_up(&self) -> Option<&str> {
        self.primitive.get_str("last_seen_up")
    }

    /// Sets the service version (saved by the next `save`).
    pub fn set_version(&mut self, version: i64) {
        self.primitive.set("version", Value::from(version));
    }

    /// `report_count += 1` (saved by the next `save`).
    pub fn bump_report_count(&mut self) {
        let next = self.report_count() + 1;
        self.primitive.set("report_count", Value::from(next));
    }

    /// `Service.get_by_host_and_binary`: `None` when there is no such row.
    pub async fn get_by_host_and_binary<T: ConductorTransport>(
        api: &ConductorApi<T>,
        ctx: &RequestContext,
        host: &str,
        binary: &str,
    ) -> Result<Option<Self>, ConductorError> {
        let args = vec![Value::String(host.into()), Value::String(binary.into())];
        let reply =
            api.class_action(ctx, "Service", SERVICE_MANIFEST, "get_by_host_and_binary", args, Map::new()).await?;
        match reply {
            Value::Null => Ok(None),
            value => Ok(Some(Service::from_primitive(&value)?)),
        }
    }

    /// `Service.create()`.
    pub async fn create<T: ConductorTransport>(
        &mut self,
        api: &ConductorApi<T>,
        ctx: &RequestContext,
    ) -> Result<(), ConductorError> {
        api.object_action(ctx, &mut self.primitive, "create", Vec::new(), Map::new()).await?;
        Ok(())
    }

    /// `Service.save()`: the changed fields.
    pub async fn save<T: ConductorTransport>(
        &mut self,
        api: &ConductorApi<T>,
        ctx: &RequestContext,
    ) -> Result<(), ConductorError> {
        api.object_action(ctx, &mut self.primitive, "save", Vec::new(), Map::new()).await?;
        Ok(())
    }
}

/// What registration and the heartbeat need from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceOptions {
    /// `[DEFAULT] host`; must equal the instances' `host`.
    pub host: String,
    /// The service version to register (nova 34: 74).
    pub version: i64,
    /// `[DEFAULT] report_interval`; zero disables the heartbeat, as in nova.
    pub report_interval: Duration,
    /// Delay before the first beat (nova: 5 s).
    pub initial_delay: Duration,
    /// How long one beat may wait for the conductor before the next tick
    /// takes over, so a stalled call never silences the heartbeat.
    pub beat_timeout: Duration,
}

impl ServiceOptions {
    /// nova's defaults for `host`: version 74, 10 s interval, first beat
    /// after 5 s.
    pub fn new(host: &str) -> Self {
        ServiceOptions::with_interval(host, Duration::from_secs(10))
    }

    /// Options with `report_interval` from the configuration.
    pub fn with_interval(host: &str, report_interval: Duration) -> Self {
        ServiceOptions {
            host: host.to_owned(),
            version: SERVICE_VERSION,
            report_interval,
            initial_delay: Duration::from_secs(5).min(report_interval),
            beat_timeout: report_interval.max(Duration::from_secs(5)),
        }
    }
}

/// Registers this host's `nova-compute` service: get, create or update the
/// version. Returns the row as the conductor has it.
pub async fn register_service<T: ConductorTransport>(
    api: &ConductorApi<T>,
    ctx: &RequestContext,
    opts: &ServiceOptions,
) -> Result<Service, ConductorError> {
    if let Some(mut service) = Service::get_by_host_and_binary(api, ctx, &opts.host, COMPUTE_BINARY).await? {
        if service.version() != Some(opts.version) {
            info!(request_id = ctx.request_id(), host = %opts.host, old = ?service.version(), new = opts.version,
                "updating service version for nova-compute");
            service.set_version(opts.version);
            service.save(api, ctx).await?;
        }
        info!(request_id = ctx.request_id(), host = %opts.host, id = ?service.id(), "nova-compute service found");
        return Ok(service);
    }
    let mut service = Service::new(&opts.host, COMPUTE_BINARY, COMPUTE_TOPIC, opts.version);
    match service.create(api, ctx).await {
        Ok(()) => {
            info!(request_id = ctx.request_id(), host = %opts.host, id = ?service.id(), "nova-compute service created");
            Ok(service)
        }
        // Another process of this host created it first: use that row.
        Err(ConductorError::Remote(f)) if f.class == "ServiceBinaryExists" || f.class == "ServiceTopicExists" => {
            Service::get_by_host_and_binary(api, ctx, &opts.host, COMPUTE_BINARY)
                .await?
                .ok_or(ConductorError::Remote(f))
        }
        Err(e) => Err(e),
    }
}

/// The heartbeat's health, for logs and health checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatStatus {
    /// Beats the conductor accepted since start.
    pub beats_ok: u64,
    /// The last beat failed (nova's `model_disconnected`).
    pub disconnected: bool,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// A running heartbeat; `stop` ends it and returns the service row.
#[derive(Debug)]
pub struct Heartbeat {
    stop: watch::Sender<bool>,
    status: watch::Receiver<HeartbeatStatus>,
    task: JoinHandle<Service>,
}

impl Heartbeat {
    /// Starts beating for `service` on the tokio runtime.
    pub fn start<T: ConductorTransport>(
        api: Arc<ConductorApi<T>>,
        ctx: RequestContext,
        service: Service,
        opts: &ServiceOptions,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(HeartbeatStatus::default());
        let task = tokio::spawn(beat_loop(api, ctx, service, opts.clone(), stop_rx, status_tx));
        Heartbeat { stop, status, task }
    }

    /// The current health.
    pub fn status(&self) -> HeartbeatStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<HeartbeatStatus> {
        self.status.clone()
    }

    /// Stops after the beat in flight, if any, and returns the service.
    pub async fn stop(self) -> Service {
        // The loop may already have exited if the runtime is shutting down.
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(service) => service,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

async fn beat_loop<T: ConductorTransport>(
    api: Arc<ConductorApi<T>>,
    ctx: RequestContext,
    mut service: Service,
    opts: ServiceOptions,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<HeartbeatStatus>,
) -> Service {
    if opts.report_interval.is_zero() {
        info!(host = %opts.host, "report_interval is 0: no heartbeat");
        let _ = stop.wait_for(|s| *s).await;
        return service;
    }
    let start = tokio::time::Instant::now() + opts.initial_delay;
    let mut ticks = tokio::time::interval_at(start, opts.report_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = ticks.tick() => {}
        }
        let result = match tokio::time::timeout(opts.beat_timeout, beat(&api, &ctx, &mut service)).await {
            Ok(result) => result,
            Err(_) => Err(ConductorError::Timeout { method: "object_action".into() }),
        };
        report(&status, &service, &opts, result);
    }
    debug!(host = %opts.host, "heartbeat stopped");
    service
}

/// One `report_count += 1; save()`. Every tick raises the count, even
/// after a failed save: a save that timed out here may still have been
/// applied by the conductor, and only a count above the stored one makes it
/// stamp `last_seen_up`.
async fn beat<T: ConductorTransport>(
    api: &ConductorApi<T>,
    ctx: &RequestContext,
    service: &mut Service,
) -> Result<(), ConductorError> {
    service.bump_report_count();
    service.save(api, ctx).await
}

fn report(
    status: &watch::Sender<HeartbeatStatus>,
    service: &Service,
    opts: &ServiceOptions,
    result: Result<(), ConductorError>,
) {
    let was_disconnected = status.borrow().disconnected;
    match result {
        Ok(()) => {
            if was_disconnected {
                info!(host = %opts.host, "recovered from being unable to report status");
            }
            debug!(host = %opts.host, report_count = service.report_count(), "heartbeat");
            status.send_modify(|s| {
                s.beats_ok += 1;
                s.disconnected = false;
            });
        }
        Err(e) => {
            // Logged once per outage, as nova does; the loop keeps going.
            if !was_disconnected {
                match &e {
                    ConductorError::ServiceNotFound { .. } => error!(host = %opts.host,
                        "the services table record for nova-compute is gone; restart this service to recreate it"),
                    _ => {
                        warn!(host = %opts.host, error = %Chain(&e), "lost connection to nova-conductor for reporting service status")
                    }
                }
            }
            status.send_modify(|s| {
                s.disconnected = true;
                s.last_error = Some(error_chain(&e));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::conductor::fake::FakeTransport;
    use crate::error::TransportError;

    fn row(version: i64, report_count: i64) -> Value {
        json!({"nova_object.name": "Service", "nova_object.namespace": "nova", "nova_object.version": "1.22",
               "nova_object.data": {"id": 2, "uuid": "e02c5f5e-40f9-4c20-9b61-a75bb73d7ce1", "host": "cmp1",
                                    "binary": "nova-compute", "topic": "compute", "report_count": report_count,
                                    "disabled": false, "disabled_reason": null, "last_seen_up": null,
                                    "forced_down": false, "version": version}})
    }

    fn saved() -> Result<Value, TransportError> {
        Ok(json!([{"last_seen_up": "2026-11-22T13:45:03Z", "obj_what_changed": []}, null]))
    }

    #[tokio::test]
    async fn existing_row_with_another_version_is_updated() {
        let api = ConductorApi::new(FakeTransport::replying(vec![Ok(row(73, 5)), saved()]));
        let service = register_service(&api, &RequestContext::admin(), &ServiceOptions::new("cmp1")).await.unwrap();
        assert_eq!(service.version(), Some(74));
        let calls = api.transport().calls();
        assert_eq!(calls[0].1.args["args"], json!(["cmp1", "nova-compute"]));
        assert_eq!(calls[1].1.args["objinst"]["nova_object.changes"], json!(["version"]));
        assert_eq!(calls[1].1.args["objinst"]["nova_object.data"]["version"], 74);
    }

    #[tokio::test]
    async fn missing_row_is_created_like_nova() {
        let created = json!([{"id": 9, "uuid": "u", "last_seen_up": null, "obj_what_changed": []}, null]);
        let api = ConductorApi::new(FakeTransport::replying(vec![Ok(Value::Null), Ok(created)]));
        let service = register_service(&api, &RequestContext::admin(), &ServiceOptions::new("cmp1")).await.unwrap();
        assert_eq!(service.id(), Some(9));
        let (_, call) = &api.transport().calls()[1];
        assert_eq!(call.args["objmethod"], "create");
        assert_eq!(
            call.args["objinst"]["nova_object.data"],
            json!({"host": "cmp1", "binary": "nova-compute", "topic": "compute", "report_count": 0, "version": 74})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_survives_failures_and_counts_up() {
        let api = Arc::new(ConductorApi::new(FakeTransport::replying(vec![
            saved(),
            Err(TransportError::Unavailable("broker down".into())),
            Err(TransportError::Timeout),
            saved(),
        ])));
        let opts = ServiceOptions::with_interval("cmp1", Duration::from_secs(10));
        let service = Service::from_primitive(&row(74, 1)).unwrap();
        let hb = Heartbeat::start(api.clone(), RequestContext::admin(), service, &opts);
        let mut status = hb.subscribe();
        status.wait_for(|s| s.beats_ok == 2).await.unwrap();
        let service = hb.stop().await;
        let counts: Vec<Value> = api
            .transport()
            .calls()
            .iter()
            .map(|(_, c)| c.args["objinst"]["nova_object.data"]["report_count"].clone())
            .collect();
        // Each tick raises the count, whether or not the last save failed.
        assert_eq!(counts, [json!(2), json!(3), json!(4), json!(5)]);
        assert_eq!(service.report_count(), 5);
        assert_eq!(service.last_seen_up(), Some("2026-11-22T13:45:03Z"));
    }

    #[tokio::test(start_paused = true)]
    async fn first_beat_waits_initial_delay_then_every_interval() {
        let api = Arc::new(ConductorApi::new(FakeTransport::replying(vec![saved(), saved(), saved()])));
        let opts = ServiceOptions::with_interval("cmp1", Duration::from_secs(10));
        let t0 = tokio::time::Instant::now();
        let hb = Heartbeat::start(
            api.clone(),
            RequestContext::admin(),
            Service::from_primitive(&row(74, 0)).unwrap(),
            &opts,
        );
        let mut status = hb.subscribe();
        status.wait_for(|s| s.beats_ok == 1).await.unwrap();
        assert_eq!(t0.elapsed().as_secs(), 5);
        status.wait_for(|s| s.beats_ok == 2).await.unwrap();
        assert_eq!(t0.elapsed().as_secs(), 15);
        hb.stop().await;
    }
}
