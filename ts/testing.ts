/**
 * `vfio-ioctls/testing`: a mock backend for unit tests of drivers. Installed, it takes
 * the place of the native binding behind the same public classes (`Container`,
 * `Device`, `Region`, `MappedRegion`, `DmaBuffer`, `Interrupts`, `sysfs`), so a driver
 * runs unchanged on any OS, without root and without the device. The test declares
 * devices, models their registers with hooks, reads and writes DMA memory as the
 * device would (through the mock IOMMU), and raises interrupts.
 *
 * ```ts
 * import { Container, RegionIndex } from 'vfio-ioctls'
 * import { MockSystem, mockEdu } from 'vfio-ioctls/testing'
 *
 * using sys = MockSystem.install()
 * sys.addDevice(mockEdu())
 * using container = new Container()
 * using device = container.openDevice('0000:00:03.0')
 * using bar0 = device.regions[RegionIndex.BAR0].map()
 * bar0.readU32(0) // 0x010000ed
 * ```
 *
 * The mock answers argument errors with the codes and messages of the native layer
 * (its checks are written once more in TypeScript, and tested against the native ones).
 *
 * @packageDocumentation
 */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'
import { createMockBinding, deviceRead, deviceWrite, findMapping, FLAGS, MOCK_PAGE_SIZE, raiseInterrupt, type DeviceState, type SystemState } from './mock-binding'
import { formatAddress, hex, parseAddressParts } from './mock-checks'
import { useBinding } from './native'
import type { MmapArea } from './region'

export { mockEdu, EDU_REGISTERS, type MockEduOptions } from './mock-edu'

/** One region of a mock device (`MockDeviceSpec.regions`). */
export interface MockRegionSpec {
  /** VFIO region index: 0–5 the BARs, 6 the ROM (7, config space, comes from `config`). */
  index: number
  /** Size in bytes. */
  size: number
  /** `RegionFlags` bits (READ, WRITE; MMAP is set by `mmap`); default READ | WRITE. */
  flags?: number
  /** Whether it can be mapped (`true`: all of it), or only these areas (a sparse-mmap capability). */
  mmap?: boolean | MmapArea[]
  /** What the region holds at first (a ROM's bytes, say); the rest is zero. */
  data?: Uint8Array
  /** A 64-bit memory BAR (it takes the next BAR slot in config space); default 32-bit. */
  bits64?: boolean
  /** A prefetchable memory BAR. */
  prefetchable?: boolean
  /** An I/O-port BAR instead of memory. */
  io?: boolean
}

/** The IRQ indices of a mock device (`MockDeviceSpec.irqs`). */
export interface MockIrqSpec {
  /** INTx (one vector, maskable and automasked); default true. */
  intx?: boolean
  /** MSI vectors; default 1. */
  msi?: number
  /** MSI-X vectors; default 0. */
  msix?: number
  /** The ERR index (AER), one vector; default false. */
  err?: boolean
  /** The REQ index (device requests, `Device`'s `'request'` event), one vector; default true. */
  req?: boolean
}

/** A device declared to the mock system. */
export interface MockDeviceSpec {
  /** PCI address, `DDDD:BB:DD.F` or `BB:DD.F`. */
  address: string
  /** Vendor id. */
  vendor: number
  /** Device id. */
  device: number
  /** 24-bit class code; default 0x00ff00 (unclassified). */
  class?: number
  /** Revision; default 0. */
  revision?: number
  /** Subsystem vendor id; default `vendor`. */
  subsystemVendor?: number
  /** Subsystem device id; default 0. */
  subsystemDevice?: number
  /** IOMMU group; default a group of its own (numbered from 1 in the order declared). */
  group?: number
  /** The BARs and ROM. */
  regions?: MockRegionSpec[]
  /**
   * Config space: 256 or 4096 bytes as the device has it (ids and BAR registers as
   * given); default one made from the ids, the BARs, and an MSI (and MSI-X) capability
   * when the device has those IRQs. The command register starts with memory decoding on.
   */
  config?: Uint8Array
  /** IRQ indices and their vector counts. */
  irqs?: MockIrqSpec
  /** Whether the device has a reset method; default true. */
  reset?: boolean
  /**
   * Whether it sits behind a bridge whose secondary bus can be reset (PCI hot reset);
   * default false: a device on the root bus, like QEMU's edu at 00:03.0, for which
   * `hotResetInfo()` and `hotReset()` throw the kernel's ENODEV as `ERR_VFIO_UNSUPPORTED`.
   * When true, a hot reset affects every declared device on the same bus (same domain
   * and bus number), and the device's container must hold each of their groups.
   */
  hotReset?: boolean
  /** The driver it is bound to at first; default `'vfio-pci'` (openable at once). `null`: none. */
  driver?: string | null
  /** The driver the kernel gives it when it leaves vfio-pci; default none. */
  hostDriver?: string
  /** Models the device: called once with the declared device (register hooks, say). */
  model?: (device: MockDevice, system: MockSystem) => void
}

/** An IOVA range, inclusive. */
export interface MockIovaRange {
  /** First IOVA. */
  start: bigint
  /** Last IOVA. */
  end: bigint
}

/** Vectors `[start, start + count)` of one IRQ index. */
export interface MockVectors {
  /** The first vector. */
  start: number
  /** How many. */
  count: number
}

/** One mapping of the mock IOMMU. */
export interface MockMapping {
  /** Where devices see it. */
  iova: bigint
  /** Its size in bytes. */
  size: number
}

/** Options of {@link MockSystem.install}. */
export interface MockSystemOptions {
  /**
   * The IOMMU's usable IOVA ranges (inclusive); default `[0, 0xfedfffff]` and
   * `[0xfef00000, 2^39 - 1]`, the MSI window reserved between them, as on x86.
   */
  iovaRanges?: MockIovaRange[]
  /** Bytes of DMA memory that can be mapped at once (`RLIMIT_MEMLOCK`); default 64 MiB. */
  dmaLimit?: number
  /**
   * The free huge pages of each size (`allocateDma`'s `hugePages`); default none: a size
   * not given is one the mock kernel does not offer, and asking for it throws
   * `ERR_VFIO_UNSUPPORTED` as the core does when the kernel has no such pool. Too few
   * free pages throw `ERR_VFIO_OUT_OF_RANGE` with the core's message (how many are free,
   * how to reserve more). A buffer takes its pages until it is closed.
   */
  hugePages?: MockHugePages
}

/** Free huge pages by size (`MockSystemOptions.hugePages`); a size left out has no pool. */
export interface MockHugePages {
  /** Free 2 MiB pages. */
  '2M'?: number
  /** Free 1 GiB pages. */
  '1G'?: number
}

/** How a register hook sees one access. */
export interface MockRegisterOptions {
  /** The register's width in bytes; default 4. */
  width?: 1 | 2 | 4 | 8
}

/**
 * A handler of every access to one region of a mock device: accesses of at most 8 bytes,
 * bulk reads and writes split into naturally aligned pieces of 4, 2 and 1 bytes as
 * vfio-pci splits them.
 */
export interface MockAccessHandler {
  /** Answers a read of `width` bytes at `offset`. */
  read(offset: number, width: 1 | 2 | 4 | 8): number | bigint
  /** Takes a write of `width` bytes at `offset`. */
  write(offset: number, width: 1 | 2 | 4 | 8, value: bigint): void
}

/**
 * A DMA access of a mock device to an IOVA no mapping of the mock IOMMU covers (what a
 * real IOMMU reports as a fault); `code` `ERR_VFIO_IO`.
 */
export class MockDmaFault extends VfioError {
  /** The first IOVA of the access that is not mapped. */
  readonly iova: bigint

  /** @internal Made by {@link MockDma}. */
  constructor(iova: bigint, op: string) {
    super(ErrorCode.IO, `IOMMU fault: the device's DMA ${op} of iova ${hex(iova)} hits no mapping (allocate a DmaBuffer there)`, { syscall: 'dma' })
    this.name = 'MockDmaFault'
    this.iova = iova
  }
}

/** The device side of DMA: what a device reads and writes at IOVAs, through the mock IOMMU. */
export class MockDma {
  readonly #sys: SystemState

  /** @internal Made by {@link MockSystem}. */
  constructor(sys: SystemState) {
    this.#sys = sys
  }

  #walk(iova: bigint | number, length: number, op: string, each: (mem: Buffer, at: number, done: number, n: number) => void): void {
    let at = BigInt(iova)
    let done = 0
    while (done < length) {
      const m = findMapping(this.#sys, at)
      if (m === undefined || !m.buffer.mapped) throw new MockDmaFault(at, op)
      const off = Number(at - m.iova)
      const n = Math.min(length - done, m.size - off)
      each(m.memory, off, done, n)
      done += n
      at += BigInt(n)
    }
  }

  /** Reads `length` bytes at `iova` as the device would; throws {@link MockDmaFault} where nothing is mapped. */
  read(iova: bigint | number, length: number): Buffer {
    const out = Buffer.alloc(length)
    this.#walk(iova, length, 'read', (mem, at, done, n) => mem.copy(out, done, at, at + n))
    return out
  }

  /** Writes `data` at `iova` as the device would; throws {@link MockDmaFault} where nothing is mapped (nothing is written then). */
  write(iova: bigint | number, data: Uint8Array): void {
    this.#walk(iova, data.length, 'write', () => {})
    this.#walk(iova, data.length, 'write', (mem, at, done, n) => mem.set(data.subarray(done, done + n), at))
  }

  /** Whether `[iova, iova + length)` is mapped. */
  mapped(iova: bigint | number, length = 1): boolean {
    try {
      this.#walk(iova, length, 'probe', () => {})
      return true
    } catch {
      return false
    }
  }
}

/** A device declared to a {@link MockSystem}: its registers, interrupts and state, as the device sees them. */
export class MockDevice {
  readonly #state: DeviceState
  readonly #system: MockSystem

  /** @internal Made by {@link MockSystem.addDevice}. */
  constructor(state: DeviceState, system: MockSystem) {
    this.#state = state
    this.#system = system
  }

  /** The PCI address, normalized (`0000:00:03.0`). */
  get address(): string {
    return this.#state.address
  }

  /** The IOMMU group. */
  get group(): number {
    return this.#state.group
  }

  /** The driver it is bound to now (`undefined`: none). */
  get driver(): string | undefined {
    return this.#state.driver
  }

  /** How many times it was reset. */
  get resets(): number {
    return this.#state.resets
  }

  /** The system it belongs to. */
  get system(): MockSystem {
    return this.#system
  }

  /** Whether the bus-mastering bit of its command register is set (it can DMA and send MSI). */
  get busMaster(): boolean {
    return (this.config.readUInt16LE(0x04) & 0x4) !== 0
  }

  /** Config space as the device holds it (writes here bypass vfio-pci's read-only fields). */
  get config(): Buffer {
    return this.#region(7).memory
  }

  #region(index: number): { memory: Buffer; info: Binding.RegionInfo } {
    const r = this.#state.regions[index]
    if (r === undefined || !r.info.present) {
      throw new VfioError(ErrorCode.OUT_OF_RANGE, `mock device ${this.address} has no region ${index}`)
    }
    return r
  }

  /**
   * Calls `fn` before every read that touches the register at `offset` of region `index`;
   * what it returns (a number or bigint) is stored there and read; `undefined` leaves
   * the register as it is.
   */
  onRead(index: number, offset: number, fn: () => number | bigint | undefined, options: MockRegisterOptions = {}): this {
    this.#hook(index, offset, options.width ?? 4, { read: fn })
    return this
  }

  /**
   * Calls `fn(value)` after every write that touches the register at `offset` of region
   * `index`, with the register's value after the write (already stored: `fn` may change it).
   */
  onWrite(index: number, offset: number, fn: (value: bigint) => void, options: MockRegisterOptions = {}): this {
    this.#hook(index, offset, options.width ?? 4, { write: fn })
    return this
  }

  #hook(index: number, offset: number, width: 1 | 2 | 4 | 8, fns: { read?: () => number | bigint | undefined; write?: (value: bigint) => void }): void {
    const r = this.#region(index)
    if (!Number.isInteger(offset) || offset < 0 || offset + width > r.info.size || offset % width !== 0) {
      throw new VfioError(ErrorCode.OUT_OF_RANGE, `register ${hex(offset)} (${width} bytes) is not an aligned register of region ${index} (${hex(r.info.size)} bytes)`)
    }
    const list = this.#state.hooks.get(index) ?? []
    list.push({ offset, width, ...fns })
    this.#state.hooks.set(index, list)
  }

  /** Hands every access to region `index` to `handler` (hooks and the backing store are then unused). */
  handle(index: number, handler: MockAccessHandler): this {
    this.#region(index)
    this.#state.handlers.set(index, handler)
    return this
  }

  /** Reads the register state of region `index` directly, as the device sees it (no hooks run). */
  peek(index: number, offset: number, length: number): Buffer {
    const r = this.#region(index)
    return Buffer.from(r.memory.subarray(offset, offset + length))
  }

  /** Sets the register state of region `index` directly (no hooks run). */
  poke(index: number, offset: number, data: Uint8Array): void {
    this.#region(index).memory.set(data, offset)
  }

  /** Reads 32 bits of region `index` directly (no hooks run). */
  peekU32(index: number, offset: number): number {
    return this.#region(index).memory.readUInt32LE(offset)
  }

  /** Sets 32 bits of region `index` directly (no hooks run). */
  pokeU32(index: number, offset: number, value: number): void {
    this.#region(index).memory.writeUInt32LE(value >>> 0, offset)
  }

  /** A read of region `index` as the driver's would be (hooks run), for a model's own use. */
  read(index: number, offset: number, length: number): Buffer {
    this.#region(index)
    return deviceRead(this.#state, index, offset, length)
  }

  /** A write to region `index` as the driver's would be (hooks run). */
  write(index: number, offset: number, data: Uint8Array): void {
    this.#region(index)
    deviceWrite(this.#state, index, offset, data)
  }

  /**
   * Raises `vector` of IRQ `index` (`IrqIndex`): it reaches the `Interrupts` that holds
   * the vector on a later turn of the event loop, as the native poller delivers. Returns
   * whether it was signalled: `false` when no live `Interrupts` has the vector enabled,
   * for MSI/MSI-X without bus mastering (the device cannot send them), and for a masked
   * INTx (it fires when unmasked).
   */
  raise(index: number, vector = 0): boolean {
    if (this.#state.irqs[index] === undefined) {
      throw new VfioError(ErrorCode.OUT_OF_RANGE, `mock device ${this.address} has no IRQ index ${index}`)
    }
    return raiseInterrupt(this.#state, index, vector)
  }

  /** The IRQ index enabled now by a live `Interrupts` with its vectors, by index (MSI first, then MSI-X, then INTx). */
  enabledIrq(index: number): MockVectors | undefined {
    const c = this.#state.claims.get(index)
    return c === undefined ? undefined : { start: c.start, count: c.count }
  }

  /** Calls `fn` on each reset of the device (after config space is restored). */
  onReset(fn: () => void): this {
    this.#state.onReset.push(fn)
    return this
  }
}

/** The system installed now, if any. */
let current: MockSystem | undefined

/**
 * A mock system: declared devices, an IOMMU per container, interrupts. While installed,
 * every class of `vfio-ioctls` runs against it instead of the kernel.
 */
export class MockSystem {
  readonly #state: SystemState
  readonly #binding: ReturnType<typeof createMockBinding>
  readonly #devices = new Map<string, MockDevice>()
  #previous: ReturnType<typeof useBinding>
  #installed = false
  #nextGroup = 1
  /** The device side of DMA, through this system's IOMMU mappings. */
  readonly dma: MockDma

  private constructor(options: MockSystemOptions) {
    const ranges = options.iovaRanges ?? [
      { start: 0n, end: 0xfedf_ffffn },
      { start: 0xfef0_0000n, end: (1n << 39n) - 1n },
    ]
    this.#state = {
      devices: new Map(),
      groupOwners: new Map(),
      containers: new Set(),
      iovaRanges: ranges.map((r) => ({ start: r.start, end: r.end })),
      dmaLimit: options.dmaLimit ?? 64 << 20,
      dmaAllocated: 0,
      hugePages: { ...options.hugePages },
      nextContainer: 1,
    }
    this.#binding = createMockBinding(this.#state)
    this.dma = new MockDma(this.#state)
  }

  /**
   * Makes a system and installs it: from now on the library's classes use it. Throws
   * `ERR_VFIO_BUSY` while another one is installed (uninstall that first).
   */
  static install(options: MockSystemOptions = {}): MockSystem {
    if (current !== undefined) throw new VfioError(ErrorCode.BUSY, 'a MockSystem is installed already: uninstall() it first')
    const sys = new MockSystem(options)
    sys.#previous = useBinding(sys.#binding)
    sys.#installed = true
    current = sys
    return sys
  }

  /** The system installed now, if any. */
  static get current(): MockSystem | undefined {
    return current
  }

  /** Whether this system is installed. */
  get installed(): boolean {
    return this.#installed
  }

  /**
   * Restores the binding there was before (the native one). Handles made through the
   * mock keep working against it; new ones use the real binding. Twice is harmless.
   */
  uninstall(): void {
    if (!this.#installed) return
    this.#installed = false
    useBinding(this.#previous)
    current = undefined
  }

  /** `using` support: the same as {@link MockSystem.uninstall}. */
  [Symbol.dispose](): void {
    this.uninstall()
  }

  /** @internal The binding this system installs (the native binding's interface, implemented in JavaScript). */
  get binding(): typeof Binding {
    return this.#binding
  }

  /** The page size the mock reports on every machine (4096). */
  get pageSize(): number {
    return MOCK_PAGE_SIZE
  }

  /** Declares a device; throws `ERR_VFIO_INVALID_ARGUMENT` for a malformed spec and `ERR_VFIO_BUSY` for an address taken. */
  addDevice(spec: MockDeviceSpec): MockDevice {
    const parts = parseAddressParts(spec.address)
    if (parts === undefined) throw new VfioError(ErrorCode.INVALID_ARGUMENT, `mock device address ${JSON.stringify(spec.address)} is not a PCI address (DDDD:BB:DD.F)`)
    const address = formatAddress(parts)
    if (this.#state.devices.has(address)) throw new VfioError(ErrorCode.BUSY, `a mock device at ${address} exists already`)
    const state = buildDevice(spec, address, spec.group ?? this.#freeGroup())
    this.#state.devices.set(address, state)
    const device = new MockDevice(state, this)
    this.#devices.set(address, device)
    spec.model?.(device, this)
    return device
  }

  #freeGroup(): number {
    const used = new Set([...this.#state.devices.values()].map((d) => d.group))
    while (used.has(this.#nextGroup)) this.#nextGroup++
    return this.#nextGroup++
  }

  /** The declared device at `address`; throws `ERR_VFIO_NOT_FOUND`. */
  device(address: string): MockDevice {
    const parts = parseAddressParts(address)
    const d = parts === undefined ? undefined : this.#devices.get(formatAddress(parts))
    if (d === undefined) throw new VfioError(ErrorCode.NOT_FOUND, `no mock device at ${address}`)
    return d
  }

  /** Every declared device, by address. */
  get devices(): MockDevice[] {
    return [...this.#devices.values()].sort((a, b) => (a.address < b.address ? -1 : 1))
  }

  /** The free huge pages of each size the mock kernel offers now (`MockSystemOptions.hugePages`). */
  get freeHugePages(): MockHugePages {
    return { ...this.#state.hugePages }
  }

  /** Every IOMMU mapping of every container now: what devices can reach. */
  mappings(): MockMapping[] {
    const out: MockMapping[] = []
    for (const c of this.#state.containers) for (const m of c.mappings) out.push({ iova: m.iova, size: m.size })
    return out.sort((a, b) => (a.iova < b.iova ? -1 : 1))
  }
}

function fail(message: string): never {
  throw new VfioError(ErrorCode.INVALID_ARGUMENT, message)
}

/** The device state of a spec: regions, config space, IRQ table. */
function buildDevice(spec: MockDeviceSpec, address: string, group: number): DeviceState {
  const irqSpec = spec.irqs ?? {}
  const msi = irqSpec.msi ?? 1
  const msix = irqSpec.msix ?? 0
  if (![0, 1, 2, 4, 8, 16, 32].includes(msi)) fail(`msi must be 0 or a power of two up to 32, got ${msi}`)
  if (!Number.isInteger(msix) || msix < 0 || msix > 2048) fail(`msix must be 0 to 2048, got ${msix}`)
  const specs = spec.regions ?? []
  const config = Buffer.alloc(spec.config?.length === 4096 ? 4096 : 256)
  if (spec.config !== undefined) {
    if (spec.config.length !== 256 && spec.config.length !== 4096) fail(`config must be 256 or 4096 bytes, got ${spec.config.length}`)
    config.set(spec.config)
  } else {
    config.writeUInt16LE(spec.vendor, 0x00)
    config.writeUInt16LE(spec.device, 0x02)
    config.writeUInt16LE(0x0002, 0x04)
    config.writeUInt8(spec.revision ?? 0, 0x08)
    config.writeUIntLE((spec.class ?? 0x00ff00) & 0xffffff, 0x09, 3)
    config.writeUInt16LE(spec.subsystemVendor ?? spec.vendor, 0x2c)
    config.writeUInt16LE(spec.subsystemDevice ?? 0, 0x2e)
    config.writeUInt8(irqSpec.intx === false ? 0 : 1, 0x3d)
    let base = 0xfe00_0000
    for (const r of specs) {
      if (r.index > 5) continue
      const reg = r.io ? 0x1 : (r.bits64 ? 0x4 : 0) | (r.prefetchable ? 0x8 : 0)
      const size = Math.max(r.size, 16)
      base = Math.ceil(base / size) * size
      config.writeUInt32LE(((r.io ? base & 0xffff : base) | reg) >>> 0, 0x10 + r.index * 4)
      base += size
    }
    const caps: [number, Buffer][] = []
    if (msi > 0) {
      const c = Buffer.alloc(14)
      c.writeUInt8(0x05, 0)
      c.writeUInt16LE(0x80 | (Math.log2(msi) << 1), 2)
      caps.push([0x40, c])
    }
    if (msix > 0) {
      const bar = specs.find((r) => r.index <= 5 && !r.io)
      if (bar === undefined) fail('msix needs a memory BAR for its table')
      const c = Buffer.alloc(12)
      c.writeUInt8(0x11, 0)
      c.writeUInt16LE(msix - 1, 2)
      const tableBytes = Math.ceil((msix * 16) / 4096) * 4096
      c.writeUInt32LE(bar.index, 4)
      c.writeUInt32LE((tableBytes | bar.index) >>> 0, 8)
      caps.push([0x50, c])
    }
    if (caps.length > 0) {
      config.writeUInt16LE(0x10, 0x06)
      config.writeUInt8(caps[0]?.[0] ?? 0, 0x34)
      caps.forEach(([at, c], i) => {
        c.writeUInt8(caps[i + 1]?.[0] ?? 0, 1)
        config.set(c, at)
      })
    }
  }
  const regions: DeviceState['regions'] = []
  for (let index = 0; index < 9; index++) {
    const r = specs.find((s) => s.index === index)
    if (index === 7) {
      regions.push({ info: regionInfo(7, config.length, FLAGS.REGION_READ | FLAGS.REGION_WRITE, false, index), memory: config })
    } else if (r === undefined) {
      regions.push({ info: regionInfo(index, 0, 0, false, index), memory: Buffer.alloc(0) })
    } else {
      if (!Number.isSafeInteger(r.size) || r.size <= 0 || r.size > 256 << 20) fail(`region ${index}: size must be 1 to 256 MiB, got ${r.size}`)
      const flags = r.flags ?? FLAGS.REGION_READ | FLAGS.REGION_WRITE
      const info = regionInfo(index, r.size, flags, r.mmap !== undefined && r.mmap !== false, index)
      if (Array.isArray(r.mmap)) {
        info.flags |= FLAGS.REGION_CAPS
        info.caps = [{ kind: 'sparse-mmap', areas: r.mmap.map((a) => ({ offset: a.offset, size: a.size })) }]
      }
      const memory = Buffer.alloc(r.size)
      if (r.data !== undefined) memory.set(r.data.subarray(0, r.size))
      regions.push({ info, memory })
    }
  }
  for (const r of specs) if (r.index > 8 || r.index === 7 || !Number.isInteger(r.index) || r.index < 0) fail(`region index ${r.index}: declare BARs 0-5 and the ROM (6); config space is \`config\``)
  const irq = (index: number, count: number, flags: number): Binding.IrqInfo => ({
    index,
    flags: count > 0 ? flags : flags & FLAGS.IRQ_EVENTFD,
    count,
    eventfd: (flags & FLAGS.IRQ_EVENTFD) !== 0,
    maskable: count > 0 && (flags & FLAGS.IRQ_MASKABLE) !== 0,
    automasked: count > 0 && (flags & FLAGS.IRQ_AUTOMASKED) !== 0,
  })
  const intx = irqSpec.intx === false ? 0 : 1
  const irqs = [
    irq(0, intx, FLAGS.IRQ_EVENTFD | FLAGS.IRQ_MASKABLE | FLAGS.IRQ_AUTOMASKED),
    irq(1, msi, FLAGS.IRQ_EVENTFD | FLAGS.IRQ_NORESIZE),
    irq(2, msix, FLAGS.IRQ_EVENTFD | FLAGS.IRQ_NORESIZE),
    irq(3, irqSpec.err === true ? 1 : 0, FLAGS.IRQ_EVENTFD),
    irq(4, irqSpec.req === false ? 0 : 1, FLAGS.IRQ_EVENTFD),
  ]
  const initialConfig = Buffer.from(config)
  const state: DeviceState = {
    address,
    vendor: config.readUInt16LE(0),
    device: config.readUInt16LE(2),
    class: config.readUIntLE(0x09, 3),
    revision: config.readUInt8(0x08),
    subsystemVendor: config.readUInt16LE(0x2c),
    subsystemDevice: config.readUInt16LE(0x2e),
    group,
    driver: spec.driver === null ? undefined : (spec.driver ?? 'vfio-pci'),
    driverOverride: spec.driver === undefined || spec.driver === 'vfio-pci' ? 'vfio-pci' : undefined,
    hostDriver: spec.hostDriver,
    regions,
    irqs,
    canReset: spec.reset !== false,
    hotReset: spec.hotReset === true,
    resets: 0,
    hooks: new Map(),
    handlers: new Map(),
    claims: new Map(),
    opens: 0,
    onReset: [],
    onClaimsChanged: [],
  }
  // A function reset restores config space (vfio-pci restores the BARs; the command register is cleared but for what it saved).
  state.onReset.push(() => {
    const cmd = config.readUInt16LE(0x04)
    config.set(initialConfig)
    config.writeUInt16LE(cmd & 0x0006, 0x04)
  })
  return state
}

function regionInfo(index: number, size: number, flags: number, mmap: boolean, _i: number): Binding.RegionInfo {
  const f = size > 0 ? flags | (mmap ? FLAGS.REGION_MMAP : 0) : 0
  return {
    index,
    present: size > 0,
    flags: f,
    size,
    offset: index * 0x100_0000_0000,
    readable: (f & FLAGS.REGION_READ) !== 0,
    writable: (f & FLAGS.REGION_WRITE) !== 0,
    mappable: (f & FLAGS.REGION_MMAP) !== 0,
    caps: [],
  }
}
