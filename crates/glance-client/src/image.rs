//! Glance v2 image records and metadata changes: `ImageMeta` as Glance returns it, `ImageUpdate`
//! as nova asks for it, and the json-patch (`ImagePatch`) that carries only the changed keys, the
//! way glanceclient's warlock model generates it.
//!
//! Must not know: HTTP or which image is being changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// The lifecycle status of an image (`queued` → `saving` → `active`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStatus {
    /// Reserved, no data yet: the only state that accepts an upload.
    Queued,
    /// Data is being written.
    Saving,
    /// Data stored and verified.
    Active,
    /// A v1-era failure state.
    Killed,
    /// Deleted (visible to admins with `show_deleted`).
    Deleted,
    /// Deleted, data scrubbing pending.
    PendingDelete,
    /// Data hidden by an admin.
    Deactivated,
    /// Interoperable import: data staged.
    Uploading,
    /// Interoperable import running.
    Importing,
    /// A status this client does not know.
    Other(String),
}

impl ImageStatus {
    /// `deleted` or `pending_delete`: an image its owner has deleted. Glance shows such an image
    /// only to admins, or when its own delete stopped half-way (status written, row not yet
    /// marked deleted, e.g. on a database error), and refuses every change to it.
    pub fn is_deleted(&self) -> bool {
        matches!(self, Self::Deleted | Self::PendingDelete)
    }
}

impl From<&str> for ImageStatus {
    fn from(status: &str) -> Self {
        match status {
            "queued" => Self::Queued,
            "saving" => Self::Saving,
            "active" => Self::Active,
            "killed" => Self::Killed,
            "deleted" => Self::Deleted,
            "pending_delete" => Self::PendingDelete,
            "deactivated" => Self::Deactivated,
            "uploading" => Self::Uploading,
            "importing" => Self::Importing,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::Queued => "queued",
            Self::Saving => "saving",
            Self::Active => "active",
            Self::Killed => "killed",
            Self::Deleted => "deleted",
            Self::PendingDelete => "pending_delete",
            Self::Deactivated => "deactivated",
            Self::Uploading => "uploading",
            Self::Importing => "importing",
            Self::Other(other) => other,
        };
        f.write_str(text)
    }
}

/// An image as `GET /v2/images/{id}` returns it.
#[derive(Debug, Clone)]
pub struct ImageMeta {
    /// `id`.
    pub id: String,
    /// `name`.
    pub name: Option<String>,
    /// `status`.
    pub status: ImageStatus,
    /// `disk_format` (`raw`, `qcow2`, ...).
    pub disk_format: Option<String>,
    /// `container_format` (`bare`, ...).
    pub container_format: Option<String>,
    /// `size` in bytes, once data is stored.
    pub size: Option<u64>,
    /// `virtual_size`, when Glance could inspect the data.
    pub virtual_size: Option<u64>,
    /// `checksum` (md5).
    pub checksum: Option<String>,
    /// `os_hash_algo` (`sha512` by default).
    pub os_hash_algo: Option<String>,
    /// `os_hash_value`, hex.
    pub os_hash_value: Option<String>,
    /// `owner` (project id).
    pub owner: Option<String>,
    /// `created_at`.
    pub created_at: Option<OffsetDateTime>,
    /// Custom properties (`image_type`, `instance_uuid`, ...): every key that is not a base
    /// attribute of the v2 schema.
    pub properties: BTreeMap<String, Value>,
    /// The record as Glance sent it, to diff updates against.
    raw: Map<String, Value>,
}

/// Base attributes of the v2 image schema; everything else is a custom property.
const BASE_ATTRIBUTES: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "min_ram",
    "min_disk",
    "created_at",
    "updated_at",
    "tags",
    "direct_url",
    "locations",
    "self",
    "file",
    "schema",
    "disk_format",
    "container_format",
    "stores",
];

#[derive(Deserialize)]
struct WireImage {
    id: String,
    name: Option<String>,
    status: String,
    disk_format: Option<String>,
    container_format: Option<String>,
    size: Option<u64>,
    virtual_size: Option<u64>,
    checksum: Option<String>,
    os_hash_algo: Option<String>,
    os_hash_value: Option<String>,
    owner: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    created_at: Option<OffsetDateTime>,
}

impl ImageMeta {
    /// Reads an image record.
    pub fn from_json(json: Value) -> Result<Self, serde_json::Error> {
        let wire: WireImage = serde_json::from_value(json.clone())?;
        let raw = match json {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let properties = raw
            .iter()
            .filter(|(k, _)| !BASE_ATTRIBUTES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self {
            id: wire.id,
            name: wire.name,
            status: ImageStatus::from(wire.status.as_str()),
            disk_format: wire.disk_format,
            container_format: wire.container_format,
            size: wire.size,
            virtual_size: wire.virtual_size,
            checksum: wire.checksum,
            os_hash_algo: wire.os_hash_algo,
            os_hash_value: wire.os_hash_value,
            owner: wire.owner,
            created_at: wire.created_at,
            properties,
            raw,
        })
    }

    /// Any attribute or property by name, as Glance sent it.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.raw.get(key)
    }

    /// A custom property as a string (they are strings in v2).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }
}

/// What the caller wants an image to look like: nova's `image_meta` for `update`. Only the keys
/// named here are touched; `purge_props` is not offered because the snapshot path never purges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageUpdate {
    values: BTreeMap<String, Value>,
    removals: Vec<String>,
    location: Option<String>,
}

impl ImageUpdate {
    /// An empty update.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a base attribute (`name`, `disk_format`, `container_format`, `min_disk`, `visibility`,
    /// ...) or a custom property. Custom properties are sent as strings, like nova's
    /// `_convert_to_v2` (`True` stays Python-cased); `null` means "leave alone".
    pub fn set(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }

    /// Removes a custom property if the image has it.
    pub fn remove(mut self, key: impl Into<String>) -> Self {
        self.removals.push(key.into());
        self
    }

    /// A data location to register through the locations API (the RBD direct snapshot path),
    /// after the metadata PATCH; nova pops `location` from the metadata the same way.
    pub fn location(mut self, url: impl Into<String>) -> Self {
        self.location = Some(url.into());
        self
    }

    /// The location to add, if any.
    pub fn location_url(&self) -> Option<&str> {
        self.location.as_deref()
    }
}

/// One RFC 6902 operation, in the subset Glance accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    /// `add`, `replace` or `remove`.
    pub op: &'static str,
    /// `/<attribute>`, with `~` and `/` escaped.
    pub path: String,
    /// Absent for `remove`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A json-patch document for `PATCH /v2/images/{id}`
/// (`application/openstack-images-v2.1-json-patch`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ImagePatch(pub Vec<PatchOp>);

impl ImagePatch {
    /// The operations that turn `current` into what `update` asks for: `replace` for changed
    /// keys, `add` for new ones, `remove` for present ones; unchanged keys are left out, so a
    /// concurrent change of another key is never overwritten.
    pub fn between(current: &ImageMeta, update: &ImageUpdate) -> Self {
        let mut ops = Vec::new();
        for (key, value) in &update.values {
            let Some(value) = wire_value(key, value) else {
                continue;
            };
            match current.attribute(key) {
                Some(existing) if *existing == value => {}
                Some(_) => ops.push(PatchOp { op: "replace", path: pointer(key), value: Some(value) }),
                None => ops.push(PatchOp { op: "add", path: pointer(key), value: Some(value) }),
            }
        }
        for key in &update.removals {
            if current.attribute(key).is_some() && !update.values.contains_key(key) {
                ops.push(PatchOp { op: "remove", path: pointer(key), value: None });
            }
        }
        Self(ops)
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Base attributes keep their JSON type; custom properties become strings.
fn wire_value(key: &str, value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        _ if BASE_ATTRIBUTES.contains(&key) => Some(value.clone()),
        Value::String(_) => Some(value.clone()),
        Value::Bool(true) => Some(Value::from("True")),
        Value::Bool(false) => Some(Value::from("False")),
        other => Some(Value::from(other.to_string())),
    }
}

/// RFC 6901 escaping of one path segment.
fn pointer(key: &str) -> String {
    format!("/{}", key.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn queued_image() -> ImageMeta {
        ImageMeta::from_json(json!({
            "id": "a0c1", "name": "snap", "status": "queued", "disk_format": null,
            "container_format": null, "size": null, "visibility": "private", "min_disk": 0,
            "created_at": "2026-11-22T15:00:00Z", "self": "/v2/images/a0c1",
            "image_type": "snapshot", "instance_uuid": "u1", "user_id": "x"
        }))
        .unwrap()
    }

    #[test]
    fn reads_base_attributes_and_properties() {
        let image = queued_image();
        assert_eq!(image.status, ImageStatus::Queued);
        assert_eq!(image.property("image_type"), Some("snapshot"));
        assert!(!image.properties.contains_key("self"));
        assert_eq!(image.created_at.unwrap().year(), 2026);
        assert_eq!(ImageStatus::from("pending_delete").to_string(), "pending_delete");
    }

    #[test]
    fn patch_carries_only_changes_and_stringifies_properties() {
        let update = ImageUpdate::new()
            .set("name", "snap")
            .set("disk_format", "qcow2")
            .set("min_disk", 1)
            .set("instance_uuid", "u1")
            .set("image_state", "available")
            .set("os_require_quiesce", true)
            .set("hw_disk_bus", Value::Null)
            .set("ram", 512)
            .remove("user_id")
            .remove("not_there");
        let patch = serde_json::to_value(ImagePatch::between(&queued_image(), &update)).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "replace", "path": "/disk_format", "value": "qcow2"},
                {"op": "add", "path": "/image_state", "value": "available"},
                {"op": "replace", "path": "/min_disk", "value": 1},
                {"op": "add", "path": "/os_require_quiesce", "value": "True"},
                {"op": "add", "path": "/ram", "value": "512"},
                {"op": "remove", "path": "/user_id"}
            ])
        );
        assert!(ImagePatch::between(&queued_image(), &ImageUpdate::new().set("name", "snap")).is_empty());
        assert_eq!(pointer("a/b~c"), "/a~1b~0c");
    }
}
