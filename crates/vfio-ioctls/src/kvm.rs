//! Creating a KVM VM with its VFIO device, for users who have no VMM of their own
//! (tools and tests); a VMM passes its own device fd to [`VfioDeviceFd::new_from_kvm`].

use kvm_ioctls::{Kvm, VmFd};

use crate::error::{Result, VfioError};
use crate::hypervisor::VfioDeviceFd;

/// A KVM VM and its VFIO pseudo-device. The VM lives as long as this value.
#[derive(Debug)]
pub struct KvmVfio {
    /// The VM.
    pub vm: VmFd,
    /// Its VFIO device, ready for [`crate::VfioContainer::new`].
    pub device: VfioDeviceFd,
}

/// Opens `/dev/kvm`, creates a VM and its `KVM_DEV_TYPE_VFIO` device.
///
/// # Errors
/// `NotFound` without `/dev/kvm`, `Permission`, the kernel's errno otherwise.
pub fn create_vm_vfio_device() -> Result<KvmVfio> {
    let kvm = Kvm::new().map_err(|e| {
        VfioError::os(
            "open",
            "/dev/kvm",
            std::io::Error::from_raw_os_error(e.errno()),
        )
    })?;
    let vm = kvm.create_vm().map_err(|e| {
        VfioError::os(
            "KVM_CREATE_VM",
            "/dev/kvm",
            std::io::Error::from_raw_os_error(e.errno()),
        )
    })?;
    let mut create = kvm_bindings::kvm_create_device {
        type_: kvm_bindings::kvm_device_type_KVM_DEV_TYPE_VFIO,
        fd: 0,
        flags: 0,
    };
    let fd = vm.create_device(&mut create).map_err(|e| {
        VfioError::os(
            "KVM_CREATE_DEVICE",
            "KVM_DEV_TYPE_VFIO",
            std::io::Error::from_raw_os_error(e.errno()),
        )
    })?;
    Ok(KvmVfio {
        vm,
        device: VfioDeviceFd::new_from_kvm(fd),
    })
}

/// Takes ownership of a duplicate of `fd`, a KVM VFIO device fd from the caller's VMM.
///
/// # Errors
/// `InvalidArgument` for a negative fd; the errno of `dup` (e.g. EBADF) otherwise.
pub fn device_fd_from_raw(fd: i32) -> Result<VfioDeviceFd> {
    let dup = crate::hypervisor::dup_raw(fd, "KVM device")?;
    // SAFETY: `dup` is a new fd nothing else owns; it is a KVM device fd by the caller's word
    // (a wrong fd makes later ioctls fail with an errno, never unsound).
    let device = unsafe { <kvm_ioctls::DeviceFd as std::os::fd::FromRawFd>::from_raw_fd(dup) };
    Ok(VfioDeviceFd::new_from_kvm(device))
}
