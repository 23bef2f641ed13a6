//! The hypervisor's VFIO device (KVM or MSHV), with which groups are registered
//! so that the hypervisor can set up coherent DMA and interrupt bypass.

use std::fs::File;

#[allow(unused_imports)]
use crate::error::{Result, VfioError};

/// Which hypervisor a [`VfioDeviceFd`] belongs to.
#[derive(Debug)]
pub(crate) enum DeviceFdInner {
    #[cfg(feature = "kvm")]
    Kvm(kvm_ioctls::DeviceFd),
    #[cfg(feature = "mshv")]
    Mshv(mshv_ioctls::DeviceFd),
    /// Without a hypervisor feature no value can exist.
    #[cfg(not(any(feature = "kvm", feature = "mshv")))]
    #[allow(dead_code)]
    Never(std::convert::Infallible),
}

/// A hypervisor's VFIO pseudo-device (`KVM_DEV_TYPE_VFIO` or `MSHV_DEV_TYPE_VFIO`).
///
/// Give it to [`crate::VfioContainer::new`]: every group that joins the container
/// is then added to it, and removed when the group leaves.
#[derive(Debug)]
pub struct VfioDeviceFd(pub(crate) DeviceFdInner);

/// How a container shares the hypervisor device (upstream's name).
pub type VfioContainerDeviceHandle = std::sync::Arc<VfioDeviceFd>;

/// The `KVM_DEV_VFIO_FILE` / `MSHV_DEV_VFIO_FILE` attribute group and its operations
/// (the same numbers as the older `*_VFIO_GROUP*`).
#[cfg_attr(not(any(feature = "kvm", feature = "mshv")), allow(dead_code))]
const VFIO_FILE: u32 = 1;
#[cfg_attr(not(any(feature = "kvm", feature = "mshv")), allow(dead_code))]
const VFIO_FILE_ADD: u64 = 1;
#[cfg_attr(not(any(feature = "kvm", feature = "mshv")), allow(dead_code))]
const VFIO_FILE_DEL: u64 = 2;

impl VfioDeviceFd {
    /// Wraps a KVM VFIO device fd.
    #[cfg(feature = "kvm")]
    pub fn new_from_kvm(fd: kvm_ioctls::DeviceFd) -> Self {
        VfioDeviceFd(DeviceFdInner::Kvm(fd))
    }

    /// Unwraps the KVM device fd.
    ///
    /// # Errors
    /// Upstream's `VfioDeviceFdWrongType` (kind `InvalidArgument`) when this is not a
    /// KVM device.
    #[cfg(feature = "kvm")]
    pub fn to_kvm(self) -> Result<kvm_ioctls::DeviceFd> {
        match self.0 {
            DeviceFdInner::Kvm(fd) => Ok(fd),
            #[allow(unreachable_patterns)]
            _ => Err(VfioError::VfioDeviceFdWrongType),
        }
    }

    /// Wraps an MSHV VFIO device fd.
    #[cfg(feature = "mshv")]
    pub fn new_from_mshv(fd: mshv_ioctls::DeviceFd) -> Self {
        VfioDeviceFd(DeviceFdInner::Mshv(fd))
    }

    /// Unwraps the MSHV device fd.
    ///
    /// # Errors
    /// Upstream's `VfioDeviceFdWrongType` (kind `InvalidArgument`) when this is not an
    /// MSHV device.
    #[cfg(feature = "mshv")]
    pub fn to_mshv(self) -> Result<mshv_ioctls::DeviceFd> {
        match self.0 {
            DeviceFdInner::Mshv(fd) => Ok(fd),
            #[allow(unreachable_patterns)]
            _ => Err(VfioError::VfioDeviceFdWrongType),
        }
    }

    /// Duplicates the underlying fd.
    ///
    /// # Errors
    /// Upstream's `VfioDeviceDupFd` when `dup` fails, its errno logged first.
    pub fn try_clone(&self) -> Result<Self> {
        self.try_clone_inner()
            .map_err(|e| e.into_upstream_as(VfioError::VfioDeviceDupFd))
    }

    fn try_clone_inner(&self) -> Result<Self> {
        match &self.0 {
            #[cfg(feature = "kvm")]
            DeviceFdInner::Kvm(fd) => {
                let dup = dup_raw(
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    "hypervisor VFIO device",
                )?;
                // SAFETY: `dup` is a new fd of a KVM device that nothing else owns.
                Ok(VfioDeviceFd::new_from_kvm(unsafe {
                    <kvm_ioctls::DeviceFd as std::os::fd::FromRawFd>::from_raw_fd(dup)
                }))
            }
            #[cfg(feature = "mshv")]
            DeviceFdInner::Mshv(fd) => {
                let dup = dup_raw(
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    "hypervisor VFIO device",
                )?;
                // SAFETY: `dup` is a new fd of an MSHV device that nothing else owns.
                Ok(VfioDeviceFd::new_from_mshv(unsafe {
                    <mshv_ioctls::DeviceFd as std::os::fd::FromRawFd>::from_raw_fd(dup)
                }))
            }
            #[cfg(not(any(feature = "kvm", feature = "mshv")))]
            DeviceFdInner::Never(never) => match *never {},
        }
    }

    /// Registers a VFIO group with the hypervisor.
    pub(crate) fn add_group(&self, group: &File) -> Result<()> {
        self.group_attr(group, VFIO_FILE_ADD, "KVM_DEV_VFIO_FILE_ADD")
    }

    /// Removes a VFIO group from the hypervisor.
    pub(crate) fn remove_group(&self, group: &File) -> Result<()> {
        self.group_attr(group, VFIO_FILE_DEL, "KVM_DEV_VFIO_FILE_DEL")
    }

    #[allow(unused_variables)]
    fn group_attr(&self, group: &File, attr: u64, op: &'static str) -> Result<()> {
        use std::os::fd::AsRawFd;
        let fd: i32 = group.as_raw_fd();
        let addr = &fd as *const i32 as u64;
        let target = format!("group fd {fd}");
        match &self.0 {
            #[cfg(feature = "kvm")]
            DeviceFdInner::Kvm(dev) => {
                let attr = kvm_bindings::kvm_device_attr {
                    group: VFIO_FILE,
                    attr,
                    addr,
                    flags: 0,
                };
                dev.set_device_attr(&attr).map_err(|e| {
                    VfioError::os(op, target, std::io::Error::from_raw_os_error(e.errno()))
                })
            }
            #[cfg(feature = "mshv")]
            DeviceFdInner::Mshv(dev) => {
                let attr = mshv_bindings::mshv_device_attr {
                    group: VFIO_FILE,
                    attr,
                    addr,
                    flags: 0,
                };
                let op = if attr.attr == VFIO_FILE_ADD {
                    "MSHV_DEV_VFIO_FILE_ADD"
                } else {
                    "MSHV_DEV_VFIO_FILE_DEL"
                };
                dev.set_device_attr(&attr).map_err(|e| {
                    VfioError::os(op, target, std::io::Error::from_raw_os_error(e.errno()))
                })
            }
            #[cfg(not(any(feature = "kvm", feature = "mshv")))]
            DeviceFdInner::Never(never) => match *never {},
        }
    }
}

/// Duplicates a caller's fd (close-on-exec), so the library owns its copy.
#[cfg(any(feature = "kvm", feature = "mshv"))]
pub(crate) fn dup_raw(fd: std::os::fd::RawFd, what: &str) -> Result<std::os::fd::RawFd> {
    if fd < 0 {
        return Err(VfioError::invalid(
            "dup",
            format!("{what} fd {fd} is negative"),
        ));
    }
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` only reads the fd number and returns a new fd or -1.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(VfioError::last_os("dup", format!("{what} fd {fd}")));
    }
    Ok(dup)
}
