//! The service's life: start-up in nova's order, serving, and a clean stop.
//!
//! Start-up: configuration (done by `main`) → logging → libvirt → the
//! message broker → nova-conductor answers → service registration →
//! recovery → RPC servers on `compute.HOST` and `compute-alt.HOST` →
//! heartbeat. A step that cannot be done is a clear error and a
//! non-zero exit, never a half-started service that consumes casts it
//! cannot handle.

use std::time::Duration;

use std::sync::Arc;

use glance_client::{
    ApplicationCredential, CinderClient, CinderError, CinderOptions, GlanceClient, GlanceError, GlanceOptions,
    PasswordCredentials, ServiceCredentials, ServiceUserOptions,
};
use libvirt_snapshot::{EngineConfig, ImageFormat, LiveStrategy, SnapshotEngine};
use nova_objects::{
    register_service, ConductorError, Heartbeat, NotificationPolicy, OsloConductorTransport, OsloNotificationSink,
    PayloadOptions, ReadinessPolicy, RequestContext, ServiceOptions,
};
use oslo_config::Config;
use oslo_messaging::{RpcServer, ServerOptions, Target, Transport, TransportUrl};
use tracing::{error, info, warn};

use crate::concurrency::{InFlight, Limits};
use crate::conductor::{AnyConductor, AnySink, Conductor};
use crate::driver::LibvirtDriver;
use crate::manager::{ComputeManager, COMPUTE_RPC_API_VERSION};
use crate::notifier::Notifier;
use crate::transport_options::{rabbit_options, OutOfRange};
use crate::{recovery, rpc};

/// How long aborted snapshots get to clean up (thaw, resume, delete the image).
const ABORT_CLEANUP: Duration = Duration::from_secs(60);

/// How many pings start-up sends nova-conductor before giving up (nova's
/// first ten use a 10 s timeout: about two minutes in all).
const CONDUCTOR_ATTEMPTS: u32 = 12;

/// Why the service could not start. Each message says which step failed;
/// the cause is the `source()`, printed after it by `main`.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// libvirt is unreachable or refuses the connection.
    #[error("cannot connect to libvirt at {uri}")]
    Libvirt {
        /// The connection URI tried.
        uri: String,
        /// libvirt's answer.
        #[source]
        source: libvirt_snapshot::SnapshotError,
    },
    /// `[DEFAULT] transport_url` cannot be parsed.
    #[error("invalid [DEFAULT] transport_url")]
    TransportUrl(#[source] oslo_messaging::Error),
    /// An `[oslo_messaging_rabbit]` value the driver cannot use.
    #[error("invalid [oslo_messaging_rabbit] options")]
    RabbitOptions(#[source] OutOfRange),
    /// The broker is unreachable or refuses the login.
    #[error("cannot connect to the message broker")]
    Broker(#[source] oslo_messaging::Error),
    /// nova-conductor never answered the start-up pings.
    #[error("nova-conductor did not answer; is it running?")]
    ConductorUnavailable(#[source] ConductorError),
    /// The conductor refused the service record.
    #[error("cannot register the nova-compute service")]
    Registration(#[source] ConductorError),
    /// `[glance]` or `[service_user]` cannot be used (files, certificates).
    #[error("invalid [glance] or [service_user] options")]
    Glance(#[source] GlanceError),
    /// An option value the snapshot engine does not know.
    #[error("invalid option value")]
    Option(#[source] libvirt_snapshot::UnknownName),
    /// `[cinder]` cannot be used.
    #[error("invalid [cinder] options")]
    Cinder(#[source] CinderError),
    /// The compute queues cannot be declared or consumed.
    #[error("cannot start the RPC servers")]
    RpcServer(#[source] oslo_messaging::Error),
}

/// Runs the service until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), StartupError> {
    let host = cfg.default.host.clone();
    let engine = connect_libvirt(&cfg).await?;
    let service_user = service_user_options(&cfg);
    let glance = GlanceClient::new(&glance_options(&cfg), service_user.as_ref()).map_err(StartupError::Glance)?;
    let cinder = CinderClient::new(&cinder_options(&cfg), service_user.as_ref()).map_err(StartupError::Cinder)?;
    let transport = connect_broker(&cfg).await?;
    let rpc_timeout = Duration::from_secs(u64::try_from(cfg.default.rpc_response_timeout).unwrap_or(60).max(1));
    let conductor = Arc::new(AnyConductor::api(OsloConductorTransport::new(&transport, rpc_timeout)));
    let admin = RequestContext::admin();
    wait_for_conductor(&conductor, &admin).await?;

    let report_interval = Duration::from_secs(u64::try_from(cfg.default.report_interval).unwrap_or(10));
    let service_opts = ServiceOptions::with_interval(&host, report_interval);
    let service = register_service(&conductor, &admin, &service_opts).await.map_err(StartupError::Registration)?;
    info!(
        "Registered service nova-compute on host {host} (id {}, version {})",
        service.id().unwrap_or_default(),
        service.version().unwrap_or_default()
    );

    let notifier = Notifier::new(
        AnySink::new(OsloNotificationSink::new(
            &transport,
            cfg.oslo_messaging_notifications.topics.clone(),
            cfg.notifications.versioned_notifications_topics.clone(),
        )),
        NotificationPolicy::new(cfg.notifications.notification_format, &cfg.oslo_messaging_notifications.driver),
        PayloadOptions { glance_api_server: cfg.glance.api_servers.first().cloned(), ..PayloadOptions::default() },
        &host,
    );
    let manager = Arc::new(ComputeManager {
        host: host.clone(),
        conductor: conductor.clone(),
        driver: Arc::new(LibvirtDriver::new(engine)),
        image_api: Arc::new(glance),
        volume_api: Arc::new(cinder),
        notifier,
        limits: Limits::new(cfg.default.max_concurrent_snapshots, cfg.compute.max_concurrent_disk_ops),
        inflight: Arc::new(InFlight::default()),
    });
    // Recovery before consuming: a queued cast must find the host clean.
    recovery::recover(&manager).await;

    let server_options = ServerOptions { executor_thread_pool_size: cfg.default.executor_thread_pool_size as usize };
    let server = RpcServer::start_with(&transport, rpc_targets(&host), rpc::dispatcher(&manager), server_options)
        .await
        .map_err(StartupError::RpcServer)?;
    let heartbeat = Heartbeat::start(conductor, admin, service, &service_opts);
    info!("nova-compute started on host {host}: serving {}", server.queue_names().join(", "));

    let signal = shutdown_signal().await;
    info!("{signal} received: stopping RPC servers");
    server.stop().await;
    graceful_stop(&manager, shutdown_grace(cfg.default.graceful_shutdown_timeout)).await;
    server.shutdown().await;
    heartbeat.stop().await;
    transport.close().await;
    info!("nova-compute stopped");
    Ok(())
}

/// `[DEFAULT] graceful_shutdown_timeout`: 0 is oslo.service's "wait as long
/// as it takes" (a second signal still aborts).
fn shutdown_grace(seconds: u32) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(u64::from(seconds)))
}

/// Lets running snapshots finish for `grace`; a second signal or the end of
/// the grace period aborts them, and they clean up as any failed snapshot
/// does (guest thawed and resumed, domain persistent, image deleted, task
/// state reset, fault recorded) before the process exits.
async fn graceful_stop(manager: &ComputeManager, grace: Option<Duration>) {
    let running = manager.inflight.running();
    if running.is_empty() {
        return;
    }
    let limit = grace.map_or("without limit".to_owned(), |g| format!("up to {}s", g.as_secs()));
    info!("Waiting {limit} for {} running task(s) to finish: {}", running.len(), running.join("; "));
    let finished = tokio::select! {
        done = manager.inflight.wait_idle(grace) => done,
        s = shutdown_signal() => {
            warn!("{s} received again: aborting running tasks now");
            false
        }
    };
    if !finished {
        warn!("Aborting running task(s): {}", manager.inflight.running().join("; "));
        manager.inflight.abort_all();
        if !manager.inflight.wait_idle(Some(ABORT_CLEANUP)).await {
            error!("Tasks still running after abort: {}", manager.inflight.running().join("; "));
        }
    }
}

/// What the engine reads from nova.conf. The choices were validated when
/// the file was read; a value the engine does not know is still a clear error.
fn engine_config(cfg: &Config) -> Result<EngineConfig, StartupError> {
    let snapshot_image_format = cfg
        .libvirt
        .snapshot_image_format
        .as_deref()
        .map(str::parse::<ImageFormat>)
        .transpose()
        .map_err(StartupError::Option)?;
    let live_strategy = cfg.snapshot_engine.live_strategy.parse::<LiveStrategy>().map_err(StartupError::Option)?;
    Ok(EngineConfig {
        connection_uri: cfg.libvirt.effective_uri().to_owned(),
        snapshots_directory: cfg.libvirt.snapshots_directory.clone().into(),
        // Host-local state, never on the (possibly shared) instances_path.
        journal_directory: std::path::Path::new(&cfg.default.state_path).join("snapshot-journal"),
        snapshot_image_format,
        snapshot_compression: cfg.libvirt.snapshot_compression,
        disable_libvirt_livesnapshot: cfg.workarounds.disable_libvirt_livesnapshot,
        live_strategy,
        ..EngineConfig::default()
    })
}

fn glance_options(cfg: &Config) -> GlanceOptions {
    let g = &cfg.glance;
    GlanceOptions {
        api_servers: g.api_servers.clone(),
        num_retries: g.num_retries,
        cafile: g.cafile.clone().map(Into::into),
        certfile: g.certfile.clone().map(Into::into),
        keyfile: g.keyfile.as_ref().map(|k| k.expose().into()),
        insecure: g.insecure,
        timeout: g.timeout.and_then(|t| u64::try_from(t).ok()).map(Duration::from_secs),
        endpoint_override: g.endpoint_override.clone(),
        region_name: g.region_name.clone(),
        valid_interfaces: g.valid_interfaces.clone(),
        service_type: g.service_type.clone(),
    }
}

/// `[cinder]`.
fn cinder_options(cfg: &Config) -> CinderOptions {
    let c = &cfg.cinder;
    CinderOptions {
        catalog_info: c.catalog_info.clone(),
        endpoint_template: c.endpoint_template.clone(),
        os_region_name: c.os_region_name.clone(),
        cafile: c.cafile.clone().map(Into::into),
        certfile: c.certfile.clone().map(Into::into),
        keyfile: c.keyfile.as_ref().map(|k| k.expose().into()),
        insecure: c.insecure,
        timeout: c.timeout.and_then(|t| u64::try_from(t).ok()).map(Duration::from_secs),
        http_retries: c.http_retries,
    }
}

/// `[service_user]`, when `send_service_user_token` is on.
fn service_user_options(cfg: &Config) -> Option<ServiceUserOptions> {
    let s = &cfg.service_user;
    if !s.send_service_user_token {
        return None;
    }
    let secret = |v: &Option<oslo_config::Secret>| v.as_ref().map(|x| x.expose().to_owned()).unwrap_or_default();
    let credentials = match s.auth_type.as_deref() {
        Some("v3applicationcredential") | Some("applicationcredential") => {
            ServiceCredentials::ApplicationCredential(ApplicationCredential {
                id: s.application_credential_id.clone(),
                name: s.application_credential_name.clone(),
                user_id: s.user_id.clone(),
                username: s.username.clone(),
                user_domain_id: s.user_domain_id.clone(),
                user_domain_name: s.user_domain_name.clone(),
                secret: secret(&s.application_credential_secret),
            })
        }
        _ => ServiceCredentials::Password(PasswordCredentials {
            user_id: s.user_id.clone(),
            username: s.username.clone(),
            user_domain_id: s.user_domain_id.clone(),
            user_domain_name: s.user_domain_name.clone(),
            password: secret(&s.password),
            project_id: s.project_id.clone(),
            project_name: s.project_name.clone(),
            project_domain_id: s.project_domain_id.clone(),
            project_domain_name: s.project_domain_name.clone(),
        }),
    };
    Some(ServiceUserOptions {
        send_service_user_token: true,
        auth_url: s.auth_url.clone().unwrap_or_default(),
        credentials,
        cafile: s.cafile.clone().map(Into::into),
        certfile: s.certfile.clone().map(Into::into),
        keyfile: s.keyfile.as_ref().map(|k| k.expose().into()),
        insecure: s.insecure,
        timeout: s.timeout.and_then(|t| u64::try_from(t).ok()).map(Duration::from_secs),
    })
}

/// Opens the snapshot engine's libvirt connection — the only one the service
/// holds — and logs what the host runs; blocking calls stay off the runtime.
async fn connect_libvirt(cfg: &Config) -> Result<Arc<SnapshotEngine>, StartupError> {
    let uri = cfg.libvirt.effective_uri().to_owned();
    let libvirt_error = |source| StartupError::Libvirt { uri: uri.clone(), source };
    let engine = SnapshotEngine::connect(engine_config(cfg)?).await.map_err(libvirt_error)?;
    let versions = engine.host_versions().await.map_err(libvirt_error)?;
    info!(
        "Connected to libvirt at {uri}: libvirt {}, {} {} on {}",
        versions.libvirt, versions.hypervisor_type, versions.hypervisor, versions.hostname
    );
    Ok(engine)
}

async fn connect_broker(cfg: &Config) -> Result<Transport, StartupError> {
    let url = TransportUrl::parse(cfg.default.transport_url.expose()).map_err(StartupError::TransportUrl)?;
    let options = rabbit_options(&cfg.oslo_messaging_rabbit).map_err(StartupError::RabbitOptions)?;
    let transport =
        Transport::connect(&url, options, cfg.default.control_exchange.clone()).await.map_err(StartupError::Broker)?;
    info!(
        "Connected to AMQP server {} (exchange {})",
        transport.broker().unwrap_or_default(),
        transport.control_exchange()
    );
    Ok(transport)
}

/// nova's `conductor_api.wait_until_ready`, bounded: a compute that cannot
/// reach its conductor must say so and exit rather than hang silently.
async fn wait_for_conductor(conductor: &Conductor, ctx: &RequestContext) -> Result<(), StartupError> {
    let policy = ReadinessPolicy { max_attempts: Some(CONDUCTOR_ATTEMPTS), ..ReadinessPolicy::default() };
    conductor.wait_until_ready(ctx, &policy).await.map_err(StartupError::ConductorUnavailable)?;
    info!("nova-conductor is ready");
    Ok(())
}

/// The queues Python nova-compute listens on: the `compute` topic (RPC 6.x)
/// and, since RPC 6.5, `compute-alt` for graceful shutdown.
fn rpc_targets(host: &str) -> Vec<Target> {
    vec![
        Target::topic("compute").with_server(host).with_version(COMPUTE_RPC_API_VERSION),
        Target::topic("compute-alt").with_server(host).with_version(COMPUTE_RPC_API_VERSION),
    ]
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
