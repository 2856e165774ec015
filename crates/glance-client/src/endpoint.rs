//! Which Glance to talk to: `[glance] api_servers` round-robin from a random start (nova
//! shuffles then cycles, taking the next server on each attempt), else `endpoint_override`, else
//! the `image` endpoint of the request's service catalog (or the service user's) for the
//! configured interfaces and region; the version suffix is stripped either way, as nova does.
//!
//! Must not know: HTTP, retries or authentication.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

use url::Url;

use crate::context::ServiceCatalog;
use crate::error::{ConfigError, GlanceError};
use crate::options::GlanceOptions;

/// The endpoint policy built once from `[glance]`.
#[derive(Debug)]
pub struct ImageEndpoints {
    api_servers: Vec<Url>,
    next: AtomicUsize,
    endpoint_override: Option<Url>,
    service_type: String,
    interfaces: Vec<String>,
    region_name: Option<String>,
}

impl ImageEndpoints {
    /// Validates the configured URLs.
    pub fn new(options: &GlanceOptions) -> Result<Self, GlanceError> {
        let api_servers = options.api_servers.iter().map(|s| api_server_url(s)).collect::<Result<Vec<_>, _>>()?;
        let endpoint_override = options.endpoint_override.as_deref().map(versionless_url).transpose()?;
        // A random first server spreads computes over the list, like nova's `random.shuffle`.
        let start = RandomState::new().hash_one(std::process::id()) as usize;
        Ok(Self {
            next: AtomicUsize::new(start % api_servers.len().max(1)),
            api_servers,
            endpoint_override,
            service_type: options.service_type.clone(),
            interfaces: options.valid_interfaces.clone(),
            region_name: options.region_name.clone(),
        })
    }

    /// The base URL (ending in `/`, no version) for the next attempt. `catalogs` are tried in
    /// order: the request context's, then the service user's token catalog.
    pub fn next(&self, catalogs: &[&ServiceCatalog]) -> Result<Url, GlanceError> {
        if !self.api_servers.is_empty() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.api_servers.len();
            return Ok(self.api_servers[i].clone());
        }
        if let Some(url) = &self.endpoint_override {
            return Ok(url.clone());
        }
        let region = self.region_name.as_deref();
        catalogs
            .iter()
            .find_map(|c| c.endpoint(&self.service_type, &self.interfaces, region))
            .map(versionless_url)
            .transpose()?
            .ok_or_else(|| GlanceError::EndpointNotFound {
                service_type: self.service_type.clone(),
                interfaces: self.interfaces.clone(),
            })
    }
}

/// nova prefixes `http://` to an `api_servers` entry without a scheme.
fn api_server_url(server: &str) -> Result<Url, GlanceError> {
    if server.contains("//") {
        versionless_url(server)
    } else {
        versionless_url(&format!("http://{server}"))
    }
}

/// Parses `endpoint` and strips a trailing `/v2`, `/v2.1`, ... (nova's
/// `re.sub(r'/v\d+(\.\d+)?/?$', '/', endpoint)`), leaving a base that ends in `/`.
fn versionless_url(endpoint: &str) -> Result<Url, GlanceError> {
    let mut url = Url::parse(endpoint).map_err(|e| ConfigError::caused(format!("image endpoint {endpoint:?}"), e))?;
    let path = url.path().trim_end_matches('/');
    let path = match path.rsplit_once('/') {
        Some((head, last)) if is_version(last) => head,
        _ => path,
    };
    url.set_path(&format!("{path}/"));
    Ok(url)
}

fn is_version(segment: &str) -> bool {
    let Some(number) = segment.strip_prefix('v') else {
        return false;
    };
    let (major, minor) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strips_version_suffixes_like_nova() {
        let strip = |s: &str| versionless_url(s).unwrap().to_string();
        assert_eq!(strip("http://g:9292"), "http://g:9292/");
        assert_eq!(strip("http://g:9292/v2"), "http://g:9292/");
        assert_eq!(strip("http://g:9292/v2.1/"), "http://g:9292/");
        assert_eq!(strip("https://cloud/image/v2"), "https://cloud/image/");
        assert_eq!(strip("https://cloud/image"), "https://cloud/image/");
        assert_eq!(strip("https://cloud/v2x"), "https://cloud/v2x/");
    }

    #[test]
    fn api_servers_rotate_and_get_a_scheme() {
        let options = GlanceOptions {
            api_servers: vec!["a:9292".into(), "https://b:9292/v2".into()],
            ..GlanceOptions::default()
        };
        let endpoints = ImageEndpoints::new(&options).unwrap();
        let first = endpoints.next(&[]).unwrap().to_string();
        let second = endpoints.next(&[]).unwrap().to_string();
        let mut both = [first.clone(), second];
        both.sort();
        assert_eq!(both, ["http://a:9292/", "https://b:9292/"]);
        assert_eq!(endpoints.next(&[]).unwrap().to_string(), first);
    }

    #[test]
    fn catalog_lookup_honours_override_interfaces_and_region() {
        let catalog = ServiceCatalog::from_json(&json!([{"type": "image", "endpoints": [
            {"interface": "public", "region_id": "R1", "url": "http://pub/v2"},
            {"interface": "internal", "region_id": "R2", "url": "http://int2"}]}]));
        let mut options = GlanceOptions { region_name: Some("R1".into()), ..GlanceOptions::default() };
        let endpoints = ImageEndpoints::new(&options).unwrap();
        assert_eq!(endpoints.next(&[&ServiceCatalog::default(), &catalog]).unwrap().as_str(), "http://pub/");

        options.region_name = Some("R3".into());
        let err = ImageEndpoints::new(&options).unwrap().next(&[&catalog]).unwrap_err();
        assert!(matches!(err, GlanceError::EndpointNotFound { .. }), "{err}");

        options.endpoint_override = Some("http://override:9292/v2/".into());
        assert_eq!(ImageEndpoints::new(&options).unwrap().next(&[]).unwrap().as_str(), "http://override:9292/");
    }
}
