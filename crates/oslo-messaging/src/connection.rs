//! Opening one AMQP connection to one broker of the transport URL: the URI
//! lapin needs (credentials, vhost, heartbeat, login method), TLS (the
//! [`crate::tls`] configuration), the socket options py-amqp and oslo set on the broker
//! socket (`TCP_USER_TIMEOUT`, keepalive, `TCP_NODELAY`), oslo's
//! `connection_name`, and host failover order.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::tcp::{AMQPUriTcpExt, AsyncTcpStream, RustlsConnector, TLSConfig};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo, SASLMechanism};
use lapin::{Connection, ConnectionProperties};
use tracing::{error, info};

use error_chain::Chain;

use crate::error::Error;
use crate::options::RabbitOptions;
use crate::tls;
use crate::url::{TransportHost, TransportUrl};

/// How long one connection attempt to one host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// py-amqp's keepalive defaults (`DEFAULT_SOCKET_SETTINGS`), which every
/// oslo.messaging broker socket carries: probe after 60 s idle, every 10 s,
/// give up after 9 unanswered probes.
const KEEPIDLE: Duration = Duration::from_secs(60);
const KEEPINTVL: Duration = Duration::from_secs(10);
const KEEPCNT: u32 = 9;

/// `TCP_USER_TIMEOUT` in milliseconds as oslo's
/// `Connection.set_transport_socket_timeout()` leaves it on an idle broker
/// socket: the heartbeat timeout when heartbeats are on, else 0 (the
/// kernel's default). Unacknowledged data older than this drops the
/// connection, so a dead broker is noticed within the heartbeat window
/// even while a publish is blocked in the kernel.
pub fn tcp_user_timeout_ms(options: &RabbitOptions) -> u32 {
    u32::from(options.heartbeat_timeout_threshold) * 1000
}

/// Applies py-amqp's and oslo's socket options to a freshly connected socket.
fn tune_socket(fd: impl AsFd, user_timeout_ms: u32) -> std::io::Result<()> {
    use rustix::net::sockopt;
    let fd = fd.as_fd();
    sockopt::set_tcp_nodelay(fd, true)?;
    sockopt::set_socket_keepalive(fd, true)?;
    sockopt::set_tcp_keepidle(fd, KEEPIDLE)?;
    sockopt::set_tcp_keepintvl(fd, KEEPINTVL)?;
    sockopt::set_tcp_keepcnt(fd, KEEPCNT)?;
    sockopt::set_tcp_user_timeout(fd, user_timeout_ms)?;
    Ok(())
}

/// Everything needed to (re)connect, fixed at transport creation.
pub(crate) struct Connector {
    hosts: Vec<TransportHost>,
    vhost: String,
    options: RabbitOptions,
    tls: Option<RustlsConnector>,
    cursor: AtomicUsize,
    connection_id: String,
}

impl Connector {
    pub fn new(url: &TransportUrl, options: &RabbitOptions) -> Result<Self, Error> {
        options.validate()?;
        let ssl = options.ssl || url.ssl_requested();
        let tls = if ssl { Some(RustlsConnector::from(tls::client_config(options)?)) } else { None };
        let mut hosts = url.hosts.clone();
        // oslo shuffles the hosts once, then fails over round-robin.
        shuffle(&mut hosts);
        Ok(Self {
            hosts,
            vhost: url.virtual_host.clone(),
            options: options.clone(),
            tls,
            cursor: AtomicUsize::new(0),
            connection_id: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Tries each host once, starting with the next one in failover order.
    pub async fn connect_any(&self) -> Result<(Connection, String), Error> {
        let mut last = None;
        for _ in 0..self.hosts.len() {
            let host = self.next_host();
            let label = format!("{}:{}", host.hostname, host.port);
            match self.connect_host(host).await {
                Ok(conn) => {
                    info!(connection_id = %self.connection_id, broker = %label, "connected to AMQP server");
                    return Ok((conn, label));
                }
                Err(e) => {
                    error!(connection_id = %self.connection_id, broker = %label, error = %Chain(&e), "AMQP server is unreachable");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(Error::Config("transport_url has no hosts".into())))
    }

    fn next_host(&self) -> &TransportHost {
        let i = if self.options.kombu_failover_strategy == "shuffle" {
            random_index(self.hosts.len())
        } else {
            self.cursor.fetch_add(1, Ordering::Relaxed) % self.hosts.len()
        };
        &self.hosts[i]
    }

    async fn connect_host(&self, host: &TransportHost) -> Result<Connection, Error> {
        let uri = self.uri(host);
        let props = ConnectionProperties::default().with_connection_name(connection_name(&self.connection_id).into());
        let runtime = lapin::runtime::default_runtime().map_err(|e| Error::connection("start lapin runtime", e))?;
        let tls = self.tls.clone();
        let user_timeout_ms = tcp_user_timeout_ms(&self.options);
        // lapin's own connector gives no access to the socket: connect plain,
        // tune the socket, then upgrade to TLS ourselves. lapin calls this
        // again on each of its own reconnects, so every socket is tuned.
        let attempt = Connection::connector(
            uri,
            runtime,
            async move |uri: AMQPUri, runtime| {
                let mut plain = uri.clone();
                plain.scheme = AMQPScheme::AMQP;
                let stream = plain.connect_with_config_async(TLSConfig::default(), &runtime).await?;
                if let AsyncTcpStream::Plain(s) = &stream {
                    tune_socket(s.get_ref(), user_timeout_ms)?;
                }
                match (uri.scheme, &tls) {
                    (AMQPScheme::AMQPS, Some(connector)) => {
                        Ok(stream.into_rustls(connector, &uri.authority.host).await?)
                    }
                    _ => Ok(stream),
                }
            },
            props,
        );
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(result) => {
                result.map_err(|e| Error::connection(format!("connect to {}:{}", host.hostname, host.port), e))
            }
            Err(_) => Err(Error::Config(format!(
                "connecting to {}:{} timed out after {CONNECT_TIMEOUT:?}",
                host.hostname, host.port
            ))),
        }
    }

    fn uri(&self, host: &TransportHost) -> AMQPUri {
        let mechanism =
            if self.options.rabbit_login_method == "PLAIN" { SASLMechanism::Plain } else { SASLMechanism::AMQPlain };
        AMQPUri {
            scheme: if self.tls.is_some() { AMQPScheme::AMQPS } else { AMQPScheme::AMQP },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username: host.username.clone(), password: host.password.clone() },
                host: host.hostname.clone(),
                port: host.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                heartbeat: Some(self.options.heartbeat_timeout_threshold),
                auth_mechanism: Some(mechanism),
                connection_timeout: Some(CONNECT_TIMEOUT.as_millis() as u64),
                ..Default::default()
            },
        }
    }

    pub fn options(&self) -> &RabbitOptions {
        &self.options
    }
}

/// oslo's connection name: `<argv0 basename>:<pid>:<connection uuid>`.
fn connection_name(connection_id: &str) -> String {
    let argv0 = std::env::args().next().unwrap_or_default();
    let base = std::path::Path::new(&argv0).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{base}:{}:{connection_id}", std::process::id())
}

fn random_index(len: usize) -> usize {
    let r = u128::from_le_bytes(*uuid::Uuid::new_v4().as_bytes());
    (r % len.max(1) as u128) as usize
}

fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, random_index(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_carries_credentials_vhost_heartbeat_and_amqplain() {
        let url = TransportUrl::parse("rabbit://nova:pw@h1:5673/vh").unwrap();
        let c = Connector::new(&url, &RabbitOptions::default()).unwrap();
        let uri = c.uri(&c.hosts[0]);
        assert_eq!(uri.authority.userinfo.username, "nova");
        assert_eq!(uri.authority.port, 5673);
        assert_eq!(uri.vhost, "vh");
        assert_eq!(uri.query.heartbeat, Some(60));
        assert_eq!(uri.query.auth_mechanism, Some(SASLMechanism::AMQPlain));
        assert_eq!(uri.scheme, AMQPScheme::AMQP);
    }

    #[test]
    fn round_robin_visits_every_host() {
        let url = TransportUrl::parse("rabbit://a,b,c/").unwrap();
        let c = Connector::new(&url, &RabbitOptions::default()).unwrap();
        let mut seen: Vec<String> = (0..3).map(|_| c.next_host().hostname.clone()).collect();
        seen.sort();
        assert_eq!(seen, ["a", "b", "c"]);
    }

    #[test]
    fn tcp_user_timeout_follows_the_heartbeat_like_oslo() {
        assert_eq!(tcp_user_timeout_ms(&RabbitOptions::default()), 60_000);
        let off = RabbitOptions { heartbeat_timeout_threshold: 0, ..Default::default() };
        assert_eq!(tcp_user_timeout_ms(&off), 0);
    }

    #[test]
    fn missing_tls_files_are_named() {
        let o = RabbitOptions { ssl: true, ssl_ca_file: "/nonexistent/ca.pem".into(), ..Default::default() };
        let e = Connector::new(&TransportUrl::parse("rabbit://h/").unwrap(), &o).err().unwrap();
        assert!(e.to_string().contains("ssl_ca_file"), "{e}");
    }
}
