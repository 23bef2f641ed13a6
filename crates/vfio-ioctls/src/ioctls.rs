//! The table of VFIO ioctl numbers and the only place they are issued.
//!
//! Every VFIO ioctl is `_IO(';', 100 + n)` (`linux/vfio.h`). Each wrapper below
//! issues exactly one ioctl and returns the kernel's answer or its errno as an
//! `io::Error`; callers add the context (path, index, IOVA) to make a `VfioError`.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use vfio_bindings::bindings::vfio::*;
use vmm_sys_util::ioctl::{
    ioctl, ioctl_with_mut_ptr, ioctl_with_mut_ref, ioctl_with_ptr, ioctl_with_ref, ioctl_with_val,
};
use vmm_sys_util::ioctl_io_nr;

const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;

// Container ioctls (every kernel with VFIO, 3.6+).
ioctl_io_nr!(VFIO_GET_API_VERSION, VFIO_TYPE, VFIO_BASE);
ioctl_io_nr!(VFIO_CHECK_EXTENSION, VFIO_TYPE, VFIO_BASE + 1);
ioctl_io_nr!(VFIO_SET_IOMMU, VFIO_TYPE, VFIO_BASE + 2);
// Group ioctls.
ioctl_io_nr!(VFIO_GROUP_GET_STATUS, VFIO_TYPE, VFIO_BASE + 3);
ioctl_io_nr!(VFIO_GROUP_SET_CONTAINER, VFIO_TYPE, VFIO_BASE + 4);
ioctl_io_nr!(VFIO_GROUP_UNSET_CONTAINER, VFIO_TYPE, VFIO_BASE + 5);
ioctl_io_nr!(VFIO_GROUP_GET_DEVICE_FD, VFIO_TYPE, VFIO_BASE + 6);
// Device ioctls.
ioctl_io_nr!(VFIO_DEVICE_GET_INFO, VFIO_TYPE, VFIO_BASE + 7);
ioctl_io_nr!(VFIO_DEVICE_GET_REGION_INFO, VFIO_TYPE, VFIO_BASE + 8);
ioctl_io_nr!(VFIO_DEVICE_GET_IRQ_INFO, VFIO_TYPE, VFIO_BASE + 9);
ioctl_io_nr!(VFIO_DEVICE_SET_IRQS, VFIO_TYPE, VFIO_BASE + 10);
ioctl_io_nr!(VFIO_DEVICE_RESET, VFIO_TYPE, VFIO_BASE + 11);
// Type1 IOMMU ioctls on the container (VFIO_TYPE1v2_IOMMU, 3.16+; capability chain 4.17+).
ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE, VFIO_BASE + 12);
ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, VFIO_BASE + 14);

/// Turns an ioctl return value into a result, reading errno on failure.
fn check(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The size of `T` as the kernel's `argsz`.
pub(crate) fn argsz<T>() -> u32 {
    // VFIO argument structs are a few dozen bytes; the cast cannot truncate.
    std::mem::size_of::<T>() as u32
}

pub(crate) fn get_api_version(container: &File) -> io::Result<i32> {
    // SAFETY: `container` is an open /dev/vfio/vfio fd; this ioctl takes no argument.
    check(unsafe { ioctl(container, VFIO_GET_API_VERSION()) })
}

pub(crate) fn check_extension(container: &File, extension: u32) -> io::Result<bool> {
    // SAFETY: `container` is an open /dev/vfio/vfio fd; the argument is passed by value.
    check(unsafe { ioctl_with_val(container, VFIO_CHECK_EXTENSION(), extension.into()) })
        .map(|r| r > 0)
}

pub(crate) fn set_iommu(container: &File, iommu_type: u32) -> io::Result<()> {
    // SAFETY: `container` is an open container fd; the argument is passed by value.
    check(unsafe { ioctl_with_val(container, VFIO_SET_IOMMU(), iommu_type.into()) }).map(drop)
}

pub(crate) fn group_get_status(group: &File) -> io::Result<u32> {
    let mut status = vfio_group_status {
        argsz: argsz::<vfio_group_status>(),
        flags: 0,
    };
    // SAFETY: `group` is a VFIO group fd; `status` is a live, correctly sized struct we own
    // and the kernel writes at most `argsz` bytes into it.
    check(unsafe { ioctl_with_mut_ref(group, VFIO_GROUP_GET_STATUS(), &mut status) })?;
    Ok(status.flags)
}

pub(crate) fn group_set_container(group: &File, container: &File) -> io::Result<()> {
    let fd: RawFd = container.as_raw_fd();
    // SAFETY: `group` is a VFIO group fd; the kernel reads one i32 (the container fd) from `fd`,
    // which lives for the call.
    check(unsafe { ioctl_with_ref(group, VFIO_GROUP_SET_CONTAINER(), &fd) }).map(drop)
}

pub(crate) fn group_unset_container(group: &File) -> io::Result<()> {
    // SAFETY: `group` is a VFIO group fd; this ioctl takes no argument.
    check(unsafe { ioctl(group, VFIO_GROUP_UNSET_CONTAINER()) }).map(drop)
}

pub(crate) fn group_get_device_fd(group: &File, name: &CStr) -> io::Result<File> {
    // SAFETY: `group` is a VFIO group fd; `name` is a NUL-terminated string that lives for the call
    // and the kernel only reads it.
    let fd = check(unsafe { ioctl_with_ptr(group, VFIO_GROUP_GET_DEVICE_FD(), name.as_ptr()) })?;
    // SAFETY: on success the ioctl returns a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub(crate) fn device_get_info(device: &File) -> io::Result<vfio_device_info> {
    let mut info = vfio_device_info {
        argsz: argsz::<vfio_device_info>(),
        ..Default::default()
    };
    // SAFETY: `device` is a VFIO device fd; `info` is a correctly sized struct we own and
    // `argsz` tells the kernel not to write past it.
    check(unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_GET_INFO(), &mut info) })?;
    Ok(info)
}

/// Fills `buf` (whose first bytes are a `vfio_region_info` with `argsz` = `buf` size
/// and `index` set) with the region's info and, space allowing, its capability chain.
pub(crate) fn device_get_region_info(device: &File, buf: &mut [u64]) -> io::Result<()> {
    if std::mem::size_of_val(buf) < std::mem::size_of::<vfio_region_info>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `device` is a VFIO device fd; `buf` is 8-aligned, at least a `vfio_region_info`
    // long, owned by the caller, and its `argsz` (set by the caller) is at most its length, so
    // the kernel writes only inside it.
    check(unsafe { ioctl_with_mut_ptr(device, VFIO_DEVICE_GET_REGION_INFO(), buf.as_mut_ptr()) })
        .map(drop)
}

pub(crate) fn device_get_irq_info(device: &File, index: u32) -> io::Result<vfio_irq_info> {
    let mut info = vfio_irq_info {
        argsz: argsz::<vfio_irq_info>(),
        index,
        ..Default::default()
    };
    // SAFETY: `device` is a VFIO device fd; `info` is a correctly sized struct we own.
    check(unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_GET_IRQ_INFO(), &mut info) })?;
    Ok(info)
}

/// Issues `VFIO_DEVICE_SET_IRQS` with a packed `vfio_irq_set` (see `irq::pack_irq_set`).
pub(crate) fn device_set_irqs(device: &File, irq_set: &[u32]) -> io::Result<()> {
    if std::mem::size_of_val(irq_set) < std::mem::size_of::<vfio_irq_set>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `device` is a VFIO device fd; `irq_set` is a 4-aligned buffer holding a
    // `vfio_irq_set` header whose `argsz` equals the buffer's length; the kernel only reads it.
    check(unsafe { ioctl_with_ptr(device, VFIO_DEVICE_SET_IRQS(), irq_set.as_ptr()) }).map(drop)
}

pub(crate) fn device_reset(device: &File) -> io::Result<()> {
    // SAFETY: `device` is a VFIO device fd; this ioctl takes no argument.
    check(unsafe { ioctl(device, VFIO_DEVICE_RESET()) }).map(drop)
}

/// Fills `buf` (a `vfio_iommu_type1_info` header with `argsz` = `buf` size) with the
/// IOMMU's info and, space allowing, its capability chain.
pub(crate) fn iommu_get_info(container: &File, buf: &mut [u64]) -> io::Result<()> {
    if std::mem::size_of_val(buf) < std::mem::size_of::<vfio_iommu_type1_info>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `container` is a container fd with an IOMMU set; `buf` is 8-aligned, owned by the
    // caller, at least a header long, and its `argsz` is at most its length.
    check(unsafe { ioctl_with_mut_ptr(container, VFIO_IOMMU_GET_INFO(), buf.as_mut_ptr()) })
        .map(drop)
}

/// Maps `[vaddr, vaddr + size)` of this process at `iova`.
///
/// # Safety
/// The memory must stay mapped (and not be reused for anything a device must not
/// touch) until it is unmapped from the IOMMU: the device may access it at any time.
pub(crate) unsafe fn iommu_map_dma(
    container: &File,
    map: &vfio_iommu_type1_dma_map,
) -> io::Result<()> {
    // SAFETY: `container` is a container fd; `map` is a correctly sized struct the kernel reads;
    // the caller guarantees the memory it names outlives the mapping.
    check(unsafe { ioctl_with_ref(container, VFIO_IOMMU_MAP_DMA(), map) }).map(drop)
}

/// Unmaps `[iova, iova + size)`; returns how many bytes the kernel unmapped.
pub(crate) fn iommu_unmap_dma(container: &File, iova: u64, size: u64) -> io::Result<u64> {
    let mut unmap = vfio_iommu_type1_dma_unmap {
        argsz: argsz::<vfio_iommu_type1_dma_unmap>(),
        iova,
        size,
        ..Default::default()
    };
    // SAFETY: `container` is a container fd; `unmap` is a correctly sized struct we own; with no
    // flags the kernel writes back only `size`.
    check(unsafe { ioctl_with_mut_ref(container, VFIO_IOMMU_UNMAP_DMA(), &mut unmap) })?;
    Ok(unmap.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_uapi() {
        // _IO(';', 100 + n) = (0x3b << 8) | (100 + n)
        assert_eq!(VFIO_GET_API_VERSION(), 0x3b64);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD(), 0x3b6a);
        assert_eq!(VFIO_DEVICE_SET_IRQS(), 0x3b6e);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA(), 0x3b72);
    }

    #[test]
    fn short_buffers_are_refused_before_the_kernel() {
        let f = match File::open("/dev/null") {
            Ok(f) => f,
            Err(e) => panic!("/dev/null: {e}"),
        };
        let e = device_get_region_info(&f, &mut [0u64; 1]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let e = device_set_irqs(&f, &[0u32; 2]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn wrong_fd_kind_gives_enotty() {
        let f = File::open("/dev/null").unwrap();
        let e = get_api_version(&f).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }
}
