//! The image metadata nova keeps in an instance's `system_metadata`, read the
//! way nova's `utils.get_image_from_system_metadata` and
//! `objects.ImageMeta.from_instance` read it.
//!
//! The snapshot path needs it for two decisions — quiesce
//! (`hw_qemu_guest_agent`, `os_require_quiesce`) and the uploaded image's
//! `container_format` — and keeps the rest for notifications.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

const PREFIX: &str = "image_";
/// Keys that become top-level image fields instead of properties.
const INHERITABLE: &[&str] = &["min_ram", "min_disk", "disk_format", "container_format"];
/// Keys nova never loads: structured data too large for system_metadata.
const SKIPPED: &[&str] = &["mappings", "block_device_mapping", "img_mappings", "img_block_device_mapping"];

/// An instance's image metadata as nova derives it from system_metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageMeta {
    /// `image_min_ram` (MiB, as the string system_metadata holds), inherited by snapshots.
    pub min_ram: Option<String>,
    /// `image_min_disk` (GiB, as a string), inherited by snapshots.
    pub min_disk: Option<String>,
    /// `image_disk_format` of the instance's image (`qcow2`, `raw`, ...).
    pub disk_format: Option<String>,
    /// `image_container_format` of the instance's image (`bare`, ...).
    pub container_format: Option<String>,
    /// Every other key, with the `image_` prefix removed where it had one.
    pub properties: BTreeMap<String, String>,
}

impl ImageMeta {
    /// Builds the metadata from a `system_metadata` map; null values are
    /// skipped, non-string values kept as their JSON text.
    pub fn from_system_metadata(system_metadata: &Map<String, Value>) -> Self {
        let mut meta = ImageMeta::default();
        for (key, value) in system_metadata {
            let value = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let key = key.strip_prefix(PREFIX).unwrap_or(key);
            if SKIPPED.contains(&key) {
                continue;
            }
            match key {
                "min_ram" => meta.min_ram = Some(value),
                "min_disk" => meta.min_disk = Some(value),
                "disk_format" => meta.disk_format = Some(value),
                "container_format" => meta.container_format = Some(value),
                _ => {
                    debug_assert!(!INHERITABLE.contains(&key));
                    meta.properties.insert(key.to_owned(), value);
                }
            }
        }
        meta
    }

    /// `hw_qemu_guest_agent`: the image says a guest agent runs inside.
    pub fn hw_qemu_guest_agent(&self) -> bool {
        self.flag("hw_qemu_guest_agent")
    }

    /// `os_require_quiesce`: a snapshot must fail rather than skip quiescing.
    pub fn os_require_quiesce(&self) -> bool {
        self.flag("os_require_quiesce")
    }

    /// `min_ram` in MiB, when set and numeric.
    pub fn min_ram_mb(&self) -> Option<u64> {
        self.min_ram.as_deref().and_then(|v| v.trim().parse().ok())
    }

    /// `min_disk` in GiB, when set and numeric.
    pub fn min_disk_gb(&self) -> Option<u64> {
        self.min_disk.as_deref().and_then(|v| v.trim().parse().ok())
    }

    /// The image the instance was built from (`image_base_image_ref`),
    /// which nova-api records at boot.
    pub fn base_image_ref(&self) -> Option<&str> {
        self.property("base_image_ref")
    }

    /// One image property by its name without the `image_` prefix.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }

    /// nova's FlexibleBooleanField: oslo's `bool_from_string`, unknown → false.
    fn flag(&self, name: &str) -> bool {
        self.property(name).is_some_and(bool_from_string)
    }
}

/// oslo.utils `strutils.bool_from_string` with `default=False`.
pub fn bool_from_string(text: &str) -> bool {
    matches!(text.trim().to_ascii_lowercase().as_str(), "1" | "t" | "true" | "on" | "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sysmeta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_nova_sysmeta_like_get_image_from_system_metadata() {
        let meta = ImageMeta::from_system_metadata(&sysmeta(json!({
            "image_base_image_ref": "a025c47d",
            "image_disk_format": "qcow2",
            "image_container_format": "bare",
            "image_min_disk": "1",
            "image_min_ram": "0",
            "image_hw_qemu_guest_agent": "yes",
            "image_img_block_device_mapping": "[]",
            "owner_user_name": "harness",
            "image_os_distro": null,
        })));
        assert_eq!(meta.disk_format.as_deref(), Some("qcow2"));
        assert_eq!(meta.container_format.as_deref(), Some("bare"));
        assert_eq!(meta.min_disk.as_deref(), Some("1"));
        assert_eq!(meta.base_image_ref(), Some("a025c47d"));
        assert_eq!((meta.min_ram_mb(), meta.min_disk_gb()), (Some(0), Some(1)));
        // Non-image_ keys are properties too, as in nova.
        assert_eq!(meta.property("owner_user_name"), Some("harness"));
        assert!(meta.property("img_block_device_mapping").is_none());
        assert!(meta.property("os_distro").is_none());
        assert!(meta.hw_qemu_guest_agent());
        assert!(!meta.os_require_quiesce());
    }

    #[test]
    fn flags_follow_oslo_bool_from_string() {
        for yes in ["yes", "True", "1", "on", "y", "t", " YES "] {
            assert!(bool_from_string(yes), "{yes}");
        }
        for no in ["no", "false", "0", "off", "", "maybe"] {
            assert!(!bool_from_string(no), "{no}");
        }
    }
}
