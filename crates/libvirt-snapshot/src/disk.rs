//! Disk discovery: the instance's root disk from the live domain XML (file,
//! block and network sources, driver format), and its backing chain, virtual
//! size and allocation from `qemu-img info --force-share --backing-chain`.

use std::path::{Path, PathBuf};

use crate::error::{QemuImgFailure, SnapshotError};
use crate::format::{DiskFormat, SourceType};
use crate::qemu_img::{self, ImageInfo};

/// Where the root disk's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// `<disk type='file'><source file=…>`.
    File(PathBuf),
    /// `<disk type='block'><source dev=…>` (LVM, iSCSI LUNs…).
    Block(PathBuf),
    /// `<disk type='network'><source protocol=… name=…>` (rbd: `pool/image`).
    Network {
        /// libvirt's `protocol` (`rbd`, `nbd`, `iscsi`, ...).
        protocol: String,
        /// The protocol's volume name (rbd: `pool/image`).
        name: String,
    },
}

/// The instance's root disk, as nova's `find_disk` sees it: the first
/// `<disk device='disk'>` of the live XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDisk {
    /// The guest target (`vda`): what block jobs and events name.
    pub target: String,
    /// Where its bytes live.
    pub source: DiskSource,
    /// The driver `type` (`qcow2`, `raw`).
    pub format: DiskFormat,
}

impl RootDisk {
    /// Reads the root disk from a domain XML document.
    pub fn from_domain_xml(xml: &str) -> Result<Self, SnapshotError> {
        let doc = roxmltree::Document::parse(xml).map_err(|source| SnapshotError::DomainXml { source })?;
        let disk = doc
            .descendants()
            .filter(|n| n.has_tag_name("disk") && n.parent().is_some_and(|p| p.has_tag_name("devices")))
            .find(|n| n.attribute("device").unwrap_or("disk") == "disk")
            .ok_or_else(|| SnapshotError::NoRootDisk { reason: "the domain has no disk".into() })?;
        let child = |name: &str| disk.children().find(|c| c.has_tag_name(name));
        let target = child("target")
            .and_then(|t| t.attribute("dev"))
            .ok_or_else(|| SnapshotError::NoRootDisk { reason: "disk without <target dev>".into() })?
            .to_owned();
        let format = DiskFormat::from_name(child("driver").and_then(|d| d.attribute("type")).unwrap_or("raw"));
        let source = child("source");
        let attr = |name: &str| source.and_then(|s| s.attribute(name)).map(str::to_owned);
        let missing = |what: &str| SnapshotError::NoRootDisk { reason: format!("disk {target} has no {what}") };
        let source = match disk.attribute("type").unwrap_or("file") {
            "file" => DiskSource::File(attr("file").ok_or_else(|| missing("source file"))?.into()),
            "block" => DiskSource::Block(attr("dev").ok_or_else(|| missing("source dev"))?.into()),
            "network" => DiskSource::Network {
                protocol: attr("protocol").ok_or_else(|| missing("source protocol"))?,
                name: attr("name").ok_or_else(|| missing("source name"))?,
            },
            other => {
                return Err(SnapshotError::NoRootDisk {
                    reason: format!("disk {target} has unsupported type '{other}'"),
                })
            }
        };
        Ok(RootDisk { target, source, format })
    }

    /// The host path of a file or block disk.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            DiskSource::File(p) | DiskSource::Block(p) => Some(p),
            DiskSource::Network { .. } => None,
        }
    }

    /// nova's `get_disk_type_from_path`: `lvm` for `/dev…`, `rbd` for rbd,
    /// otherwise the driver format. Output defaults to this (lvm/rbd → raw).
    pub fn source_type(&self) -> SourceType {
        match &self.source {
            DiskSource::Block(_) => SourceType::Lvm,
            DiskSource::Network { protocol, .. } if protocol == "rbd" => SourceType::Rbd,
            _ => SourceType::Image(self.format.clone()),
        }
    }

    /// Refuses disks this engine cannot copy locally.
    pub(crate) fn ensure_local(&self) -> Result<&Path, SnapshotError> {
        match &self.source {
            DiskSource::Network { protocol, name } if protocol == "rbd" => {
                Err(SnapshotError::RbdNotSupported { name: name.clone() })
            }
            DiskSource::Network { protocol, name } => {
                Err(SnapshotError::NoRootDisk { reason: format!("network disk {protocol}:{name} is not supported") })
            }
            DiskSource::File(p) | DiskSource::Block(p) => Ok(p),
        }
    }
}

/// One layer of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLayer {
    /// The image file.
    pub path: PathBuf,
    /// Its format, as qemu-img reports it.
    pub format: DiskFormat,
    /// Bytes the guest sees through this layer.
    pub virtual_size: u64,
    /// Bytes allocated on the host.
    pub actual_size: u64,
}

/// The root disk's image and every backing file below it, top first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingChain {
    /// The layers, the disk's own image first (never empty).
    pub layers: Vec<ChainLayer>,
}

impl BackingChain {
    /// Reads the chain of `path` opened as `format`.
    pub fn read(path: &Path, format: &DiskFormat) -> Result<Self, SnapshotError> {
        let infos = qemu_img::info_chain(path, Some(format))?;
        Self::from_infos(infos)
    }

    fn from_infos(infos: Vec<ImageInfo>) -> Result<Self, SnapshotError> {
        if infos.is_empty() {
            return Err(SnapshotError::qemu_img("info", QemuImgFailure::EmptyChain));
        }
        let layers = infos
            .into_iter()
            .map(|i| ChainLayer {
                path: PathBuf::from(i.filename),
                format: DiskFormat::from_name(&i.format),
                virtual_size: i.virtual_size,
                actual_size: i.actual_size,
            })
            .collect();
        Ok(BackingChain { layers })
    }

    /// The disk's own image (the top of the chain).
    pub fn top(&self) -> &ChainLayer {
        &self.layers[0]
    }

    /// The top layer's backing file, if any.
    pub fn backing(&self) -> Option<&ChainLayer> {
        self.layers.get(1)
    }

    /// What the guest sees.
    pub fn virtual_size(&self) -> u64 {
        self.top().virtual_size
    }

    /// Host bytes allocated by the whole chain, capped at the virtual size:
    /// an upper bound of the data a standalone copy holds.
    pub fn allocation(&self) -> u64 {
        self.layers.iter().map(|l| l.actual_size).sum::<u64>().min(self.virtual_size().max(1))
    }
}

/// The `<mirror>` of a disk's running copy job in a live domain XML: its
/// destination file and whether libvirt reports it `ready`.
pub fn mirror_of(xml: &str, target: &str) -> Option<(PathBuf, bool)> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let disk = doc.descendants().find(|n| {
        n.has_tag_name("disk") && n.children().any(|c| c.has_tag_name("target") && c.attribute("dev") == Some(target))
    })?;
    let mirror = disk.children().find(|c| c.has_tag_name("mirror"))?;
    let file = mirror.attribute("file").map(str::to_owned).or_else(|| {
        mirror.children().find(|c| c.has_tag_name("source")).and_then(|s| s.attribute("file")).map(str::to_owned)
    })?;
    Some((PathBuf::from(file), mirror.attribute("ready") == Some("yes")))
}

/// Whether the domain XML has the qemu-guest-agent channel
/// (`<channel><target type='virtio' name='org.qemu.guest_agent.0'/>`).
pub fn has_agent_channel(xml: &str) -> bool {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return false;
    };
    doc.descendants().filter(|n| n.has_tag_name("channel")).any(|c| {
        c.children().any(|t| t.has_tag_name("target") && t.attribute("name") == Some("org.qemu.guest_agent.0"))
    })
}

/// The target files named in a backup job's XML (`virDomainBackupGetXMLDesc`).
pub fn backup_targets(xml: &str) -> Vec<PathBuf> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("target"))
        .filter_map(|n| n.attribute("file"))
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE_XML: &str = r#"<domain type='qemu'><devices>
        <disk type='file' device='cdrom'><target dev='hdc'/></disk>
        <disk type='file' device='disk'>
          <driver name='qemu' type='qcow2'/>
          <source file='/var/lib/nova/instances/u/disk'/>
          <backingStore type='file'><format type='raw'/><source file='/base'/></backingStore>
          <target dev='vda' bus='virtio'/>
          <mirror type='file' file='/snap/tmp/x.delta' format='qcow2' job='copy' ready='yes'>
            <format type='qcow2'/><source file='/snap/tmp/x.delta'/>
          </mirror>
        </disk>
        <disk type='file' device='disk'><source file='/second'/><target dev='vdb'/></disk>
      </devices></domain>"#;

    #[test]
    fn first_disk_device_is_the_root_disk() {
        let d = RootDisk::from_domain_xml(FILE_XML).unwrap();
        assert_eq!(d.target, "vda");
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert_eq!(d.source, DiskSource::File("/var/lib/nova/instances/u/disk".into()));
        assert_eq!(d.source_type(), SourceType::Image(DiskFormat::Qcow2));
    }

    #[test]
    fn block_and_rbd_sources() {
        let block = r#"<domain><devices><disk type='block' device='disk'><driver type='raw'/>
            <source dev='/dev/vg/inst_disk'/><target dev='vda'/></disk></devices></domain>"#;
        let d = RootDisk::from_domain_xml(block).unwrap();
        assert_eq!(d.source_type(), SourceType::Lvm);
        assert!(d.ensure_local().is_ok());
        let rbd = r#"<domain><devices><disk type='network' device='disk'><driver type='raw'/>
            <source protocol='rbd' name='vms/uuid_disk'><host name='mon1' port='6789'/></source>
            <target dev='vda'/></disk></devices></domain>"#;
        let d = RootDisk::from_domain_xml(rbd).unwrap();
        assert_eq!(d.source_type(), SourceType::Rbd);
        assert!(matches!(d.ensure_local(), Err(SnapshotError::RbdNotSupported { name }) if name == "vms/uuid_disk"));
    }

    #[test]
    fn no_disk_is_an_error() {
        let e = RootDisk::from_domain_xml("<domain><devices/></domain>").unwrap_err();
        assert!(matches!(e, SnapshotError::NoRootDisk { .. }));
    }

    #[test]
    fn mirror_and_backup_targets() {
        assert_eq!(mirror_of(FILE_XML, "vda"), Some((PathBuf::from("/snap/tmp/x.delta"), true)));
        assert_eq!(mirror_of(FILE_XML, "vdb"), None);
        let bx = "<domainbackup mode='push'><disks><disk name='vda' backup='yes' type='file'>\
                  <driver type='qcow2'/><target file='/snap/t/out'/></disk></disks></domainbackup>";
        assert_eq!(backup_targets(bx), vec![PathBuf::from("/snap/t/out")]);
        assert!(!has_agent_channel(FILE_XML));
        let agent = "<domain><devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices></domain>";
        assert!(has_agent_channel(agent));
    }

    #[test]
    fn chain_sizes() {
        let chain = BackingChain {
            layers: vec![
                ChainLayer { path: "/top".into(), format: DiskFormat::Qcow2, virtual_size: 100, actual_size: 30 },
                ChainLayer { path: "/base".into(), format: DiskFormat::Raw, virtual_size: 100, actual_size: 90 },
            ],
        };
        assert_eq!(chain.allocation(), 100);
        assert_eq!(chain.backing().unwrap().path, PathBuf::from("/base"));
    }
}
