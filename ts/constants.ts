/** VFIO constants from `linux/vfio.h`, named as a reader of the kernel expects. */

/** PCI region indices (`VFIO_PCI_*_REGION_INDEX`). */
export const RegionIndex = {
  BAR0: 0,
  BAR1: 1,
  BAR2: 2,
  BAR3: 3,
  BAR4: 4,
  BAR5: 5,
  ROM: 6,
  CONFIG: 7,
  VGA: 8,
} as const

/** PCI IRQ indices (`VFIO_PCI_*_IRQ_INDEX`). */
export const IrqIndex = {
  INTX: 0,
  MSI: 1,
  MSIX: 2,
  ERR: 3,
  REQ: 4,
} as const

/** `VFIO_REGION_INFO_FLAG_*`. */
export const RegionFlags = { READ: 1, WRITE: 2, MMAP: 4, CAPS: 8 } as const

/** `VFIO_IRQ_INFO_*`. */
export const IrqFlags = { EVENTFD: 1, MASKABLE: 2, AUTOMASKED: 4, NORESIZE: 8 } as const

/** `VFIO_DEVICE_FLAGS_*`. */
export const DeviceFlags = { RESET: 1, PCI: 2, PLATFORM: 4, AMBA: 8, CCW: 16, AP: 32, FSL_MC: 64, CAPS: 128 } as const

/** Container extensions for `Container.checkExtension` (`VFIO_*_IOMMU`, `VFIO_DMA_CC_IOMMU`...). */
export const Extension = {
  TYPE1_IOMMU: 1,
  SPAPR_TCE_IOMMU: 2,
  TYPE1v2_IOMMU: 3,
  DMA_CC_IOMMU: 4,
  EEH: 5,
  TYPE1_NESTING_IOMMU: 6,
  SPAPR_TCE_v2_IOMMU: 7,
  NOIOMMU_IOMMU: 8,
  UNMAP_ALL: 9,
  UPDATE_VADDR: 10,
} as const

/** Offsets in PCI configuration space (region {@link RegionIndex.CONFIG}). */
export const PciConfig = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  CLASS_REVISION: 0x08,
  /** Command register bit: the device may master the bus (DMA). */
  COMMAND_BUS_MASTER: 0x4,
  COMMAND_MEMORY: 0x2,
  COMMAND_INTX_DISABLE: 0x400,
} as const
