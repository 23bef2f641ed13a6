//! Finding devices: listing the PCI bus, the facts of one device, IOMMU groups
//! and what blocks them, and resolving what a user passes (an address or a
//! sysfs path) to a device directory and its group.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::address::{parse_address, PciAddress};
use super::files::{link_name, malformed, path_str, read_error, read_hex, read_optional, read_u16};
use super::parse::{parse_driver_override, parse_group_number, parse_numa_node};
use super::{Sysfs, HINT_LIST, VFIO_PCI};
use crate::error::{Result, VfioError};

/// A placeholder driver that the kernel lets share a group with vfio-pci.
const PCI_STUB: &str = "pci-stub";
/// The driver of PCIe ports (bridges), which the kernel lets share a group.
const PCIEPORT: &str = "pcieport";
/// PCI class of PCI-to-PCI bridges (class 0x06, subclass 0x04).
const CLASS_PCI_BRIDGE: u32 = 0x0604;

const HINT_NO_IOMMU: &str =
    "no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu=on) or the device is not behind one";

/// Where a device lives in sysfs, as resolved by [`Sysfs::resolve_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLocation {
    /// The canonical device directory, e.g. `/sys/devices/pci0000:00/0000:00:03.0`.
    pub sysfs_path: PathBuf,
    /// The directory's name, e.g. `0000:00:03.0`: the name to pass to
    /// `VFIO_GROUP_GET_DEVICE_FD`.
    pub name: String,
    /// The PCI address, when the name is one.
    pub address: Option<PciAddress>,
    /// The device's IOMMU group.
    pub group: u32,
}

/// Facts about one PCI device, read from sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDeviceInfo {
    /// The device's address.
    pub address: PciAddress,
    /// The canonical device directory.
    pub sysfs_path: PathBuf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code (24 bits: class, subclass, programming interface).
    pub class: u32,
    /// Revision ID.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem device ID.
    pub subsystem_device: u16,
    /// The bound driver (name of the `driver` link's target), if any.
    pub driver: Option<String>,
    /// The content of `driver_override`; `None` when absent, empty or `(null)`.
    pub driver_override: Option<String>,
    /// The IOMMU group, if the device is behind an IOMMU.
    pub iommu_group: Option<u32>,
    /// The other devices of the same IOMMU group (excluding this one).
    pub group_members: Vec<String>,
    /// The NUMA node, `None` when unknown (`-1`).
    pub numa_node: Option<i32>,
    /// Whether the device can be opened through VFIO now: it has a group, is
    /// bound to vfio-pci, and no device of its group blocks it.
    pub vfio_usable: bool,
}

impl Sysfs {
    fn canonicalize(path: &Path, what: &str) -> Result<PathBuf> {
        fs::canonicalize(path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                VfioError::NotFound {
                    what: what.to_owned(),
                    path: path.to_path_buf(),
                    hint: Some(HINT_LIST.into()),
                }
            } else {
                VfioError::os("canonicalize", path_str(path), e)
            }
        })
    }

    /// Resolves what a user passes to open a device: a PCI address
    /// (`0000:00:03.0` / `00:03.0`) or an absolute sysfs path (e.g.
    /// `/sys/bus/pci/devices/0000:00:03.0` or its canonical
    /// `/sys/devices/pci0000:00/0000:00:03.0`), or a mediated device's UUID or path
    /// (`/sys/bus/mdev/devices/<uuid>`, named by its UUID in its group), and finds
    /// its IOMMU group.
    ///
    /// A path must canonicalize to a directory strictly under `<root>/devices`
    /// or `<root>/bus`; one that canonicalizes elsewhere (e.g. through `..`) is
    /// `InvalidArgument`, a nonexistent one is `NotFound`. Input that is
    /// neither an address nor an absolute path is `InvalidArgument`. A device
    /// without an IOMMU group gives the `NotFound` of [`Sysfs::iommu_group`].
    pub fn resolve_device(&self, addr_or_path: &str) -> Result<DeviceLocation> {
        const OP: &str = "resolve device";
        let address_input = parse_address(addr_or_path);
        let candidate = if let Some(addr) = address_input {
            self.device_dir(&addr)
        } else if super::is_mdev_uuid(addr_or_path) {
            self.mdev_dir(addr_or_path)
        } else if addr_or_path.starts_with('/') && !addr_or_path.contains('\0') {
            PathBuf::from(addr_or_path)
        } else {
            return Err(VfioError::invalid(
                OP,
                format!(
                    "{addr_or_path:?} is neither a PCI address (DDDD:BB:DD.F or BB:DD.F, e.g. 0000:00:03.0), \
                     an mdev UUID, nor an absolute sysfs path (e.g. {}/bus/pci/devices/0000:00:03.0)",
                    self.root.display()
                ),
            ));
        };
        let root = self.canonical_root()?;
        // Opening is the hot path: 3 syscalls where walking the path took a dozen. Any
        // failure takes the walk, which says precisely what is wrong.
        let canonical = match canonical_dir(&candidate) {
            Some(dir) if is_inside(&root, &dir) => dir,
            _ => {
                if let Some(addr) = address_input {
                    self.existing_device_dir(&addr)?;
                }
                Self::checked_device_dir(addr_or_path, &candidate, &root)?
            }
        };
        let name = canonical
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                VfioError::invalid(OP, format!("{} has no usable name", canonical.display()))
            })?;
        let address = parse_address(&name);
        let group = group_of_dir(&canonical)?;
        Ok(DeviceLocation {
            sysfs_path: canonical,
            name,
            address,
            group,
        })
    }

    /// The root, canonical; `/sys` is canonicalized once per process.
    fn canonical_root(&self) -> Result<PathBuf> {
        static SYS: OnceLock<PathBuf> = OnceLock::new();
        let is_sys = self.root == Path::new("/sys");
        if let Some(root) = SYS.get().filter(|_| is_sys) {
            return Ok(root.clone());
        }
        let root = fs::canonicalize(&self.root).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                VfioError::NotFound {
                    what: "sysfs".into(),
                    path: self.root.clone(),
                    hint: Some("is sysfs mounted?".into()),
                }
            } else {
                VfioError::os("canonicalize", path_str(&self.root), e)
            }
        })?;
        if is_sys {
            let _ = SYS.set(root.clone());
        }
        Ok(root)
    }

    /// The canonical directory `candidate` names, with the error of each way it can be
    /// wrong: missing, outside `<root>/devices` and `<root>/bus`, not a directory.
    fn checked_device_dir(addr_or_path: &str, candidate: &Path, root: &Path) -> Result<PathBuf> {
        const OP: &str = "resolve device";
        let canonical = Self::canonicalize(candidate, "device")?;
        if !is_inside(root, &canonical) {
            return Err(VfioError::invalid(
                OP,
                format!(
                    "{addr_or_path:?} resolves to {}, which is not a device directory under {}/devices or {}/bus",
                    canonical.display(),
                    root.display(),
                    root.display()
                ),
            ));
        }
        if !canonical.is_dir() {
            return Err(VfioError::invalid(
                OP,
                format!(
                    "{addr_or_path:?} resolves to {}, which is not a directory",
                    canonical.display()
                ),
            ));
        }
        Ok(canonical)
    }

    /// The IOMMU group of the device in `device_dir`: the last component of
    /// its `iommu_group` link, as a number.
    ///
    /// A missing device directory or link is `NotFound`.
    pub fn iommu_group(&self, device_dir: &Path) -> Result<u32> {
        if !device_dir.is_dir() {
            return Err(VfioError::NotFound {
                what: "device".into(),
                path: device_dir.to_path_buf(),
                hint: Some(HINT_LIST.into()),
            });
        }
        group_of_dir(device_dir)
    }

    /// The names of the devices in IOMMU group `group`
    /// (`<root>/kernel/iommu_groups/<group>/devices/*`), sorted.
    ///
    /// PCI entries sort by address; other names follow, sorted as strings.
    pub fn group_devices(&self, group: u32) -> Result<Vec<String>> {
        let dir = self.group_devices_dir(group);
        let entries = fs::read_dir(&dir).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                VfioError::NotFound {
                    what: format!("IOMMU group {group}"),
                    path: dir.clone(),
                    hint: Some(format!(
                        "check the groups under {}/kernel/iommu_groups; is the IOMMU enabled?",
                        self.root.display()
                    )),
                }
            } else {
                read_error(&dir, e)
            }
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| read_error(&dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort_by_key(|n| match parse_address(n) {
            Some(a) => (0u8, Some(a), n.clone()),
            None => (1u8, None, n.clone()),
        });
        Ok(names)
    }

    /// The devices of group `group` that keep it from being used through
    /// VFIO: those bound to a driver other than vfio-pci or pci-stub, except
    /// PCI bridges (class `0x0604xx`) bound to pcieport. Formatted
    /// `0000:00:1f.2 (ahci)`. Explains `ERR_VFIO_GROUP_NOT_VIABLE`.
    pub fn group_blockers(&self, group: u32) -> Result<Vec<String>> {
        let dir = self.group_devices_dir(group);
        let mut blockers = Vec::new();
        for name in self.group_devices(group)? {
            let member = dir.join(&name);
            let Some(driver) = link_name(&member.join("driver"))? else {
                continue;
            };
            if driver == VFIO_PCI || driver == PCI_STUB {
                continue;
            }
            if driver == PCIEPORT && self.is_bridge(&member) {
                continue;
            }
            blockers.push(format!("{name} ({driver})"));
        }
        Ok(blockers)
    }

    /// Whether the device in `dir` is a PCI bridge; an unreadable class is not.
    fn is_bridge(&self, dir: &Path) -> bool {
        matches!(read_hex(&dir.join("class"), 24), Ok(class) if class >> 8 == CLASS_PCI_BRIDGE)
    }

    /// Facts about the device at `addr`.
    ///
    /// `vendor`, `device`, `class`, `revision`, `subsystem_vendor` and
    /// `subsystem_device` must be readable; `driver`, `driver_override`,
    /// `iommu_group` and `numa_node` may be absent.
    pub fn pci_device(&self, addr: &PciAddress) -> Result<PciDeviceInfo> {
        let dir = self.existing_device_dir(addr)?;
        let sysfs_path = Self::canonicalize(&dir, "PCI device")?;
        let vendor = read_u16(&dir.join("vendor"))?;
        let device = read_u16(&dir.join("device"))?;
        let class = read_hex(&dir.join("class"), 24)?;
        // read_hex checked the width.
        let revision = read_hex(&dir.join("revision"), 8)? as u8;
        let subsystem_vendor = read_u16(&dir.join("subsystem_vendor"))?;
        let subsystem_device = read_u16(&dir.join("subsystem_device"))?;
        let driver = link_name(&dir.join("driver"))?;
        let driver_override =
            read_optional(&dir.join("driver_override"))?.and_then(|s| parse_driver_override(&s));
        let iommu_group = match self.iommu_group(&dir) {
            Ok(g) => Some(g),
            Err(VfioError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let numa_path = dir.join("numa_node");
        let numa_node = match read_optional(&numa_path)? {
            None => None,
            Some(s) => parse_numa_node(&s).ok_or_else(|| {
                malformed(
                    &numa_path,
                    format!("expected a decimal number, found {:?}", s.trim()),
                )
            })?,
        };
        let own_name = addr.to_string();
        let (group_members, vfio_usable) = match iommu_group {
            Some(g) => {
                let members: Vec<String> = self
                    .group_devices(g)?
                    .into_iter()
                    .filter(|m| *m != own_name)
                    .collect();
                let usable =
                    driver.as_deref() == Some(VFIO_PCI) && self.group_blockers(g)?.is_empty();
                (members, usable)
            }
            None => (Vec::new(), false),
        };
        Ok(PciDeviceInfo {
            address: *addr,
            sysfs_path,
            vendor,
            device,
            class,
            revision,
            subsystem_vendor,
            subsystem_device,
            driver,
            driver_override,
            iommu_group,
            group_members,
            numa_node,
            vfio_usable,
        })
    }

    /// Every PCI device under `<root>/bus/pci/devices`, sorted by address.
    /// Entries whose name is not a PCI address are skipped.
    pub fn list_pci_devices(&self) -> Result<Vec<PciDeviceInfo>> {
        let dir = self.pci_bus_dir().join("devices");
        let entries = fs::read_dir(&dir).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                VfioError::NotFound {
                    what: "PCI bus".into(),
                    path: dir.clone(),
                    hint: Some("is sysfs mounted, and does this machine have PCI?".into()),
                }
            } else {
                read_error(&dir, e)
            }
        })?;
        let mut addresses = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| read_error(&dir, e))?;
            if let Some(addr) = entry.file_name().to_str().and_then(parse_address) {
                addresses.push(addr);
            }
        }
        addresses.sort();
        addresses.iter().map(|a| self.pci_device(a)).collect()
    }
}

/// The canonical path of the directory `path` names (following links), from the kernel
/// (`/proc/self/fd`), in 3 syscalls; `None` when it is not a directory or `/proc` cannot
/// tell.
fn canonical_dir(path: &Path) -> Option<PathBuf> {
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .ok()?;
    let canonical = fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
    // A directory removed meanwhile reads "<path> (deleted)": let the walk report it.
    (canonical.is_absolute() && !canonical.as_os_str().as_bytes().ends_with(b" (deleted)"))
        .then_some(canonical)
}

/// Whether `dir` is strictly under `<root>/devices` or `<root>/bus`.
fn is_inside(root: &Path, dir: &Path) -> bool {
    ["devices", "bus"].iter().any(|base| {
        dir.strip_prefix(root)
            .ok()
            .and_then(|rest| rest.strip_prefix(base).ok())
            .is_some_and(|under| !under.as_os_str().is_empty())
    })
}

/// The IOMMU group of the device directory `device_dir` (known to exist): the last
/// component of its `iommu_group` link, as a number. A missing link is `NotFound`.
fn group_of_dir(device_dir: &Path) -> Result<u32> {
    let link = device_dir.join("iommu_group");
    let name = link_name(&link)?.ok_or_else(|| VfioError::NotFound {
        what: "IOMMU group".into(),
        path: link.clone(),
        hint: Some(HINT_NO_IOMMU.into()),
    })?;
    parse_group_number(&name).ok_or_else(|| {
        VfioError::os(
            "readlink",
            path_str(&link),
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the link should end in a group number, found {name:?}"),
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::fake::{addr, fake, A, B, C, D, E};
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn sysfs_resolves_by_address_and_paths() {
        let f = fake();
        let s = f.sysfs();
        let expected = DeviceLocation {
            sysfs_path: f.dev(A),
            name: A.into(),
            address: Some(addr(A)),
            group: 5,
        };
        assert_eq!(s.resolve_device(A).unwrap(), expected);
        assert_eq!(s.resolve_device("00:03.0").unwrap(), expected);
        let bus_path = f.root.join("bus/pci/devices").join(A);
        assert_eq!(
            s.resolve_device(bus_path.to_str().unwrap()).unwrap(),
            expected
        );
        assert_eq!(
            s.resolve_device(f.dev(A).to_str().unwrap()).unwrap(),
            expected
        );
        let with_dots = format!("{}/bus/pci/devices/../devices/{A}", f.root.display());
        assert_eq!(s.resolve_device(&with_dots).unwrap(), expected);
    }

    #[test]
    fn sysfs_fast_canonical_dir_agrees_with_the_walk() {
        let f = fake();
        let link = f.root.join("bus/pci/devices").join(A);
        let fast = canonical_dir(&link).unwrap();
        assert_eq!(fast, fs::canonicalize(&link).unwrap());
        assert_eq!(fast, f.dev(A));
        // Not a directory, or missing: no answer (the walk reports why).
        assert_eq!(canonical_dir(&f.dev(A).join("vendor")), None);
        assert_eq!(
            canonical_dir(&f.root.join("bus/pci/devices/0000:00:04.0")),
            None
        );
        let root = fs::canonicalize(&f.root).unwrap();
        assert!(is_inside(&root, &f.dev(A)));
        assert!(
            !is_inside(&root, &root.join("devices")),
            "the base itself is no device"
        );
        assert!(
            !is_inside(&root, &root.join("devicesx/y")),
            "components, not prefixes"
        );
        assert!(!is_inside(&root, &root.join("etc/y")));
    }

    #[test]
    fn sysfs_resolve_rejects_traversal_and_garbage() {
        let f = fake();
        let s = f.sysfs();
        for p in [
            format!("{}/bus/pci/devices/../../../etc", f.root.display()),
            format!("{}/etc", f.root.display()),
            format!("{}/devices", f.root.display()),
            format!("{}/bus/pci/devices/{A}/vendor", f.root.display()),
            "/".to_string(),
        ] {
            let e = s.resolve_device(&p).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{p}: {e}");
        }
        for p in [
            "",
            "../../etc",
            "bus/pci/devices/0000:00:03.0",
            " 00:03.0",
            "0000:00:03.0\n",
            "00:03.0/../x",
        ] {
            let e = s.resolve_device(p).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{p:?}: {e}");
        }
    }

    #[test]
    fn sysfs_resolve_missing_is_not_found() {
        let f = fake();
        let s = f.sysfs();
        let e = s.resolve_device("0000:00:04.0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("vfio-ioctls list"), "{e}");
        let p = format!("{}/bus/pci/devices/0000:00:04.0", f.root.display());
        let e = s.resolve_device(&p).unwrap_err();
        assert!(
            matches!(&e, VfioError::NotFound { path, .. } if path.as_path() == Path::new(&p)),
            "{e}"
        );
    }

    #[test]
    fn sysfs_missing_iommu_group_is_not_found() {
        let f = fake();
        let s = f.sysfs();
        let e = s.resolve_device(E).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        match &e {
            VfioError::NotFound { path, hint, .. } => {
                assert_eq!(*path, f.dev(E).join("iommu_group"));
                assert!(hint.as_deref().unwrap_or("").contains("intel_iommu=on"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(s.iommu_group(&f.dev(A)).unwrap(), 5);
        assert_eq!(
            s.iommu_group(&f.root.join("nope")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn sysfs_group_devices_and_blockers() {
        let f = fake();
        let s = f.sysfs();
        assert_eq!(s.group_devices(5).unwrap(), vec![A.to_string()]);
        assert_eq!(
            s.group_devices(7).unwrap(),
            vec![D.to_string(), C.to_string(), B.to_string()]
        );
        assert_eq!(s.group_blockers(5).unwrap(), Vec::<String>::new());
        assert_eq!(
            s.group_blockers(7).unwrap(),
            vec!["0000:00:1f.2 (ahci)".to_string()]
        );
        assert_eq!(s.group_devices(99).unwrap_err().kind(), ErrorKind::NotFound);

        // pcieport on a non-bridge blocks; pci-stub and no driver do not.
        fs::write(f.dev(D).join("class"), "0x060100\n").unwrap();
        f.set_driver(B, "pci-stub");
        assert_eq!(
            s.group_blockers(7).unwrap(),
            vec!["0000:00:1c.0 (pcieport)".to_string()]
        );
        fs::remove_file(f.dev(D).join("driver")).unwrap();
        assert!(s.group_blockers(7).unwrap().is_empty());
        // A vfio-pci look-alike is not vfio-pci.
        f.set_driver(B, "vfio-pci-foo");
        assert_eq!(
            s.group_blockers(7).unwrap(),
            vec!["0000:00:1f.2 (vfio-pci-foo)".to_string()]
        );
    }

    #[test]
    fn sysfs_lists_devices_with_all_fields() {
        let f = fake();
        let s = f.sysfs();
        let list = s.list_pci_devices().unwrap();
        let names: Vec<String> = list.iter().map(|d| d.address.to_string()).collect();
        assert_eq!(names, vec![A, D, C, B, E]);

        let a = &list[0];
        assert_eq!(
            *a,
            PciDeviceInfo {
                address: addr(A),
                sysfs_path: f.dev(A),
                vendor: 0x8086,
                device: 0x1234,
                class: 0x020000,
                revision: 0x10,
                subsystem_vendor: 0x1af4,
                subsystem_device: 0x1100,
                driver: Some("vfio-pci".into()),
                driver_override: None,
                iommu_group: Some(5),
                group_members: vec![],
                numa_node: None,
                vfio_usable: true,
            }
        );
        let c = &list[2];
        assert_eq!(c.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(c.group_members, vec![D.to_string(), B.to_string()]);
        assert!(!c.vfio_usable, "blocked by ahci");
        let b = &list[3];
        assert_eq!(b.driver.as_deref(), Some("ahci"));
        assert!(!b.vfio_usable);
        let e = &list[4];
        assert_eq!(
            (e.iommu_group, e.driver.clone(), e.numa_node),
            (None, None, Some(1))
        );
        assert_eq!(e.driver_override.as_deref(), Some("vfio-pci"));
        assert!(e.group_members.is_empty() && !e.vfio_usable);

        // Unblocking the group makes C usable.
        f.set_driver(B, "vfio-pci");
        assert!(s.pci_device(&addr(C)).unwrap().vfio_usable);
    }

    #[test]
    fn sysfs_malformed_and_missing_files() {
        let f = fake();
        let s = f.sysfs();
        fs::write(f.dev(A).join("vendor"), "0x1ffff\n").unwrap();
        let e = s.pci_device(&addr(A)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(
            e.path(),
            Some(path_str(&s.device_dir(&addr(A)).join("vendor")))
        );
        assert!(e.to_string().contains("0x1ffff"), "{e}");
        fs::write(f.dev(A).join("vendor"), "bogus").unwrap();
        assert_eq!(s.pci_device(&addr(A)).unwrap_err().kind(), ErrorKind::Io);
        fs::write(f.dev(A).join("vendor"), "0x8086").unwrap();
        fs::write(f.dev(A).join("class"), "0x1000000").unwrap();
        assert_eq!(s.pci_device(&addr(A)).unwrap_err().kind(), ErrorKind::Io);
        fs::remove_file(f.dev(A).join("class")).unwrap();
        let e = s.pci_device(&addr(A)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.path(),
            Some(path_str(&s.device_dir(&addr(A)).join("class")))
        );
        assert_eq!(
            s.pci_device(&addr("0000:00:05.0")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
