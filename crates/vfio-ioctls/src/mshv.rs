//! MSHV: taking the VFIO device fd of a VMM running on Microsoft Hypervisor.

use crate::error::Result;
use crate::hypervisor::VfioDeviceFd;

/// Takes ownership of a duplicate of `fd`, an MSHV VFIO device fd from the caller's VMM.
///
/// # Errors
/// `InvalidArgument` for a negative fd; the errno of `dup` (e.g. EBADF) otherwise.
pub fn device_fd_from_raw(fd: i32) -> Result<VfioDeviceFd> {
    let dup = crate::hypervisor::dup_raw(fd, "MSHV device")?;
    // SAFETY: `dup` is a new fd nothing else owns; it is an MSHV device fd by the caller's word
    // (a wrong fd makes later ioctls fail with an errno, never unsound).
    let device = unsafe { <mshv_ioctls::DeviceFd as std::os::fd::FromRawFd>::from_raw_fd(dup) };
    Ok(VfioDeviceFd::new_from_mshv(device))
}
