/** An open VFIO device: info, regions, reset, interrupts and device requests. */
import { EventEmitter } from 'node:events'
import type * as Binding from '../native/binding'
import { IrqIndex, PciConfig } from './constants'
import {
  chunkSize,
  loggingRange,
  migrationState,
  rangeList,
  readChunks,
  regionRange,
  toSupport,
  chunksOf,
  writeChunks,
  type DmaLoggingRange,
  type MigrationReadOptions,
  type MigrationSource,
  type MigrationState,
  type MigrationSupport,
  type PrecopyInfo,
  type RegionRange,
} from './migration'
import { unpackLayout } from './device-layout'
import { ErrorCode, VfioError, VfioTypeError } from './errors'
import { NativeSlot } from './handle'
import { native, type NativeBinding } from './native'
import { Interrupts } from './interrupts'
import { PciConfigSpace, toBar, toCapability, type PciBar, type PciCapability } from './pci'
import { MappedRegion, Region } from './region'
import { bytes, describe, handle, num, options, readTarget, u64 } from './validate'

/**
 * Device-wide info (`VFIO_DEVICE_GET_INFO`) and where it lives.
 * @interface
 */
export type DeviceInfo = Binding.DeviceInfo
/**
 * One IRQ index (`VFIO_DEVICE_GET_IRQ_INFO`); `count` 0 when not implemented.
 * @interface
 */
export type IrqInfo = Binding.IrqInfo

/**
 * The regions by VFIO index: at least the nine every PCI device has (BAR0–5, ROM,
 * config, VGA), so `regions[RegionIndex.BAR0]` is a `Region` even under
 * `noUncheckedIndexedAccess`; device-specific regions follow.
 */
export type DeviceRegions = readonly [Region, Region, Region, Region, Region, Region, Region, Region, Region, ...Region[]]
/** The IRQ indices: at least INTx, MSI, MSI-X, ERR and REQ (`count` 0 where absent). */
export type DeviceIrqs = readonly [IrqInfo, IrqInfo, IrqInfo, IrqInfo, IrqInfo, ...IrqInfo[]]

const PCI_REGIONS = 9
const PCI_IRQS = 5

/** Pads a list to `n` entries with `absent(index)`, so the tuple types above hold. */
function padded<T>(list: T[], n: number, absent: (index: number) => T): T[] {
  for (let i = list.length; i < n; i++) list.push(absent(i))
  return list
}

function isDeviceRegions(list: readonly Region[]): list is DeviceRegions {
  return list.length >= PCI_REGIONS
}

function isDeviceIrqs(list: readonly IrqInfo[]): list is DeviceIrqs {
  return list.length >= PCI_IRQS
}

/**
 * One device a PCI hot reset affects (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`): its PCI
 * address (`ssss:bb:dd.f`) and the IOMMU group whose ownership the reset needs.
 * @interface
 */
export type HotResetDevice = Binding.HotResetDevice

/** What a `'request'` event carries: how often the kernel has asked so far. */
export interface DeviceRequest {
  /** How many times the kernel has asked, this one included. */
  count: number
}

/** The events of a {@link Device}. */
export interface DeviceEvents {
  /**
   * The kernel asks for the device back (it is being unbound from vfio-pci, or removed):
   * close the device and everything opened through it (mapped regions, interrupts) so
   * the unbind or removal can complete. It asks again, about every 10 s, until then.
   * The first listener arms the device's REQ index (see {@link Device.watchesRequests}).
   */
  request: [DeviceRequest]
}

/**
 * An open VFIO device. Keeps its container alive; mapped regions and interrupts keep it
 * open. An `EventEmitter` of {@link DeviceEvents}; listening does not keep the process alive.
 */
export class Device extends EventEmitter<DeviceEvents> {
  readonly #slot: NativeSlot<Binding.Device>
  /** The REQ index's eventfd (`VFIO_PCI_REQ_IRQ_INDEX`), where the device has one. */
  #request: Binding.Interrupts | undefined
  /** The binding whose free functions take {@link Device.#fastHandle}. */
  readonly #binding: NativeBinding = native()
  /** The handle of the free-function region accessors, read on first use; -1: none. */
  #fast: number | undefined
  /** Device-wide info. */
  readonly info: DeviceInfo
  /** Every region, by VFIO index (absent ones included, `present` false). */
  readonly regions: DeviceRegions
  /** Every IRQ index, by index. */
  readonly irqs: DeviceIrqs

  /** @internal Wraps the handle `container.openDevice()` made. */
  static fromNative(nativeHandle: Binding.Device): Device {
    return new Device(nativeHandle)
  }

  private constructor(nativeHandle: Binding.Device) {
    super()
    const n = handle<Binding.Device>('Device', 'container.openDevice()', nativeHandle)
    this.#slot = new NativeSlot(n, 'device')
    // One crossing for everything below (see device-layout.ts).
    const layout = unpackLayout(n.layout())
    this.info = Object.freeze(layout.info)
    const absentRegion = (index: number): Binding.RegionInfo => ({ index, present: false, flags: 0, size: 0, offset: 0, readable: false, writable: false, mappable: false, caps: [] })
    const absentIrq = (index: number): IrqInfo => ({ index, flags: 0, count: 0, eventfd: false, maskable: false, automasked: false })
    const regions = Object.freeze(padded(layout.regions, PCI_REGIONS, absentRegion).map((r) => Region.fromNative(this, r)))
    const irqs = Object.freeze(padded(layout.irqs, PCI_IRQS, absentIrq))
    if (!isDeviceRegions(regions) || !isDeviceIrqs(irqs)) throw new VfioError(ErrorCode.IO, 'the device reported too few regions or IRQs')
    this.regions = regions
    this.irqs = irqs
    const req = this.irqs[IrqIndex.REQ]
    // The REQ eventfd is armed when the first 'request' listener comes, not here: arming
    // (an eventfd, the kernel's trigger, a watch on the epoll thread) was most of an
    // open's cost, and a request nobody listens to does nothing either way.
    this.#hasRequests = req !== undefined && req.count > 0 && req.eventfd
    this.#awaitRequestListener()
  }

  /** Whether the device has a REQ index with an eventfd to arm. */
  readonly #hasRequests: boolean

  /** Until armed, watches for the first 'request' listener (idempotent). */
  #awaitRequestListener(): void {
    // EventEmitter's own event, which the typed event map leaves out.
    const emitter: EventEmitter = this
    if (!this.#hasRequests || this.#request !== undefined) return
    if (!emitter.listeners('newListener').includes(this.#armRequests)) emitter.on('newListener', this.#armRequests)
  }

  /** Arms the REQ eventfd at the first 'request' listener; a failure throws from `on()`. */
  readonly #armRequests = (event: string | symbol): void => {
    const n = this.#slot.peek()
    if (event !== 'request' || this.#request !== undefined || n === undefined) return
    this.#request = this.#watchRequests(n)
    const emitter: EventEmitter = this
    emitter.off('newListener', this.#armRequests)
  }

  /** Removes listeners; the watch for a first 'request' listener stays (until armed). */
  override removeAllListeners(event?: keyof DeviceEvents | 'newListener' | 'removeListener'): this {
    // EventEmitter tells "no argument" from `undefined` by `arguments.length`.
    if (event === undefined) super.removeAllListeners()
    else super.removeAllListeners(event)
    this.#awaitRequestListener()
    return this
  }

  /** Registers an eventfd for device requests; weakly held, so it keeps nothing alive. */
  #watchRequests(n: Binding.Device): Binding.Interrupts {
    const irq = n.enableIrq(IrqIndex.REQ, 0, 1)
    try {
      irq.listen(Device.#weakRequests(new WeakRef(this)))
    } catch (err) {
      irq.close()
      throw err
    }
    return irq
  }

  /** The native thread's callback: holds the device weakly and nothing else (see Interrupts). */
  static #weakRequests(owner: WeakRef<Device>): (vector: number, count: number) => void {
    return (_vector, count) => {
      const device = owner.deref()
      if (device !== undefined) device.#onRequest(count)
    }
  }

  #onRequest(count: number): void {
    if (!this.#slot.closed) this.emit('request', { count })
  }

  /** The native handle; throws `ERR_VFIO_CLOSED` after `close()`. */
  protected get native(): Binding.Device {
    return this.#slot.get()
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#slot.closed
  }

  /**
   * The device's id in the iommufd its cdev is bound to (native `iommufd` containers);
   * `null` for a device opened through a group.
   */
  get iommufdDevId(): number | null {
    return this.native.iommufdDevId
  }

  /**
   * Attaches the device to the IOAS or HWPT `ptId` (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`),
   * replacing its page table. Needs a native `iommufd` container, else `ERR_VFIO_UNSUPPORTED`.
   */
  attachHwpt(ptId: number): void {
    this.native.attachHwpt(num('ptId', ptId))
  }

  /** Detaches the device from its page table: DMA is then blocked until the next attach. */
  detachHwpt(): void {
    this.native.detachHwpt()
  }

  /**
   * Attaches PASID `pasid` of the device to the IOAS or HWPT `ptId`
   * (`VFIO_DEVICE_ATTACH_IOMMUFD_PT` with `VFIO_DEVICE_ATTACH_PASID`). Needs a native
   * `iommufd` container and a kernel whose uAPI has PASID attach (6.12's has none):
   * else `ERR_VFIO_UNSUPPORTED` saying which is missing.
   */
  attachPasid(pasid: number, ptId: number): void {
    this.native.attachPasid(num('pasid', pasid), num('ptId', ptId))
  }

  /** Detaches PASID `pasid` from its page table; refused as {@link Device.attachPasid} is. */
  detachPasid(pasid: number): void {
    this.native.detachPasid(num('pasid', pasid))
  }

  /**
   * Whether the kernel's device requests reach this object as `'request'` events: from
   * the first `'request'` listener on (the REQ index is armed then, and stays armed until
   * `close()`), where the device has a REQ index.
   */
  get watchesRequests(): boolean {
    return this.#request !== undefined
  }

  /**
   * Closes the device handle. Mapped regions and interrupts keep the device open until
   * they close too. Closing twice is harmless.
   */
  close(): void {
    const n = this.#slot.take()
    if (n === undefined) return
    const request = this.#request
    this.#request = undefined
    try {
      if (request !== undefined) request.close()
    } finally {
      n.close()
    }
  }

  /** `using` support: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** The PCI address (name in the group). */
  get name(): string {
    return this.info.name
  }

  /** Region `index`; throws `ERR_VFIO_OUT_OF_RANGE` past the device's regions. */
  region(index: number): Region {
    const i = num('index', index)
    const r = Number.isInteger(i) ? this.regions[i] : undefined
    if (!r) throw new VfioError(ErrorCode.OUT_OF_RANGE, `region index ${i} is not one of the device's ${this.regions.length} regions`)
    return r
  }

  /** Reads `length` bytes at `offset` of region `index`. */
  regionRead(index: number, offset: number | bigint, length: number): Buffer {
    const i = num('index', index)
    const o = num('offset', offset)
    const n = num('length', length)
    return this.native.regionRead(i, o, n)
  }

  /**
   * The free-function handle; `ERR_VFIO_CLOSED` once closed. -1 for a native handle
   * that has none (the facade's test fakes): {@link Device.#viaMethods} serves then.
   */
  #fastHandle(): number {
    const n = this.#slot.get()
    this.#fast ??= n.fastHandle
    return this.#fast
  }

  /** A small region read or write through the class methods (no free-function handle). */
  #viaMethods(index: number, offset: number, width: 1 | 2 | 4 | 8, value?: number | bigint): number | bigint {
    const n = this.#slot.get()
    if (value === undefined) {
      const b = n.regionRead(index, offset, width)
      return width === 8 ? b.readBigUInt64LE(0) : b.readUIntLE(0, width)
    }
    const b = Buffer.alloc(width)
    const max = 2n ** BigInt(8 * width) - 1n
    const v = typeof value === 'bigint' ? value : Number.isInteger(value) ? BigInt(value) : -1n
    if (v < 0n || v > max) throw new VfioError(ErrorCode.OUT_OF_RANGE, `value ${value} does not fit ${8 * width} bits`)
    if (width === 8) b.writeBigUInt64LE(v)
    else b.writeUIntLE(Number(v), 0, width)
    n.regionWrite(index, offset, b)
    return 0
  }

  /**
   * Reads 8 bits at `offset` of region `index` as a number, in one `pread` (no Buffer):
   * the cheap way to read a register of config space or of a BAR that is not mmapped.
   */
  regionReadU8(index: number, offset: number | bigint): number {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    return h >= 0 ? this.#binding.regionReadU8(h, i, o) : (this.#viaMethods(i, o, 1) as number)
  }

  /** Reads 16 bits (little-endian) at `offset` of region `index`, in one 2-byte `pread`. */
  regionReadU16(index: number, offset: number | bigint): number {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    return h >= 0 ? this.#binding.regionReadU16(h, i, o) : (this.#viaMethods(i, o, 2) as number)
  }

  /** Reads 32 bits (little-endian) at `offset` of region `index`, in one 4-byte `pread`. */
  regionReadU32(index: number, offset: number | bigint): number {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    return h >= 0 ? this.#binding.regionReadU32(h, i, o) : (this.#viaMethods(i, o, 4) as number)
  }

  /** Reads 64 bits (little-endian) at `offset` of region `index`, in one 8-byte `pread`. */
  regionReadU64(index: number, offset: number | bigint): bigint {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    return h >= 0 ? this.#binding.regionReadU64(h, i, o) : (this.#viaMethods(i, o, 8) as bigint)
  }

  /** Writes 8 bits at `offset` of region `index`, in one `pwrite`. */
  regionWriteU8(index: number, offset: number | bigint, value: number): void {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    const v = num('value', value)
    if (h >= 0) this.#binding.regionWriteU8(h, i, o, v)
    else this.#viaMethods(i, o, 1, v)
  }

  /** Writes 16 bits (little-endian) at `offset` of region `index`, in one 2-byte `pwrite`. */
  regionWriteU16(index: number, offset: number | bigint, value: number): void {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    const v = num('value', value)
    if (h >= 0) this.#binding.regionWriteU16(h, i, o, v)
    else this.#viaMethods(i, o, 2, v)
  }

  /** Writes 32 bits (little-endian) at `offset` of region `index`, in one 4-byte `pwrite`. */
  regionWriteU32(index: number, offset: number | bigint, value: number): void {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    const v = num('value', value)
    if (h >= 0) this.#binding.regionWriteU32(h, i, o, v)
    else this.#viaMethods(i, o, 4, v)
  }

  /** Writes 64 bits (little-endian) at `offset` of region `index`, in one 8-byte `pwrite`. */
  regionWriteU64(index: number, offset: number | bigint, value: bigint | number): void {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    const v = u64('value', value)
    if (h >= 0) this.#binding.regionWriteU64(h, i, o, v)
    else this.#viaMethods(i, o, 8, v)
  }

  /**
   * Reads `target.byteLength` bytes at `offset` of region `index` into `target`, in one
   * `pread` (no allocation; `regionRead` makes a new Buffer each time).
   */
  regionReadInto(index: number, offset: number | bigint, target: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    const h = this.#fastHandle()
    const i = num('index', index)
    const o = num('offset', offset)
    const t = readTarget('target', target)
    if (h >= 0) this.#binding.regionReadInto(h, i, o, t)
    else t.set(this.#slot.get().regionRead(i, o, t.length))
  }

  /** Writes `data` at `offset` of region `index`. */
  regionWrite(index: number, offset: number | bigint, data: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    const i = num('index', index)
    const o = num('offset', offset)
    const b = bytes('data', data)
    this.native.regionWrite(i, o, b)
  }

  /** Maps region `index` (its mmap-able areas). */
  mapRegion(index: number): MappedRegion {
    const i = num('index', index)
    return MappedRegion.fromNative(this.native.mapRegion(i))
  }

  /** Resets the device; `ERR_VFIO_UNSUPPORTED` when it reports no reset method. */
  reset(): void {
    this.native.reset()
  }

  /** {@link Device.reset} on the libuv pool: a reset can take a second; the event loop goes on. */
  async resetAsync(): Promise<void> {
    await this.native.resetAsync()
  }

  /**
   * The devices a PCI hot reset of this device would reset, itself included: everything
   * below the same bridge (a slot or secondary bus reset). `ERR_VFIO_UNSUPPORTED` when
   * the device can be reset neither by slot nor by bus (a device on the root bus).
   */
  hotResetInfo(): HotResetDevice[] {
    return this.native.hotResetInfo()
  }

  /**
   * A PCI hot reset (slot or secondary bus reset) of this device and of every device
   * {@link Device.hotResetInfo} lists; returns them. The kernel allows it only when this
   * device's container holds the group of each: otherwise `ERR_VFIO_PERMISSION` names
   * the missing devices and groups, before the kernel is asked (open a device of each
   * through the same container). Interrupts stay enabled and mapped regions stay valid.
   */
  hotReset(): HotResetDevice[] {
    return this.native.hotReset()
  }

  /** {@link Device.hotReset} on the libuv pool: a bus reset waits for the link; the event loop goes on. */
  async hotResetAsync(): Promise<HotResetDevice[]> {
    return await this.native.hotResetAsync()
  }

  /**
   * Enables `count` vectors of IRQ `index` from `start`, one eventfd each. One
   * `Interrupts` owns an index: enabling it again (or, on PCI, another of INTx, MSI and
   * MSI-X) while it is open throws `ERR_VFIO_BUSY`; close it first.
   */
  enableIrq(index: number, irqOptions?: { start?: number; count?: number }): Interrupts {
    const opts = options<{ start: number; count: number }>('options', irqOptions)
    const i = num('index', index)
    const start = num('start', opts.start ?? 0)
    const count = num('count', opts.count ?? 1)
    return Interrupts.fromNative(this.native.enableIrq(i, start, count), { busMasterOff: () => this.#busMasterOff() })
  }

  /** Enables `count` MSI vectors. */
  enableMsi(count = 1): Interrupts {
    return this.enableIrq(IrqIndex.MSI, { count })
  }

  /** Enables `count` MSI-X vectors (from `start`). */
  enableMsix(count = 1, start = 0): Interrupts {
    return this.enableIrq(IrqIndex.MSIX, { count, start })
  }

  /** Enables INTx. It is automasked: call `unmask()` after handling each interrupt. */
  enableIntx(): Interrupts {
    return this.enableIrq(IrqIndex.INTX, { count: 1 })
  }

  /**
   * Disables IRQ `index` entirely (all vectors); `ERR_VFIO_BUSY` while an `Interrupts`
   * holds it (close that instead).
   */
  disableIrq(index: number): void {
    const i = num('index', index)
    this.native.disableIrq(i)
  }

  /** The largest vector count of INTx, MSI and MSI-X. */
  get maxInterrupts(): number {
    return this.info.maxInterrupts
  }

  /**
   * Width-typed, little-endian access to PCI config space (the config region):
   * `readU8/readU16/readU32(offset)`, `writeU8/writeU16/writeU32(offset, value)`.
   */
  readonly config: PciConfigSpace = PciConfigSpace.fromNative(this)

  /**
   * The PCI capabilities, parsed from config space: the standard list, then the extended
   * one (`kind: 'extended'`, PCI Express config space only), in chain order. A malformed
   * or looping list throws (`ERR_VFIO_OUT_OF_RANGE` / `ERR_VFIO_INVALID_ARGUMENT`).
   */
  capabilities(): PciCapability[] {
    return this.native.capabilities().map(toCapability)
  }

  /** The BARs the device implements, decoded from config space; sizes from the VFIO regions. */
  bars(): PciBar[] {
    return this.native.bars().map(toBar)
  }

  /**
   * What the device's migration driver supports (VFIO migration v2), or `null` when the
   * kernel or the driver has none (vfio-pci without a variant driver). Asks the kernel
   * each time. The device must be open.
   */
  get migration(): MigrationSupport | null {
    return toSupport(this.native.migrationSupport())
  }

  /** The current migration state; `ERR_VFIO_UNSUPPORTED` without migration. */
  get migrationState(): MigrationState {
    return migrationState('migrationState', this.native.migrationState())
  }

  /**
   * Moves the device to `state` (the kernel walks the arcs between); off the JS thread.
   * `ERR_VFIO_UNSUPPORTED` without migration or for a state its flags lack,
   * `ERR_VFIO_INVALID_ARGUMENT` when the kernel knows no path (the device may then be
   * on the way: read {@link Device.migrationState}).
   */
  async setMigrationState(state: MigrationState): Promise<void> {
    await this.native.setMigrationState(migrationState('state', state))
  }

  /** The driver's estimate, in bytes, of the state `'stop-copy'` gives. */
  get migrationDataSize(): number {
    return this.native.migrationDataSize()
  }

  /** In `'pre-copy'`: the bytes left to read (`ERR_VFIO_INVALID_ARGUMENT` in other states). */
  precopyInfo(): PrecopyInfo {
    return this.native.precopyInfo()
  }

  /**
   * Saves the device's state: `'stop-copy'` (from `'running'` the kernel stops it on
   * the way), reads it all, then `'stop'`. The device stays stopped. Off the JS thread.
   */
  async saveState(): Promise<Buffer> {
    return await this.native.saveState()
  }

  /**
   * The device's state as chunks: `'stop-copy'`, the data fd read to its end, then
   * `'stop'` after the last chunk. `Readable.from(device.saveStateStream())` makes a
   * Node stream of it. Stopping early leaves the device in `'stop-copy'`.
   */
  async *saveStateStream(readOptions?: MigrationReadOptions): AsyncGenerator<Buffer, void, undefined> {
    const size = chunkSize(options<MigrationReadOptions>('options', readOptions))
    await this.setMigrationState('stop-copy')
    yield* readChunks(() => this.native, size)
    await this.setMigrationState('stop')
  }

  /**
   * Reads the current data session (`'stop-copy'`, `'pre-copy'`) as chunks until its
   * end (in `'pre-copy'`: the data available now), without changing the state.
   */
  migrationData(readOptions?: MigrationReadOptions): AsyncGenerator<Buffer, void, undefined> {
    const size = chunkSize(options<MigrationReadOptions>('options', readOptions))
    return readChunks(() => this.native, size)
  }

  /**
   * Loads a state {@link Device.saveState} saved on a device of the same type:
   * `'resuming'`, writes `state` (bytes, or chunks of them: an array, an async
   * iterable, a Node Readable), then `'stop'`, where the driver takes it. The device
   * stays stopped: set `'running'` to run it. Off the JS thread.
   */
  async loadState(state: MigrationSource): Promise<void> {
    if (state instanceof ArrayBuffer || ArrayBuffer.isView(state)) {
      await this.native.loadState(bytes('state', state))
      return
    }
    const chunks = chunksOf(state)
    await this.setMigrationState('resuming')
    await writeChunks(() => this.native, chunks)
    await this.setMigrationState('stop')
  }

  /** Writes `data` (bytes or chunks) to the current `'resuming'` session, without changing the state. */
  async writeMigrationData(data: MigrationSource): Promise<void> {
    await writeChunks(() => this.native, chunksOf(data))
  }

  /**
   * Starts device DMA dirty logging of `ranges` (page-aligned) with pages of `pageSize`
   * bytes; returns the page size the device chose. `ERR_VFIO_UNSUPPORTED` when the
   * driver has no DMA logging (vfio-pci without a variant driver).
   */
  startDmaLogging(pageSize: number, ranges: DmaLoggingRange[]): number {
    return this.native.startDmaLogging(num('pageSize', pageSize), rangeList('ranges', ranges, loggingRange))
  }

  /** Stops DMA dirty logging (`ERR_VFIO_INVALID_ARGUMENT` when it is not started). */
  stopDmaLogging(): void {
    this.native.stopDmaLogging()
  }

  /**
   * The pages of `range` the device wrote since the last report (which this clears):
   * a bitmap, bit `i % 8` of byte `i / 8` for page `i`.
   */
  reportDmaLogging(range: DmaLoggingRange, pageSize: number): Buffer {
    return this.native.reportDmaLogging(loggingRange('range', range), num('pageSize', pageSize))
  }

  /**
   * Exports `ranges` of region `index` (a BAR) as a dma-buf; returns its fd, which the
   * caller owns (close it with `fs.closeSync`). `ERR_VFIO_UNSUPPORTED` on kernels
   * without `VFIO_DEVICE_FEATURE_DMA_BUF` (6.12 and older) or drivers without export.
   */
  exportDmaBuf(index: number, ranges: RegionRange[]): number {
    return this.native.exportDmaBuf(num('index', index), rangeList('ranges', ranges, regionRange))
  }

  /** Whether PCI bus mastering is off (an aborted MSI wait says so). */
  #busMasterOff(): boolean {
    return (this.config.readU16(PciConfig.COMMAND) & PciConfig.COMMAND_BUS_MASTER) === 0
  }

  /**
   * `on` (the default): sets bus mastering and memory decoding in the command register,
   * as DMA and MSI need. `false`: clears bus mastering only.
   */
  setBusMaster(on = true): void {
    if (typeof on !== 'boolean') throw new VfioTypeError(`on must be a boolean, got ${describe(on)}`)
    const cmd = this.config.readU16(PciConfig.COMMAND)
    const next = on ? cmd | PciConfig.COMMAND_BUS_MASTER | PciConfig.COMMAND_MEMORY : cmd & ~PciConfig.COMMAND_BUS_MASTER
    if (next !== cmd) this.config.writeU16(PciConfig.COMMAND, next)
  }
}

