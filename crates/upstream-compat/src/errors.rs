//! Upstream's `VfioError` variants (the ones outside the cdev feature and migration):
//! built with their payloads, and matched by name as a VMM does.

use std::error::Error as _;
use std::io;

use vfio_ioctls::VfioError;
use vmm_sys_util::errno::Error as SysError;

/// Every variant, built with upstream's payloads.
pub fn every_variant() -> Vec<VfioError> {
    let io = || io::Error::from_raw_os_error(2);
    let sys = || SysError::new(22);
    vec![
        VfioError::OpenContainer(io()),
        VfioError::OpenGroup(io(), String::from("7")),
        VfioError::GetGroupStatus,
        VfioError::GroupViable,
        VfioError::VfioApiVersion,
        VfioError::VfioExtension,
        VfioError::VfioInvalidType,
        VfioError::VfioType1V2,
        VfioError::GroupSetContainer,
        VfioError::UnsetContainer,
        VfioError::ContainerSetIOMMU(sys()),
        VfioError::GroupGetDeviceFD(sys()),
        VfioError::SetDeviceAttr(sys()),
        VfioError::VfioDeviceGetInfo(sys()),
        VfioError::VfioDeviceGetInfoPCI,
        VfioError::VfioDeviceGetInfoOther,
        VfioError::VfioDeviceGetRegionInfo(sys()),
        VfioError::InvalidPath,
        VfioError::IommuDmaMap(sys()),
        VfioError::IommuDmaUnmap(sys()),
        VfioError::VfioDeviceGetIrqInfo,
        VfioError::VfioDeviceSetIrq,
        VfioError::VfioDeviceEnableIrq,
        VfioError::VfioDeviceDisableIrq,
        VfioError::VfioDeviceUnmaskIrq,
        VfioError::VfioDeviceTriggerIrq,
        VfioError::VfioDeviceSetIrqResampleFd,
        VfioError::VfioDeviceDupFd,
        VfioError::VfioDeviceFdWrongType,
        VfioError::GetHostAddress,
        VfioError::InvalidDmaUnmapSize,
        VfioError::DowncastVfioOps,
    ]
}

/// How a VMM reacts to an error: by variant, taking the payloads apart.
pub fn classify(e: &VfioError) -> &'static str {
    match e {
        VfioError::OpenContainer(source) => {
            let _: &io::Error = source;
            "container"
        }
        VfioError::OpenGroup(source, group) => {
            let _: (&io::Error, &String) = (source, group);
            "group"
        }
        VfioError::GetGroupStatus | VfioError::GroupViable => "group",
        VfioError::VfioApiVersion
        | VfioError::VfioExtension
        | VfioError::VfioInvalidType
        | VfioError::VfioType1V2 => "kernel",
        VfioError::GroupSetContainer | VfioError::UnsetContainer => "group",
        VfioError::ContainerSetIOMMU(e)
        | VfioError::GroupGetDeviceFD(e)
        | VfioError::SetDeviceAttr(e)
        | VfioError::VfioDeviceGetInfo(e)
        | VfioError::VfioDeviceGetRegionInfo(e)
        | VfioError::IommuDmaMap(e)
        | VfioError::IommuDmaUnmap(e) => {
            let _: i32 = e.errno();
            "errno"
        }
        VfioError::VfioDeviceGetInfoPCI | VfioError::VfioDeviceGetInfoOther => "device",
        VfioError::InvalidPath => "path",
        VfioError::VfioDeviceGetIrqInfo
        | VfioError::VfioDeviceSetIrq
        | VfioError::VfioDeviceEnableIrq
        | VfioError::VfioDeviceDisableIrq
        | VfioError::VfioDeviceUnmaskIrq
        | VfioError::VfioDeviceTriggerIrq
        | VfioError::VfioDeviceSetIrqResampleFd => "irq",
        VfioError::VfioDeviceDupFd | VfioError::VfioDeviceFdWrongType => "hypervisor",
        VfioError::GetHostAddress | VfioError::InvalidDmaUnmapSize => "dma",
        VfioError::DowncastVfioOps => "backend",
        _ => "other",
    }
}

/// `VfioError` is a `std::error::Error` with sources where upstream has them, and
/// converts into the `Box<dyn Error>` a VMM's `?` wants.
pub fn as_boxed(e: VfioError) -> Box<dyn std::error::Error + Send + Sync> {
    let _has_source = e.source().is_some();
    Box::new(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_classified_and_displays() {
        for e in every_variant() {
            assert_ne!(classify(&e), "other", "{e:?}");
            assert!(!e.to_string().is_empty());
        }
        // Upstream's sources: the io::Error and SysError payloads.
        assert!(VfioError::OpenContainer(io::Error::from_raw_os_error(2))
            .source()
            .is_some());
        assert!(VfioError::IommuDmaMap(SysError::new(12)).source().is_some());
        assert!(VfioError::GetGroupStatus.source().is_none());
        assert!(VfioError::GetGroupStatus
            .to_string()
            .starts_with("failed to get Group Status"));
    }
}
