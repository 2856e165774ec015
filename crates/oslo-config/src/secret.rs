//! Values that must never reach logs, `Debug` output, errors or dumps.
//!
//! oslo.config flags such options `secret=True` and prints them as `****`;
//! here the type does the masking, so forgetting is impossible. A transport
//! URL is only partly secret: the hosts are what an operator needs to see
//! when the service cannot connect, so only the passwords are masked.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every masked value prints as.
pub const MASK: &str = "***";

/// A secret string: prints and serialises as `***`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that sends it (Keystone, AMQP).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// An oslo.messaging transport URL
/// (`rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost`) whose
/// passwords are masked in `Debug`, `Display` and serialisation.
#[derive(Clone, PartialEq, Eq)]
pub struct TransportUrl(String);

impl TransportUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The real URL, for the messaging crate that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with the password of every host replaced by `***`.
    pub fn masked(&self) -> String {
        mask_url_passwords(&self.0)
    }
}

impl fmt::Debug for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl fmt::Display for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for TransportUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for TransportUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(TransportUrl)
    }
}

/// Masks `user:pass@` → `user:***@` in each comma-separated host of a URL.
///
/// oslo's multi-host form repeats credentials per host, and a password may
/// itself contain `:` or (percent-encoded) anything, so each host entry is
/// cut at its last `@` and the first `:` before it.
pub(crate) fn mask_url_passwords(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The host list ends at the first '/' after the last '@' (the vhost).
    let authority_end = match rest.rfind('@') {
        Some(at) => rest[at..].find('/').map_or(rest.len(), |p| at + p),
        None => return url.to_owned(),
    };
    let (authority, tail) = rest.split_at(authority_end);
    let hosts: Vec<String> = authority.split(',').map(mask_one_host).collect();
    format!("{scheme}://{}{tail}", hosts.join(","))
}

fn mask_one_host(host: &str) -> String {
    let Some(at) = host.rfind('@') else {
        return host.to_owned();
    };
    let (userinfo, hostport) = host.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{MASK}{hostport}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_host_password() {
        let url = TransportUrl::new("rabbit://openstack:secret@192.0.2.10:5672,openstack:s3:cr@t@192.0.2.11:5672//");
        assert_eq!(url.masked(), "rabbit://openstack:***@192.0.2.10:5672,openstack:***@192.0.2.11:5672//");
        assert!(!format!("{url:?}").contains("secret"));
    }

    #[test]
    fn url_without_credentials_is_unchanged() {
        assert_eq!(mask_url_passwords("rabbit://"), "rabbit://");
        assert_eq!(mask_url_passwords("rabbit://h:5672/v"), "rabbit://h:5672/v");
        assert_eq!(mask_url_passwords("rabbit://user@h/"), "rabbit://user@h/");
    }

    #[test]
    fn secret_debug_and_json_are_masked() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"***\"".trim_matches('"'));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
