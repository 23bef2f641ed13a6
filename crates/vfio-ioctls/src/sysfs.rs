//! PCI discovery and driver binding through sysfs.
//!
//! Everything here works on a sysfs tree under a root directory (`/sys`
//! normally), so that tests can point it to a fake tree.
//!
//! # Errors
//!
//! * A file or directory that is missing where it must exist gives
//!   [`VfioError::NotFound`] with the path and a hint.
//! * Any other failure to read or write a sysfs file gives [`VfioError::Os`]
//!   with op `"read"`, `"readlink"`, `"write"` or `"canonicalize"` and the path
//!   as target (so permission problems map to `ERR_VFIO_PERMISSION`).
//! * A sysfs file whose content cannot be parsed (e.g. a `vendor` file not
//!   holding a hex number) gives [`VfioError::Os`] with op `"read"`, the path,
//!   and an [`io::ErrorKind::InvalidData`] source that says what was expected;
//!   its kind is [`crate::ErrorKind::Io`].
//! * Malformed user input (addresses, paths, driver names) gives
//!   [`VfioError::InvalidArgument`].
//!
//! # Security
//!
//! PCI addresses are parsed strictly by [`PciAddress`] before any path is
//! built from them, and driver names are checked to be plain names, so the
//! only files ever written are the control files of
//! `<root>/bus/pci/devices/<address>` (`driver/unbind`, `driver_override`),
//! `<root>/bus/pci/drivers_probe` and `<root>/bus/pci/drivers/<name>/bind`.
//! Writes never create files.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Result, VfioError};

/// The driver that gives user space access to PCI devices.
const VFIO_PCI: &str = "vfio-pci";
/// A placeholder driver that the kernel lets share a group with vfio-pci.
const PCI_STUB: &str = "pci-stub";
/// The driver of PCIe ports (bridges), which the kernel lets share a group.
const PCIEPORT: &str = "pcieport";
/// PCI class of PCI-to-PCI bridges (class 0x06, subclass 0x04).
const CLASS_PCI_BRIDGE: u32 = 0x0604;

const HINT_LIST: &str = "check `vfio-ioctls list` or `lspci -D` for the devices present";
const HINT_NO_IOMMU: &str =
    "no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu=on) or the device is not behind one";
const HINT_MODPROBE: &str = "is vfio-pci loaded? (modprobe vfio-pci)";

/// A PCI address `DDDD:BB:DD.F` (domain, bus, device 0..=31, function 0..=7).
///
/// Parsing is strict: `DDDD:BB:DD.F` with a domain of 4 to 8 hex digits, or
/// the short form `BB:DD.F` (domain 0); hex digits may be upper or lower
/// case; nothing else is accepted (no whitespace, no path separators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// The PCI domain (segment).
    pub domain: u32,
    /// The bus number.
    pub bus: u8,
    /// The device (slot) number, 0..=31.
    pub device: u8,
    /// The function number, 0..=7.
    pub function: u8,
}

impl PciAddress {
    /// Builds an address, checking that `device` ≤ 31 and `function` ≤ 7.
    pub fn new(domain: u32, bus: u8, device: u8, function: u8) -> Result<Self> {
        if device > 31 || function > 7 {
            return Err(VfioError::invalid(
                "PCI address",
                format!(
                    "device {device:#x} must be at most 0x1f and function {function} at most 7"
                ),
            ));
        }
        Ok(PciAddress {
            domain,
            bus,
            device,
            function,
        })
    }
}

/// Parses exactly `len_min..=len_max` hex digits (no sign, no prefix).
fn hex_field(s: &str, len_min: usize, len_max: usize) -> Option<u32> {
    if s.len() < len_min || s.len() > len_max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn parse_address(s: &str) -> Option<PciAddress> {
    let (head, function) = s.split_once('.')?;
    let function = hex_field(function, 1, 1)?;
    let parts: Vec<&str> = head.split(':').collect();
    let (domain, bus, device) = match parts.as_slice() {
        [domain, bus, device] => (hex_field(domain, 4, 8)?, *bus, *device),
        [bus, device] => (0, *bus, *device),
        _ => return None,
    };
    let bus = u8::try_from(hex_field(bus, 2, 2)?).ok()?;
    let device = hex_field(device, 2, 2)?;
    if device > 31 || function > 7 {
        return None;
    }
    Some(PciAddress {
        domain,
        bus,
        device: device as u8,
        function: function as u8,
    })
}

impl FromStr for PciAddress {
    type Err = VfioError;

    fn from_str(s: &str) -> Result<Self> {
        parse_address(s).ok_or_else(|| {
            VfioError::invalid(
                "parse PCI address",
                format!(
                    "{s:?} is not a PCI address; expected DDDD:BB:DD.F or BB:DD.F in hex \
                     (device 00..1f, function 0..7), e.g. 0000:00:03.0"
                ),
            )
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

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

/// What [`Sysfs::bind_vfio`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOutcome {
    /// The driver the device was unbound from, if any.
    pub previous_driver: Option<String>,
    /// The device was bound to vfio-pci already; nothing was written.
    pub already_bound: bool,
}

/// Access to sysfs under a root (`/sys` normally; tests point it to a temp dir).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new()
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn read_error(path: &Path, e: io::Error) -> VfioError {
    VfioError::os("read", path_str(path), e)
}

fn malformed(path: &Path, message: String) -> VfioError {
    read_error(path, io::Error::new(io::ErrorKind::InvalidData, message))
}

/// Reads a whole sysfs file.
fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| read_error(path, e))
}

/// Reads a sysfs file that may be absent.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(path, e)),
    }
}

/// Writes a whole sysfs control file, which must exist already.
fn write_file(path: &Path, content: &str) -> Result<()> {
    log::debug!("sysfs: writing {content:?} to {}", path.display());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| VfioError::os("write", path_str(path), e))?;
    f.write_all(content.as_bytes())
        .map_err(|e| VfioError::os("write", path_str(path), e))
}

/// Reads a hex number like `0x8086` that must fit in `bits` bits.
fn read_hex(path: &Path, bits: u32) -> Result<u32> {
    let content = read_file(path)?;
    let text = content.trim();
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let value = hex_field(digits, 1, 8).filter(|v| bits >= 32 || *v < (1u32 << bits));
    value.ok_or_else(|| {
        malformed(
            path,
            format!("expected a hex number of at most {bits} bits like 0x8086, found {text:?}"),
        )
    })
}

fn read_u16(path: &Path) -> Result<u16> {
    // read_hex checked the width.
    read_hex(path, 16).map(|v| v as u16)
}

/// The final component of a symlink's target, or `None` when there is no link.
fn link_name(link: &Path) -> Result<Option<String>> {
    match fs::read_link(link) {
        Ok(target) => match target.file_name().and_then(|n| n.to_str()) {
            Some(name) => Ok(Some(name.to_owned())),
            None => Err(VfioError::os(
                "readlink",
                path_str(link),
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("link target {} has no usable name", target.display()),
                ),
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(VfioError::os("readlink", path_str(link), e)),
    }
}

/// Checks a driver name before it becomes a path component.
fn validate_driver_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VfioError::invalid(
            "driver name",
            format!("{name:?} is not a driver name; expected letters, digits, '_', '.', '-' (e.g. ahci, nvme)"),
        ))
    }
}

impl Sysfs {
    /// Sysfs at `/sys`.
    pub fn new() -> Self {
        Self::with_root("/sys")
    }

    /// Sysfs at another root (a fake tree in tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/bus/pci/devices/<addr>`.
    pub fn device_dir(&self, addr: &PciAddress) -> PathBuf {
        self.pci_bus_dir().join("devices").join(addr.to_string())
    }

    fn pci_bus_dir(&self) -> PathBuf {
        self.root.join("bus").join("pci")
    }

    fn group_devices_dir(&self, group: u32) -> PathBuf {
        self.root
            .join("kernel")
            .join("iommu_groups")
            .join(group.to_string())
            .join("devices")
    }

    /// The device directory of `addr`, which must exist.
    fn existing_device_dir(&self, addr: &PciAddress) -> Result<PathBuf> {
        let dir = self.device_dir(addr);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(VfioError::NotFound {
                what: format!("PCI device {addr}"),
                path: dir,
                hint: Some(HINT_LIST.into()),
            })
        }
    }

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
    /// `/sys/devices/pci0000:00/0000:00:03.0`), and finds its IOMMU group.
    ///
    /// A path must canonicalize to a directory strictly under `<root>/devices`
    /// or `<root>/bus`; one that canonicalizes elsewhere (e.g. through `..`) is
    /// `InvalidArgument`, a nonexistent one is `NotFound`. Input that is
    /// neither an address nor an absolute path is `InvalidArgument`. A device
    /// without an IOMMU group gives the `NotFound` of [`Sysfs::iommu_group`].
    pub fn resolve_device(&self, addr_or_path: &str) -> Result<DeviceLocation> {
        const OP: &str = "resolve device";
        let candidate = if let Some(addr) = parse_address(addr_or_path) {
            self.existing_device_dir(&addr)?
        } else if addr_or_path.starts_with('/') && !addr_or_path.contains('\0') {
            PathBuf::from(addr_or_path)
        } else {
            return Err(VfioError::invalid(
                OP,
                format!(
                    "{addr_or_path:?} is neither a PCI address (DDDD:BB:DD.F or BB:DD.F, e.g. 0000:00:03.0) \
                     nor an absolute sysfs path (e.g. {}/bus/pci/devices/0000:00:03.0)",
                    self.root.display()
                ),
            ));
        };

        let canonical = Self::canonicalize(&candidate, "device")?;
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
        let inside = [root.join("devices"), root.join("bus")]
            .iter()
            .any(|base| canonical.starts_with(base) && canonical != *base);
        if !inside {
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
        let name = canonical
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                VfioError::invalid(OP, format!("{} has no usable name", canonical.display()))
            })?;
        let address = parse_address(&name);
        let group = self.iommu_group(&canonical)?;
        Ok(DeviceLocation {
            sysfs_path: canonical,
            name,
            address,
            group,
        })
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
        let link = device_dir.join("iommu_group");
        let name = link_name(&link)?.ok_or_else(|| VfioError::NotFound {
            what: "IOMMU group".into(),
            path: link.clone(),
            hint: Some(HINT_NO_IOMMU.into()),
        })?;
        name.parse::<u32>().map_err(|_| {
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
        let driver_override = read_optional(&dir.join("driver_override"))?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s != "(null)");
        let iommu_group = match self.iommu_group(&dir) {
            Ok(g) => Some(g),
            Err(VfioError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let numa_path = dir.join("numa_node");
        let numa_node = match read_optional(&numa_path)? {
            None => None,
            Some(s) => {
                let s = s.trim();
                let node: i32 = s.parse().map_err(|_| {
                    malformed(
                        &numa_path,
                        format!("expected a decimal number, found {s:?}"),
                    )
                })?;
                (node >= 0).then_some(node)
            }
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

    /// Binds the device at `addr` to vfio-pci.
    ///
    /// Checks that vfio-pci is loaded (`<root>/bus/pci/drivers/vfio-pci`)
    /// before touching anything (`Unsupported` otherwise). If the device is
    /// bound to vfio-pci already, writes nothing and reports `already_bound`.
    /// Otherwise unbinds it from its driver (writes the address to
    /// `<dev>/driver/unbind`), writes `vfio-pci` to `<dev>/driver_override`
    /// and the address to `<root>/bus/pci/drivers_probe`, then checks that
    /// the device's driver is vfio-pci (`Unsupported` otherwise).
    pub fn bind_vfio(&self, addr: &PciAddress) -> Result<BindOutcome> {
        let dir = self.existing_device_dir(addr)?;
        let vfio_driver = self.pci_bus_dir().join("drivers").join(VFIO_PCI);
        if !vfio_driver.is_dir() {
            return Err(VfioError::unsupported(
                "bind",
                format!(
                    "cannot bind {addr}: the vfio-pci driver is not loaded ({} does not exist); load it with `modprobe vfio-pci`",
                    vfio_driver.display()
                ),
            ));
        }
        let name = addr.to_string();
        let previous_driver = link_name(&dir.join("driver"))?;
        if previous_driver.as_deref() == Some(VFIO_PCI) {
            return Ok(BindOutcome {
                previous_driver: None,
                already_bound: true,
            });
        }
        if previous_driver.is_some() {
            write_file(&dir.join("driver").join("unbind"), &name)?;
        }
        write_file(&dir.join("driver_override"), VFIO_PCI)?;
        write_file(&self.pci_bus_dir().join("drivers_probe"), &name)?;

        let now = link_name(&dir.join("driver"))?;
        if now.as_deref() != Some(VFIO_PCI) {
            let previously = match &previous_driver {
                Some(d) => {
                    format!("; it was unbound from {d}, restore it with unbind_vfio(Some({d:?}))")
                }
                None => String::new(),
            };
            return Err(VfioError::unsupported(
                "bind",
                format!(
                    "{addr} is bound to {} after probing, not vfio-pci; {HINT_MODPROBE}{previously}",
                    now.as_deref().unwrap_or("no driver")
                ),
            ));
        }
        Ok(BindOutcome {
            previous_driver,
            already_bound: false,
        })
    }

    /// Unbinds the device at `addr` from vfio-pci and lets a host driver take it.
    ///
    /// If the device is bound to vfio-pci, writes the address to
    /// `<dev>/driver/unbind`. Clears `<dev>/driver_override` (writes `"\n"`).
    /// If the device now has no driver, writes the address to
    /// `<root>/bus/pci/drivers_probe` so the kernel picks its default driver.
    /// Then, if `restore` names a driver the device did not get, writes the
    /// address to `<root>/bus/pci/drivers/<restore>/bind` (`NotFound` if that
    /// driver is not loaded; the kernel refuses with `EBUSY` if the device has
    /// another driver). A device bound to a driver other than vfio-pci is not
    /// unbound. Returns the device's driver afterwards.
    ///
    /// `restore` must be a plain driver name (`[A-Za-z0-9_.-]+`), checked
    /// before anything is written.
    pub fn unbind_vfio(&self, addr: &PciAddress, restore: Option<&str>) -> Result<Option<String>> {
        if let Some(d) = restore {
            validate_driver_name(d)?;
        }
        let dir = self.existing_device_dir(addr)?;
        let name = addr.to_string();
        let driver_link = dir.join("driver");
        let current = link_name(&driver_link)?;
        if current.as_deref() == Some(VFIO_PCI) {
            write_file(&driver_link.join("unbind"), &name)?;
        }
        write_file(&dir.join("driver_override"), "\n")?;
        // After the unbind, or if the device had no driver: let the kernel probe.
        if current.is_none() || current.as_deref() == Some(VFIO_PCI) {
            write_file(&self.pci_bus_dir().join("drivers_probe"), &name)?;
        }
        let mut now = link_name(&driver_link)?;
        if let Some(wanted) = restore {
            if now.as_deref() != Some(wanted) {
                let driver_dir = self.pci_bus_dir().join("drivers").join(wanted);
                if !driver_dir.is_dir() {
                    return Err(VfioError::NotFound {
                        what: format!("driver {wanted}"),
                        path: driver_dir,
                        hint: Some(format!(
                            "load its module (`modprobe {wanted}`); {addr} is now bound to {}",
                            now.as_deref().unwrap_or("no driver")
                        )),
                    });
                }
                // A driver binds only a device it matches: vfio-pci matches none by id, so
                // name it in driver_override first (as bind_vfio does); others keep no override.
                if wanted == VFIO_PCI {
                    write_file(&dir.join("driver_override"), VFIO_PCI)?;
                }
                write_file(&driver_dir.join("bind"), &name)?;
                now = link_name(&driver_link)?;
            }
        }
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::os::unix::fs::symlink;
    use vmm_sys_util::tempdir::TempDir;

    const A: &str = "0000:00:03.0"; // in group 5, bound to vfio-pci
    const B: &str = "0000:00:1f.2"; // in group 7 with C, bound to ahci
    const C: &str = "0000:00:1f.0"; // in group 7, bound to vfio-pci
    const D: &str = "0000:00:1c.0"; // bridge in group 7 with pcieport
    const E: &str = "0000:01:00.0"; // no IOMMU group, no driver

    struct Fake {
        _tmp: TempDir,
        root: PathBuf,
    }

    impl Fake {
        fn sysfs(&self) -> Sysfs {
            Sysfs::with_root(&self.root)
        }
        fn dev(&self, name: &str) -> PathBuf {
            self.root.join("devices/pci0000:00").join(name)
        }
        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.root.join(rel)).unwrap()
        }
        fn set_driver(&self, name: &str, driver: &str) {
            let link = self.dev(name).join("driver");
            let _ = fs::remove_file(&link);
            symlink(format!("../../../bus/pci/drivers/{driver}"), link).unwrap();
        }
    }

    fn add_driver(root: &Path, driver: &str) {
        let d = root.join("bus/pci/drivers").join(driver);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("bind"), "").unwrap();
        fs::write(d.join("unbind"), "").unwrap();
    }

    fn add_device(root: &Path, name: &str, class: &str, group: Option<u32>, driver: Option<&str>) {
        let dir = root.join("devices/pci0000:00").join(name);
        fs::create_dir_all(&dir).unwrap();
        for (file, value) in [
            ("vendor", "0x8086\n"),
            ("device", "0x1234\n"),
            ("class", class),
            ("revision", "0x10\n"),
            ("subsystem_vendor", "0x1af4\n"),
            ("subsystem_device", "0x1100\n"),
            ("driver_override", "(null)\n"),
            ("numa_node", "-1\n"),
        ] {
            fs::write(dir.join(file), value).unwrap();
        }
        symlink(
            format!("../../../devices/pci0000:00/{name}"),
            root.join("bus/pci/devices").join(name),
        )
        .unwrap();
        if let Some(g) = group {
            let gdir = root
                .join("kernel/iommu_groups")
                .join(g.to_string())
                .join("devices");
            fs::create_dir_all(&gdir).unwrap();
            symlink(
                format!("../../../kernel/iommu_groups/{g}"),
                dir.join("iommu_group"),
            )
            .unwrap();
            symlink(
                format!("../../../../devices/pci0000:00/{name}"),
                gdir.join(name),
            )
            .unwrap();
        }
        if let Some(d) = driver {
            symlink(format!("../../../bus/pci/drivers/{d}"), dir.join("driver")).unwrap();
        }
    }

    fn fake() -> Fake {
        let tmp = TempDir::new_with_prefix("/tmp/vfio-sysfs-test").unwrap();
        let root = fs::canonicalize(tmp.as_path()).unwrap();
        fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
        fs::write(root.join("bus/pci/drivers_probe"), "").unwrap();
        for d in ["vfio-pci", "ahci", "pcieport"] {
            add_driver(&root, d);
        }
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root").unwrap();
        add_device(&root, A, "0x020000\n", Some(5), Some("vfio-pci"));
        add_device(&root, B, "0x010601\n", Some(7), Some("ahci"));
        add_device(&root, C, "0x060100\n", Some(7), Some("vfio-pci"));
        add_device(&root, D, "0x060400\n", Some(7), Some("pcieport"));
        add_device(&root, E, "0x030000\n", None, None);
        fs::write(
            root.join("devices/pci0000:00").join(E).join("numa_node"),
            "1\n",
        )
        .unwrap();
        fs::write(
            root.join("devices/pci0000:00")
                .join(E)
                .join("driver_override"),
            "vfio-pci\n",
        )
        .unwrap();
        // Not a PCI address: skipped by list.
        fs::create_dir_all(root.join("bus/pci/devices/garbage")).unwrap();
        Fake { _tmp: tmp, root }
    }

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn sysfs_parses_valid_addresses() {
        assert_eq!(
            addr("0000:00:03.0"),
            PciAddress {
                domain: 0,
                bus: 0,
                device: 3,
                function: 0
            }
        );
        assert_eq!(addr("00:03.0"), addr("0000:00:03.0"));
        assert_eq!(
            addr("ABCD:Ef:1F.7"),
            PciAddress {
                domain: 0xabcd,
                bus: 0xef,
                device: 0x1f,
                function: 7
            }
        );
        assert_eq!(addr("10000:01:00.1").domain, 0x10000);
        assert_eq!(addr("ffffffff:ff:1f.7").domain, 0xffff_ffff);
        assert_eq!(PciAddress::new(0, 1, 2, 3).unwrap(), addr("01:02.3"));
        assert!(PciAddress::new(0, 1, 32, 0).is_err());
    }

    #[test]
    fn sysfs_rejects_invalid_addresses() {
        for bad in [
            "",
            "0000:00:03",
            "0000:00:20.0",
            "0000:00:03.8",
            "00:03.0/../x",
            " 00:03.0",
            "00:03.0 ",
            "0000:00:03.0\n",
            "../../etc",
            "000:00:03.0",
            "000000000:00:03.0",
            "0000:0:03.0",
            "0000:00:3.0",
            "0000:00:03.00",
            "+000:00:03.0",
            "0000:00:03.0.0",
            "0:0000:00:03.0",
            "0000:00:03:0",
            "0000:g0:03.0",
            "0000:00:03.",
        ] {
            let e = bad.parse::<PciAddress>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
            assert!(matches!(
                e,
                VfioError::InvalidArgument {
                    op: "parse PCI address",
                    ..
                }
            ));
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{bad:?}")) && msg.contains("DDDD:BB:DD.F"),
                "{msg}"
            );
        }
    }

    #[test]
    fn sysfs_address_display_round_trips() {
        for s in ["0000:00:03.0", "abcd:ef:1f.7", "10000:01:00.1"] {
            assert_eq!(addr(s).to_string(), s);
            assert_eq!(addr(&addr(s).to_string()), addr(s));
        }
        assert_eq!(addr("00:03.0").to_string(), "0000:00:03.0");
        assert_eq!(addr("ABCD:EF:1F.7").to_string(), "abcd:ef:1f.7");
        assert!(addr("0000:00:03.0") < addr("0000:00:1f.0"));
        assert!(addr("0000:ff:00.0") < addr("0001:00:00.0"));
    }

    #[test]
    fn sysfs_paths() {
        let s = Sysfs::new();
        assert_eq!(s.root(), Path::new("/sys"));
        assert_eq!(Sysfs::default().root(), Path::new("/sys"));
        assert_eq!(
            s.device_dir(&addr("00:03.0")),
            Path::new("/sys/bus/pci/devices/0000:00:03.0")
        );
    }

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

    #[test]
    fn sysfs_bind_writes_control_files_then_verifies() {
        let f = fake();
        let s = f.sysfs();
        let e = s.bind_vfio(&addr(B)).unwrap_err();
        // The fake kernel does not rebind: the driver is still ahci.
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            matches!(&e, VfioError::Unsupported { op: "bind", message } if message.contains("modprobe vfio-pci"))
        );
        assert_eq!(f.read("bus/pci/drivers/ahci/unbind"), B);
        assert_eq!(
            f.read(&format!("bus/pci/devices/{B}/driver_override")),
            "vfio-pci"
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), B);

        // A device without a driver: nothing to unbind.
        fs::write(f.root.join("bus/pci/drivers_probe"), "").unwrap();
        let e2 = s.bind_vfio(&addr(E)).unwrap_err();
        assert_eq!(e2.kind(), ErrorKind::Unsupported);
        assert_eq!(f.read("bus/pci/drivers_probe"), E);
    }

    #[test]
    fn sysfs_bind_already_bound_writes_nothing() {
        let f = fake();
        let s = f.sysfs();
        let out = s.bind_vfio(&addr(A)).unwrap();
        assert_eq!(
            out,
            BindOutcome {
                previous_driver: None,
                already_bound: true
            }
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "");
        assert_eq!(
            f.read(&format!("bus/pci/devices/{A}/driver_override")),
            "(null)\n"
        );
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }

    #[test]
    fn sysfs_bind_succeeds_when_kernel_rebinds() {
        // Emulate the kernel with FIFOs: once driver_override has been written,
        // switch B's driver link to vfio-pci, then accept the drivers_probe write.
        let f = fake();
        let s = f.sysfs();
        let override_path = f.dev(B).join("driver_override");
        let probe_path = f.root.join("bus/pci/drivers_probe");
        fs::remove_file(&override_path).unwrap();
        fs::remove_file(&probe_path).unwrap();
        mkfifo(&override_path);
        mkfifo(&probe_path);
        let link = f.dev(B).join("driver");
        let kernel = std::thread::spawn(move || {
            let written = fs::read_to_string(&override_path).unwrap();
            fs::remove_file(&link).unwrap();
            symlink("../../../bus/pci/drivers/vfio-pci", &link).unwrap();
            let probed = fs::read_to_string(&probe_path).unwrap();
            (written, probed)
        });
        let out = s.bind_vfio(&addr(B)).unwrap();
        assert_eq!(
            out,
            BindOutcome {
                previous_driver: Some("ahci".into()),
                already_bound: false
            }
        );
        assert_eq!(
            kernel.join().unwrap(),
            ("vfio-pci".to_string(), B.to_string())
        );
        assert_eq!(f.read("bus/pci/drivers/ahci/unbind"), B);
        // (driver_override is still a FIFO here, so do not read it through pci_device.)
        assert_eq!(
            link_name(&f.dev(B).join("driver")).unwrap().as_deref(),
            Some("vfio-pci")
        );
    }

    #[test]
    fn sysfs_bind_without_vfio_driver_touches_nothing() {
        let f = fake();
        let s = f.sysfs();
        fs::remove_dir_all(f.root.join("bus/pci/drivers/vfio-pci")).unwrap();
        let e = s.bind_vfio(&addr(B)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            e.to_string().contains("not loaded") && e.to_string().contains("modprobe vfio-pci"),
            "{e}"
        );
        assert_eq!(f.read("bus/pci/drivers/ahci/unbind"), "");
        assert_eq!(
            f.read(&format!("bus/pci/devices/{B}/driver_override")),
            "(null)\n"
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        assert_eq!(
            s.bind_vfio(&addr("0000:00:05.0")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn sysfs_unbind_writes_expected_files() {
        let f = fake();
        let s = f.sysfs();
        // The fake kernel does not act, so the link still says vfio-pci afterwards.
        let now = s.unbind_vfio(&addr(A), Some("ahci")).unwrap();
        assert_eq!(now.as_deref(), Some("vfio-pci"));
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), A);
        assert_eq!(
            f.read(&format!("bus/pci/devices/{A}/driver_override")),
            "\n"
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), A);
        assert_eq!(f.read("bus/pci/drivers/ahci/bind"), A);

        // Emulate the kernel having unbound it: no driver, no restore.
        fs::write(f.root.join("bus/pci/drivers_probe"), "").unwrap();
        fs::remove_file(f.dev(A).join("driver")).unwrap();
        assert_eq!(s.unbind_vfio(&addr(A), None).unwrap(), None);
        assert_eq!(f.read("bus/pci/drivers_probe"), A);

        // Restoring a driver that is already there writes no bind.
        fs::write(f.root.join("bus/pci/drivers/ahci/bind"), "").unwrap();
        assert_eq!(
            s.unbind_vfio(&addr(B), Some("ahci")).unwrap().as_deref(),
            Some("ahci")
        );
        assert_eq!(f.read("bus/pci/drivers/ahci/bind"), "");
        assert_eq!(f.read("bus/pci/drivers/ahci/unbind"), "");

        // A driver that is not loaded.
        let e = s.unbind_vfio(&addr(A), Some("nvme")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("modprobe nvme"), "{e}");
    }

    #[test]
    fn sysfs_unbind_rejects_bad_driver_names_before_writing() {
        let f = fake();
        let s = f.sysfs();
        for bad in ["", ".", "..", "../ahci", "a/b", "ahci\n", "ah ci", "x;rm"] {
            let e = s.unbind_vfio(&addr(A), Some(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "");
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        for good in ["ahci", "nvme", "snd_hda_intel", "ixgbe.1-x"] {
            assert!(validate_driver_name(good).is_ok(), "{good}");
        }
    }
}
