//! Upstream vfio-ioctls 0.10's error variants: their kind, operation, errno, path and
//! hint, and the conversion the upstream-named methods apply to our structured errors.
//!
//! The upstream-named methods ([`VfioContainer::new`](crate::VfioContainer::new),
//! `vfio_dma_map`/`vfio_dma_unmap`, the IRQ methods, ...) return upstream's variants, so
//! a VMM that matches on them keeps working. Many of those variants carry neither the
//! errno nor what the call was applied to; when converting loses information, the
//! structured error is logged (`log::warn!`) first, and our own methods
//! ([`VfioContainer::open`](crate::VfioContainer::open),
//! [`VfioDevice::open`](crate::VfioDevice::open), `enable_irq_from`, ...) keep returning
//! the structured variants.

use std::io;

use vmm_sys_util::errno::Error as SysError;

use crate::error::{hint_suffix, kind_of_errno, ErrorKind, VfioError};

/// The ioctl or call an upstream variant reports (`VfioError::op`).
pub(crate) fn op(e: &VfioError) -> &'static str {
    use VfioError::*;
    match e {
        OpenContainer(_) | OpenGroup(..) | InvalidPath => "open",
        GetGroupStatus | GroupViable => "VFIO_GROUP_GET_STATUS",
        VfioApiVersion => "VFIO_GET_API_VERSION",
        VfioExtension | VfioType1V2 => "VFIO_CHECK_EXTENSION",
        VfioInvalidType | ContainerSetIOMMU(_) => "VFIO_SET_IOMMU",
        GroupSetContainer => "VFIO_GROUP_SET_CONTAINER",
        UnsetContainer => "VFIO_GROUP_UNSET_CONTAINER",
        GroupGetDeviceFD(_) => "VFIO_GROUP_GET_DEVICE_FD",
        SetDeviceAttr(_) => "KVM_SET_DEVICE_ATTR",
        VfioDeviceGetInfo(_) | VfioDeviceGetInfoPCI | VfioDeviceGetInfoOther => {
            "VFIO_DEVICE_GET_INFO"
        }
        VfioDeviceGetRegionInfo(_) => "VFIO_DEVICE_GET_REGION_INFO",
        IommuDmaMap(_) => "VFIO_IOMMU_MAP_DMA",
        IommuDmaUnmap(_) | InvalidDmaUnmapSize => "VFIO_IOMMU_UNMAP_DMA",
        VfioDeviceGetIrqInfo => "VFIO_DEVICE_GET_IRQ_INFO",
        VfioDeviceSetIrq
        | VfioDeviceEnableIrq
        | VfioDeviceDisableIrq
        | VfioDeviceUnmaskIrq
        | VfioDeviceTriggerIrq
        | VfioDeviceSetIrqResampleFd => "VFIO_DEVICE_SET_IRQS",
        VfioDeviceDupFd => "dup",
        VfioDeviceFdWrongType => "VfioDeviceFd",
        GetHostAddress => "vfio_map_guest_memory",
        DowncastVfioOps => "VfioDevice::new",
        VfioDeviceFeature(_) => "VFIO_DEVICE_FEATURE",
        VfioDmaBufNoRange => "VFIO_DEVICE_FEATURE_DMA_BUF",
        VfioMigGetPrecopyInfo(_) => "VFIO_MIG_GET_PRECOPY_INFO",
        NoMigrationDataFd | VfioMigrationDataIo(_) => crate::error::MIGRATION_DATA_FD,
        DmaLoggingNotStarted | DmaLoggingAlreadyStarted | DmaLoggingInvalidArgument(_) => {
            "VFIO_DEVICE_FEATURE_DMA_LOGGING_START"
        }
        #[cfg(feature = "vfio_cdev")]
        VfioDeviceBindIommufd(_) => "VFIO_DEVICE_BIND_IOMMUFD",
        #[cfg(feature = "vfio_cdev")]
        VfioDeviceAttachIommufdPt(_) => "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        #[cfg(feature = "vfio_cdev")]
        VfioDeviceDetachIommufdPt(_) => "VFIO_DEVICE_DETACH_IOMMUFD_PT",
        #[cfg(feature = "vfio_cdev")]
        InvalidVfioDev | OpenDeviceCdev(_) => "open",
        #[cfg(feature = "vfio_cdev")]
        NewVfioIommufd(e) | IommufdIoctlError(e) => crate::iommufd::iommufd_op(e),
        // Our own variants are answered in error.rs.
        _ => "vfio",
    }
}

/// The errno an upstream variant carries, if it carries one.
pub(crate) fn errno(e: &VfioError) -> Option<i32> {
    use VfioError::*;
    match e {
        OpenContainer(source) | OpenGroup(source, _) | VfioMigrationDataIo(source) => {
            source.raw_os_error()
        }
        VfioDeviceFeature(s) | VfioMigGetPrecopyInfo(s) => Some(s.errno()),
        ContainerSetIOMMU(s)
        | GroupGetDeviceFD(s)
        | SetDeviceAttr(s)
        | VfioDeviceGetInfo(s)
        | VfioDeviceGetRegionInfo(s)
        | IommuDmaMap(s)
        | IommuDmaUnmap(s) => Some(s.errno()),
        #[cfg(feature = "vfio_cdev")]
        VfioDeviceBindIommufd(s) | VfioDeviceAttachIommufdPt(s) | VfioDeviceDetachIommufdPt(s) => {
            Some(s.errno())
        }
        #[cfg(feature = "vfio_cdev")]
        OpenDeviceCdev(source) => source.raw_os_error(),
        #[cfg(feature = "vfio_cdev")]
        NewVfioIommufd(e) | IommufdIoctlError(e) => crate::iommufd::iommufd_errno(e).raw_os_error(),
        _ => None,
    }
}

/// The path an upstream variant names.
pub(crate) fn path(e: &VfioError) -> Option<String> {
    match e {
        VfioError::OpenContainer(_) => Some(crate::VFIO_CONTAINER_PATH.to_string()),
        VfioError::OpenGroup(_, group) => Some(format!("/dev/vfio/{group}")),
        #[cfg(feature = "vfio_cdev")]
        VfioError::NewVfioIommufd(_) => Some(crate::IOMMUFD_PATH.to_string()),
        _ => None,
    }
}

/// The class of an upstream variant: by its errno when it has one (as our `Os`), else
/// by what it means.
pub(crate) fn kind(e: &VfioError) -> ErrorKind {
    use VfioError::*;
    if let Some(errno) = errno(e) {
        return kind_of_errno(op(e), Some(errno));
    }
    match e {
        GroupViable => ErrorKind::GroupNotViable,
        VfioApiVersion
        | VfioExtension
        | VfioType1V2
        | VfioDeviceGetInfoPCI
        | VfioDeviceGetInfoOther
        | DowncastVfioOps => ErrorKind::Unsupported,
        VfioInvalidType
        | InvalidPath
        | VfioDeviceFdWrongType
        | GetHostAddress
        | InvalidDmaUnmapSize
        | VfioDmaBufNoRange
        | NoMigrationDataFd
        | DmaLoggingNotStarted
        | DmaLoggingInvalidArgument(_) => ErrorKind::InvalidArgument,
        DmaLoggingAlreadyStarted => ErrorKind::Busy,
        #[cfg(feature = "vfio_cdev")]
        InvalidVfioDev => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    }
}

/// What to do, for the variants without an errno (or an errno without its own hint).
fn static_hint(e: &VfioError) -> &'static str {
    use VfioError::*;
    match e {
        OpenContainer(_) => {
            "load vfio-pci (`modprobe vfio-pci`) and check access to /dev/vfio/vfio"
        }
        OpenGroup(..) => {
            "bind the group's devices to vfio-pci and check access to /dev/vfio/<group>"
        }
        GetGroupStatus => {
            "the group node did not answer VFIO_GROUP_GET_STATUS: check that it is a VFIO group"
        }
        GroupViable => {
            "bind every device of the IOMMU group to vfio-pci \
             (/sys/kernel/iommu_groups/<group>/devices; VfioDevice::open names them)"
        }
        VfioApiVersion => "the kernel's VFIO speaks another API version than this library",
        VfioExtension | VfioType1V2 => {
            "the kernel offers no VFIO_TYPE1v2_IOMMU: load vfio_iommu_type1 (or iommufd's \
             container compatibility)"
        }
        VfioInvalidType => "only VFIO_TYPE1_IOMMU and VFIO_TYPE1v2_IOMMU can be set",
        GroupSetContainer => {
            "the group may be in another container or process: close it there; the log has \
             the errno"
        }
        UnsetContainer => "close the group's devices first; the log has the errno",
        ContainerSetIOMMU(_) => {
            "the IOMMU driver refused the group: check that the host IOMMU is on"
        }
        GroupGetDeviceFD(_) => "check that the device is in the group and not open elsewhere",
        SetDeviceAttr(_) => {
            "the hypervisor's VFIO device refused the fd: check it is a KVM_DEV_TYPE_VFIO device"
        }
        VfioDeviceGetInfo(_) | VfioDeviceGetRegionInfo(_) => {
            "the device fd refused the query: is it a VFIO device?"
        }
        VfioDeviceGetInfoPCI => {
            "the PCI device reports fewer regions or IRQ indices than vfio-pci gives"
        }
        VfioDeviceGetInfoOther => "only PCI and platform devices are supported",
        InvalidPath => "pass the device's sysfs path, e.g. /sys/bus/pci/devices/0000:00:03.0",
        IommuDmaMap(_) => {
            "the kernel refused the mapping: check the IOVA range, alignment and RLIMIT_MEMLOCK"
        }
        IommuDmaUnmap(_) => "unmap exactly a range that was mapped",
        VfioDeviceGetIrqInfo => "the device refused VFIO_DEVICE_GET_IRQ_INFO for that index",
        VfioDeviceSetIrq
        | VfioDeviceEnableIrq
        | VfioDeviceDisableIrq
        | VfioDeviceUnmaskIrq
        | VfioDeviceTriggerIrq
        | VfioDeviceSetIrqResampleFd => {
            "check the IRQ index and vector count (get_irq_info); the log has the cause, and \
             enable_irq_from, mask_irq_vector and unmask_irq_vector return it"
        }
        VfioDeviceDupFd => "the process may be out of file descriptors (ulimit -n)",
        VfioDeviceFdWrongType => "the fd belongs to the other hypervisor (KVM or MSHV)",
        GetHostAddress => "every guest memory region must be mapped in this process",
        InvalidDmaUnmapSize => "unmap exactly the IOVA and size of one earlier mapping",
        DowncastVfioOps => "open devices through a VfioContainer (or VfioIommufd)",
        VfioDeviceFeature(_) => {
            "the device's driver refused the feature; the log has the feature and the device"
        }
        VfioDmaBufNoRange => "give at least one offset and length inside the region",
        VfioMigGetPrecopyInfo(_) => {
            "precopy info exists only in PRE_COPY and PRE_COPY_P2P, on their data fd"
        }
        NoMigrationDataFd => {
            "set PRE_COPY or STOP_COPY to save the device state, RESUMING to load one, first"
        }
        VfioMigrationDataIo(_) => "the log has the device; read its migration state",
        DmaLoggingNotStarted => "start it first (start_dma_logging)",
        DmaLoggingAlreadyStarted => "stop it (stop_dma_logging) before starting it again",
        DmaLoggingInvalidArgument(_) => {
            "ranges non-empty, page-aligned and not wrapping; a power-of-two page size"
        }
        #[cfg(feature = "vfio_cdev")]
        InvalidVfioDev => {
            "the device has no cdev in <sysfs>/vfio-dev: bind it to vfio-pci; the kernel needs \
             CONFIG_VFIO_DEVICE_CDEV (Linux 6.6+)"
        }
        #[cfg(feature = "vfio_cdev")]
        OpenDeviceCdev(_) => "check /dev/vfio/devices and that the device is not open elsewhere",
        #[cfg(feature = "vfio_cdev")]
        NewVfioIommufd(_) => {
            "the kernel needs iommufd (CONFIG_IOMMUFD, Linux 6.2+): or use the type1 container"
        }
        #[cfg(feature = "vfio_cdev")]
        VfioDeviceBindIommufd(_) | VfioDeviceAttachIommufdPt(_) | VfioDeviceDetachIommufdPt(_) => {
            "the log has the device; VfioDevice::open returns the structured error"
        }
        #[cfg(feature = "vfio_cdev")]
        IommufdIoctlError(_) => "the log has the ioctl and its target",
        _ => "",
    }
}

impl VfioError {
    /// The hint after an upstream variant's message, as ` (what to do)`.
    pub(crate) fn upstream_hint(&self) -> String {
        if let Some(errno) = errno(self) {
            let target = path(self).unwrap_or_default();
            let hint = hint_suffix(op(self), &target, &io::Error::from_raw_os_error(errno));
            if !hint.is_empty() {
                return hint;
            }
        }
        match static_hint(self) {
            "" => String::new(),
            hint => format!(" ({hint})"),
        }
    }

    /// Our structured error as the upstream variant the upstream-named methods return
    /// for it; other errors are returned as they are. What the conversion drops (the
    /// target, the blockers of a group) is logged first.
    pub(crate) fn into_upstream(self) -> VfioError {
        let message = self.to_string();
        let upstream = match self {
            VfioError::Os { op, target, source } => match os_into_upstream(op, &target, source) {
                Ok(upstream) => upstream,
                Err(source) => return VfioError::Os { op, target, source },
            },
            #[cfg(feature = "vfio_cdev")]
            VfioError::NotFound { path, .. } if path.ends_with("vfio-dev") => {
                VfioError::InvalidVfioDev
            }
            VfioError::NotFound { path, .. } => {
                match path.to_str().and_then(|p| p.strip_prefix("/dev/vfio/")) {
                    Some(group) => VfioError::OpenGroup(
                        io::Error::from_raw_os_error(libc::ENOENT),
                        group.to_string(),
                    ),
                    None => VfioError::InvalidPath,
                }
            }
            VfioError::InvalidArgument {
                op: "open device", ..
            } => VfioError::InvalidPath,
            VfioError::GroupNotViable { .. } => VfioError::GroupViable,
            VfioError::ApiVersion { .. } => VfioError::VfioApiVersion,
            VfioError::Unsupported {
                op: "VFIO_CHECK_EXTENSION",
                ..
            } => VfioError::VfioExtension,
            other => return other,
        };
        log::warn!("{message}");
        upstream
    }

    /// Any failure of an upstream method that has one variant for every failure (the
    /// IRQ methods, `try_clone`) as that variant (`upstream`), the structured error
    /// logged first.
    pub(crate) fn into_upstream_as(self, upstream: VfioError) -> VfioError {
        log::warn!("{self}");
        upstream
    }
}

/// A kernel error of `op` as upstream's variant, or the error back when upstream has none.
fn os_into_upstream(op: &str, target: &str, source: io::Error) -> Result<VfioError, io::Error> {
    let sys = |source: &io::Error| SysError::new(source.raw_os_error().unwrap_or(libc::EIO));
    #[cfg(feature = "vfio_cdev")]
    {
        use iommufd_ioctls::IommufdError as I;
        let cdev = match op {
            "open" if target.starts_with("/dev/vfio/devices/") => Some(VfioError::OpenDeviceCdev(
                io::Error::from_raw_os_error(source.raw_os_error().unwrap_or(libc::EIO)),
            )),
            "open" if target == crate::IOMMUFD_PATH => {
                Some(VfioError::NewVfioIommufd(I::OpenIommufd(
                    io::Error::from_raw_os_error(source.raw_os_error().unwrap_or(libc::EIO)),
                )))
            }
            "IOMMU_IOAS_ALLOC" => Some(VfioError::NewVfioIommufd(I::IommuIoasAlloc(sys(&source)))),
            "VFIO_DEVICE_BIND_IOMMUFD" => Some(VfioError::VfioDeviceBindIommufd(sys(&source))),
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT" => {
                Some(VfioError::VfioDeviceAttachIommufdPt(sys(&source)))
            }
            "VFIO_DEVICE_DETACH_IOMMUFD_PT" => {
                Some(VfioError::VfioDeviceDetachIommufdPt(sys(&source)))
            }
            "IOMMU_IOAS_MAP" => Some(VfioError::IommufdIoctlError(I::IommuIoasMap(sys(&source)))),
            "IOMMU_IOAS_UNMAP" => Some(VfioError::IommufdIoctlError(I::IommuIoasUnmap(sys(
                &source,
            )))),
            "IOMMU_HWPT_ALLOC" => Some(VfioError::IommufdIoctlError(I::IommuHwptAlloc(sys(
                &source,
            )))),
            "IOMMU_DESTROY" => Some(VfioError::IommufdIoctlError(I::IommuDestroy(sys(&source)))),
            _ => None,
        };
        if let Some(upstream) = cdev {
            return Ok(upstream);
        }
    }
    Ok(match op {
        "open" if target == crate::VFIO_CONTAINER_PATH => VfioError::OpenContainer(source),
        "open" => match target.strip_prefix("/dev/vfio/") {
            Some(group) => VfioError::OpenGroup(source, group.to_string()),
            None => return Err(source),
        },
        "VFIO_GROUP_GET_STATUS" => VfioError::GetGroupStatus,
        "VFIO_CHECK_EXTENSION" => VfioError::VfioExtension,
        "VFIO_GROUP_SET_CONTAINER" => VfioError::GroupSetContainer,
        "VFIO_SET_IOMMU" => VfioError::ContainerSetIOMMU(sys(&source)),
        "VFIO_GROUP_GET_DEVICE_FD" => VfioError::GroupGetDeviceFD(sys(&source)),
        "VFIO_DEVICE_GET_INFO" => VfioError::VfioDeviceGetInfo(sys(&source)),
        "VFIO_DEVICE_GET_REGION_INFO" => VfioError::VfioDeviceGetRegionInfo(sys(&source)),
        "VFIO_DEVICE_GET_IRQ_INFO" => VfioError::VfioDeviceGetIrqInfo,
        "VFIO_IOMMU_MAP_DMA" => VfioError::IommuDmaMap(sys(&source)),
        "VFIO_IOMMU_UNMAP_DMA" => VfioError::IommuDmaUnmap(sys(&source)),
        "VFIO_MIG_GET_PRECOPY_INFO" => VfioError::VfioMigGetPrecopyInfo(sys(&source)),
        op if op.starts_with("VFIO_DEVICE_FEATURE") => VfioError::VfioDeviceFeature(sys(&source)),
        "read" | "write" if target.ends_with(crate::error::MIGRATION_DATA_FD) => {
            VfioError::VfioMigrationDataIo(source)
        }
        "KVM_DEV_VFIO_FILE_ADD"
        | "KVM_DEV_VFIO_FILE_DEL"
        | "MSHV_DEV_VFIO_FILE_ADD"
        | "MSHV_DEV_VFIO_FILE_DEL" => VfioError::SetDeviceAttr(sys(&source)),
        _ => return Err(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use VfioError::*;

    fn ioe(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    /// Every upstream variant (but the cdev and migration ones), with the code it has.
    fn every_variant() -> Vec<(VfioError, &'static str)> {
        let sys = |errno| SysError::new(errno);
        vec![
            (OpenContainer(ioe(libc::ENOENT)), "ERR_VFIO_NOT_FOUND"),
            (
                OpenGroup(ioe(libc::EACCES), "7".into()),
                "ERR_VFIO_PERMISSION",
            ),
            (GetGroupStatus, "ERR_VFIO_IO"),
            (GroupViable, "ERR_VFIO_GROUP_NOT_VIABLE"),
            (VfioApiVersion, "ERR_VFIO_UNSUPPORTED"),
            (VfioExtension, "ERR_VFIO_UNSUPPORTED"),
            (VfioInvalidType, "ERR_VFIO_INVALID_ARGUMENT"),
            (VfioType1V2, "ERR_VFIO_UNSUPPORTED"),
            (GroupSetContainer, "ERR_VFIO_IO"),
            (UnsetContainer, "ERR_VFIO_IO"),
            (ContainerSetIOMMU(sys(libc::EPERM)), "ERR_VFIO_PERMISSION"),
            (GroupGetDeviceFD(sys(libc::EBUSY)), "ERR_VFIO_BUSY"),
            (SetDeviceAttr(sys(libc::ENXIO)), "ERR_VFIO_NOT_FOUND"),
            (VfioDeviceGetInfo(sys(libc::ENOTTY)), "ERR_VFIO_UNSUPPORTED"),
            (VfioDeviceGetInfoPCI, "ERR_VFIO_UNSUPPORTED"),
            (VfioDeviceGetInfoOther, "ERR_VFIO_UNSUPPORTED"),
            (VfioDeviceGetRegionInfo(sys(libc::EIO)), "ERR_VFIO_IO"),
            (InvalidPath, "ERR_VFIO_INVALID_ARGUMENT"),
            (IommuDmaMap(sys(libc::ENOMEM)), "ERR_VFIO_MEMLOCK"),
            (
                IommuDmaUnmap(sys(libc::EINVAL)),
                "ERR_VFIO_INVALID_ARGUMENT",
            ),
            (VfioDeviceGetIrqInfo, "ERR_VFIO_IO"),
            (VfioDeviceSetIrq, "ERR_VFIO_IO"),
            (VfioDeviceEnableIrq, "ERR_VFIO_IO"),
            (VfioDeviceDisableIrq, "ERR_VFIO_IO"),
            (VfioDeviceUnmaskIrq, "ERR_VFIO_IO"),
            (VfioDeviceTriggerIrq, "ERR_VFIO_IO"),
            (VfioDeviceSetIrqResampleFd, "ERR_VFIO_IO"),
            (VfioDeviceDupFd, "ERR_VFIO_IO"),
            (VfioDeviceFdWrongType, "ERR_VFIO_INVALID_ARGUMENT"),
            (GetHostAddress, "ERR_VFIO_INVALID_ARGUMENT"),
            (InvalidDmaUnmapSize, "ERR_VFIO_INVALID_ARGUMENT"),
            (DowncastVfioOps, "ERR_VFIO_UNSUPPORTED"),
        ]
    }

    #[test]
    fn every_upstream_variant_has_its_kind_op_and_a_hint() {
        for (e, code) in every_variant() {
            let message = e.to_string();
            assert_eq!(e.code(), code, "{message}");
            assert_ne!(e.op(), "vfio", "{message}: no op");
            let hint = e.upstream_hint();
            assert!(hint.len() > 10, "{message}: no hint");
            assert!(
                message.ends_with(&hint),
                "{message}: hint not in the message"
            );
        }
    }

    #[test]
    fn upstream_messages_start_as_upstream_words_them() {
        let e = GetGroupStatus.to_string();
        assert!(e.starts_with("failed to get Group Status ("), "{e}");
        let e = OpenContainer(ioe(libc::ENOENT));
        assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
        assert_eq!(e.path().as_deref(), Some("/dev/vfio/vfio"));
        assert!(std::error::Error::source(&e).is_some());
        let e = IommuDmaMap(SysError::new(libc::ENOMEM));
        assert_eq!(
            (e.op(), e.errno()),
            ("VFIO_IOMMU_MAP_DMA", Some(libc::ENOMEM))
        );
        assert!(e.to_string().contains("ulimit -l"), "{e}");
        assert_eq!(
            OpenGroup(ioe(libc::EBUSY), "3".into()).path().as_deref(),
            Some("/dev/vfio/3")
        );
    }

    #[test]
    fn structured_errors_convert_to_upstream_variants() {
        type Expect = fn(&VfioError) -> bool;
        let cases: Vec<(VfioError, Expect)> = vec![
            (
                VfioError::os("open", "/dev/vfio/vfio", ioe(libc::ENOENT)),
                |e| matches!(e, OpenContainer(s) if s.kind() == io::ErrorKind::NotFound),
            ),
            (
                VfioError::os("open", "/dev/vfio/4", ioe(libc::EBUSY)),
                |e| matches!(e, OpenGroup(_, g) if g == "4"),
            ),
            (
                VfioError::os("VFIO_IOMMU_MAP_DMA", "iova 0x0", ioe(libc::EEXIST)),
                |e| matches!(e, IommuDmaMap(s) if s.errno() == libc::EEXIST),
            ),
            (
                VfioError::os("VFIO_SET_IOMMU", "/dev/vfio/vfio", ioe(libc::EPERM)),
                |e| matches!(e, ContainerSetIOMMU(_)),
            ),
            (
                VfioError::os("KVM_DEV_VFIO_FILE_ADD", "group 1", ioe(libc::ENXIO)),
                |e| matches!(e, SetDeviceAttr(_)),
            ),
            (
                VfioError::GroupNotViable {
                    group: 1,
                    blockers: vec![],
                },
                |e| matches!(e, GroupViable),
            ),
            (
                VfioError::ApiVersion {
                    found: 1,
                    expected: 0,
                },
                |e| matches!(e, VfioApiVersion),
            ),
            (
                VfioError::unsupported("VFIO_CHECK_EXTENSION", "no type1v2"),
                |e| matches!(e, VfioExtension),
            ),
            (
                VfioError::NotFound {
                    what: "device".into(),
                    path: "/sys/bus/pci/devices/0000:00:1e.0".into(),
                    hint: None,
                },
                |e| matches!(e, InvalidPath),
            ),
            (
                VfioError::NotFound {
                    what: "IOMMU group 9".into(),
                    path: "/dev/vfio/9".into(),
                    hint: None,
                },
                |e| matches!(e, OpenGroup(s, g) if g == "9" && s.raw_os_error() == Some(libc::ENOENT)),
            ),
            // What upstream has no variant for stays structured.
            (VfioError::invalid("VFIO_IOMMU_MAP_DMA", "unaligned"), |e| {
                matches!(e, VfioError::InvalidArgument { .. })
            }),
            (VfioError::os("pread", "/sys/x", ioe(libc::EIO)), |e| {
                matches!(e, VfioError::Os { .. })
            }),
        ];
        for (ours, is_expected) in cases {
            let before = ours.to_string();
            let converted = ours.into_upstream();
            assert!(is_expected(&converted), "{before} became {converted:?}");
        }
    }
}
