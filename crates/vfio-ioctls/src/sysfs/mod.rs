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
//!   and an [`io::ErrorKind::InvalidData`](std::io::ErrorKind::InvalidData)
//!   source that says what was expected; its kind is [`crate::ErrorKind::Io`].
//! * Malformed user input (addresses, paths, driver names) gives
//!   [`VfioError::InvalidArgument`].
//! * Binding or unbinding a device that this process holds open through VFIO
//!   gives [`VfioError::Busy`] before anything is written: the kernel would
//!   block the write until the device is closed, by this very process (see
//!   [`crate::held`]).
//!
//! # Security
//!
//! PCI addresses are parsed strictly by [`PciAddress`] before any path is
//! built from them, and driver names are checked to be plain names, so the
//! only files ever written are the control files of
//! `<root>/bus/pci/devices/<address>` (`driver/unbind`, `driver_override`),
//! `<root>/bus/pci/drivers_probe` and `<root>/bus/pci/drivers/<name>/bind`.
//! Writes never create files.
//!
//! The parts, one job each: [`PciAddress`] (`address`), the small pure parsers of
//! sysfs text (`parse`), reading and writing sysfs files with these errors
//! (`files`), finding devices and their IOMMU groups (`discovery`), and binding
//! devices to vfio-pci and back (`binding`). This file holds the [`Sysfs`] root
//! and the layout of the tree under it.

// `address` and `parse` are visible to the crate for its property tests
// (`parser_props`), which exercise their parsers directly.
pub(crate) mod address;
mod binding;
mod discovery;
#[cfg(test)]
mod fake;
mod files;
mod mdev;
pub(crate) mod parse;

use std::path::{Path, PathBuf};

use crate::error::{Result, VfioError};

pub use address::PciAddress;
pub use binding::BindOutcome;
pub use discovery::{DeviceLocation, PciDeviceInfo};
pub use mdev::{is_mdev_uuid, MdevType};

/// The driver that gives user space access to PCI devices.
const VFIO_PCI: &str = "vfio-pci";

const HINT_LIST: &str = "check `vfio-ioctls list` or `lspci -D` for the devices present";

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

impl Sysfs {
    /// Sysfs at `/sys`.
    pub fn new() -> Self {
        Self::with_root("/sys")
    }

    /// Sysfs at another root (a fake tree in tests).
    ///
    /// ```
    /// use std::fs;
    /// use std::os::unix::fs::symlink;
    /// use vfio_ioctls::sysfs::Sysfs;
    ///
    /// // IOMMU group 7 with a device bound to vfio-pci and one bound to ahci.
    /// let root = std::env::temp_dir().join(format!("vfio-doc-sysfs-{}", std::process::id()));
    /// let group = root.join("kernel/iommu_groups/7/devices");
    /// for (device, driver) in [("0000:00:1f.2", "ahci"), ("0000:00:1f.0", "vfio-pci")] {
    ///     fs::create_dir_all(group.join(device))?;
    ///     symlink(format!("../../bus/pci/drivers/{driver}"), group.join(device).join("driver"))?;
    /// }
    /// let sysfs = Sysfs::with_root(&root);
    /// assert_eq!(sysfs.group_devices(7)?, ["0000:00:1f.0", "0000:00:1f.2"]);
    /// // What keeps the group from being opened (ERR_VFIO_GROUP_NOT_VIABLE):
    /// assert_eq!(sysfs.group_blockers(7)?, ["0000:00:1f.2 (ahci)"]);
    /// assert_eq!(sysfs.group_devices(8).unwrap_err().code(), "ERR_VFIO_NOT_FOUND");
    /// fs::remove_dir_all(&root)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
}

#[cfg(test)]
mod tests {
    use super::fake::addr;
    use super::*;

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
}
