//! Mapping a VMM's guest memory (`vm-memory`) into the IOMMU at guest-physical
//! addresses, so an assigned device can DMA to the guest (upstream's methods).

use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use crate::container::VfioContainer;
use crate::error::{Result, VfioError};

impl VfioContainer {
    /// Maps every region of `mem` at IOVA = its guest-physical address (upstream's
    /// signature).
    ///
    /// # Safety
    /// The guest memory must stay mapped in this process until
    /// [`VfioContainer::vfio_unmap_guest_memory`] succeeds, and be touched only through
    /// raw pointers (volatile or atomic) meanwhile: devices may access it at any time.
    /// On failure, the regions before the failing one stay mapped (as upstream).
    ///
    /// # Errors
    /// `GetHostAddress` for a region without a host address (upstream's variant; the
    /// region's address is logged), `OutOfRange` for a region larger than the address
    /// space (upstream panics there), the errors of [`VfioContainer::vfio_dma_map`].
    pub unsafe fn vfio_map_guest_memory<M: GuestMemoryBackend>(&self, mem: &M) -> Result<()> {
        for region in mem.iter() {
            let host = region
                .get_host_address(MemoryRegionAddress(0))
                .map_err(|e| {
                    log::warn!(
                        "vfio_map_guest_memory: guest region at {:#x} has no host address: {e}",
                        region.start_addr().raw_value()
                    );
                    VfioError::GetHostAddress
                })?;
            let size = region_size("vfio_map_guest_memory", region.len())?;
            // SAFETY: the caller guarantees the guest memory outlives the mapping and is
            // not referenced while the device may access it.
            unsafe { self.vfio_dma_map(region.start_addr().raw_value(), size, host)? };
        }
        Ok(())
    }

    /// Unmaps every region of `mem` mapped by [`VfioContainer::vfio_map_guest_memory`]
    /// (upstream's signature).
    ///
    /// # Errors
    /// `OutOfRange` for a region larger than the address space (upstream panics there),
    /// the errors of [`VfioContainer::vfio_dma_unmap`].
    pub fn vfio_unmap_guest_memory<M: GuestMemoryBackend>(&self, mem: &M) -> Result<()> {
        for region in mem.iter() {
            let size = region_size("vfio_unmap_guest_memory", region.len())?;
            self.vfio_dma_unmap(region.start_addr().raw_value(), size)?;
        }
        Ok(())
    }
}

fn region_size(op: &'static str, len: u64) -> Result<usize> {
    usize::try_from(len).map_err(|_| {
        VfioError::out_of_range(
            op,
            format!("a guest region of {len:#x} bytes is larger than the address space"),
        )
    })
}
