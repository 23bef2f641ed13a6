//! `VfioDeviceFd` with MSHV (feature `mshv`).

use std::sync::Arc;

use vfio_ioctls::VfioDeviceFd;

/// Wraps MSHV's VFIO device for the container.
pub fn from_mshv(device: mshv_ioctls::DeviceFd) -> Arc<VfioDeviceFd> {
    Arc::new(VfioDeviceFd::new_from_mshv(device))
}

/// Duplicates it and unwraps the copy back to MSHV's type.
pub fn clone_and_unwrap(fd: &VfioDeviceFd) -> vfio_ioctls::Result<mshv_ioctls::DeviceFd> {
    fd.try_clone()?.to_mshv()
}
