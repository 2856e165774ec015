//! oslo's `Target`: where a message goes (client side) or what a server
//! listens for, plus oslo's version-compatibility rule.

/// The destination of messages, or the endpoint description of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Exchange; `None` means the transport's `control_exchange`.
    pub exchange: Option<String>,
    /// Topic, e.g. `compute` or `conductor`.
    pub topic: String,
    /// Server, e.g. the compute host; routes to `<topic>.<server>`.
    pub server: Option<String>,
    /// Namespace of the endpoint methods (`baseapi` for ping).
    pub namespace: Option<String>,
    /// API version, e.g. `6.0`.
    pub version: Option<String>,
    /// Send to every server listening on the topic.
    pub fanout: bool,
}

impl Target {
    /// A target for `topic`.
    pub fn topic(topic: impl Into<String>) -> Self {
        Self { topic: topic.into(), ..Self::default() }
    }

    /// Sets the server.
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// Sets the exchange.
    pub fn with_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = Some(exchange.into());
        self
    }

    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the version.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Sets fanout.
    pub fn with_fanout(mut self, fanout: bool) -> Self {
        self.fanout = fanout;
        self
    }

    /// The routing key a cast or call to this target uses.
    pub fn routing_key(&self) -> String {
        match &self.server {
            Some(server) => format!("{}.{}", self.topic, server),
            None => self.topic.clone(),
        }
    }
}

/// oslo's `version_is_compatible(imp_version, version)`: same major, and the
/// requested minor (then revision) not above the implemented one. Versions
/// that are not numbers are incompatible.
pub fn version_is_compatible(imp_version: &str, version: &str) -> bool {
    let (Some(imp), Some(req)) = (parse_version(imp_version), parse_version(version)) else {
        return false;
    };
    imp.0 == req.0 && (req.1 < imp.1 || (req.1 == imp.1 && req.2 <= imp.2))
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let rev = match parts.next() {
        Some(r) => r.parse().ok()?,
        None => 0,
    };
    Some((major, minor, rev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_version_rules() {
        assert!(version_is_compatible("6.5", "6.0"));
        assert!(version_is_compatible("6.5", "6.5"));
        assert!(!version_is_compatible("6.5", "6.6"));
        assert!(!version_is_compatible("6.5", "5.0"));
        assert!(!version_is_compatible("6.5", "7.0"));
        assert!(version_is_compatible("2.0", "2.0"));
        assert!(!version_is_compatible("2.0", "2.1"));
        assert!(!version_is_compatible("1.0", "x"));
        assert!(version_is_compatible("1.0.2", "1.0.1"));
        assert!(!version_is_compatible("1.0", "1.0.1"));
    }

    #[test]
    fn routing_key_includes_server() {
        assert_eq!(Target::topic("compute").with_server("cmp1").routing_key(), "compute.cmp1");
        assert_eq!(Target::topic("conductor").routing_key(), "conductor");
    }
}
