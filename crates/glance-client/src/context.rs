//! What the clients need from a nova request context: the user's token, the global request id,
//! the project (for `[cinder] endpoint_template`) and the service catalog keystonemiddleware
//! handed to nova-api, and the catalog lookup of an endpoint (service type and name, interface
//! preference, region).
//!
//! Must not know: the RPC envelope or nova's other context fields; the service extracts these
//! values from the oslo.messaging context and passes them in.

use serde_json::Value;

/// The caller's identity for one Glance call, taken from the RPC context.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// `auth_token`: sent as `X-Auth-Token`. It may already be expired; the service token
    /// (when configured) is what makes Glance accept it anyway.
    pub auth_token: Option<String>,
    /// `global_request_id` (or `request_id` when the former is unset): sent as
    /// `X-OpenStack-Request-ID` so Glance's logs carry nova's id.
    pub global_request_id: Option<String>,
    /// `service_catalog` as nova stores it in the context.
    pub service_catalog: ServiceCatalog,
    /// `project_id`: substituted into `[cinder] endpoint_template` (`%(project_id)s`).
    pub project_id: Option<String>,
}

/// A Keystone service catalog in either shape it reaches nova: v2 (`publicURL`, `internalURL`,
/// `adminURL` per region, what keystonemiddleware puts in the context) or v3 (`interface`, `url`,
/// `region_id`, what a token response carries).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceCatalog {
    endpoints: Vec<CatalogEndpoint>,
}

/// One endpoint of one service, normalised to the v3 shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEndpoint {
    /// The service type (`image`, `volumev3`).
    pub service_type: String,
    /// The service name (`glance`, `cinderv3`), when the catalog gives one.
    pub service_name: Option<String>,
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// The region, when the catalog names one.
    pub region: Option<String>,
    /// The endpoint URL as published (possibly with a version suffix).
    pub url: String,
}

impl ServiceCatalog {
    /// Reads a catalog from its JSON (a list of services, either shape); unknown entries are
    /// skipped rather than refused, as keystoneauth does.
    pub fn from_json(catalog: &Value) -> Self {
        let services = catalog.as_array().map(Vec::as_slice).unwrap_or_default();
        let endpoints = services.iter().flat_map(service_endpoints).collect();
        Self { endpoints }
    }

    /// Whether the catalog has no endpoints at all.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The URL of `service_type` for the first interface in `interfaces` that has one, in
    /// `region` when given (keystoneauth's `get_endpoint` semantics).
    pub fn endpoint(&self, service_type: &str, interfaces: &[String], region: Option<&str>) -> Option<&str> {
        self.named_endpoint(service_type, None, interfaces, region)
    }

    /// As [`ServiceCatalog::endpoint`], and also matching the service name when `service_name`
    /// is given (nova's `[cinder] catalog_info` middle part).
    pub fn named_endpoint(
        &self,
        service_type: &str,
        service_name: Option<&str>,
        interfaces: &[String],
        region: Option<&str>,
    ) -> Option<&str> {
        interfaces.iter().find_map(|interface| {
            let interface = interface.strip_suffix("URL").unwrap_or(interface);
            self.endpoints
                .iter()
                .filter(|e| e.service_type == service_type && e.interface == interface)
                .filter(|e| service_name.is_none() || e.service_name.as_deref() == service_name)
                .find(|e| region.is_none() || e.region.as_deref() == region)
                .map(|e| e.url.as_str())
        })
    }
}

fn service_endpoints(service: &Value) -> Vec<CatalogEndpoint> {
    let Some(service_type) = service.get("type").and_then(Value::as_str) else {
        return Vec::new();
    };
    let service_name = service.get("name").and_then(Value::as_str);
    let endpoints = service.get("endpoints").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    endpoints.iter().flat_map(|e| endpoint_entries(service_type, service_name, e)).collect()
}

fn endpoint_entries(service_type: &str, service_name: Option<&str>, endpoint: &Value) -> Vec<CatalogEndpoint> {
    let text = |key: &str| endpoint.get(key).and_then(Value::as_str).map(str::to_owned);
    let region = text("region_id").or_else(|| text("region"));
    let make = |interface: &str, url: String| CatalogEndpoint {
        service_type: service_type.to_owned(),
        service_name: service_name.map(str::to_owned),
        interface: interface.to_owned(),
        region: region.clone(),
        url,
    };
    if let (Some(interface), Some(url)) = (text("interface"), text("url")) {
        return vec![make(&interface, url)];
    }
    ["public", "internal", "admin"]
        .iter()
        .filter_map(|interface| text(&format!("{interface}URL")).map(|url| make(interface, url)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn interfaces(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_v2_context_catalog() {
        let catalog = ServiceCatalog::from_json(&json!([
            {"type": "image", "name": "glance", "endpoints": [
                {"region": "R1", "publicURL": "https://pub:9292", "internalURL": "http://int:9292"},
                {"region": "R2", "internalURL": "http://int2:9292/v2"}]},
            {"type": "volumev3", "endpoints": [{"region": "R1", "publicURL": "http://cinder"}]}
        ]));
        let want = interfaces(&["internal", "public"]);
        assert_eq!(catalog.endpoint("image", &want, Some("R1")), Some("http://int:9292"));
        assert_eq!(catalog.endpoint("image", &want, Some("R2")), Some("http://int2:9292/v2"));
        assert_eq!(catalog.endpoint("image", &interfaces(&["publicURL"]), None), Some("https://pub:9292"));
        assert_eq!(catalog.endpoint("image", &interfaces(&["admin"]), None), None);
        let public = interfaces(&["public"]);
        assert_eq!(catalog.named_endpoint("image", Some("glance"), &public, None), Some("https://pub:9292"));
        assert_eq!(catalog.named_endpoint("image", Some("other"), &public, None), None);
    }

    #[test]
    fn reads_v3_token_catalog() {
        let catalog = ServiceCatalog::from_json(&json!([
            {"type": "image", "endpoints": [
                {"interface": "public", "region_id": "RegionOne", "url": "http://127.0.0.1:9292"}]}
        ]));
        assert_eq!(
            catalog.endpoint("image", &interfaces(&["internal", "public"]), Some("RegionOne")),
            Some("http://127.0.0.1:9292")
        );
        assert!(ServiceCatalog::from_json(&json!({"not": "a list"})).is_empty());
    }
}
