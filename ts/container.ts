/** The VFIO container: an IOMMU context; devices are opened and DMA is mapped through it. */
import type * as Binding from '../native/binding'
import { Device } from './device'
import { DmaBuffer } from './dma'
import { Handle } from './handle'
import { native } from './native'
import { num, optBool, optStr, options, str, u64 } from './validate'

/** Options of `new Container()`. */
export interface ContainerOptions {
  /** A KVM VFIO device fd from your VMM; it is duplicated, yours stays yours. */
  kvmDeviceFd?: number
  /** An MSHV VFIO device fd from your VMM on Microsoft Hypervisor; it is duplicated. */
  mshvDeviceFd?: number
  /** Create a KVM VM and its VFIO device, so groups are registered with KVM. */
  createKvmVm?: boolean
  /** Another container node than `/dev/vfio/vfio`. */
  path?: string
}

/**
 * What `VFIO_IOMMU_GET_INFO` reports.
 * @interface
 */
export type IommuInfo = Binding.IommuInfo

/** A VFIO container (`/dev/vfio/vfio`). */
export class Container extends Handle<Binding.Container> {
  /**
   * Opens the container and checks the API version and the Type1v2 IOMMU.
   * Throws `ERR_VFIO_NOT_FOUND` without VFIO, `ERR_VFIO_PERMISSION`, `ERR_VFIO_UNSUPPORTED`.
   */
  constructor(containerOptions?: ContainerOptions) {
    const o = options<ContainerOptions>('options', containerOptions)
    const opts: Binding.ContainerOptions = {}
    if (o.kvmDeviceFd !== undefined) opts.kvmDeviceFd = num('kvmDeviceFd', o.kvmDeviceFd)
    if (o.mshvDeviceFd !== undefined) opts.mshvDeviceFd = num('mshvDeviceFd', o.mshvDeviceFd)
    const createKvmVm = optBool('createKvmVm', o.createKvmVm)
    if (createKvmVm !== undefined) opts.createKvmVm = createKvmVm
    const path = optStr('path', o.path)
    if (path !== undefined) opts.path = path
    const n = new (native().Container)(opts)
    super(n, 'container')
  }

  /** `VFIO_GET_API_VERSION` (0 for every kernel so far). */
  apiVersion(): number {
    return this.native.apiVersion()
  }

  /** `VFIO_CHECK_EXTENSION` (see `Extension`). */
  checkExtension(extension: number): boolean {
    const e = num('extension', extension)
    return this.native.checkExtension(e)
  }

  /** Whether a hypervisor (KVM/MSHV) VFIO device is attached. */
  get hasHypervisorDevice(): boolean {
    return this.native.hasHypervisorDevice
  }

  /** Numbers of the IOMMU groups attached now. */
  groupIds(): number[] {
    return this.native.groupIds()
  }

  /** IOMMU page sizes and usable IOVA ranges; needs an open device first. */
  iommuInfo(): IommuInfo {
    return this.native.iommuInfo()
  }

  /** Current DMA mappings. */
  dmaMappings(): {
    /** Where the device sees the mapping. */
    iova: bigint
    /** Its size in bytes. */
    size: bigint
  }[] {
    return this.native.dmaMappings()
  }

  /**
   * Opens a device by PCI address (`0000:00:03.0` or `00:03.0`) or sysfs path.
   * Throws `ERR_VFIO_INVALID_ARGUMENT` for malformed input, `ERR_VFIO_NOT_FOUND`,
   * `ERR_VFIO_GROUP_NOT_VIABLE` (naming the devices to bind), `ERR_VFIO_BUSY`.
   */
  openDevice(addressOrPath: string): Device {
    const a = str('addressOrPath', addressOrPath)
    return Device.fromNative(this.native.openDevice(a))
  }

  /**
   * Allocates `size` bytes of zeroed, page-aligned memory and maps it at `iova` for the
   * container's devices. `size` and `iova` must be page-aligned and not overlap a mapping.
   */
  allocateDma(size: number | bigint, dmaOptions: { iova: number | bigint }): DmaBuffer {
    const o = options<{ iova: number | bigint }>('options', dmaOptions)
    const s = u64('size', size)
    const iova = u64('iova', o.iova)
    return DmaBuffer.fromNative(this.native.allocateDma(s, iova))
  }
}
