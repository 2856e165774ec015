//! `transport_url` parsing, as oslo.messaging's `TransportURL.parse`:
//! `rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost?query`.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Error;

/// One broker of a transport URL.
#[derive(Clone, PartialEq, Eq)]
pub struct TransportHost {
    /// Host name or address (IPv6 without brackets).
    pub hostname: String,
    /// Port; 5672 when the URL has none.
    pub port: u16,
    /// User name; `guest` when the URL has none (kombu's default).
    pub username: String,
    /// Password; `guest` when the URL has none.
    pub password: String,
}

impl fmt::Debug for TransportHost {
    // Passwords end up in logs through Debug; never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.username, self.hostname, self.port)
    }
}

/// A parsed `transport_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportUrl {
    /// The scheme, e.g. `rabbit`.
    pub transport: String,
    /// The brokers, in URL order (the transport shuffles them, as oslo does).
    pub hosts: Vec<TransportHost>,
    /// The virtual host; `/` when the URL path is empty.
    pub virtual_host: String,
    /// Query parameters (per-URL option overrides in oslo).
    pub query: BTreeMap<String, String>,
}

impl TransportUrl {
    /// Parses a transport URL. Only `rabbit` (and `amqp`, `kombu+amqp`) schemes
    /// are accepted: this crate implements the RabbitMQ driver only.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::InvalidTransportUrl { url: redact(url), reason: why.to_owned() };
        let (transport, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme specified"))?;
        if !matches!(transport, "rabbit" | "amqp" | "kombu+rabbit" | "kombu+amqp") {
            return Err(invalid("only the rabbit transport is supported"));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, parse_query(q)),
            None => (rest, BTreeMap::new()),
        };
        let (netloc, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        // kombu treats an empty or missing vhost as the default vhost "/".
        let virtual_host = match path.map(percent_decode) {
            Some(v) if !v.is_empty() => v,
            _ => "/".to_owned(),
        };
        let hosts = netloc
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| parse_host(h).map_err(|why| invalid(&why)))
            .collect::<Result<Vec<_>, _>>()?;
        let hosts = if hosts.is_empty() { vec![default_host()] } else { hosts };
        Ok(Self { transport: transport.to_owned(), hosts, virtual_host, query })
    }

    /// Whether the URL asks for TLS (`?ssl=1`, oslo's per-URL override).
    pub fn ssl_requested(&self) -> bool {
        self.query.get("ssl").is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }
}

impl std::str::FromStr for TransportUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

fn default_host() -> TransportHost {
    TransportHost { hostname: "localhost".into(), port: 5672, username: "guest".into(), password: "guest".into() }
}

fn parse_host(host: &str) -> Result<TransportHost, String> {
    let (creds, hostport) = match host.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, host),
    };
    let (username, password) = match creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (percent_decode(u), percent_decode(p)),
            None => (percent_decode(c), "guest".to_owned()),
        },
        None => ("guest".to_owned(), "guest".to_owned()),
    };
    let (hostname, port) = parse_host_port(hostport)?;
    Ok(TransportHost { hostname, port, username, password })
}

/// `netutils.parse_host_port`: `host`, `host:port`, `[v6]`, `[v6]:port`.
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| format!("invalid port {p:?}"));
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
        let port = match after.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None => 5672,
        };
        return Ok((h.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_owned(), port_of(p)?)),
        // A bare IPv6 address without brackets has no port.
        Some(_) => Ok((s.to_owned(), 5672)),
        None if s.is_empty() => Ok(("localhost".to_owned(), 5672)),
        None => Ok((s.to_owned(), 5672)),
    }
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(&v.replace('+', " "));
        // parse_qs + ','.join: repeated keys are joined with commas.
        out.entry(percent_decode(k))
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v)
            })
            .or_insert(v);
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with passwords replaced, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (netloc, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let hosts: Vec<String> = netloc
        .split(',')
        .map(|h| match h.rsplit_once('@') {
            Some((c, hp)) => {
                let user = c.split_once(':').map_or(c, |(u, _)| u);
                format!("{user}:***@{hp}")
            }
            None => h.to_owned(),
        })
        .collect();
    format!("{scheme}://{}{tail}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_hosts_credentials_and_vhost() {
        let u =
            TransportUrl::parse("rabbit://nova:p%40ss@rmq1:5671,nova:x@[fd00::2]:5673,rmq3/nova%2Fprod?ssl=1").unwrap();
        assert_eq!(u.hosts.len(), 3);
        assert_eq!(u.hosts[0].password, "p@ss");
        assert_eq!(u.hosts[0].port, 5671);
        assert_eq!(u.hosts[1].hostname, "fd00::2");
        assert_eq!(u.hosts[1].port, 5673);
        assert_eq!((u.hosts[2].hostname.as_str(), u.hosts[2].port), ("rmq3", 5672));
        assert_eq!(u.hosts[2].username, "guest");
        assert_eq!(u.virtual_host, "nova/prod");
        assert!(u.ssl_requested());
    }

    #[test]
    fn empty_vhost_is_default_vhost() {
        assert_eq!(TransportUrl::parse("rabbit://guest:guest@127.0.0.1:5672/").unwrap().virtual_host, "/");
        assert_eq!(TransportUrl::parse("rabbit://127.0.0.1").unwrap().virtual_host, "/");
        assert_eq!(TransportUrl::parse("rabbit:///").unwrap().hosts[0].hostname, "localhost");
    }

    #[test]
    fn rejects_other_transports_without_leaking_passwords() {
        let e = TransportUrl::parse("kafka://u:secret@h:9092/").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        assert!(TransportUrl::parse("no-scheme").is_err());
        assert!(TransportUrl::parse("rabbit://h:notaport/").is_err());
        assert!(!format!("{:?}", TransportUrl::parse("rabbit://u:secret@h/").unwrap()).contains("secret"));
    }
}
