//! Mapping a VMM's guest memory (`vm-memory`) into the IOMMU at guest-physical
//! addresses, so an assigned device can DMA to the guest (feature `vm-memory`).

use vm_memory::{GuestMemory, GuestMemoryRegion, MemoryRegionAddress};

use crate::container::VfioContainer;
use crate::error::{Result, VfioError};

impl VfioContainer {
    /// Maps every region of `mem` at IOVA = its guest-physical address.
    ///
    /// # Safety
    /// The guest memory must stay mapped in this process until
    /// [`VfioContainer::vfio_unmap_guest_memory`] succeeds: devices may access it at any time.
    ///
    /// # Errors
    /// `InvalidArgument` for a region without a host address; the errors of `vfio_dma_map`.
    pub unsafe fn vfio_map_guest_memory<M: GuestMemory>(&self, mem: &M) -> Result<()> {
        for region in mem.iter() {
            let host = region
                .get_host_address(MemoryRegionAddress(0))
                .map_err(|e| {
                    VfioError::invalid(
                        "vfio_map_guest_memory",
                        format!(
                            "region at {:#x} has no host address: {e}",
                            region.start_addr().0
                        ),
                    )
                })?;
            let size = usize::try_from(region.len()).map_err(|_| {
                VfioError::out_of_range(
                    "vfio_map_guest_memory",
                    "region larger than the address space",
                )
            })?;
            // SAFETY: the caller guarantees the guest memory outlives the mapping.
            unsafe { self.vfio_dma_map(region.start_addr().0, size, host)? };
        }
        Ok(())
    }

    /// Unmaps every region of `mem` mapped by [`VfioContainer::vfio_map_guest_memory`].
    pub fn vfio_unmap_guest_memory<M: GuestMemory>(&self, mem: &M) -> Result<()> {
        for region in mem.iter() {
            let size = usize::try_from(region.len()).map_err(|_| {
                VfioError::out_of_range(
                    "vfio_unmap_guest_memory",
                    "region larger than the address space",
                )
            })?;
            self.vfio_dma_unmap(region.start_addr().0, size)?;
        }
        Ok(())
    }
}
