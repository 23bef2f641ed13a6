//! The table of VFIO ioctl numbers and the only place they are issued.
//!
//! Every VFIO ioctl is `_IO(';', 100 + n)` (`linux/vfio.h`). Each wrapper below
//! issues exactly one ioctl and returns the kernel's answer or its errno as an
//! `io::Error`; callers add the context (path, index, IOVA) to make a `VfioError`.
//!
//! In unit tests the container and group ioctls go through `fake` first: it answers
//! for the plain files that stand for a fake kernel's nodes and passes every other fd
//! to the real ioctl, so the container, group and DMA bookkeeping runs on any host.

pub(crate) use sys::*;
// Named imports shadow the glob: in tests these are the fake's.
#[cfg(test)]
pub(crate) use fake::{
    check_extension, device_get_pci_hot_reset_info, device_pci_hot_reset, get_api_version,
    group_get_status, group_set_container, group_unset_container, iommu_get_info, iommu_map_dma,
    iommu_unmap_dma, set_iommu,
};

/// The real ioctls.
mod sys {
    use std::ffi::CStr;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};

    use vfio_bindings::bindings::vfio::*;
    use vmm_sys_util::ioctl::{
        ioctl, ioctl_with_mut_ptr, ioctl_with_mut_ref, ioctl_with_ptr, ioctl_with_ref,
        ioctl_with_val,
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
    // PCI hot reset (vfio-pci, 3.12+): the same numbers as two IOMMU ioctls, on a device fd.
    ioctl_io_nr!(
        VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
        VFIO_TYPE,
        VFIO_BASE + 12
    );
    ioctl_io_nr!(VFIO_DEVICE_PCI_HOT_RESET, VFIO_TYPE, VFIO_BASE + 13);
    // Type1 IOMMU ioctls on the container (VFIO_TYPE1v2_IOMMU, 3.16+; capability chain 4.17+).
    ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE, VFIO_BASE + 12);
    ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
    ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, VFIO_BASE + 14);
    // Device cdev ioctls (/dev/vfio/devices/vfioN, CONFIG_VFIO_DEVICE_CDEV, 6.6+).
    ioctl_io_nr!(VFIO_DEVICE_BIND_IOMMUFD, VFIO_TYPE, VFIO_BASE + 18);
    ioctl_io_nr!(VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_TYPE, VFIO_BASE + 19);
    ioctl_io_nr!(VFIO_DEVICE_DETACH_IOMMUFD_PT, VFIO_TYPE, VFIO_BASE + 20);
    // iommufd ioctls on /dev/iommu (CONFIG_IOMMUFD, 6.2+): the same type as VFIO's, from
    // IOMMUFD_CMD_BASE 0x80 (linux/iommufd.h). The rest come from the iommufd-ioctls crate.
    const IOMMUFD_CMD_BASE: u32 = 0x80;
    ioctl_io_nr!(IOMMU_IOAS_IOVA_RANGES, VFIO_TYPE, IOMMUFD_CMD_BASE + 4);
    ioctl_io_nr!(IOMMU_OPTION, VFIO_TYPE, IOMMUFD_CMD_BASE + 7);
    // Device features (VFIO_DEVICE_FEATURE, 5.17+): migration v2 (5.18), DMA logging and
    // the migration data size (6.2), dma-buf export (VFIO_DEVICE_FEATURE_DMA_BUF, after 6.12).
    ioctl_io_nr!(VFIO_DEVICE_FEATURE, VFIO_TYPE, VFIO_BASE + 17);
    // On a migration data fd in PRE_COPY (6.2+).
    ioctl_io_nr!(VFIO_MIG_GET_PRECOPY_INFO, VFIO_TYPE, VFIO_BASE + 21);

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
        let fd =
            check(unsafe { ioctl_with_ptr(group, VFIO_GROUP_GET_DEVICE_FD(), name.as_ptr()) })?;
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
        check(unsafe {
            ioctl_with_mut_ptr(device, VFIO_DEVICE_GET_REGION_INFO(), buf.as_mut_ptr())
        })
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

    /// Fills `buf` (a `vfio_pci_hot_reset_info` header with `argsz` = `buf` size, then room
    /// for its `devices`) with the devices a hot reset of `device` would reset; ENOSPC
    /// when they do not fit, with `count` set to how many there are.
    pub(crate) fn device_get_pci_hot_reset_info(device: &File, buf: &mut [u64]) -> io::Result<()> {
        if std::mem::size_of_val(buf) < std::mem::size_of::<vfio_pci_hot_reset_info>() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `device` is a VFIO device fd; `buf` is 8-aligned, owned by the caller, at
        // least a header long, and its `argsz` (set by the caller) is at most its length, so
        // the kernel writes only inside it.
        check(unsafe {
            ioctl_with_mut_ptr(
                device,
                VFIO_DEVICE_GET_PCI_HOT_RESET_INFO(),
                buf.as_mut_ptr(),
            )
        })
        .map(drop)
    }

    /// Issues `VFIO_DEVICE_PCI_HOT_RESET` with a packed `vfio_pci_hot_reset` (header, then
    /// `count` group fds; see `hot_reset::pack_hot_reset`).
    pub(crate) fn device_pci_hot_reset(device: &File, hot_reset: &[u32]) -> io::Result<()> {
        if std::mem::size_of_val(hot_reset) < std::mem::size_of::<vfio_pci_hot_reset>() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `device` is a VFIO device fd; `hot_reset` is a 4-aligned buffer holding a
        // `vfio_pci_hot_reset` header whose `argsz` equals the buffer's length; the kernel only
        // reads it.
        check(unsafe { ioctl_with_ptr(device, VFIO_DEVICE_PCI_HOT_RESET(), hot_reset.as_ptr()) })
            .map(drop)
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

    /// `struct iommu_option` (linux/iommufd.h), which the bindings of every build lack.
    #[repr(C)]
    #[derive(Default)]
    struct IommuOption {
        size: u32,
        option_id: u32,
        op: u16,
        reserved: u16,
        object_id: u32,
        val64: u64,
    }

    /// Reads iommufd's global `IOMMU_OPTION_RLIMIT_MODE`: it answers on an iommufd
    /// (`/dev/iommu`) and nowhere else (ENOTTY from a VFIO container), which is how a
    /// container learns that it is iommufd's container compatibility.
    pub(crate) fn iommufd_rlimit_mode(file: &File) -> io::Result<u64> {
        const IOMMU_OPTION_RLIMIT_MODE: u32 = 0;
        const IOMMU_OPTION_OP_GET: u16 = 1;
        let mut option = IommuOption {
            size: argsz::<IommuOption>(),
            option_id: IOMMU_OPTION_RLIMIT_MODE,
            op: IOMMU_OPTION_OP_GET,
            ..Default::default()
        };
        // SAFETY: `file` is an open fd (an iommufd answers, anything else refuses);
        // `option` is a correctly sized struct we own, of which the kernel writes `val64`.
        check(unsafe { ioctl_with_mut_ref(file, IOMMU_OPTION(), &mut option) })?;
        Ok(option.val64)
    }

    /// Binds a device cdev to an iommufd (`VFIO_DEVICE_BIND_IOMMUFD`); returns its device
    /// id in that iommufd.
    #[cfg_attr(not(feature = "vfio_cdev"), allow(dead_code))]
    pub(crate) fn device_bind_iommufd(device: &File, iommufd: RawFd) -> io::Result<u32> {
        let mut bind = vfio_device_bind_iommufd {
            argsz: argsz::<vfio_device_bind_iommufd>(),
            flags: 0,
            iommufd,
            out_devid: 0,
            token_uuid_ptr: 0,
        };
        // SAFETY: `device` is a VFIO device cdev fd; `bind` is a correctly sized struct we own
        // (the kernel reads up to `out_devid` and writes `out_devid`).
        check(unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_BIND_IOMMUFD(), &mut bind) })?;
        Ok(bind.out_devid)
    }

    /// Attaches a bound device cdev (or one of its PASIDs, with `VFIO_DEVICE_ATTACH_PASID`
    /// in `flags`) to an IOAS or HWPT (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`); returns the page
    /// table the kernel attached (the HWPT it made for an IOAS).
    #[cfg_attr(not(feature = "vfio_cdev"), allow(dead_code))]
    pub(crate) fn device_attach_iommufd_pt(
        device: &File,
        flags: u32,
        pt_id: u32,
        pasid: u32,
    ) -> io::Result<u32> {
        let mut attach = vfio_device_attach_iommufd_pt {
            argsz: argsz::<vfio_device_attach_iommufd_pt>(),
            flags,
            pt_id,
            pasid,
        };
        // SAFETY: `device` is a VFIO device cdev fd; `attach` is a correctly sized struct we own
        // (6.12 reads up to `pt_id`, later kernels `pasid` too) and the kernel writes `pt_id`.
        check(unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT(), &mut attach) })?;
        Ok(attach.pt_id)
    }

    /// Detaches a device cdev (or a PASID of it) from its page table
    /// (`VFIO_DEVICE_DETACH_IOMMUFD_PT`).
    #[cfg_attr(not(feature = "vfio_cdev"), allow(dead_code))]
    pub(crate) fn device_detach_iommufd_pt(
        device: &File,
        flags: u32,
        pasid: u32,
    ) -> io::Result<()> {
        let detach = vfio_device_detach_iommufd_pt {
            argsz: argsz::<vfio_device_detach_iommufd_pt>(),
            flags,
            pasid,
        };
        // SAFETY: `device` is a VFIO device cdev fd; `detach` is a correctly sized struct the
        // kernel only reads.
        check(unsafe { ioctl_with_ref(device, VFIO_DEVICE_DETACH_IOMMUFD_PT(), &detach) }).map(drop)
    }

    /// The allowed IOVA ranges of IOAS `ioas_id` as (start, last) pairs, and the IOVA
    /// alignment it requires (`IOMMU_IOAS_IOVA_RANGES`). Asks again with a larger array
    /// while the kernel says it is too small (EMSGSIZE), a few times at most.
    #[cfg(feature = "vfio_cdev")]
    pub(crate) fn ioas_iova_ranges(
        iommufd: &File,
        ioas_id: u32,
    ) -> io::Result<(Vec<(u64, u64)>, u64)> {
        use iommufd_bindings::iommufd::{iommu_ioas_iova_ranges, iommu_iova_range};
        let mut ranges: Vec<iommu_iova_range> = Vec::new();
        for _ in 0..4 {
            let mut query = iommu_ioas_iova_ranges {
                size: argsz::<iommu_ioas_iova_ranges>(),
                ioas_id,
                num_iovas: ranges.len() as u32,
                __reserved: 0,
                allowed_iovas: ranges.as_mut_ptr() as u64,
                out_iova_alignment: 0,
            };
            // SAFETY: `iommufd` is an iommufd; `query` is a correctly sized struct we own and
            // `allowed_iovas` points at `num_iovas` ranges we own, which is all the kernel
            // writes there (it answers EMSGSIZE, writing none, when they are too few).
            let ret =
                check(unsafe { ioctl_with_mut_ref(iommufd, IOMMU_IOAS_IOVA_RANGES(), &mut query) });
            match ret {
                Ok(_) => {
                    let n = (query.num_iovas as usize).min(ranges.len());
                    let out = ranges[..n].iter().map(|r| (r.start, r.last)).collect();
                    return Ok((out, query.out_iova_alignment));
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    // The kernel counts in u32; no IOAS has anywhere near 2^16 ranges.
                    let wanted = (query.num_iovas as usize).min(1 << 16);
                    ranges = vec![iommu_iova_range { start: 0, last: 0 }; wanted];
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::EMSGSIZE))
    }

    /// The features whose payload holds a user pointer the kernel reads or writes through.
    const POINTER_FEATURES: [u32; 2] = [
        VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
        VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
    ];

    /// Issues `VFIO_DEVICE_FEATURE` with `buf`: a `vfio_device_feature` header (`argsz` =
    /// `buf`'s size, `flags`) and the feature's payload, which the kernel reads or fills.
    /// Returns the ioctl's value (a new fd for the features that make one). Refuses with
    /// EINVAL, before the kernel sees it, a feature whose payload carries a pointer (DMA
    /// logging start and report): those go through [`device_feature_with_pointers`].
    pub(crate) fn device_feature(device: &File, buf: &mut [u64]) -> io::Result<i32> {
        let flags = crate::abi::get_u32(buf, 4);
        if POINTER_FEATURES.contains(&(flags & VFIO_DEVICE_FEATURE_MASK))
            && flags & VFIO_DEVICE_FEATURE_PROBE == 0
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: the payload of every other feature is plain data (no pointer), so the
        // kernel touches only `buf` itself, as the safety contract asks.
        unsafe { device_feature_with_pointers(device, buf) }
    }

    /// [`device_feature`] for any feature, pointers in the payload included.
    ///
    /// # Safety
    /// Every user pointer in the payload (DMA logging's `ranges` and `bitmap`) points to
    /// memory the caller owns, at least as long as the payload's lengths say, readable
    /// (ranges) or writable (bitmap), and alive for the call; the kernel keeps none of
    /// them past it.
    pub(crate) unsafe fn device_feature_with_pointers(
        device: &File,
        buf: &mut [u64],
    ) -> io::Result<i32> {
        if std::mem::size_of_val(buf) < std::mem::size_of::<vfio_device_feature>() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `device` is a VFIO device fd; `buf` is 8-aligned, owned by the caller, at
        // least a header long, and its `argsz` (set by the caller) is at most its length, so
        // the kernel reads and writes only inside it, and through the payload's pointers,
        // which the caller vouches for.
        check(unsafe { ioctl_with_mut_ptr(device, VFIO_DEVICE_FEATURE(), buf.as_mut_ptr()) })
    }

    /// `VFIO_MIG_GET_PRECOPY_INFO` on a migration data fd.
    pub(crate) fn mig_get_precopy_info(data_fd: &File) -> io::Result<vfio_precopy_info> {
        let mut info = vfio_precopy_info {
            argsz: argsz::<vfio_precopy_info>(),
            ..Default::default()
        };
        // SAFETY: `data_fd` is a migration data fd (or the kernel answers ENOTTY); `info` is
        // a correctly sized struct we own and `argsz` tells the kernel not to write past it.
        check(unsafe { ioctl_with_mut_ref(data_fd, VFIO_MIG_GET_PRECOPY_INFO(), &mut info) })?;
        Ok(info)
    }
}

/// A fake VFIO kernel for unit tests, so that the bookkeeping above the ioctls runs on
/// a host without VFIO and without device nodes.
///
/// A [`FakeKernel`] owns a temp dir whose plain files stand for its nodes: one per
/// container (`vfio-N`; each is one container, however often it is opened) and one per
/// group (`<id>`, where `VfioContainer::with_group_dir` finds it). The ioctls below
/// find the node by the file's (device, inode), answer from its [`State`] as
/// `vfio_iommu_type1` would, and record each call; an fd that is no fake node gets the
/// real ioctl.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::{BTreeMap, BTreeSet};
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};

    use vfio_bindings::bindings::vfio::*;
    use vmm_sys_util::tempdir::TempDir;

    use super::sys;
    use crate::abi::get_u32;
    use crate::container::{page_size, VfioContainer};
    use crate::group::VfioGroup;
    use crate::sync::lock;

    /// What the kernel reports on x86: all below the MSI window, and above it to 39 bits.
    pub(crate) const X86_IOVA_RANGES: [(u64, u64); 2] =
        [(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];

    /// (device, inode) of a node's file.
    type Key = (u64, u64);

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        Container(usize),
        Group(u32),
        /// A device fd; the index in [`State::devices`].
        Device(usize),
    }

    struct Node {
        kernel: u64,
        state: Arc<Mutex<State>>,
        kind: Kind,
    }

    /// The nodes of every live fake kernel; tests run in parallel, each with its own.
    static NODES: Mutex<BTreeMap<Key, Node>> = Mutex::new(BTreeMap::new());
    static NEXT_KERNEL: AtomicU64 = AtomicU64::new(1);

    /// What the kernel keeps for one container.
    #[derive(Debug, Default)]
    pub(crate) struct Container {
        /// The IOMMU type set, until the last group leaves.
        pub iommu: Option<u32>,
        pub groups: BTreeSet<u32>,
        /// The IOMMU's mappings: iova → (size, vaddr).
        pub mappings: BTreeMap<u64, (u64, u64)>,
    }

    /// What the kernel keeps for one group.
    #[derive(Debug)]
    pub(crate) struct Group {
        pub viable: bool,
        /// The index of its container in [`State::containers`].
        pub container: Option<usize>,
    }

    /// What vfio-pci answers for one device's hot reset ioctls.
    #[derive(Debug, Default)]
    pub(crate) struct Device {
        /// What `GET_PCI_HOT_RESET_INFO` lists.
        pub affected: Vec<crate::PciHotResetDevice>,
        /// The info's `flags` (`VFIO_PCI_HOT_RESET_FLAG_DEV_ID*`).
        pub flags: u32,
        /// The info fails with this errno (ENODEV: neither slot nor bus reset).
        pub info_errno: Option<i32>,
        /// A lie: the count in every answer.
        pub reported_count: Option<u32>,
        /// A lie: the count of a successful answer.
        pub filled_count: Option<u32>,
        /// Devices that join `affected` after the first answer (a bus that changed).
        pub appear_after_query: Vec<crate::PciHotResetDevice>,
        /// The groups passed to each hot reset that succeeded, sorted.
        pub resets: Vec<Vec<u32>>,
    }

    /// The fake kernel's state; tests read and change it through [`FakeKernel::state`].
    #[derive(Debug)]
    pub(crate) struct State {
        kernel: u64,
        pub api_version: i32,
        pub type1v2: bool,
        /// Usable IOVA ranges, inclusive; empty: reported as none, and none checked.
        pub iova_ranges: Vec<(u64, u64)>,
        /// Mappings per container before `MAP_DMA` fails with ENOSPC (`dma_entry_limit`).
        pub dma_entry_limit: usize,
        /// Bytes all containers may pin before `MAP_DMA` fails with ENOMEM (`RLIMIT_MEMLOCK`).
        pub memlock_limit: u64,
        pub containers: Vec<Container>,
        pub groups: BTreeMap<u32, Group>,
        pub devices: Vec<Device>,
        /// Every ioctl issued on this kernel's nodes, in order.
        pub calls: Vec<&'static str>,
        /// One-shot failures: the next call of `op` fails with `errno`.
        failures: Vec<(&'static str, i32)>,
    }

    impl State {
        fn container(&mut self, kind: Kind) -> Result<&mut Container, i32> {
            match kind {
                Kind::Container(i) => self.containers.get_mut(i).ok_or(libc::EBADF),
                // A container ioctl on a group or device fd.
                Kind::Group(_) | Kind::Device(_) => Err(libc::ENOTTY),
            }
        }

        fn group(&mut self, kind: Kind) -> Result<(u32, &mut Group), i32> {
            match kind {
                Kind::Group(id) => Ok((id, self.groups.get_mut(&id).ok_or(libc::ENODEV)?)),
                Kind::Container(_) | Kind::Device(_) => Err(libc::ENOTTY),
            }
        }

        fn device(&mut self, kind: Kind) -> Result<&mut Device, i32> {
            match kind {
                Kind::Device(i) => self.devices.get_mut(i).ok_or(libc::ENODEV),
                Kind::Container(_) | Kind::Group(_) => Err(libc::ENOTTY),
            }
        }

        fn pinned(&self) -> u64 {
            self.containers
                .iter()
                .flat_map(|c| c.mappings.values())
                .map(|&(size, _)| size)
                .sum()
        }

        /// The full `VFIO_IOMMU_GET_INFO` answer of container `c`.
        fn info(&self, c: &Container) -> Vec<u8> {
            let header = std::mem::size_of::<vfio_iommu_type1_info>();
            let mut caps: Vec<(u32, Vec<u8>)> = Vec::new();
            if !self.iova_ranges.is_empty() {
                let mut body = (self.iova_ranges.len() as u32).to_ne_bytes().to_vec();
                body.extend_from_slice(&0u32.to_ne_bytes());
                for &(start, end) in &self.iova_ranges {
                    body.extend_from_slice(&start.to_ne_bytes());
                    body.extend_from_slice(&end.to_ne_bytes());
                }
                caps.push((VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, body));
            }
            let avail = self.dma_entry_limit.saturating_sub(c.mappings.len()) as u32;
            let mut body = avail.to_ne_bytes().to_vec();
            body.extend_from_slice(&[0; 4]);
            caps.push((VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, body));

            let mut out = Vec::new();
            out.extend_from_slice(&0u32.to_ne_bytes()); // argsz, set by the caller
            out.extend_from_slice(&(VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS).to_ne_bytes());
            out.extend_from_slice(&(page_size() | 0x20_0000 | 0x4000_0000).to_ne_bytes());
            out.extend_from_slice(&(header as u32).to_ne_bytes()); // cap_offset
            out.extend_from_slice(&0u32.to_ne_bytes());
            let last = caps.len() - 1;
            for (i, (id, body)) in caps.iter().enumerate() {
                let next = if i == last {
                    0
                } else {
                    out.len() + 8 + body.len()
                };
                out.extend_from_slice(&(*id as u16).to_ne_bytes());
                out.extend_from_slice(&1u16.to_ne_bytes());
                out.extend_from_slice(&(next as u32).to_ne_bytes());
                out.extend_from_slice(body);
            }
            out
        }
    }

    /// A fake kernel and its nodes; dropping it removes them.
    pub(crate) struct FakeKernel {
        id: u64,
        state: Arc<Mutex<State>>,
        keys: Mutex<Vec<Key>>,
        dir: TempDir,
    }

    impl FakeKernel {
        /// A kernel offering Type1v2, no IOVA ranges, no group, and limits no test reaches.
        pub(crate) fn new() -> Self {
            let dir = TempDir::new_with_prefix(std::env::temp_dir().join("vfio-fake-kernel-"))
                .expect("a temp dir for the fake kernel's nodes");
            let id = NEXT_KERNEL.fetch_add(1, Ordering::Relaxed);
            FakeKernel {
                id,
                state: Arc::new(Mutex::new(State {
                    kernel: id,
                    api_version: VFIO_API_VERSION as i32,
                    type1v2: true,
                    iova_ranges: Vec::new(),
                    dma_entry_limit: 65535,
                    memlock_limit: u64::MAX,
                    containers: Vec::new(),
                    groups: BTreeMap::new(),
                    devices: Vec::new(),
                    calls: Vec::new(),
                    failures: Vec::new(),
                })),
                keys: Mutex::new(Vec::new()),
                dir,
            }
        }

        /// The directory of the group nodes.
        pub(crate) fn dir(&self) -> &Path {
            self.dir.as_path()
        }

        pub(crate) fn state(&self) -> MutexGuard<'_, State> {
            lock(&self.state)
        }

        fn add_node(&self, name: &str, kind: Kind) -> PathBuf {
            let path = self.dir().join(name);
            let meta = File::create(&path)
                .and_then(|f| f.metadata())
                .unwrap_or_else(|e| panic!("creating the fake node {}: {e}", path.display()));
            let key = (meta.dev(), meta.ino());
            lock(&self.keys).push(key);
            let node = Node {
                kernel: self.id,
                state: self.state.clone(),
                kind,
            };
            lock(&NODES).insert(key, node);
            path
        }

        /// Adds viable group `id` (its node is `<dir>/<id>`).
        pub(crate) fn add_group(&self, id: u32) {
            self.state().groups.insert(
                id,
                Group {
                    viable: true,
                    container: None,
                },
            );
            self.add_node(&id.to_string(), Kind::Group(id));
        }

        /// Adds a device node `name` whose hot reset affects `affected`; returns its
        /// index in [`State::devices`] and its path (open it for a device fd).
        pub(crate) fn add_device(
            &self,
            name: &str,
            affected: &[crate::PciHotResetDevice],
        ) -> (usize, PathBuf) {
            let index = {
                let mut state = self.state();
                state.devices.push(Device {
                    affected: affected.to_vec(),
                    ..Device::default()
                });
                state.devices.len() - 1
            };
            (index, self.add_node(name, Kind::Device(index)))
        }

        /// A new container's node.
        pub(crate) fn container_node(&self) -> PathBuf {
            let index = {
                let mut state = self.state();
                state.containers.push(Container::default());
                state.containers.len() - 1
            };
            self.add_node(&format!("vfio-{index}"), Kind::Container(index))
        }

        /// A kernel with group `id` attached to a container of it (so an IOMMU is set),
        /// reporting `iova_ranges` as usable.
        pub(crate) fn attached(
            id: u32,
            iova_ranges: &[(u64, u64)],
        ) -> (FakeKernel, Arc<VfioContainer>, Arc<VfioGroup>) {
            let kernel = FakeKernel::new();
            kernel.add_group(id);
            kernel.state().iova_ranges = iova_ranges.to_vec();
            let container = kernel.container();
            let group = container
                .group(id)
                .unwrap_or_else(|e| panic!("attaching fake group {id}: {e}"));
            (kernel, container, group)
        }

        /// A new container, whose groups are this kernel's.
        pub(crate) fn container(&self) -> Arc<VfioContainer> {
            let container = VfioContainer::open(&self.container_node(), None)
                .unwrap_or_else(|e| panic!("opening a fake container: {e}"));
            Arc::new(container.with_group_dir(self.dir()))
        }

        /// Makes the next call of `op` fail with `errno`.
        pub(crate) fn fail_next(&self, op: &'static str, errno: i32) {
            self.state().failures.push((op, errno));
        }

        /// How many times `op` was issued.
        pub(crate) fn calls(&self, op: &str) -> usize {
            self.state().calls.iter().filter(|&&c| c == op).count()
        }
    }

    impl Drop for FakeKernel {
        fn drop(&mut self) {
            let mut nodes = lock(&NODES);
            for key in lock(&self.keys).drain(..) {
                nodes.remove(&key);
            }
        }
    }

    fn node(file: &File) -> Option<(u64, Arc<Mutex<State>>, Kind)> {
        let meta = file.metadata().ok()?;
        let nodes = lock(&NODES);
        let node = nodes.get(&(meta.dev(), meta.ino()))?;
        Some((node.kernel, node.state.clone(), node.kind))
    }

    /// Answers `op` on `file` if it is a fake node (recording the call and taking a
    /// failure set for it); `None` for any other file.
    fn answer<T>(
        file: &File,
        op: &'static str,
        f: impl FnOnce(&mut State, Kind) -> Result<T, i32>,
    ) -> Option<io::Result<T>> {
        let (_, state, kind) = node(file)?;
        let mut state = lock(&state);
        state.calls.push(op);
        let result = match state.failures.iter().position(|&(o, _)| o == op) {
            Some(i) => Err(state.failures.remove(i).1),
            None => f(&mut state, kind),
        };
        Some(result.map_err(io::Error::from_raw_os_error))
    }

    pub(crate) fn get_api_version(container: &File) -> io::Result<i32> {
        answer(container, "VFIO_GET_API_VERSION", |s, k| {
            s.container(k)?;
            Ok(s.api_version)
        })
        .unwrap_or_else(|| sys::get_api_version(container))
    }

    pub(crate) fn check_extension(container: &File, extension: u32) -> io::Result<bool> {
        answer(container, "VFIO_CHECK_EXTENSION", |s, k| {
            s.container(k)?;
            Ok(extension == VFIO_TYPE1v2_IOMMU && s.type1v2)
        })
        .unwrap_or_else(|| sys::check_extension(container, extension))
    }

    pub(crate) fn set_iommu(container: &File, iommu_type: u32) -> io::Result<()> {
        answer(container, "VFIO_SET_IOMMU", |s, k| {
            if iommu_type != VFIO_TYPE1v2_IOMMU || !s.type1v2 {
                return Err(libc::ENODEV);
            }
            let c = s.container(k)?;
            // The kernel needs a group first, and sets the IOMMU once.
            if c.groups.is_empty() || c.iommu.is_some() {
                return Err(libc::EINVAL);
            }
            c.iommu = Some(iommu_type);
            Ok(())
        })
        .unwrap_or_else(|| sys::set_iommu(container, iommu_type))
    }

    pub(crate) fn group_get_status(group: &File) -> io::Result<u32> {
        answer(group, "VFIO_GROUP_GET_STATUS", |s, k| {
            let (_, g) = s.group(k)?;
            let mut flags = 0;
            if g.viable {
                flags |= VFIO_GROUP_FLAGS_VIABLE;
            }
            if g.container.is_some() {
                flags |= VFIO_GROUP_FLAGS_CONTAINER_SET;
            }
            Ok(flags)
        })
        .unwrap_or_else(|| sys::group_get_status(group))
    }

    pub(crate) fn group_set_container(group: &File, container: &File) -> io::Result<()> {
        // Looked up before the group's state is locked: both nodes may share it.
        let target = node(container).map(|(kernel, _, kind)| (kernel, kind));
        answer(group, "VFIO_GROUP_SET_CONTAINER", |s, k| {
            let index = match target {
                Some((kernel, Kind::Container(i))) if kernel == s.kernel => i,
                _ => return Err(libc::EBADF),
            };
            let (id, g) = s.group(k)?;
            if !g.viable {
                return Err(libc::EPERM);
            }
            if g.container.is_some() {
                return Err(libc::EINVAL);
            }
            g.container = Some(index);
            s.container(Kind::Container(index))?.groups.insert(id);
            Ok(())
        })
        .unwrap_or_else(|| sys::group_set_container(group, container))
    }

    pub(crate) fn group_unset_container(group: &File) -> io::Result<()> {
        answer(group, "VFIO_GROUP_UNSET_CONTAINER", |s, k| {
            let (id, g) = s.group(k)?;
            let index = g.container.take().ok_or(libc::EINVAL)?;
            let c = s.container(Kind::Container(index))?;
            c.groups.remove(&id);
            // The last group out releases the IOMMU, and every mapping with it.
            if c.groups.is_empty() {
                c.iommu = None;
                c.mappings.clear();
            }
            Ok(())
        })
        .unwrap_or_else(|| sys::group_unset_container(group))
    }

    /// Copies `bytes` into the start of `buf` (as far as it reaches).
    fn fill(buf: &mut [u64], bytes: &[u8]) {
        for (word, chunk) in buf.iter_mut().zip(bytes.chunks(8)) {
            let mut w = word.to_ne_bytes();
            w[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(w);
        }
    }

    pub(crate) fn device_get_pci_hot_reset_info(device: &File, buf: &mut [u64]) -> io::Result<()> {
        let answered = answer(device, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", |s, k| {
            let d = s.device(k)?;
            let argsz = get_u32(buf, 0) as usize;
            if argsz < 12 || argsz > std::mem::size_of_val(buf) {
                return Err(libc::EINVAL);
            }
            if let Some(errno) = d.info_errno {
                return Err(errno);
            }
            let n = d.affected.len();
            let mut out = Vec::new();
            out.extend_from_slice(&(argsz as u32).to_ne_bytes());
            out.extend_from_slice(&d.flags.to_ne_bytes());
            if argsz < 12 + 8 * n {
                out.extend_from_slice(&d.reported_count.unwrap_or(n as u32).to_ne_bytes());
                fill(buf, &out);
                let appear = std::mem::take(&mut d.appear_after_query);
                d.affected.extend(appear);
                return Err(libc::ENOSPC);
            }
            let count = d.filled_count.or(d.reported_count).unwrap_or(n as u32);
            out.extend_from_slice(&count.to_ne_bytes());
            for a in &d.affected {
                out.extend_from_slice(&a.group_id.to_ne_bytes());
                out.extend_from_slice(&a.segment.to_ne_bytes());
                out.extend_from_slice(&[a.bus, a.devfn]);
            }
            fill(buf, &out);
            Ok(())
        });
        // ENOSPC still reports the count: the buffer was written before the error.
        answered.unwrap_or_else(|| sys::device_get_pci_hot_reset_info(device, buf))
    }

    pub(crate) fn device_pci_hot_reset(device: &File, hot_reset: &[u32]) -> io::Result<()> {
        // The group each fd stands for, looked up before the device's state is locked.
        let fds = hot_reset.get(3..).unwrap_or_default();
        let groups: Vec<Option<Kind>> = fds
            .iter()
            .map(|fd| {
                let file = File::open(format!("/proc/self/fd/{fd}")).ok()?;
                node(&file).map(|(_, _, kind)| kind)
            })
            .collect();
        answer(device, "VFIO_DEVICE_PCI_HOT_RESET", |s, k| {
            let d = s.device(k)?;
            let (argsz, flags, count) = (hot_reset[0] as usize, hot_reset[1], hot_reset[2]);
            if argsz != 4 * hot_reset.len() || flags != 0 {
                return Err(libc::EINVAL);
            }
            // Between 1 and one group per affected device.
            if count == 0 || count as usize > d.affected.len() || count as usize != fds.len() {
                return Err(libc::EINVAL);
            }
            let mut passed = Vec::new();
            for g in &groups {
                match g {
                    Some(Kind::Group(id)) => passed.push(*id),
                    _ => return Err(libc::EINVAL),
                }
            }
            if d.affected.iter().any(|a| !passed.contains(&a.group_id)) {
                return Err(libc::EINVAL);
            }
            passed.sort_unstable();
            d.resets.push(passed);
            Ok(())
        })
        .unwrap_or_else(|| sys::device_pci_hot_reset(device, hot_reset))
    }

    pub(crate) fn iommu_get_info(container: &File, buf: &mut [u64]) -> io::Result<()> {
        answer(container, "VFIO_IOMMU_GET_INFO", |s, k| {
            let header = std::mem::size_of::<vfio_iommu_type1_info>();
            if std::mem::size_of_val(buf) < header {
                return Err(libc::EINVAL);
            }
            let Kind::Container(index) = k else {
                return Err(libc::ENOTTY);
            };
            let c = s.containers.get(index).ok_or(libc::EBADF)?;
            if c.iommu.is_none() {
                return Err(libc::EINVAL);
            }
            let mut info = s.info(c);
            let needed = info.len();
            info[..4].copy_from_slice(&(needed as u32).to_ne_bytes());
            // Too small for the capabilities: the header alone says how much to ask for.
            if (get_u32(buf, 0) as usize) < needed {
                info.truncate(header);
                info[16..20].copy_from_slice(&0u32.to_ne_bytes());
            }
            for (word, bytes) in buf.iter_mut().zip(info.chunks(8)) {
                let mut w = [0u8; 8];
                w[..bytes.len()].copy_from_slice(bytes);
                *word = u64::from_ne_bytes(w);
            }
            Ok(())
        })
        .unwrap_or_else(|| sys::iommu_get_info(container, buf))
    }

    /// # Safety
    /// As the real `iommu_map_dma` (to which it passes any other fd); the fake itself
    /// never touches the memory.
    pub(crate) unsafe fn iommu_map_dma(
        container: &File,
        map: &vfio_iommu_type1_dma_map,
    ) -> io::Result<()> {
        let answered = answer(container, "VFIO_IOMMU_MAP_DMA", |s, k| {
            let page = page_size();
            let (iova, size, vaddr) = (map.iova, map.size, map.vaddr);
            if map.argsz < sys::argsz::<vfio_iommu_type1_dma_map>()
                || map.flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) == 0
                || size == 0
                || (iova | size | vaddr) % page != 0
            {
                return Err(libc::EINVAL);
            }
            let last = iova.checked_add(size - 1).ok_or(libc::EINVAL)?;
            let usable = s.iova_ranges.is_empty()
                || s.iova_ranges
                    .iter()
                    .any(|&(start, end)| start <= iova && last <= end);
            let (limit, memlock, pinned) = (s.dma_entry_limit, s.memlock_limit, s.pinned());
            let c = s.container(k)?;
            if c.iommu.is_none() || !usable {
                return Err(libc::EINVAL);
            }
            if let Some((&other, &(other_size, _))) = c.mappings.range(..=last).next_back() {
                if other + other_size > iova {
                    return Err(libc::EEXIST);
                }
            }
            if c.mappings.len() >= limit {
                return Err(libc::ENOSPC);
            }
            if pinned.saturating_add(size) > memlock {
                return Err(libc::ENOMEM);
            }
            c.mappings.insert(iova, (size, vaddr));
            Ok(())
        });
        match answered {
            Some(result) => result,
            // SAFETY: the caller upholds the real ioctl's contract, which is this one's.
            None => unsafe { sys::iommu_map_dma(container, map) },
        }
    }

    pub(crate) fn iommu_unmap_dma(container: &File, iova: u64, size: u64) -> io::Result<u64> {
        answer(container, "VFIO_IOMMU_UNMAP_DMA", |s, k| {
            let c = s.container(k)?;
            if c.iommu.is_none() || size == 0 {
                return Err(libc::EINVAL);
            }
            let end = iova.checked_add(size).ok_or(libc::EINVAL)?;
            // Type1v2 unmaps whole mappings only: one that straddles an edge is refused.
            let straddles = c
                .mappings
                .range(..end)
                .any(|(&at, &(len, _))| at + len > iova && (at < iova || at + len > end));
            if straddles {
                return Err(libc::EINVAL);
            }
            let inside: Vec<u64> = c.mappings.range(iova..end).map(|(&at, _)| at).collect();
            let mut unmapped = 0;
            for at in inside {
                unmapped += c.mappings.remove(&at).map_or(0, |(len, _)| len);
            }
            Ok(unmapped)
        })
        .unwrap_or_else(|| sys::iommu_unmap_dma(container, iova, size))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use vfio_bindings::bindings::vfio::*;

    use super::fake::FakeKernel;
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

    #[test]
    fn fake_answers_only_for_its_own_nodes() {
        let kernel = FakeKernel::new();
        let node = File::open(kernel.container_node()).unwrap();
        assert_eq!(get_api_version(&node).unwrap(), VFIO_API_VERSION as i32);
        assert!(check_extension(&node, VFIO_TYPE1v2_IOMMU).unwrap());
        // A group ioctl on a container node, as the kernel answers it.
        let e = group_get_status(&node).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        // A plain file the fake does not know goes to the kernel, which refuses it.
        let stranger = File::create(kernel.dir().join("stranger")).unwrap();
        let e = set_iommu(&stranger, VFIO_TYPE1v2_IOMMU).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        assert_eq!(
            kernel.state().calls,
            [
                "VFIO_GET_API_VERSION",
                "VFIO_CHECK_EXTENSION",
                "VFIO_GROUP_GET_STATUS"
            ]
        );
        // Once the kernel is gone its node is a plain file again.
        let path = kernel.container_node();
        let late = File::open(&path).unwrap();
        drop(kernel);
        assert_eq!(
            get_api_version(&late).unwrap_err().raw_os_error(),
            Some(libc::ENOTTY)
        );
    }

    #[test]
    fn fake_unmaps_whole_mappings_like_type1v2() {
        let kernel = FakeKernel::new();
        kernel.add_group(3);
        let container = File::open(kernel.container_node()).unwrap();
        let group = File::open(kernel.dir().join("3")).unwrap();
        group_set_container(&group, &container).unwrap();
        set_iommu(&container, VFIO_TYPE1v2_IOMMU).unwrap();
        let page = crate::page_size();
        let map = |iova: u64, size: u64| vfio_iommu_type1_dma_map {
            argsz: argsz::<vfio_iommu_type1_dma_map>(),
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: 0x7000_0000,
            iova,
            size,
        };
        // SAFETY: the fake never touches the memory it is told about.
        unsafe { iommu_map_dma(&container, &map(0, 2 * page)) }.unwrap();
        // SAFETY: as above.
        let e = unsafe { iommu_map_dma(&container, &map(page, page)) }.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        let e = iommu_unmap_dma(&container, page, page).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EINVAL),
            "straddles the mapping"
        );
        assert_eq!(iommu_unmap_dma(&container, 4 * page, page).unwrap(), 0);
        assert_eq!(iommu_unmap_dma(&container, 0, 8 * page).unwrap(), 2 * page);
        // The last group out takes the IOMMU with it.
        group_unset_container(&group).unwrap();
        assert_eq!(kernel.state().containers[0].iommu, None);
        let e = iommu_unmap_dma(&container, 0, page).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
