/** The VFIO container: an IOMMU context; devices are opened and DMA is mapped through it. */
import type * as Binding from '../native/binding'
import { Device } from './device'
import { DmaBuffer } from './dma'
import { DmaPool, type DmaPoolOptions } from './dma-pool'
import { VfioTypeError } from './errors'
import { Handle } from './handle'
import { externalBuffersAllowed, native } from './native'
import { exactU64, num, optBool, optStr, options, str } from './validate'

/**
 * An IOMMU backend: VFIO's `type1` container (`/dev/vfio/vfio`), iommufd's container
 * compatibility (`iommufd-compat`: the same group flow with `/dev/iommu` as the
 * container), or native `iommufd` (an IOAS; devices are opened through their cdev,
 * `/dev/vfio/devices/vfioN`). The iommufd backends need Linux 6.2+ built with
 * `CONFIG_IOMMUFD` (native also `CONFIG_VFIO_DEVICE_CDEV`, 6.6+).
 */
export type IommuBackend = 'type1' | 'iommufd-compat' | 'iommufd'

const IOMMU_CHOICES: readonly string[] = ['type1', 'iommufd-compat', 'iommufd', 'auto']

/** Options of `new Container()`. */
export interface ContainerOptions {
  /**
   * The IOMMU backend (default `type1`). `auto` picks `iommufd` when `/dev/iommu` and
   * `/dev/vfio/devices` exist (as libvfn does), else `type1`. A backend the kernel lacks
   * throws `ERR_VFIO_NOT_FOUND` (no `/dev/iommu`) or `ERR_VFIO_UNSUPPORTED` (no cdevs).
   */
  iommu?: IommuBackend | 'auto'

  /** A KVM VFIO device fd from your VMM; it is duplicated, yours stays yours. */
  kvmDeviceFd?: number
  /** An MSHV VFIO device fd from your VMM on Microsoft Hypervisor; it is duplicated. */
  mshvDeviceFd?: number
  /** Create a KVM VM and its VFIO device, so groups are registered with KVM. */
  createKvmVm?: boolean
  /** Another container node than `/dev/vfio/vfio` (or `/dev/iommu` for the iommufd backends). */
  path?: string
}

/**
 * What `VFIO_IOMMU_GET_INFO` reports.
 * @interface
 */
export type IommuInfo = Binding.IommuInfo

/** A huge page size DMA memory can be backed by: 2 MiB or 1 GiB. */
export type HugePageSize = '2M' | '1G'

/** Where `container.allocateDma()` maps a buffer and what backs it. */
export interface DmaOptions {
  /**
   * This IOVA (a multiple of the page size) instead of the lowest free one. Checked
   * against `align` and `dmaMask` when those are given too.
   */
  iova?: bigint | number
  /**
   * The IOVA is a multiple of this power of two, at least the page size. Default: the
   * page size, or the huge page size with `hugePages`.
   */
  align?: number
  /**
   * The highest address the device can reach (its DMA mask, e.g. `0xffffffff` for a
   * 32-bit device): the buffer's last byte is at most this.
   */
  dmaMask?: bigint | number
  /**
   * Back the buffer with huge pages of this size (`MAP_HUGETLB`); `size` must then be
   * a multiple of it (huge pages are never split). Too few free gives
   * `ERR_VFIO_OUT_OF_RANGE` saying how many are free and how to reserve more.
   */
  hugePages?: HugePageSize
}

/** One mapping of the container's IOMMU. */
export interface DmaMapping {
  /** Where the device sees the mapping. */
  iova: bigint
  /** Its size in bytes. */
  size: number
}

/** A VFIO container: an IOMMU context of one of the backends (`IommuBackend`). */
export class Container extends Handle<Binding.Container> {
  /** Whether its DMA buffers get zero-copy views: the environment is read once, here, not per buffer. */
  readonly #external = externalBuffersAllowed()

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
    const iommu = optStr('iommu', o.iommu)
    if (iommu !== undefined && !IOMMU_CHOICES.includes(iommu)) {
      throw new VfioTypeError(`iommu must be one of ${IOMMU_CHOICES.map((c) => `'${c}'`).join(', ')}, got ${JSON.stringify(iommu)}`)
    }
    if (iommu !== undefined) opts.iommu = iommu
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

  /** The IOMMU backend in use (what `auto` chose). */
  get iommu(): IommuBackend {
    return this.native.iommu as IommuBackend
  }

  /** The IOAS id of a native `iommufd` container; `null` for the other backends. */
  get ioasId(): number | null {
    return this.native.ioasId
  }

  /**
   * Allocates a HWPT (hardware page table, `IOMMU_HWPT_ALLOC`) on this `iommufd`
   * container's IOAS for the device whose `iommufdDevId` is `devId`; it holds the
   * IOAS's mappings. Attach it with `device.attachHwpt()`, free it with `destroyHwpt()`.
   * Throws `ERR_VFIO_UNSUPPORTED` for the other backends.
   */
  allocHwpt(devId: number): number {
    return this.native.allocHwpt(num('devId', devId))
  }

  /** Destroys a HWPT (`IOMMU_DESTROY`); `ERR_VFIO_BUSY` while a device is attached to it. */
  destroyHwpt(hwptId: number): void {
    this.native.destroyHwpt(num('hwptId', hwptId))
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

  /** Current DMA mappings, sorted by IOVA. */
  dmaMappings(): DmaMapping[] {
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
   * A {@link DmaPool}: small DMA buffers carved from a few large mappings of this
   * container (`pool.allocate(size)` → a zeroed `DmaSlice`), for a driver that needs many.
   */
  dmaPool(poolOptions?: DmaPoolOptions): DmaPool {
    void this.native // ERR_VFIO_CLOSED on a closed container now, not at the first allocate
    return DmaPool.create(this, poolOptions)
  }

  /**
   * Allocates `size` bytes of zeroed memory (a multiple of the page size, or of the huge
   * page size with `hugePages`) and maps it for the container's devices: at `iova`, or
   * else at the lowest free IOVA inside the IOMMU's usable ranges (`iommuInfo().iovaRanges`,
   * never the MSI window) that is aligned to `align` and ends at or below `dmaMask`.
   * Throws `ERR_VFIO_OUT_OF_RANGE` when no free IOVA fits (naming size, alignment, mask
   * and ranges) or too few huge pages are free, `ERR_VFIO_INVALID_ARGUMENT` for bad
   * sizes, alignments or an overlapping `iova`, `ERR_VFIO_MEMLOCK`.
   */
  allocateDma(size: number, dmaOptions?: DmaOptions): DmaBuffer {
    // No options object when none is given: the native side then reads no properties.
    if (dmaOptions === undefined) return DmaBuffer.fromNative(this.native.allocateDma(num('size', size)), this.#external)
    const o = options<DmaOptions>('options', dmaOptions)
    const opts: Binding.DmaOptions = {}
    if (o.iova !== undefined) opts.iova = exactU64('iova', o.iova)
    if (o.align !== undefined) opts.align = num('align', o.align)
    if (o.dmaMask !== undefined) opts.dmaMask = exactU64('dmaMask', o.dmaMask)
    const hugePages = optStr('hugePages', o.hugePages)
    if (hugePages !== undefined) opts.hugePages = hugePages
    return DmaBuffer.fromNative(this.native.allocateDma(num('size', size), opts), this.#external)
  }
}
