//! `VfioDevice`: regions, interrupts and reset, as a VMM's PCI device model uses them.

use std::os::unix::io::{AsRawFd, RawFd};

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
};
use vfio_ioctls::{VfioDevice, VfioIrq, VfioRegionInfoCap};
use vmm_sys_util::eventfd::EventFd;

/// A region as a VMM reads it back: flags, offset, size and capabilities.
#[derive(Debug)]
pub struct RegionSummary {
    /// `get_region_flags`.
    pub flags: u32,
    /// `get_region_offset`.
    pub offset: u64,
    /// `get_region_size`.
    pub size: u64,
    /// `get_region_caps`.
    pub caps: Vec<VfioRegionInfoCap>,
    /// Whether the region may be mmapped.
    pub mappable: bool,
}

/// Reads a region's description through upstream's accessors.
pub fn region(device: &VfioDevice, index: u32) -> RegionSummary {
    let flags: u32 = device.get_region_flags(index);
    let offset: u64 = device.get_region_offset(index);
    let size: u64 = device.get_region_size(index);
    let caps: Vec<VfioRegionInfoCap> = device.get_region_caps(index);
    RegionSummary {
        flags,
        offset,
        size,
        caps,
        mappable: flags & VFIO_REGION_INFO_FLAG_MMAP != 0,
    }
}

/// Config space access as a VMM does it: upstream's `region_read`/`region_write`
/// return nothing (failures are logged).
pub fn config_read_write(device: &VfioDevice) -> u32 {
    let mut word = [0u8; 4];
    device.region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut word, 0);
    device.region_write(VFIO_PCI_CONFIG_REGION_INDEX, &word[..2], 4);
    u32::from_le_bytes(word)
}

/// Upstream's `reset` returns nothing.
pub fn reset(device: &VfioDevice) {
    let () = device.reset();
}

/// The IRQ info a VMM reads before enabling interrupts.
pub fn irq_info(device: &VfioDevice) -> Option<(u32, u32, u32)> {
    let irq: &VfioIrq = device.get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX)?;
    let copy: VfioIrq = *irq;
    Some((copy.flags, copy.index, copy.count))
}

/// Every interrupt call of upstream's device, in the order a VMM makes them.
pub fn interrupts(device: &VfioDevice, fds: &[EventFd]) -> vfio_ioctls::Result<u32> {
    let refs: Vec<&EventFd> = fds.iter().collect();
    let max: u32 = device.max_interrupts();

    device.enable_irq(VFIO_PCI_INTX_IRQ_INDEX, refs[..1].to_vec())?;
    device.set_irq_resample_fd(VFIO_PCI_INTX_IRQ_INDEX, refs[1..2].to_vec())?;
    device.unmask_irq(VFIO_PCI_INTX_IRQ_INDEX)?;
    device.trigger_irq(VFIO_PCI_INTX_IRQ_INDEX, 0)?;
    device.disable_irq(VFIO_PCI_INTX_IRQ_INDEX)?;

    device.enable_msi(refs.clone())?;
    device.trigger_irq(VFIO_PCI_MSI_IRQ_INDEX, 0)?;
    device.disable_msi()?;

    device.enable_msix(refs)?;
    device.disable_msix()?;
    Ok(max)
}

/// A device's fd, for mmap of its regions.
pub fn device_fd(device: &VfioDevice) -> RawFd {
    device.as_raw_fd()
}
