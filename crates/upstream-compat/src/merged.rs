//! What the iommufd and migration branches add outside the cdev feature (feature
//! `merged`): upstream's `VfioDevice::new(path, Arc<dyn VfioOps>, attach_ioas)`,
//! `iommufd_dev_id`, migration v2, DMA dirty logging, and their error variants.

use std::path::Path;
use std::sync::Arc;

use vfio_ioctls::{DmaLoggingRange, PrecopyInfo, VfioContainer, VfioDevice, VfioError, VfioOps};

/// Opens a device through the container as upstream's constructor does.
pub fn open(sysfs: &Path, container: Arc<VfioContainer>) -> vfio_ioctls::Result<VfioDevice> {
    let ops: Arc<dyn VfioOps> = container;
    let device = VfioDevice::new(sysfs, ops, false)?;
    let none: Option<u32> = device.iommufd_dev_id();
    let _ = none;
    Ok(device)
}

/// A source's migration as a VMM drives it: query, precopy, stop-copy, state.
pub fn migrate_out(device: &VfioDevice) -> vfio_ioctls::Result<Vec<u8>> {
    let flags: Option<u64> = device.query_migration_support()?;
    if flags.is_none() {
        return Ok(Vec::new());
    }
    let state: u32 = device.get_migration_state()?;
    device.set_migration_state(state)?;
    let size: u64 = device.get_mig_data_size()?;
    let PrecopyInfo {
        initial_bytes,
        dirty_bytes,
    } = device.mig_get_precopy_info()?;
    let mut buf = vec![0u8; (initial_bytes + dirty_bytes).min(size) as usize];
    let n: usize = device.read_migration_data(&mut buf)?;
    buf.truncate(n);
    buf.extend(device.read_migration_data_to_end()?);
    Ok(buf)
}

/// The destination's side.
pub fn migrate_in(device: &VfioDevice, data: &[u8], state: u32) -> vfio_ioctls::Result<()> {
    device.set_migration_state(state)?;
    device.write_migration_data(data)
}

/// DMA dirty logging: start, report a range, stop.
pub fn dirty_pages(device: &VfioDevice, page_size: u64) -> vfio_ioctls::Result<Vec<u64>> {
    let range = DmaLoggingRange {
        iova: 0x10_0000,
        length: 0x10_0000,
    };
    let copy: DmaLoggingRange = range;
    let _ = (PrecopyInfo::default(), DmaLoggingRange::default() == copy);
    let granted: u64 = device.start_dma_logging(page_size, &[range])?;
    let bitmap: Vec<u64> = device.report_dma_logging(range, granted)?;
    device.stop_dma_logging()?;
    Ok(bitmap)
}

/// The migration variants, with upstream's payloads.
pub fn migration_variants() -> Vec<VfioError> {
    let sys = || vmm_sys_util::errno::Error::new(22);
    vec![
        VfioError::VfioDeviceFeature(sys()),
        VfioError::VfioMigGetPrecopyInfo(sys()),
        VfioError::NoMigrationDataFd,
        VfioError::VfioMigrationDataIo(std::io::Error::from_raw_os_error(5)),
        VfioError::DmaLoggingNotStarted,
        VfioError::DmaLoggingAlreadyStarted,
        VfioError::DmaLoggingInvalidArgument("page size"),
    ]
}
