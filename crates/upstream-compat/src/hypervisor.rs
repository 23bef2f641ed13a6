//! `VfioDeviceFd` with KVM (upstream's default feature), as a VMM hands its VFIO device
//! to the container.

use std::sync::Arc;

use vfio_ioctls::VfioDeviceFd;

/// Wraps KVM's VFIO device for the container, as `VfioContainer::new` takes it.
pub fn from_kvm(device: kvm_ioctls::DeviceFd) -> Arc<VfioDeviceFd> {
    Arc::new(VfioDeviceFd::new_from_kvm(device))
}

/// Duplicates it (one copy per container), and unwraps a copy back to KVM's type.
pub fn clone_and_unwrap(fd: &VfioDeviceFd) -> vfio_ioctls::Result<kvm_ioctls::DeviceFd> {
    let copy: VfioDeviceFd = fd.try_clone()?;
    let _ = format!("{copy:?}");
    copy.to_kvm()
}

/// The handle type upstream's container keeps (`VfioContainerDeviceHandle`).
pub type DeviceHandle = Option<Arc<VfioDeviceFd>>;
