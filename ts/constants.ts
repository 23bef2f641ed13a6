/** VFIO constants from `linux/vfio.h`, named as a reader of the kernel expects. */

/** PCI region indices (`VFIO_PCI_*_REGION_INDEX`). */
export const RegionIndex = {
  /** BAR 0 (`VFIO_PCI_BAR0_REGION_INDEX`). */
  BAR0: 0,
  /** BAR 1. */
  BAR1: 1,
  /** BAR 2. */
  BAR2: 2,
  /** BAR 3. */
  BAR3: 3,
  /** BAR 4. */
  BAR4: 4,
  /** BAR 5. */
  BAR5: 5,
  /** The expansion ROM (read-only). */
  ROM: 6,
  /** PCI configuration space (see {@link PciConfig}). */
  CONFIG: 7,
  /** The legacy VGA ranges (VGA devices only). */
  VGA: 8,
} as const

/** PCI IRQ indices (`VFIO_PCI_*_IRQ_INDEX`). */
export const IrqIndex = {
  /** Legacy INTx (level-triggered; automasked). */
  INTX: 0,
  /** MSI. */
  MSI: 1,
  /** MSI-X. */
  MSIX: 2,
  /** AER error reporting. */
  ERR: 3,
  /** The kernel's request to release the device (see `Device`'s `'request'` event). */
  REQ: 4,
} as const

/** `VFIO_REGION_INFO_FLAG_*`. */
export const RegionFlags = {
  /** The region can be read. */
  READ: 1,
  /** The region can be written. */
  WRITE: 2,
  /** The region can be mmapped (see its capabilities for sparse areas). */
  MMAP: 4,
  /** The region has a capability chain. */
  CAPS: 8,
} as const

/** `VFIO_IRQ_INFO_*`. */
export const IrqFlags = {
  /** Vectors can signal an eventfd. */
  EVENTFD: 1,
  /** Vectors can be masked and unmasked. */
  MASKABLE: 2,
  /** The kernel masks the vector when it fires (INTx): unmask after handling. */
  AUTOMASKED: 4,
  /** The set of enabled vectors cannot grow while enabled: disable, then enable more. */
  NORESIZE: 8,
} as const

/** `VFIO_DEVICE_FLAGS_*`. */
export const DeviceFlags = {
  /** The device supports reset. */
  RESET: 1,
  /** A PCI device. */
  PCI: 2,
  /** A platform device. */
  PLATFORM: 4,
  /** An ARM AMBA device. */
  AMBA: 8,
  /** An s390 channel (CCW) device. */
  CCW: 16,
  /** An s390 adjunct processor (AP) device. */
  AP: 32,
  /** A Freescale/NXP fsl-mc device. */
  FSL_MC: 64,
  /** The device info has a capability chain. */
  CAPS: 128,
} as const

/** Container extensions for `Container.checkExtension` (`VFIO_*_IOMMU`, `VFIO_DMA_CC_IOMMU`...). */
export const Extension = {
  /** The Type1 IOMMU (x86, ARM). */
  TYPE1_IOMMU: 1,
  /** The POWER sPAPR TCE IOMMU. */
  SPAPR_TCE_IOMMU: 2,
  /** Type1 v2 (what this library uses). */
  TYPE1v2_IOMMU: 3,
  /** DMA is cache-coherent for every device in the container. */
  DMA_CC_IOMMU: 4,
  /** POWER Enhanced Error Handling. */
  EEH: 5,
  /** Type1 with nesting. */
  TYPE1_NESTING_IOMMU: 6,
  /** The POWER sPAPR TCE IOMMU, v2. */
  SPAPR_TCE_v2_IOMMU: 7,
  /** No IOMMU (unsafe mode, `enable_unsafe_noiommu_mode`). */
  NOIOMMU_IOMMU: 8,
  /** `VFIO_DMA_UNMAP_FLAG_ALL` is supported. */
  UNMAP_ALL: 9,
  /** `VFIO_DMA_MAP_FLAG_VADDR` (updating a mapping's address) is supported. */
  UPDATE_VADDR: 10,
} as const

/** Offsets in PCI configuration space (region {@link RegionIndex.CONFIG}). */
export const PciConfig = {
  /** Offset of the vendor id (16 bits). */
  VENDOR_ID: 0x00,
  /** Offset of the device id (16 bits). */
  DEVICE_ID: 0x02,
  /** Offset of the command register (16 bits). */
  COMMAND: 0x04,
  /** Offset of the status register (16 bits). */
  STATUS: 0x06,
  /** Offset of the revision (8 bits) and the class code (24 bits above it). */
  CLASS_REVISION: 0x08,
  /** Command register bit: the device may master the bus (DMA). */
  COMMAND_BUS_MASTER: 0x4,
  /** Command register bit: the device answers memory-space accesses (its memory BARs). */
  COMMAND_MEMORY: 0x2,
  /** Command register bit: the device may not assert INTx. */
  COMMAND_INTX_DISABLE: 0x400,
} as const
