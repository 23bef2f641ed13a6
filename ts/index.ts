/// <reference types="node" preserve="true" />
/**
 * vfio-ioctls: safe Linux VFIO for Node.js.
 *
 * ```ts
 * import { Container, RegionIndex } from 'vfio-ioctls'
 * using container = new Container()
 * using device = container.openDevice('0000:00:03.0')
 * using bar0 = device.regions[RegionIndex.BAR0].map()
 * console.log(bar0.readU32(0).toString(16))
 * ```
 *
 * @packageDocumentation
 */
import { native } from './native'

export { Container, type ContainerOptions, type IommuBackend, type IommuInfo, type DmaOptions, type DmaMapping, type HugePageSize } from './container'
export { Device, type DeviceInfo, type IrqInfo, type DeviceRequest, type DeviceEvents, type HotResetDevice, type DeviceRegions, type DeviceIrqs } from './device'
export { DmaBuffer, DmaSlice } from './dma'
export { DmaPool, type DmaPoolOptions, type DmaPoolAllocation } from './dma-pool'
export {
  MIGRATION_STATES,
  type MigrationState,
  type MigrationSupport,
  type PrecopyInfo,
  type DmaLoggingRange,
  type RegionRange,
  type MigrationReadOptions,
  type MigrationSource,
} from './migration'
export {
  type PciConfigSpace,
  type PciCapability,
  type MsiCapability,
  type MsixCapability,
  type PcieCapability,
  type PmCapability,
  type VendorCapability,
  type UnknownCapability,
  type ExtendedCapability,
  type PciBar,
  type ConfigAccess,
} from './pci'
export { Interrupts, type InterruptEvent, type InterruptsEvents, type WaitOptions } from './interrupts'
export { InterruptWaiter, MAX_WAIT_MS } from './interrupt-waiter'
export { Region, MappedRegion, type RegionCap, type MmapArea, type VolatileMemory, type RegisterWaitOptions } from './region'
export * as barrier from './barrier'
export { VfioError, VfioTypeError, VfioAbortError, ErrorCode, type ErrorCodeValue } from './errors'
export { RegionIndex, IrqIndex, RegionFlags, IrqFlags, DeviceFlags, Extension, PciConfig } from './constants'
export * as sysfs from './sysfs'
export type { PciDevice, MdevType } from './sysfs'

/** A cargo feature the native binary can be built with: a hypervisor integration, or the iommufd/device-cdev backend. */
export type Feature = 'kvm' | 'mshv' | 'vfio_cdev'

function isFeature(name: string): name is Feature {
  return name === 'kvm' || name === 'mshv' || name === 'vfio_cdev'
}

/** Which of the features (`kvm`, `mshv`, `vfio_cdev`) the native binary has. */
export function features(): Feature[] {
  return native().features().filter(isFeature)
}

/** The system page size (DMA sizes and IOVAs are multiples of it). */
export function pageSize(): number {
  return native().pageSize()
}
