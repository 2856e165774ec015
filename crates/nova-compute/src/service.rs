//! The service's life: start-up in nova's order, serving, and a clean stop.
//!
//! Start-up: configuration (done by `main`) → logging → libvirt → the
//! message broker → nova-conductor answers → RPC servers on `compute.HOST`
//! and `compute-alt.HOST`. A step that cannot be done is a clear error and a
//! non-zero exit, never a half-started service that consumes casts it
//! cannot handle.

use std::time::Duration;

use libvirt_snapshot::Hypervisor;
use oslo_config::Config;
use std::sync::Arc;

use nova_objects::{
    register_service, ConductorApi, ConductorError, Heartbeat, OsloConductorTransport, ReadinessPolicy,
    RequestContext, ServiceOptions,
};
use oslo_messaging::{Dispatcher, RemoteError, RpcServer, Target, Transport, TransportUrl};
use tracing::{error, info};

use crate::transport_options::{rabbit_options, OutOfRange};

/// nova-compute's RPC API version (nova 34: `ComputeManager.target`).
pub const COMPUTE_RPC_API_VERSION: &str = "6.5";

/// How many pings start-up sends nova-conductor before giving up (nova's
/// first ten use a 10 s timeout: about two minutes in all).
const CONDUCTOR_ATTEMPTS: u32 = 12;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open log file: {0}")]
    Logging(#[from] std::io::Error),
    #[error("cannot connect to libvirt at {uri}: {source}")]
    Libvirt { uri: String, source: libvirt_snapshot::SnapshotError },
    #[error("invalid [DEFAULT] transport_url: {0}")]
    TransportUrl(oslo_messaging::Error),
    #[error(transparent)]
    RabbitOptions(#[from] OutOfRange),
    #[error("cannot connect to the message broker: {0}")]
    Broker(oslo_messaging::Error),
    #[error("nova-conductor did not answer: {0}; is it running?")]
    ConductorUnavailable(ConductorError),
    #[error("cannot register the nova-compute service: {0}")]
    Registration(ConductorError),
    #[error("cannot start the RPC servers: {0}")]
    RpcServer(oslo_messaging::Error),
}

/// Runs the service until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), StartupError> {
    let host = cfg.default.host.clone();
    connect_libvirt(&cfg).await?;
    let transport = connect_broker(&cfg).await?;
    let rpc_timeout = Duration::from_secs(u64::try_from(cfg.default.rpc_response_timeout).unwrap_or(60).max(1));
    let conductor = Arc::new(ConductorApi::new(OsloConductorTransport::new(&transport, rpc_timeout)));
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

    let server = RpcServer::start(&transport, rpc_targets(&host), dispatcher())
        .await
        .map_err(StartupError::RpcServer)?;
    let heartbeat = Heartbeat::start(conductor.clone(), admin, service, &service_opts);
    info!("nova-compute started on host {host}: serving {}", server.queue_names().join(", "));

    let signal = shutdown_signal().await;
    info!("{signal} received: stopping RPC servers");
    server.shutdown().await;
    heartbeat.stop().await;
    transport.close().await;
    info!("nova-compute stopped");
    Ok(())
}

/// Opens libvirt and logs what it runs; blocking calls stay off the runtime.
async fn connect_libvirt(cfg: &Config) -> Result<(), StartupError> {
    let uri = cfg.libvirt.effective_uri().to_owned();
    let probe_uri = uri.clone();
    let probed = tokio::task::spawn_blocking(move || {
        let hypervisor = Hypervisor::open(&probe_uri)?;
        hypervisor.versions()
    })
    .await
    .expect("libvirt probe thread panicked");
    let versions = probed.map_err(|source| StartupError::Libvirt { uri: uri.clone(), source })?;
    info!(
        "Connected to libvirt at {uri}: libvirt {}, {} {} on {}",
        versions.libvirt, versions.hypervisor_type, versions.hypervisor, versions.hostname
    );
    Ok(())
}

async fn connect_broker(cfg: &Config) -> Result<Transport, StartupError> {
    let url = TransportUrl::parse(cfg.default.transport_url.expose()).map_err(StartupError::TransportUrl)?;
    let options = rabbit_options(&cfg.oslo_messaging_rabbit)?;
    let transport = Transport::connect(&url, options, cfg.default.control_exchange.clone())
        .await
        .map_err(StartupError::Broker)?;
    info!(
        "Connected to AMQP server {} (exchange {})",
        transport.broker().unwrap_or_default(),
        transport.control_exchange()
    );
    Ok(transport)
}

/// nova's `conductor_api.wait_until_ready`, bounded: a compute that cannot
/// reach its conductor must say so and exit rather than hang silently.
async fn wait_for_conductor(
    conductor: &ConductorApi<OsloConductorTransport>,
    ctx: &RequestContext,
) -> Result<(), StartupError> {
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

/// Methods not (yet) served here are refused the way oslo refuses a method
/// the endpoint lacks, so a caller gets `NoSuchMethod` at once instead of a
/// timeout.
fn dispatcher() -> Dispatcher {
    Dispatcher::new().fallback(|ctx, method, _args| async move {
        error!(request_id = ctx.request_id().unwrap_or("-"), "Method {method} is not supported by this compute service");
        Err::<serde_json::Value, _>(RemoteError::no_such_method(&method))
    })
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
