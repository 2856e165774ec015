//! Image formats, one enum per question asked of them: what the bytes of a
//! disk are ([`DiskFormat`], libvirt's `<driver type>` and qemu-img's `-f`),
//! what nova calls the root disk's source ([`SourceType`], the result of
//! `get_disk_type_from_path` or the driver format), and which format a
//! snapshot is written in ([`ImageFormat`], `[libvirt] snapshot_image_format`
//! and Glance's `disk_format`).

use std::fmt;

/// The format of a disk image's bytes, as libvirt's `<driver type>` and
/// `qemu-img` name it. Formats this engine never writes keep their name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// `raw`: the guest's bytes as they are.
    Raw,
    /// `qcow2`: QEMU copy-on-write v2, possibly over a backing file.
    Qcow2,
    /// `vmdk`: VMware's format.
    Vmdk,
    /// `vdi`: VirtualBox's format.
    Vdi,
    /// `ploop`: Virtuozzo/parallels' format (nova's `ploop` source type).
    Ploop,
    /// Any other format name (`qed`, `luks`, ...), kept as libvirt wrote it.
    Other(String),
}

impl DiskFormat {
    /// Reads a libvirt / qemu-img format name; unknown names are kept as [`DiskFormat::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "raw" => DiskFormat::Raw,
            "qcow2" => DiskFormat::Qcow2,
            "vmdk" => DiskFormat::Vmdk,
            "vdi" => DiskFormat::Vdi,
            "ploop" => DiskFormat::Ploop,
            other => DiskFormat::Other(other.to_owned()),
        }
    }

    /// The libvirt / qemu-img name.
    pub fn as_str(&self) -> &str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Ploop => "ploop",
            DiskFormat::Other(name) => name,
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ImageFormat> for DiskFormat {
    fn from(format: ImageFormat) -> Self {
        match format {
            ImageFormat::Raw => DiskFormat::Raw,
            ImageFormat::Qcow2 => DiskFormat::Qcow2,
            ImageFormat::Vmdk => DiskFormat::Vmdk,
            ImageFormat::Vdi => DiskFormat::Vdi,
        }
    }
}

/// nova's "source type" of the root disk (`libvirt_utils.get_disk_type_from_path`,
/// else the disk's format): it decides live vs. cold and the default
/// snapshot format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceType {
    /// A host block device (nova: `lvm`, for any `/dev` path): never live-snapshotted.
    Lvm,
    /// A Ceph RBD volume (nova: `rbd`).
    Rbd,
    /// An image file (or other network disk) in this format.
    Image(DiskFormat),
}

impl SourceType {
    /// nova's name (`lvm`, `rbd`, or the format's name).
    pub fn as_str(&self) -> &str {
        match self {
            SourceType::Lvm => "lvm",
            SourceType::Rbd => "rbd",
            SourceType::Image(format) => format.as_str(),
        }
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The format a snapshot is written in: the choices of nova's
/// `[libvirt] snapshot_image_format`, and the Glance `disk_format` the image gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// `raw`.
    Raw,
    /// `qcow2` (standalone: never with a backing file).
    Qcow2,
    /// `vmdk`.
    Vmdk,
    /// `vdi`.
    Vdi,
}

impl ImageFormat {
    /// Every format, in nova's order of `snapshot_image_format` choices.
    pub const ALL: [ImageFormat; 4] = [ImageFormat::Raw, ImageFormat::Qcow2, ImageFormat::Vmdk, ImageFormat::Vdi];

    /// The nova.conf / `qemu-img` / Glance `disk_format` name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::Vdi => "vdi",
        }
    }

    /// nova: `CONF.libvirt.snapshot_image_format or source_type`, with lvm
    /// and rbd written as raw. `None` for a source format no snapshot can be
    /// written in (`ploop`, `qed`, ...): `snapshot_image_format` must be set.
    pub fn for_source(source: &SourceType) -> Option<Self> {
        match source {
            SourceType::Lvm | SourceType::Rbd | SourceType::Image(DiskFormat::Raw) => Some(ImageFormat::Raw),
            SourceType::Image(DiskFormat::Qcow2) => Some(ImageFormat::Qcow2),
            SourceType::Image(DiskFormat::Vmdk) => Some(ImageFormat::Vmdk),
            SourceType::Image(DiskFormat::Vdi) => Some(ImageFormat::Vdi),
            SourceType::Image(DiskFormat::Ploop | DiskFormat::Other(_)) => None,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_format_follows_nova() {
        assert_eq!(ImageFormat::for_source(&SourceType::Lvm), Some(ImageFormat::Raw));
        assert_eq!(ImageFormat::for_source(&SourceType::Rbd), Some(ImageFormat::Raw));
        assert_eq!(ImageFormat::for_source(&SourceType::Image(DiskFormat::Qcow2)), Some(ImageFormat::Qcow2));
        assert_eq!(ImageFormat::for_source(&SourceType::Image(DiskFormat::Vdi)), Some(ImageFormat::Vdi));
        assert_eq!(ImageFormat::for_source(&SourceType::Image(DiskFormat::Ploop)), None);
    }

    #[test]
    fn disk_format_names_round_trip() {
        for name in ["raw", "qcow2", "vmdk", "vdi", "ploop", "qed"] {
            assert_eq!(DiskFormat::from_name(name).as_str(), name);
        }
        assert_eq!(DiskFormat::from_name("qed"), DiskFormat::Other("qed".into()));
        assert_eq!(DiskFormat::from(ImageFormat::Qcow2), DiskFormat::Qcow2);
        assert_eq!(SourceType::Image(DiskFormat::Raw).as_str(), "raw");
        assert_eq!(SourceType::Lvm.to_string(), "lvm");
    }
}
