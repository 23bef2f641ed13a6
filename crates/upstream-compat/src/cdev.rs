//! Upstream's cdev/iommufd API (feature `vfio_cdev`): `VfioIommufd`, device cdevs,
//! HWPT and PASID attach, dma-buf export, and the cdev error variants.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use iommufd_ioctls::{AttachHwpt, IommuFd, IommufdError, IommufdIoas};
use vfio_ioctls::{VfioDevice, VfioDeviceFd, VfioError, VfioIommufd, VfioOps, VfioRegionDmaRange};

/// Creates the iommufd backend as a VMM does: a new IOAS, or a shared one.
pub fn new_iommufd(
    iommufd: Arc<IommuFd>,
    ioas: Option<Arc<IommufdIoas>>,
    device_fd: Option<Arc<VfioDeviceFd>>,
) -> vfio_ioctls::Result<Arc<VfioIommufd>> {
    let backend = VfioIommufd::new(iommufd, ioas, device_fd)?;
    let _: &Arc<IommuFd> = backend.iommufd();
    let _: &Arc<IommufdIoas> = backend.ioas();
    Ok(Arc::new(backend))
}

/// Maps and unmaps through the inherent methods and through the trait object.
///
/// # Safety
/// `host` must point to `size` bytes that stay mapped until the unmap.
pub unsafe fn map(
    backend: Arc<VfioIommufd>,
    iova: u64,
    size: usize,
    host: *mut u8,
) -> vfio_ioctls::Result<bool> {
    // SAFETY: the caller's contract is the method's.
    unsafe { backend.vfio_dma_map(iova, size, host) }?;
    backend.vfio_dma_unmap(iova, size)?;
    let ops: Arc<dyn VfioOps> = backend;
    // SAFETY: as above.
    unsafe { ops.vfio_dma_map(iova, size, host) }?;
    ops.vfio_dma_unmap(iova, size)?;
    Ok(ops.as_any().downcast_ref::<VfioIommufd>().is_some())
}

/// Opens a device through its cdev, three ways: by sysfs path through `new`, from a cdev
/// fd to bind, and from one already bound.
pub fn open_devices(
    sysfs: &Path,
    backend: Arc<VfioIommufd>,
) -> vfio_ioctls::Result<(VfioDevice, VfioDevice, VfioDevice)> {
    let by_path = VfioDevice::new(sysfs, backend.clone(), true)?;
    let cdev: File = VfioDevice::open_cdev(sysfs)?;
    let from_fd = VfioDevice::new_from_fd(cdev, backend.clone(), false)?;
    let bound: File = VfioDevice::open_cdev(sysfs)?;
    let from_bound = VfioDevice::new_from_bound_fd(bound, backend, true)?;
    let _: Option<u32> = from_fd.iommufd_dev_id();
    Ok((by_path, from_fd, from_bound))
}

/// HWPT and PASID attach, inherent and through iommufd-ioctls' `AttachHwpt`.
pub fn page_tables(device: &VfioDevice, hwpt: u32, pasid: u32) -> vfio_ioctls::Result<()> {
    device.attach_hwpt(hwpt)?;
    device.detach_hwpt()?;
    device.attach_iommufd_pt_pasid(hwpt, pasid)?;
    device.detach_iommufd_pt_pasid(pasid)?;
    let as_trait: &dyn AttachHwpt = device;
    as_trait
        .attach_hwpt(hwpt)
        .map_err(VfioError::OpenDeviceCdev)?;
    as_trait.detach_hwpt().map_err(VfioError::OpenDeviceCdev)
}

/// dma-buf export of BAR ranges: `None` when the kernel or device has none.
pub fn export(device: &VfioDevice, region: u32) -> vfio_ioctls::Result<Option<File>> {
    let range = VfioRegionDmaRange {
        offset: 0,
        length: 0x1000,
    };
    let copy: VfioRegionDmaRange = range;
    assert_eq!(copy, VfioRegionDmaRange { ..range });
    device.export_dma_buf(
        region,
        &[range, VfioRegionDmaRange::default()],
        libc_o_rdwr(),
    )
}

fn libc_o_rdwr() -> u32 {
    2
}

/// The cdev variants, with upstream's payloads.
pub fn cdev_variants(iommufd_error: fn() -> IommufdError) -> Vec<VfioError> {
    let sys = || vmm_sys_util::errno::Error::new(22);
    vec![
        VfioError::VfioDeviceBindIommufd(sys()),
        VfioError::VfioDeviceAttachIommufdPt(sys()),
        VfioError::VfioDeviceDetachIommufdPt(sys()),
        VfioError::NewVfioIommufd(iommufd_error()),
        VfioError::InvalidVfioDev,
        VfioError::OpenDeviceCdev(std::io::Error::from_raw_os_error(2)),
        VfioError::IommufdIoctlError(iommufd_error()),
        VfioError::VfioDmaBufNoRange,
    ]
}
