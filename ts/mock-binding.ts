/**
 * The mock backend's binding: a JavaScript implementation of the native binding's
 * interface (`typeof import('../native/binding')`), over devices a test declares. It is
 * typed against that interface, so a change of the binding that the mock does not
 * follow fails to compile. The public side is `ts/testing.ts`.
 */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'
import {
  bigintToU64,
  busy,
  closed,
  closedMessage,
  formatAddress,
  hex,
  invalid,
  mockError,
  numberOrBigintToU64,
  outOfRange,
  parseAddressArg,
  parseAddressParts,
  toFd,
  toOptText,
  toText,
  toU32,
  toU64,
  unsupported,
} from './mock-checks'
import { packLayout } from './device-layout'
import { MIGRATION_STATES } from './migration'
import { FAST_ACCESSOR_NAMES, type NativeBinding } from './native'

/** The page size the mock reports, on every machine. */
export const MOCK_PAGE_SIZE = 4096

const REGION_READ = 1
const REGION_WRITE = 2
const REGION_MMAP = 4
const REGION_CAPS = 8
const IRQ_EVENTFD = 1
const IRQ_MASKABLE = 2
const IRQ_AUTOMASKED = 4
const IRQ_NORESIZE = 8
const CONFIG_INDEX = 7
const INTX = 0
const MSI = 1
const MSIX = 2
const COMMAND = 0x04
const COMMAND_MEMORY = 0x2
const COMMAND_BUS_MASTER = 0x4
const IRQ_NAMES = ['INTx', 'MSI', 'MSI-X', 'ERR', 'REQ']

/** The core's `irq_index_name`: `MSI (index 1)`. */
function irqName(index: number): string {
  const name = IRQ_NAMES[index]
  return name === undefined ? `IRQ index ${index}` : `${name} (index ${index})`
}

/** The core's name of an accessor (`read_u32`), which its range and alignment errors carry. */
function coreOp(op: string): string {
  return op.replace(/([A-Z])/g, (c) => `_${c.toLowerCase()}`)
}

const NOT_FOUND_HINT = ' (check `vfio-ioctls list` or `lspci -D` for the devices present)'

/** A UUID in canonical form (the core's `is_mdev_uuid`). */
const MDEV_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** `VfioError::NoMigrationDataFd`'s message. */
const NO_DATA_FD = 'VFIO migration data fd is not present (set PRE_COPY or STOP_COPY to save the device state, RESUMING to load one, first)'

/** The binding's conversion of a range's two u64 fields (`first`, then `length`). */
function u64Fields(op: string, first: number, length: number, firstName: string): void {
  toU64(op, firstName, first)
  toU64(op, 'length', length)
}

/** The binding's `state_of`: a state name, or its `ERR_VFIO_INVALID_ARGUMENT`. */
function migrationStateName(op: string, name: string): string {
  if (!(MIGRATION_STATES as readonly string[]).includes(name)) throw invalid(op, `${JSON.stringify(name)} is not a migration state; expected one of ${MIGRATION_STATES.join(', ')}`)
  return name
}

/** One region of a declared device. */
export interface RegionState {
  info: Binding.RegionInfo
  /** Backing store: what is read where no hook answers. */
  memory: Buffer
}

/** A hook on one register of a region. */
export interface RegisterHook {
  offset: number
  width: 1 | 2 | 4 | 8
  read?: () => number | bigint | undefined
  write?: (value: bigint) => void
}

/** A handler of every access to a region (accesses of at most 8 bytes, split like vfio-pci). */
export interface AccessHandler {
  read(offset: number, width: 1 | 2 | 4 | 8): number | bigint
  write(offset: number, width: 1 | 2 | 4 | 8, value: bigint): void
}

/** The vectors one live `Interrupts` holds, and their eventfd counters. */
export interface ClaimState {
  index: number
  start: number
  count: number
  pending: number[]
  masked: boolean[]
  /** A level interrupt raised while masked: it fires again on unmask. */
  level: boolean[]
  callback: ((vector: number, count: number) => void) | undefined
  flushQueued: boolean
  /** The waiter token of each vector `shareVector` handed over, by vector offset. */
  shared: (number | undefined)[]
}

/** A device declared to the mock system. */
export interface DeviceState {
  address: string
  vendor: number
  device: number
  class: number
  revision: number
  subsystemVendor: number
  subsystemDevice: number
  group: number
  driver: string | undefined
  driverOverride: string | undefined
  /** The driver the kernel picks when the device is released from vfio-pci. */
  hostDriver: string | undefined
  regions: RegionState[]
  irqs: Binding.IrqInfo[]
  canReset: boolean
  /**
   * Whether a bridge above it can reset its bus (`MockDeviceSpec.hotReset`): a hot reset
   * then resets every declared device on its bus; otherwise the kernel's ENODEV.
   */
  hotReset: boolean
  resets: number
  hooks: Map<number, RegisterHook[]>
  handlers: Map<number, AccessHandler>
  claims: Map<number, ClaimState>
  /** Opens alive (device handles, mapped regions, interrupts), for `held` checks. */
  opens: number
  onReset: (() => void)[]
  onClaimsChanged: (() => void)[]
}

/** One DMA mapping in a mock container's IOMMU. */
export interface MappingState {
  iova: bigint
  size: number
  memory: Buffer
  buffer: DmaState
}

/** What a mock DMA buffer shares with its mapping. */
export interface DmaState {
  mapped: boolean
}

/** The huge page pools of the mock system: free pages by size name (`'2M'`, `'1G'`); a size not listed has no pool. */
export type HugePagePools = Partial<Record<'2M' | '1G', number>>

/** A container's IOMMU context. */
export interface ContainerState {
  id: number
  groups: Map<number, number>
  mappings: MappingState[]
}

/** Everything the mock system holds. */
export interface SystemState {
  devices: Map<string, DeviceState>
  /** Which container holds each attached group. */
  groupOwners: Map<number, ContainerState>
  containers: Set<ContainerState>
  iovaRanges: Binding.IovaRange[]
  dmaLimit: number
  dmaAllocated: number
  /** Free huge pages by size; a size absent is one the mock kernel does not offer. */
  hugePages: HugePagePools
  nextContainer: number
}

/** The IOMMU mappings of every container, for the device side of DMA. */
export function findMapping(sys: SystemState, iova: bigint): MappingState | undefined {
  for (const c of sys.containers) {
    for (const m of c.mappings) if (iova >= m.iova && iova < m.iova + BigInt(m.size)) return m
  }
  return undefined
}

function sysfsPath(address: string): string {
  const p = parseAddressParts(address)
  const root = p === undefined ? 'pci0000:00' : `pci${p.domain.toString(16).padStart(4, '0')}:${p.bus.toString(16).padStart(2, '0')}`
  return `/sys/devices/${root}/${address}`
}

// --- register access --------------------------------------------------------------

function readWidth(mem: Buffer, offset: number, width: number): bigint {
  switch (width) {
    case 1:
      return BigInt(mem.readUInt8(offset))
    case 2:
      return BigInt(mem.readUInt16LE(offset))
    case 4:
      return BigInt(mem.readUInt32LE(offset))
    default:
      return mem.readBigUInt64LE(offset)
  }
}

function writeWidth(mem: Buffer, offset: number, width: number, value: bigint): void {
  const mask = (1n << BigInt(width * 8)) - 1n
  const v = value & mask
  switch (width) {
    case 1:
      mem.writeUInt8(Number(v), offset)
      break
    case 2:
      mem.writeUInt16LE(Number(v), offset)
      break
    case 4:
      mem.writeUInt32LE(Number(v), offset)
      break
    default:
      mem.writeBigUInt64LE(v, offset)
  }
}

/** vfio-pci's split of a bulk access: naturally aligned pieces of 4, 2 or 1 bytes. */
function pieces(offset: number, length: number): [number, 1 | 2 | 4][] {
  const out: [number, 1 | 2 | 4][] = []
  let o = offset
  const end = offset + length
  while (o < end) {
    const left = end - o
    const w: 1 | 2 | 4 = left >= 4 && o % 4 === 0 ? 4 : left >= 2 && o % 2 === 0 ? 2 : 1
    out.push([o, w])
    o += w
  }
  return out
}

function overlaps(aOff: number, aLen: number, bOff: number, bLen: number): boolean {
  return aOff < bOff + bLen && bOff < aOff + aLen
}

/** Reads `[offset, offset + length)` of region `index` as the device answers it. */
export function deviceRead(dev: DeviceState, index: number, offset: number, length: number, width?: 1 | 2 | 4 | 8): Buffer {
  const region = dev.regions[index]
  if (region === undefined) return Buffer.alloc(length)
  const handler = dev.handlers.get(index)
  if (handler !== undefined) {
    const out = Buffer.alloc(length)
    const parts: [number, 1 | 2 | 4 | 8][] = width !== undefined ? [[offset, width]] : pieces(offset, length)
    for (const [o, w] of parts) writeWidth(out, o - offset, w, BigInt(handler.read(o, w)))
    return out
  }
  for (const hook of dev.hooks.get(index) ?? []) {
    if (hook.read !== undefined && overlaps(offset, length, hook.offset, hook.width)) {
      const v = hook.read()
      if (v !== undefined) writeWidth(region.memory, hook.offset, hook.width, BigInt(v))
    }
  }
  return Buffer.from(region.memory.subarray(offset, offset + length))
}

/** Writes `data` at `offset` of region `index` as the device takes it. */
export function deviceWrite(dev: DeviceState, index: number, offset: number, data: Uint8Array, width?: 1 | 2 | 4 | 8): void {
  const region = dev.regions[index]
  if (region === undefined) return
  const handler = dev.handlers.get(index)
  const src = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  if (handler !== undefined) {
    const parts: [number, 1 | 2 | 4 | 8][] = width !== undefined ? [[offset, width]] : pieces(offset, data.length)
    for (const [o, w] of parts) handler.write(o, w, readWidth(src, o - offset, w))
    return
  }
  if (index === CONFIG_INDEX) configWrite(region.memory, offset, src)
  else region.memory.set(src, offset)
  for (const hook of dev.hooks.get(index) ?? []) {
    if (hook.write !== undefined && overlaps(offset, data.length, hook.offset, hook.width)) {
      hook.write(readWidth(region.memory, hook.offset, hook.width))
    }
  }
}

/** Config space as vfio-pci lets a user write it: ids, class, header type, BARs and the capability pointer are read-only. */
function configWrite(config: Buffer, offset: number, data: Buffer): void {
  for (let i = 0; i < data.length; i++) {
    const at = offset + i
    const readOnly = at < 0x04 || (at >= 0x08 && at < 0x0c) || at === 0x0e || (at >= 0x10 && at < 0x28) || (at >= 0x2c && at < 0x30) || at === 0x34
    if (!readOnly) config[at] = data[i] ?? 0
  }
}

// --- PCI config parsing, as the core does it ---------------------------------------

function parseCapabilities(config: Buffer): Binding.PciCapabilityInfo[] {
  const out: Binding.PciCapabilityInfo[] = []
  const status = config.readUInt16LE(0x06)
  if ((status & 0x10) !== 0) {
    let at = config.readUInt8(0x34) & 0xfc
    const seen = new Set<number>()
    while (at !== 0) {
      if (at < 0x40 || at + 2 > 256) throw outOfRange('PCI capabilities', `capability pointer ${hex(at)} lies outside [0x40, 0x100)`)
      if (seen.has(at)) throw invalid('PCI capabilities', `the capability list loops at ${hex(at)}`)
      seen.add(at)
      out.push(capabilityAt(config, at))
      at = config.readUInt8(at + 1) & 0xfc
    }
  }
  if (config.length >= 4096 && config.readUInt32LE(0x100) !== 0 && config.readUInt32LE(0x100) !== 0xffff_ffff) {
    let at = 0x100
    const seen = new Set<number>()
    while (at !== 0) {
      if (at < 0x100 || at + 4 > config.length) throw outOfRange('PCI extended capabilities', `capability pointer ${hex(at)} lies outside [0x100, 0x1000)`)
      if (seen.has(at)) throw invalid('PCI extended capabilities', `the extended capability list loops at ${hex(at)}`)
      seen.add(at)
      const header = config.readUInt32LE(at)
      out.push({ kind: 'extended', id: header & 0xffff, offset: at, version: (header >>> 16) & 0xf })
      at = (header >>> 20) & 0xffc
    }
  }
  return out
}

function capabilityAt(c: Buffer, at: number): Binding.PciCapabilityInfo {
  const id = c.readUInt8(at)
  const byte = (o: number): number => (at + o < c.length ? c.readUInt8(at + o) : 0)
  const word = (o: number): number => (at + o + 2 <= c.length ? c.readUInt16LE(at + o) : 0)
  const dword = (o: number): number => (at + o + 4 <= c.length ? c.readUInt32LE(at + o) : 0)
  switch (id) {
    case 0x05: {
      const control = word(2)
      return { kind: 'msi', id, offset: at, multipleMessageCapable: (control >> 1) & 0x7, bits64: (control & 0x80) !== 0, perVectorMasking: (control & 0x100) !== 0 }
    }
    case 0x11: {
      const table = dword(4)
      const pba = dword(8)
      return { kind: 'msix', id, offset: at, tableSize: (word(2) & 0x7ff) + 1, tableBir: table & 7, tableOffset: (table & ~7) >>> 0, pbaBir: pba & 7, pbaOffset: (pba & ~7) >>> 0 }
    }
    case 0x10:
      return { kind: 'pcie', id, offset: at, version: word(2) & 0xf, deviceType: (word(2) >> 4) & 0xf }
    case 0x01:
      return { kind: 'pm', id, offset: at, version: word(2) & 0x7 }
    case 0x09:
      return { kind: 'vendor', id, offset: at, length: byte(2) }
    default:
      return { kind: 'unknown', id, offset: at }
  }
}

function decodeBars(dev: DeviceState): Binding.PciBarInfo[] {
  const c = dev.regions[CONFIG_INDEX]?.memory
  if (c === undefined) return []
  const out: Binding.PciBarInfo[] = []
  for (let i = 0; i < 6; i++) {
    const reg = c.readUInt32LE(0x10 + i * 4)
    const size = dev.regions[i]?.info.size ?? 0
    const memory = (reg & 1) === 0
    const bits64 = memory && ((reg >> 1) & 3) === 2
    if (size > 0) {
      const high = bits64 && i < 5 ? BigInt(c.readUInt32LE(0x14 + i * 4)) << 32n : 0n
      const address = memory ? high | BigInt((reg & ~0xf) >>> 0) : BigInt((reg & ~0x3) >>> 0)
      out.push({ index: i, memory, bits64, prefetchable: memory && (reg & 8) !== 0, address, size })
    }
    if (bits64) i++
  }
  return out
}

// --- the binding --------------------------------------------------------------------

/** How many live handles keep one open of a device (its handle, mapped regions, interrupts). */
interface OpenState {
  dev: DeviceState
  container: ContainerState
  refs: number
}

/** Builds the binding over `sys`. Every class is made here, closing over `sys`. */
export function createMockBinding(sys: SystemState): NativeBinding {
  const release = (open: OpenState): void => {
    open.refs--
    if (open.refs > 0) return
    open.dev.opens--
    const c = open.container
    const left = (c.groups.get(open.dev.group) ?? 1) - 1
    if (left > 0) {
      c.groups.set(open.dev.group, left)
      return
    }
    c.groups.delete(open.dev.group)
    sys.groupOwners.delete(open.dev.group)
    if (c.groups.size === 0) {
      // The kernel drops the IOMMU context with the last group: every mapping goes.
      for (const m of c.mappings) m.buffer.mapped = false
      c.mappings = []
    }
  }

  const decodesMemory = (dev: DeviceState): boolean => ((dev.regions[CONFIG_INDEX]?.memory.readUInt16LE(COMMAND) ?? 0) & COMMAND_MEMORY) !== 0

  /** The free functions' handles (`fastHandle`): each names the object whose methods serve it. */
  const fastHandles = new Map<number, MappedRegion | Device>()
  let nextFastHandle = 0
  const registerFast = (o: MappedRegion | Device): number => {
    const h = nextFastHandle++
    fastHandles.set(h, o)
    return h
  }
  const fastRegion = (op: string, h: number): MappedRegion => {
    const o = fastHandles.get(toU64(op, 'handle', h))
    if (o instanceof MappedRegion) return o
    if (o !== undefined) throw invalid(op, "the handle is a device's, not a mapped region's")
    throw closed('mapped region')
  }
  const fastDevice = (op: string, h: number): Device => {
    const o = fastHandles.get(toU64(op, 'handle', h))
    if (o instanceof Device) return o
    if (o !== undefined) throw invalid(op, "the handle is a mapped region's, not a device's")
    throw closed('device')
  }
  /** `value` as an unsigned integer of `bits` (the native layer's checks and words). */
  const narrow = (op: string, value: number, bits: 8 | 16): number => {
    const v = toU32(op, 'value', value)
    if (v >= 2 ** bits) throw outOfRange(op, `value ${v} does not fit ${bits} bits`)
    return v
  }
  const preadLe = (op: string, h: number, index: number, offset: number, width: 1 | 2 | 4): number =>
    fastDevice(op, h).regionRead(index, offset, width).readUIntLE(0, width)
  const pwriteLe = (op: string, h: number, index: number, offset: number, value: number, width: 1 | 2 | 4): void => {
    const v = width === 4 ? toU32(op, 'value', value) : narrow(op, value, width === 1 ? 8 : 16)
    const b = Buffer.alloc(width)
    b.writeUIntLE(v, 0, width)
    fastDevice(op, h).regionWrite(index, offset, b)
  }

  class WaitCancel implements Binding.WaitCancel {
    #cancelled = false
    cancel(): void {
      this.#cancelled = true
    }
    get cancelled(): boolean {
      return this.#cancelled
    }
  }

  /** The accessors of a mapped region or a DMA buffer, over `check` (which returns the memory). */
  abstract class Volatile {
    /** Throws the closed error of a closed handle. */
    protected abstract alive(): void
    protected abstract access(op: string, offset: number, width: number): void
    protected abstract load(offset: number, length: number, width?: 1 | 2 | 4 | 8): Buffer
    protected abstract store(offset: number, data: Buffer, width?: 1 | 2 | 4 | 8): void
    /** Where offset 0 lies in page-aligned memory (a DMA slice's offset in its buffer). */
    protected base(): number {
      return 0
    }
    #aligned(op: string, offset: number, width: 1 | 2 | 4 | 8): void {
      this.alive()
      op = coreOp(op)
      if (offset % width !== 0) throw invalid(op, `offset ${hex(offset)} is not aligned to the access width of ${width} bytes`)
      this.access(op, offset, width)
      // The core's `aligned_ptr`: the address too, which a slice can shift.
      if ((this.base() + offset) % width !== 0) throw invalid(op, `offset ${hex(offset)} is not naturally aligned in memory`)
    }
    #get(op: string, offset: number, width: 1 | 2 | 4 | 8): bigint {
      const o = toU64(op, 'offset', offset)
      this.#aligned(op, o, width)
      return readWidth(this.load(o, width, width), 0, width)
    }
    #set(op: string, offset: number, width: 1 | 2 | 4 | 8, value: bigint): void {
      const b = Buffer.alloc(width)
      writeWidth(b, 0, width, value)
      this.#aligned(op, offset, width)
      this.store(offset, b, width)
    }
    #small(op: string, offset: number, value: number, bits: number): [number, bigint] {
      const o = toU64(op, 'offset', offset)
      const v = toU32(op, 'value', value)
      if (bits < 32 && v >= 2 ** bits) throw outOfRange(op, `value ${v} does not fit ${bits} bits`)
      return [o, BigInt(v)]
    }
    readU8(offset: number): number {
      return Number(this.#get('readU8', offset, 1))
    }
    readU16(offset: number): number {
      return Number(this.#get('readU16', offset, 2))
    }
    readU32(offset: number): number {
      return Number(this.#get('readU32', offset, 4))
    }
    readU64(offset: number): bigint {
      return this.#get('readU64', offset, 8)
    }
    writeU8(offset: number, value: number): void {
      const [o, v] = this.#small('writeU8', offset, value, 8)
      this.#set('writeU8', o, 1, v)
    }
    writeU16(offset: number, value: number): void {
      const [o, v] = this.#small('writeU16', offset, value, 16)
      this.#set('writeU16', o, 2, v)
    }
    writeU32(offset: number, value: number): void {
      const [o, v] = this.#small('writeU32', offset, value, 32)
      this.#set('writeU32', o, 4, v)
    }
    writeU64(offset: number, value: bigint): void {
      const o = toU64('writeU64', 'offset', offset)
      const v = bigintToU64('writeU64', 'value', value)
      this.#set('writeU64', o, 8, v)
    }
    read(offset: number, length: number): Buffer {
      const o = toU64('read', 'offset', offset)
      const n = toU64('read', 'length', length)
      this.alive()
      if (n === 0) return Buffer.alloc(0)
      this.access('read_vec', o, n)
      return this.load(o, n)
    }
    write(offset: number, data: Uint8Array): void {
      const o = toU64('write', 'offset', offset)
      this.alive()
      if (data.length === 0) return
      this.access('write_bytes', o, data.length)
      this.store(o, Buffer.from(data))
    }
    readInto(offset: number, target: Uint8Array): void {
      const o = toU64('readInto', 'offset', offset)
      this.alive()
      if (target.length === 0) return
      this.access('read_bytes', o, target.length)
      target.set(this.load(o, target.length))
    }
    readU32Many(values: Uint32Array): void {
      this.alive()
      // The core's read_u32_many: every offset checked (errors name the index) before the first read.
      values.forEach((offset, i) => {
        try {
          this.#aligned('read_u32_many', offset, 4)
        } catch (err) {
          if (!(err instanceof VfioError)) throw err
          const message = `offsets[${i}]: ${err.message}`
          throw err.code === ErrorCode.OUT_OF_RANGE ? outOfRange('read_u32_many', message) : invalid('read_u32_many', message)
        }
      })
      values.forEach((offset, i) => {
        values[i] = Number(readWidth(this.load(offset, 4, 4), 0, 4))
      })
    }
  }

  function within(op: string, what: string, offset: number, width: number, size: number): void {
    // Offsets and widths are at most 2^53: their sum never overflows the core's u64.
    const end = BigInt(offset) + BigInt(width)
    if (end > BigInt(size)) throw outOfRange(op, `${what}: [${hex(offset)}, ${hex(end)}) lies past its size ${hex(size)}`)
  }

  let makingRegion: { open: OpenState; region: RegionState; areas: Binding.MmapArea[] } | undefined
  class MappedRegion extends Volatile implements Binding.MappedRegion {
    #state: { open: OpenState; region: RegionState; areas: Binding.MmapArea[] } | undefined
    readonly #waits = new Set<WaitCancel>()
    readonly #fast: number
    constructor() {
      super()
      if (makingRegion === undefined) throw notConstructible('MappedRegion', 'device.mapRegion()')
      this.#state = makingRegion
      this.#fast = registerFast(this)
    }
    get fastHandle(): number {
      return this.#state === undefined ? -1 : this.#fast
    }
    #get(): { open: OpenState; region: RegionState; areas: Binding.MmapArea[] } {
      if (this.#state === undefined) throw closed('mapped region')
      return this.#state
    }
    protected alive(): void {
      this.#get()
    }
    protected access(op: string, offset: number, width: number): void {
      const s = this.#get()
      const r = s.region.info
      if (!(r.readable && r.writable)) {
        throw unsupported(op, `region ${r.index} of ${s.open.dev.address} is not both readable and writable, so its mapping is not used for volatile access; use region read/write instead`)
      }
      within(op, `region ${r.index}`, offset, width, r.size)
      const end = offset + width
      if (!s.areas.some((a) => offset >= a.offset && end <= a.offset + a.size)) {
        throw outOfRange(op, `region ${r.index}: [${hex(offset)}, ${hex(end)}) is not in an mmapped area (e.g. the MSI-X table); use region read/write`)
      }
      if (r.index < 6 && !decodesMemory(s.open.dev)) {
        throw invalid(
          op,
          `region ${r.index} of ${s.open.dev.address}: memory decoding is off (bit 1 of the PCI command register is clear), and the kernel kills a process that touches a BAR then (SIGBUS): set PciConfig.COMMAND_MEMORY in the command register first`,
        )
      }
    }
    protected load(offset: number, length: number, width?: 1 | 2 | 4 | 8): Buffer {
      const s = this.#get()
      return deviceRead(s.open.dev, s.region.info.index, offset, length, width)
    }
    protected store(offset: number, data: Buffer, width?: 1 | 2 | 4 | 8): void {
      const s = this.#get()
      deviceWrite(s.open.dev, s.region.info.index, offset, data, width)
    }
    get index(): number {
      return this.#get().region.info.index
    }
    get size(): number {
      return this.#get().region.info.size
    }
    get areas(): Binding.MmapArea[] {
      return this.#get().areas.map((a) => ({ ...a }))
    }
    get closed(): boolean {
      return this.#state === undefined
    }
    waitU32(offset: number, mask: number, value: number, timeoutMs: number, cancel: Binding.WaitCancel): Promise<number | null> {
      const op = 'waitU32'
      const o = toU64(op, 'offset', offset)
      const m = toU32(op, 'mask', mask)
      const v = toU32(op, 'value', value)
      const timeout = toU32(op, 'timeout', timeoutMs)
      this.#get()
      if ((v & ~m) >>> 0 !== 0) {
        throw invalid(op, `value ${hex(v)} has bits outside mask ${hex(m)} (${hex((v & ~m) >>> 0)}), so it can never match`)
      }
      if (o % 4 !== 0) throw invalid(op, `offset ${hex(o)} is not aligned to the access width of 4 bytes`)
      this.access(op, o, 4)
      const flag = cancel instanceof WaitCancel ? cancel : undefined
      if (flag !== undefined) this.#waits.add(flag)
      const end = Date.now() + timeout
      return new Promise<number | null>((resolve, reject) => {
        const poll = (): void => {
          if (this.#state === undefined) {
            reject(closed('mapped region'))
            return
          }
          if (cancel.cancelled) {
            this.#waits.delete(flag as WaitCancel)
            resolve(null)
            return
          }
          let got: number
          try {
            got = this.readU32(o)
          } catch (err) {
            reject(err)
            return
          }
          if ((got & m) >>> 0 === v) resolve(got)
          else if (Date.now() >= end) {
            reject(mockError(ErrorCode.TIMEOUT, op, `register ${hex(o)} of region ${this.index} did not reach ${hex(v)} (mask ${hex(m)}) within ${timeout} ms; last read ${hex(got)}`))
          } else setTimeout(poll, 1)
        }
        poll()
      })
    }
    close(): void {
      const s = this.#state
      if (s === undefined) return
      this.#state = undefined
      fastHandles.delete(this.#fast)
      for (const w of this.#waits) w.cancel()
      release(s.open)
    }
  }

  let makingDma: { container: ContainerState; mapping: MappingState; hugePages?: { name: '2M' | '1G'; count: number } } | undefined
  class DmaBuffer extends Volatile implements Binding.DmaBuffer {
    #state: { container: ContainerState; mapping: MappingState; hugePages?: { name: '2M' | '1G'; count: number } } | undefined
    #viewMade = false
    /** Shared with its slices: cleared by `close()`, so that they refuse access from then on. */
    readonly #open = { open: true }
    constructor() {
      super()
      if (makingDma === undefined) throw notConstructible('DmaBuffer', 'container.allocateDma()')
      this.#state = makingDma
    }
    #get(): { container: ContainerState; mapping: MappingState } {
      if (this.#state === undefined) throw closed('DMA buffer')
      return this.#state
    }
    protected alive(): void {
      this.#get()
    }
    protected access(op: string, offset: number, width: number): void {
      const s = this.#get()
      within(op, `DMA buffer at iova ${hex(s.mapping.iova)}`, offset, width, s.mapping.size)
    }
    protected load(offset: number, length: number): Buffer {
      return Buffer.from(this.#get().mapping.memory.subarray(offset, offset + length))
    }
    protected store(offset: number, data: Buffer): void {
      this.#get().mapping.memory.set(data, offset)
    }
    get iova(): bigint {
      return this.#get().mapping.iova
    }
    get size(): number {
      return this.#get().mapping.size
    }
    get mapped(): boolean {
      return this.#state !== undefined && this.#state.mapping.buffer.mapped
    }
    get closed(): boolean {
      return this.#state === undefined
    }
    view(): Buffer {
      if (this.#viewMade) throw invalid('view', 'a view of this buffer exists already; reuse it')
      const m = this.#get().mapping
      this.#viewMade = true
      return m.memory
    }
    slice(offset: number, length: number): Binding.DmaSlice {
      const o = toU64('slice', 'offset', offset)
      const n = toU64('slice', 'length', length)
      const s = this.#get()
      checkSliceRange(`DMA buffer at iova ${hex(s.mapping.iova)}`, o, n, s.mapping.size)
      return makeSlice({ parent: this.#open, mapping: s.mapping, offset: o, size: n })
    }
    unmap(): void {
      const s = this.#get()
      if (!s.mapping.buffer.mapped) throw invalid('VFIO_IOMMU_UNMAP_DMA', `the buffer at iova ${hex(s.mapping.iova)} is not mapped`)
      s.mapping.buffer.mapped = false
      s.container.mappings = s.container.mappings.filter((m) => m !== s.mapping)
    }
    close(): void {
      const s = this.#state
      if (s === undefined) return
      if (s.mapping.buffer.mapped) this.unmap()
      this.#state = undefined
      this.#open.open = false
      sys.dmaAllocated -= s.mapping.size
      if (s.hugePages !== undefined) sys.hugePages[s.hugePages.name] = (sys.hugePages[s.hugePages.name] ?? 0) + s.hugePages.count
    }
  }

  interface SliceState {
    parent: { open: boolean }
    mapping: MappingState
    offset: number
    size: number
  }
  let makingSlice: SliceState | undefined
  const makeSlice = (state: SliceState): DmaSlice => {
    makingSlice = state
    try {
      return new DmaSlice()
    } finally {
      makingSlice = undefined
    }
  }
  class DmaSlice extends Volatile implements Binding.DmaSlice {
    #state: SliceState | undefined
    constructor() {
      super()
      if (makingSlice === undefined) throw notConstructible('DmaSlice', 'dmaBuffer.slice()')
      this.#state = makingSlice
    }
    #get(): SliceState {
      // The buffer's close ends its slices too: its mapping is gone then.
      if (this.#state !== undefined && !this.#state.parent.open) throw closed('DMA buffer')
      if (this.#state === undefined) throw closed('DMA slice')
      return this.#state
    }
    protected alive(): void {
      this.#get()
    }
    protected override base(): number {
      return this.#get().offset
    }
    protected access(op: string, offset: number, width: number): void {
      const s = this.#get()
      within(op, `DMA slice at iova ${hex(s.mapping.iova + BigInt(s.offset))}`, offset, width, s.size)
    }
    protected load(offset: number, length: number): Buffer {
      const s = this.#get()
      return Buffer.from(s.mapping.memory.subarray(s.offset + offset, s.offset + offset + length))
    }
    protected store(offset: number, data: Buffer): void {
      const s = this.#get()
      s.mapping.memory.set(data, s.offset + offset)
    }
    get iova(): bigint {
      const s = this.#get()
      return s.mapping.iova + BigInt(s.offset)
    }
    get offset(): number {
      return this.#get().offset
    }
    get size(): number {
      return this.#get().size
    }
    get mapped(): boolean {
      try {
        return this.#get().mapping.buffer.mapped
      } catch {
        return false
      }
    }
    get closed(): boolean {
      return this.#state === undefined || !this.#state.parent.open
    }
    slice(offset: number, length: number): Binding.DmaSlice {
      const o = toU64('slice', 'offset', offset)
      const n = toU64('slice', 'length', length)
      const s = this.#get()
      checkSliceRange(`DMA slice at iova ${hex(s.mapping.iova + BigInt(s.offset))}`, o, n, s.size)
      return makeSlice({ parent: s.parent, mapping: s.mapping, offset: s.offset + o, size: n })
    }
    close(): void {
      this.#state = undefined
    }
  }

  // The native registry of shared vectors: tokens are never reused.
  interface SharedVector {
    claim: ClaimState
    i: number
    opened: boolean
  }
  const sharedVectors = new Map<number, SharedVector>()
  let nextToken = 1
  const liveShare = (claim: ClaimState, i: number): number | undefined => {
    const t = claim.shared[i]
    return t !== undefined && sharedVectors.has(t) ? t : undefined
  }
  const waiterToken = (op: string, value: number): number => {
    if (Number.isInteger(value) && value >= 1 && value < nextToken) return value
    throw invalid(op, `${value} is not a token interrupts.shareVector() gave (tokens are positive integers, handed over as they are, e.g. by postMessage)`)
  }
  const notShared = (op: string, t: number): VfioError =>
    mockError(
      ErrorCode.CLOSED,
      op,
      `token ${t} no longer shares a vector: its Interrupts (or device) closed, or its waiter did; share the vector again for a new token`,
    )
  /** The mock cannot be signalled while it blocks (one thread): a wait that finds nothing sleeps its timeout. */
  const sleeper = new Int32Array(new SharedArrayBuffer(4))

  let makingIrq: { open: OpenState; claim: ClaimState } | undefined
  class Interrupts implements Binding.Interrupts {
    #state: { open: OpenState; claim: ClaimState } | undefined
    #keepAlive: ReturnType<typeof setInterval> | undefined
    constructor() {
      if (makingIrq === undefined) throw notConstructible('Interrupts', 'device.enableIrq()')
      this.#state = makingIrq
    }
    #get(): { open: OpenState; claim: ClaimState } {
      if (this.#state === undefined) throw closed('interrupts')
      return this.#state
    }
    #vector(op: string, vector: number): { claim: ClaimState; dev: DeviceState; v: number } {
      const s = this.#get()
      const v = toU32(op, 'vector', vector)
      const c = s.claim
      if (!(v >= c.start && v - c.start < c.count)) {
        throw outOfRange(op, `vector ${v} is not one of these interrupts: ${irqName(c.index)} of ${s.open.dev.address} has vectors [${c.start}, ${c.start + c.count}) enabled`)
      }
      return { claim: c, dev: s.open.dev, v }
    }
    get index(): number {
      return this.#get().claim.index
    }
    get start(): number {
      return this.#get().claim.start
    }
    get count(): number {
      return this.#get().claim.count
    }
    get closed(): boolean {
      return this.#state === undefined
    }
    listen(callback: (vector: number, count: number) => void): void {
      const c = this.#get().claim
      if (c.callback !== undefined) throw invalid('listen', 'already listening; call stop() first')
      // Vectors whose waiter closed go back to the poller, as natively.
      c.shared = c.shared.map((_, i) => liveShare(c, i))
      c.callback = callback
      scheduleFlush(c)
    }
    stop(): void {
      this.#get().claim.callback = undefined
      this.unref()
    }
    ref(): void {
      const c = this.#get().claim
      if (c.callback !== undefined && this.#keepAlive === undefined) this.#keepAlive = setInterval(() => {}, 1 << 30)
    }
    unref(): void {
      this.#get()
      if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive)
      this.#keepAlive = undefined
    }
    trigger(vector: number): void {
      const { claim, v } = this.#vector('trigger', vector)
      signal(claim, v - claim.start)
    }
    mask(vector: number): void {
      const { claim, dev, v } = this.#vector('mask', vector)
      if ((dev.irqs[claim.index]?.flags ?? 0) & IRQ_MASKABLE) claim.masked[v - claim.start] = true
      else throw mockError(ErrorCode.IO, 'VFIO_DEVICE_SET_IRQS', `${irqName(claim.index)} of ${dev.address} cannot be masked (Invalid argument (os error 22))`)
    }
    unmask(vector: number): void {
      const { claim, dev, v } = this.#vector('unmask', vector)
      if (((dev.irqs[claim.index]?.flags ?? 0) & IRQ_MASKABLE) === 0) {
        throw mockError(ErrorCode.IO, 'VFIO_DEVICE_SET_IRQS', `${irqName(claim.index)} of ${dev.address} cannot be unmasked (Invalid argument (os error 22))`)
      }
      const i = v - claim.start
      claim.masked[i] = false
      if (claim.level[i]) {
        claim.level[i] = false
        raiseClaimed(dev, claim, i)
      }
    }
    takePending(vector: number): number {
      const { claim, v } = this.#vector('takePending', vector)
      const token = liveShare(claim, v - claim.start)
      if (token !== undefined) {
        throw busy('takePending', `vector ${v} is shared with an InterruptWaiter (token ${token}), which reads its interrupts: wait in that waiter, or close this Interrupts`)
      }
      const n = claim.pending[v - claim.start] ?? 0
      claim.pending[v - claim.start] = 0
      return n
    }
    shareVector(vector: number): number {
      const { claim, v } = this.#vector('shareVector', vector)
      const i = v - claim.start
      const held = liveShare(claim, i)
      if (held !== undefined) throw busy('shareVector', `vector ${v} is shared already (token ${held}): one waiter reads a vector; close that InterruptWaiter first`)
      const token = nextToken++
      sharedVectors.set(token, { claim, i, opened: false })
      claim.shared[i] = token
      return token
    }
    close(): void {
      const s = this.#state
      if (s === undefined) return
      this.unref()
      this.#state = undefined
      for (const t of s.claim.shared) if (t !== undefined) sharedVectors.delete(t)
      s.claim.callback = undefined
      s.open.dev.claims.delete(s.claim.index)
      for (const f of s.open.dev.onClaimsChanged) f()
      release(s.open)
    }
  }

  /** The core's `hot_reset_info`: the devices on the bus a bridge above `dev` resets, or the kernel's ENODEV. */
  const hotResetInfo = (dev: DeviceState): Binding.HotResetDevice[] => {
    if (!dev.hotReset) {
      const op = 'VFIO_DEVICE_GET_PCI_HOT_RESET_INFO'
      throw new VfioError(
        ErrorCode.UNSUPPORTED,
        `${op} on ${dev.address} failed: No such device (os error 19) (the device can be reset neither by slot nor by bus: it sits on a root bus, with no bridge above it whose secondary bus could be reset, or its bridge forbids bus resets; use reset() when the device has a reset method (info.canReset), or put the device behind a bridge or root port)`,
        { errno: 19, syscall: op },
      )
    }
    const bus = dev.address.slice(0, 7)
    return [...sys.devices.values()]
      .filter((d) => d.address.slice(0, 7) === bus)
      .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
      .map((d) => ({ address: d.address, group: d.group }))
  }
  /** The core's `pci_hot_reset`: every affected group must be held by the device's container. */
  const hotReset = (open: OpenState): Binding.HotResetDevice[] => {
    const affected = hotResetInfo(open.dev)
    const missing = affected.filter((d) => !open.container.groups.has(d.group))
    if (missing.length > 0) {
      const names = missing.map((d) => `${d.address} (group ${d.group})`).join(', ')
      throw new VfioError(
        ErrorCode.PERMISSION,
        `VFIO_DEVICE_PCI_HOT_RESET of ${open.dev.address}: the reset would also reset ${names}, whose IOMMU groups this device's container does not hold: open a device of each of those groups through the same container (container.openDevice(address); bind it to vfio-pci first) so the container holds the group; a group that another container or process holds must be closed there`,
        { syscall: 'VFIO_DEVICE_PCI_HOT_RESET', path: `/dev/vfio/${missing[0]?.group ?? 0}` },
      )
    }
    for (const a of affected) {
      const d = sys.devices.get(a.address)
      if (d === undefined) continue
      d.resets++
      for (const f of d.onReset) f()
    }
    return affected
  }

  let makingDevice: OpenState | undefined
  class Device implements Binding.Device {
    #open: OpenState | undefined
    readonly #fast: number
    constructor() {
      if (makingDevice === undefined) throw notConstructible('Device', 'container.openDevice()')
      this.#open = makingDevice
      this.#fast = registerFast(this)
    }
    get fastHandle(): number {
      return this.#open === undefined ? -1 : this.#fast
    }
    #get(): OpenState {
      if (this.#open === undefined) throw closed('device')
      return this.#open
    }
    #region(index: number): RegionState {
      const dev = this.#get().dev
      const r = dev.regions[index]
      if (r === undefined) throw outOfRange('region', `region index ${index} is past the device's ${dev.regions.length} regions`)
      return r
    }
    get closed(): boolean {
      return this.#open === undefined
    }
    get iommufdDevId(): number | null {
      this.#get()
      return null
    }
    attachHwpt(ptId: number): void {
      toU32('attachHwpt', 'ptId', ptId)
      throw unsupported('VFIO_DEVICE_ATTACH_IOMMUFD_PT', `${this.#get().dev.address} was opened through its group (type1 container): only a device cdev of a native iommufd container attaches to iommufd page tables`)
    }
    detachHwpt(): void {
      throw unsupported('VFIO_DEVICE_DETACH_IOMMUFD_PT', `${this.#get().dev.address} was opened through its group (type1 container): only a device cdev of a native iommufd container attaches to iommufd page tables`)
    }
    attachPasid(pasid: number, ptId: number): void {
      toU32('attachPasid', 'pasid', pasid)
      toU32('attachPasid', 'ptId', ptId)
      throw unsupported('VFIO_DEVICE_ATTACH_IOMMUFD_PT', `${this.#get().dev.address} was opened through its group (type1 container): only a device cdev of a native iommufd container attaches a PASID`)
    }
    detachPasid(pasid: number): void {
      toU32('detachPasid', 'pasid', pasid)
      throw unsupported('VFIO_DEVICE_DETACH_IOMMUFD_PT', `${this.#get().dev.address} was opened through its group (type1 container): only a device cdev of a native iommufd container attaches a PASID`)
    }
    info(): Binding.DeviceInfo {
      const dev = this.#get().dev
      const count = (i: number): number => dev.irqs[i]?.count ?? 0
      return {
        name: dev.address,
        sysfsPath: sysfsPath(dev.address),
        group: dev.group,
        flags: 0x2 | (dev.canReset ? 0x1 : 0),
        numRegions: dev.regions.length,
        numIrqs: dev.irqs.length,
        pci: true,
        canReset: dev.canReset,
        maxInterrupts: Math.max(count(INTX), count(MSI), count(MSIX)),
      }
    }
    layout(): Binding.DeviceLayout {
      return packLayout(this.info(), this.regions(), this.irqs())
    }
    regions(): Binding.RegionInfo[] {
      return this.#get().dev.regions.map((r) => ({ ...r.info, caps: r.info.caps.map((c) => ({ ...c, areas: c.areas?.map((a) => ({ ...a })) })) }))
    }
    irqs(): Binding.IrqInfo[] {
      return this.#get().dev.irqs.map((i) => ({ ...i }))
    }
    #range(op: string, r: RegionState, offset: number, length: number): void {
      const end = BigInt(offset) + BigInt(length)
      if (!r.info.present) throw outOfRange(op, `region ${r.info.index} is not implemented by this device`)
      if (end > BigInt(r.info.size)) throw outOfRange(op, `region ${r.info.index}: [${hex(offset)}, ${hex(end)}) lies past its size ${hex(r.info.size)}`)
    }
    regionRead(index: number, offset: number, length: number): Buffer {
      const i = toU32('regionRead', 'index', index)
      const o = toU64('regionRead', 'offset', offset)
      const n = toU64('regionRead', 'length', length)
      const open = this.#get()
      const r = this.#region(i)
      this.#range('region_read', r, o, n)
      if (!r.info.readable) throw invalid('region_read', `region ${i} of ${open.dev.address} is not readable`)
      return deviceRead(open.dev, i, o, n)
    }
    regionWrite(index: number, offset: number, data: Uint8Array): void {
      const i = toU32('regionWrite', 'index', index)
      const o = toU64('regionWrite', 'offset', offset)
      const open = this.#get()
      const r = this.#region(i)
      this.#range('region_write', r, o, data.length)
      if (!r.info.writable) throw invalid('region_write', `region ${i} of ${open.dev.address} is read-only`)
      deviceWrite(open.dev, i, o, data)
    }
    mapRegion(index: number): Binding.MappedRegion {
      const i = toU32('mapRegion', 'index', index)
      const open = this.#get()
      const r = this.#region(i)
      const sparse = r.info.caps.find((c) => c.kind === 'sparse-mmap')
      const areas = !r.info.mappable ? [] : sparse !== undefined ? (sparse.areas ?? []).filter((a) => a.size > 0) : [{ offset: 0, size: r.info.size }]
      if (areas.length === 0) throw unsupported('mmap', `region ${i} of ${open.dev.address} cannot be mmapped; use region read/write instead`)
      makingRegion = { open, region: r, areas }
      try {
        const m = new MappedRegion()
        open.refs++
        return m
      } finally {
        makingRegion = undefined
      }
    }
    reset(): void {
      const dev = this.#get().dev
      if (!dev.canReset) throw unsupported('VFIO_DEVICE_RESET', `${dev.address} reports no reset method`)
      dev.resets++
      for (const f of dev.onReset) f()
    }
    async resetAsync(): Promise<void> {
      const open = this.#get()
      await new Promise((resolve) => setImmediate(resolve))
      if (!open.dev.canReset) throw unsupported('VFIO_DEVICE_RESET', `${open.dev.address} reports no reset method`)
      open.dev.resets++
      for (const f of open.dev.onReset) f()
    }
    hotResetInfo(): Binding.HotResetDevice[] {
      return hotResetInfo(this.#get().dev)
    }
    hotReset(): Binding.HotResetDevice[] {
      return hotReset(this.#get())
    }
    hotResetAsync(): Promise<Binding.HotResetDevice[]> {
      const open = this.#get()
      return later(() => hotReset(open))
    }
    // Migration, DMA logging and dma-buf export: a mock device is a vfio-pci device
    // without a variant driver, which has none of them (the core's messages).
    #noMigration(): VfioError {
      return unsupported(
        'VFIO_DEVICE_FEATURE_MIGRATION',
        `${this.#get().dev.address} has no migration driver: the kernel (mock) or its VFIO driver implements no VFIO migration v2 (VFIO_DEVICE_FEATURE_MIGRATION answered ENOTTY)`,
      )
    }
    #noFeature(op: string): VfioError {
      return unsupported(op, `the kernel (mock) or the driver of ${this.#get().dev.address} does not implement ${op} (VFIO_DEVICE_FEATURE answered ENOTTY)`)
    }
    migrationSupport(): Binding.MigrationSupport | null {
      this.#get()
      return null
    }
    migrationState(): string {
      throw this.#noFeature('VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE')
    }
    setMigrationState(state: string): Promise<void> {
      migrationStateName('setMigrationState', state)
      const error = this.#noMigration()
      return later(() => {
        throw error
      })
    }
    migrationDataSize(): number {
      throw this.#noFeature('VFIO_DEVICE_FEATURE_MIG_DATA_SIZE')
    }
    precopyInfo(): Binding.PrecopyInfo {
      this.#get()
      throw new VfioError(ErrorCode.INVALID_ARGUMENT, NO_DATA_FD, { syscall: 'migration data fd' })
    }
    readMigrationData(length: number): Promise<Buffer> {
      toU64('readMigrationData', 'length', length)
      this.#get()
      return later(() => {
        throw new VfioError(ErrorCode.INVALID_ARGUMENT, NO_DATA_FD, { syscall: 'migration data fd' })
      })
    }
    writeMigrationData(_data: Uint8Array): Promise<void> {
      this.#get()
      return later(() => {
        throw new VfioError(ErrorCode.INVALID_ARGUMENT, NO_DATA_FD, { syscall: 'migration data fd' })
      })
    }
    saveState(): Promise<Buffer> {
      const error = this.#noMigration()
      return later(() => {
        throw error
      })
    }
    loadState(_data: Uint8Array): Promise<void> {
      const error = this.#noMigration()
      return later(() => {
        throw error
      })
    }
    startDmaLogging(pageSize: number, ranges: Binding.DmaLoggingRange[]): number {
      const op = 'startDmaLogging'
      const page = toU64(op, 'pageSize', pageSize)
      for (const r of ranges) u64Fields(op, r.iova, r.length, 'iova')
      const logging = (m: string): VfioError =>
        new VfioError(ErrorCode.INVALID_ARGUMENT, `invalid argument for VFIO DMA logging: ${m} (ranges non-empty, page-aligned and not wrapping; a power-of-two page size)`, {
          syscall: 'VFIO_DEVICE_FEATURE_DMA_LOGGING_START',
        })
      if (ranges.length === 0) throw logging('ranges must not be empty')
      if (page <= 0 || (page & (page - 1)) !== 0) throw logging('page_size must be a power of two')
      if (ranges.some((r) => r.length === 0 || BigInt(r.iova) + BigInt(r.length) > 2n ** 64n)) throw logging('every range needs a non-zero length that does not wrap past 2^64')
      throw unsupported(
        'VFIO_DEVICE_FEATURE_DMA_LOGGING_START',
        `${this.#get().dev.address} cannot log its DMA: its driver has no DMA logging (the probe of VFIO_DEVICE_FEATURE_DMA_LOGGING_START answered ENOTTY; vfio-pci offers it only through variant drivers such as mlx5_vfio_pci)`,
      )
    }
    stopDmaLogging(): void {
      this.#get()
      throw new VfioError(ErrorCode.INVALID_ARGUMENT, 'VFIO DMA logging is not currently started (start it first (start_dma_logging))', { syscall: 'VFIO_DEVICE_FEATURE_DMA_LOGGING_START' })
    }
    reportDmaLogging(range: Binding.DmaLoggingRange, pageSize: number): Buffer {
      const op = 'reportDmaLogging'
      u64Fields(op, range.iova, range.length, 'iova')
      toU64(op, 'pageSize', pageSize)
      this.#get()
      throw new VfioError(ErrorCode.INVALID_ARGUMENT, 'VFIO DMA logging is not currently started (start it first (start_dma_logging))', { syscall: 'VFIO_DEVICE_FEATURE_DMA_LOGGING_START' })
    }
    exportDmaBuf(index: number, ranges: Binding.RegionRange[]): number {
      const op = 'exportDmaBuf'
      const i = toU32(op, 'index', index)
      for (const r of ranges) u64Fields(op, r.offset, r.length, 'offset')
      if (ranges.length === 0) {
        throw new VfioError(ErrorCode.INVALID_ARGUMENT, 'no range to export as a dma-buf (give at least one offset and length inside the region)', { syscall: 'VFIO_DEVICE_FEATURE_DMA_BUF' })
      }
      this.#region(i)
      throw unsupported(
        'VFIO_DEVICE_FEATURE_DMA_BUF',
        `the kernel (mock) has no VFIO_DEVICE_FEATURE_DMA_BUF (it came after 6.12), or the driver of ${this.#get().dev.address} cannot export dma-bufs (the probe answered ENOTTY)`,
      )
    }
    enableIrq(index: number, start: number, count: number): Binding.Interrupts {
      const op = 'enableIrq'
      const i = toU32(op, 'index', index)
      const s = toU32(op, 'start', start)
      const n = toU32(op, 'count', count)
      const open = this.#get()
      const dev = open.dev
      const irq = dev.irqs[i]
      if (irq === undefined || irq.count === 0) throw outOfRange('claim_irq', `${dev.address} has no IRQ index ${i}`)
      const end = Math.min(s + n, 0xffff_ffff)
      if (n === 0 || end > irq.count) {
        throw outOfRange('claim_irq', `${dev.address}: vectors [${s}, ${end}) of IRQ index ${i} do not fit its ${irq.count} vector(s)`)
      }
      if (!irq.eventfd) throw unsupported('claim_irq', `${irqName(i)} of ${dev.address} does not take eventfds`)
      const held = dev.claims.get(i)
      if (held !== undefined) {
        const resize =
          irq.flags & IRQ_NORESIZE
            ? '; the kernel cannot resize it while enabled (VFIO_IRQ_INFO_NORESIZE): close that Interrupts and enable every vector you need at once'
            : '; close that Interrupts first'
        throw busy('claim_irq', `${irqName(i)} of ${dev.address} is enabled already, vectors [${held.start}, ${held.start + held.count}), by a live Interrupts${resize}`)
      }
      if ([INTX, MSI, MSIX].includes(i)) {
        const other = [INTX, MSI, MSIX].find((o) => o !== i && dev.claims.has(o))
        if (other !== undefined) {
          throw busy(
            'claim_irq',
            `${irqName(other)} of ${dev.address} is enabled by a live Interrupts; a PCI function uses one of INTx, MSI and MSI-X at a time: close it before enabling ${irqName(i)}`,
          )
        }
      }
      const claim: ClaimState = {
        index: i,
        start: s,
        count: n,
        pending: new Array<number>(n).fill(0),
        masked: new Array<boolean>(n).fill(false),
        level: new Array<boolean>(n).fill(false),
        callback: undefined,
        flushQueued: false,
        shared: new Array<number | undefined>(n).fill(undefined),
      }
      makingIrq = { open, claim }
      try {
        const made = new Interrupts()
        dev.claims.set(i, claim)
        open.refs++
        for (const f of dev.onClaimsChanged) f()
        return made
      } finally {
        makingIrq = undefined
      }
    }
    disableIrq(index: number): void {
      const i = toU32('disableIrq', 'index', index)
      const dev = this.#get().dev
      const held = dev.claims.get(i)
      if (held !== undefined) {
        throw busy(
          'disableIrq',
          `${irqName(i)} of ${dev.address} is held by a live Interrupts (vectors [${held.start}, ${held.start + held.count})): close that Interrupts instead`,
        )
      }
      if (dev.irqs[i] === undefined) throw outOfRange('disable_irq', `${dev.address} has no IRQ index ${i}`)
      // Only a live Interrupts enables an index, and it is held then: the kernel refuses
      // to disable what is not enabled.
      throw new VfioError(ErrorCode.INVALID_ARGUMENT, `VFIO_DEVICE_SET_IRQS on ${dev.address} irq ${i} (disable_irq) failed: Invalid argument (os error 22)`, {
        errno: 22,
        syscall: 'VFIO_DEVICE_SET_IRQS',
      })
    }
    close(): void {
      const open = this.#open
      if (open === undefined) return
      this.#open = undefined
      fastHandles.delete(this.#fast)
      release(open)
    }
    capabilities(): Binding.PciCapabilityInfo[] {
      const dev = this.#get().dev
      return parseCapabilities(dev.regions[CONFIG_INDEX]?.memory ?? Buffer.alloc(256))
    }
    bars(): Binding.PciBarInfo[] {
      return decodeBars(this.#get().dev)
    }
  }

  class Container implements Binding.Container {
    #state: ContainerState | undefined
    constructor(options?: Binding.ContainerOptions | undefined | null) {
      const o = options ?? {}
      const chosen = [o.kvmDeviceFd !== undefined, o.mshvDeviceFd !== undefined, o.createKvmVm === true].filter(Boolean).length
      if (chosen > 1) throw invalid('new Container', 'give at most one of kvmDeviceFd, mshvDeviceFd and createKvmVm')
      if (o.kvmDeviceFd !== undefined) toFd('new Container', 'kvmDeviceFd', o.kvmDeviceFd)
      else if (o.mshvDeviceFd !== undefined) toFd('new Container', 'mshvDeviceFd', o.mshvDeviceFd)
      if (chosen > 0) {
        throw unsupported('new Container', 'the mock backend models no hypervisor: kvmDeviceFd, mshvDeviceFd and createKvmVm need the real binding')
      }
      toOptText('new Container', 'path', o.path)
      const iommu = toOptText('new Container', 'iommu', o.iommu) ?? 'type1'
      if (!['type1', 'iommufd-compat', 'iommufd', 'auto'].includes(iommu)) {
        throw invalid('new Container', `iommu ${JSON.stringify(iommu)} is none of 'type1', 'iommufd-compat', 'iommufd', 'auto'`)
      }
      if (iommu === 'iommufd-compat' || iommu === 'iommufd') {
        throw unsupported('new Container', `the mock backend models the type1 container only: iommu '${iommu}' needs the real binding and a kernel with iommufd`)
      }
      this.#state = { id: sys.nextContainer++, groups: new Map(), mappings: [] }
      sys.containers.add(this.#state)
    }
    #get(): ContainerState {
      if (this.#state === undefined) throw closed('container')
      return this.#state
    }
    get closed(): boolean {
      return this.#state === undefined
    }
    get hasHypervisorDevice(): boolean {
      this.#get()
      return false
    }
    get iommu(): string {
      this.#get()
      return 'type1'
    }
    get ioasId(): number | null {
      this.#get()
      return null
    }
    allocHwpt(devId: number): number {
      toU32('allocHwpt', 'devId', devId)
      this.#get()
      throw unsupported('IOMMU_HWPT_ALLOC', 'the container is type1, not native iommufd: open it with iommu: \'iommufd\'')
    }
    destroyHwpt(hwptId: number): void {
      toU32('destroyHwpt', 'hwptId', hwptId)
      this.#get()
      throw unsupported('IOMMU_DESTROY', 'the container is type1, not native iommufd: open it with iommu: \'iommufd\'')
    }
    apiVersion(): number {
      this.#get()
      return 0
    }
    checkExtension(extension: number): boolean {
      const e = toU32('checkExtension', 'extension', extension)
      this.#get()
      // VFIO_TYPE1_IOMMU (1), VFIO_TYPE1v2_IOMMU (3), VFIO_UNMAP_ALL (9): what type1 offers.
      return e === 1 || e === 3 || e === 9
    }
    groupIds(): number[] {
      return [...this.#get().groups.keys()].sort((a, b) => a - b)
    }
    iommuInfo(): Binding.IommuInfo {
      const c = this.#get()
      if (c.groups.size === 0) throw invalid('VFIO_IOMMU_GET_INFO', 'the container has no IOMMU yet: open a device (or group) in it first')
      return { flags: 0x3, iovaPgsizes: 0x4020_1000n, iovaRanges: sys.iovaRanges.map((r) => ({ ...r })), dmaAvail: 65535 - c.mappings.length }
    }
    dmaMappings(): Binding.DmaMapping[] {
      return this.#get()
        .mappings.map((m) => ({ iova: m.iova, size: m.size }))
        .sort((a, b) => (a.iova < b.iova ? -1 : 1))
    }
    openDevice(addressOrPath: string): Binding.Device {
      const text = toText('openDevice', 'addressOrPath', addressOrPath)
      const c = this.#get()
      const dev = resolveDevice(sys, text)
      if (dev.driver !== 'vfio-pci') {
        throw new VfioError(ErrorCode.NOT_FOUND, `IOMMU group ${dev.group} not found at /dev/vfio/${dev.group} (bind ${dev.address} to vfio-pci)`, {
          path: `/dev/vfio/${dev.group}`,
          syscall: 'open',
        })
      }
      const blockers = [...sys.devices.values()].filter((d) => d.group === dev.group && d.driver !== undefined && d.driver !== 'vfio-pci')
      if (blockers.length > 0) {
        throw new VfioError(
          ErrorCode.GROUP_NOT_VIABLE,
          `IOMMU group ${dev.group} is not viable: ${blockers.map((b) => `${b.address} is bound to ${b.driver ?? ''}`).join(', ')}; bind them to vfio-pci`,
          { syscall: 'VFIO_GROUP_GET_STATUS' },
        )
      }
      const owner = sys.groupOwners.get(dev.group)
      if (owner !== undefined && owner !== c) {
        throw new VfioError(ErrorCode.BUSY, `open on /dev/vfio/${dev.group} failed: Device or resource busy (os error 16) (the group is open in another process or container)`, {
          errno: 16,
          syscall: 'open',
          path: `/dev/vfio/${dev.group}`,
        })
      }
      sys.groupOwners.set(dev.group, c)
      c.groups.set(dev.group, (c.groups.get(dev.group) ?? 0) + 1)
      dev.opens++
      makingDevice = { dev, container: c, refs: 1 }
      try {
        return new Device()
      } finally {
        makingDevice = undefined
      }
    }
    allocateDma(size: number, options?: Binding.DmaOptions | undefined | null): Binding.DmaBuffer {
      const OP = 'allocateDma'
      const s = BigInt(toU64(OP, 'size', size))
      const o = options ?? {}
      const given = o.iova === undefined || o.iova === null ? undefined : numberOrBigintToU64(OP, 'iova', o.iova)
      const align = o.align === undefined || o.align === null ? undefined : BigInt(toU64(OP, 'align', o.align))
      const mask = o.dmaMask === undefined || o.dmaMask === null ? undefined : numberOrBigintToU64(OP, 'dmaMask', o.dmaMask)
      const huge = o.hugePages === undefined || o.hugePages === null ? undefined : hugePageSize(OP, o.hugePages)
      const c = this.#get()
      // The core's `allocate_dma_with`, in its order.
      const op = 'allocate_dma'
      const page = BigInt(MOCK_PAGE_SIZE)
      const unit = huge?.bytes ?? page
      if (s === 0n || s % unit !== 0n) {
        if (huge !== undefined) {
          const ask = (s === 0n ? 1n : (s + unit - 1n) / unit) * unit
          throw invalid(op, `size ${hex(s)} must be a non-zero multiple of the ${huge.display} huge page size ${hex(unit)} (huge pages are never split: ask for ${hex(ask)})`)
        }
        throw invalid(op, `size ${hex(s)} must be a non-zero multiple of the page size ${hex(page)}`)
      }
      const al = align ?? unit
      if (al === 0n || (al & (al - 1n)) !== 0n || al < page) throw invalid(op, `align ${hex(al)} must be a power of two of at least the page size ${hex(page)}`)
      const limit = mask ?? U64_MAX
      if (given !== undefined) {
        if (given % page !== 0n) throw invalid(op, `iova ${hex(given)} must be a multiple of the page size ${hex(page)}`)
        if (align !== undefined && given % align !== 0n) throw invalid(op, `iova ${hex(given)} is not a multiple of align ${hex(align)}: choose another or leave iova out`)
        const last = given + s - 1n > U64_MAX ? U64_MAX : given + s - 1n
        if (mask !== undefined && last > mask) {
          throw outOfRange(op, `[${hex(given)}, ${hex(last)}] ends above the dmaMask ${hex(mask)}, which the device cannot reach: choose a lower iova or leave it out`)
        }
      }
      // The memory: huge pages come from the declared pool (`MockSystemOptions.hugePages`).
      let pages: { name: '2M' | '1G'; count: number } | undefined
      if (huge !== undefined) {
        pages = { name: huge.name, count: Number(s / unit) }
        checkHugePool(sys.hugePages, huge, s)
      }
      const mapOp = 'VFIO_IOMMU_MAP_DMA'
      if (c.groups.size === 0) throw invalid(mapOp, 'the container has no IOMMU yet: open a device (or group) in it first')
      const at = given ?? lowestIova(sys.iovaRanges, c.mappings, s, al, limit)
      const end = at + s
      if (end >= 1n << 64n) throw outOfRange(mapOp, `iova ${hex(at)} + size ${hex(s)} overflows 64 bits`)
      checkIovaRanges(mapOp, at, end, sys.iovaRanges)
      // The core names the mapping that starts last below `end`.
      let other: MappingState | undefined
      for (const m of c.mappings) if (m.iova < end && (other === undefined || m.iova > other.iova)) other = m
      if (other !== undefined && other.iova + BigInt(other.size) > at) {
        const oEnd = other.iova + BigInt(other.size)
        throw invalid(mapOp, `[${hex(at)}, ${hex(end)}) overlaps the existing mapping [${hex(other.iova)}, ${hex(oEnd)}); unmap it first or choose another IOVA`)
      }
      if (BigInt(sys.dmaAllocated) + s > BigInt(sys.dmaLimit)) {
        throw new VfioError(
          ErrorCode.MEMLOCK,
          `${mapOp} on iova ${hex(at)} size ${hex(s)} failed: Cannot allocate memory (os error 12) (raise RLIMIT_MEMLOCK: the mock's limit is ${sys.dmaLimit} bytes, ${sys.dmaAllocated} in use)`,
          { errno: 12, syscall: mapOp },
        )
      }
      if (pages !== undefined) sys.hugePages[pages.name] = (sys.hugePages[pages.name] ?? 0) - pages.count
      const buffer: DmaState = { mapped: true }
      const mapping: MappingState = { iova: at, size: Number(s), memory: Buffer.alloc(Number(s)), buffer }
      c.mappings.push(mapping)
      sys.dmaAllocated += Number(s)
      makingDma = pages === undefined ? { container: c, mapping } : { container: c, mapping, hugePages: pages }
      try {
        return new DmaBuffer()
      } finally {
        makingDma = undefined
      }
    }
    close(): void {
      this.#state = undefined
    }
  }

  // --- sysfs ------------------------------------------------------------------------
  const noRoot = (op: string, root: string | undefined | null): void => {
    if (toOptText(op, 'root', root) !== undefined) {
      throw unsupported(op, "the mock's sysfs holds the devices the test declared; a sysfs tree (`root`) needs the real binding")
    }
  }
  const listed = (dev: DeviceState): Binding.PciDevice => {
    const members = [...sys.devices.values()].filter((d) => d.group === dev.group && d !== dev).map((d) => d.address)
    const viable = [...sys.devices.values()].filter((d) => d.group === dev.group).every((d) => d.driver === undefined || d.driver === 'vfio-pci')
    const out: Binding.PciDevice = {
      address: dev.address,
      sysfsPath: sysfsPath(dev.address),
      vendor: dev.vendor,
      device: dev.device,
      class: dev.class,
      revision: dev.revision,
      subsystemVendor: dev.subsystemVendor,
      subsystemDevice: dev.subsystemDevice,
      iommuGroup: dev.group,
      groupMembers: members.sort(),
      vfioUsable: dev.driver === 'vfio-pci' && viable,
    }
    if (dev.driver !== undefined) out.driver = dev.driver
    if (dev.driverOverride !== undefined) out.driverOverride = dev.driverOverride
    return out
  }
  const find = (address: string): DeviceState => {
    const dev = sys.devices.get(address)
    if (dev === undefined) throw new VfioError(ErrorCode.NOT_FOUND, `PCI device ${address} not found at /sys/bus/pci/devices/${address}${NOT_FOUND_HINT}`, { path: `/sys/bus/pci/devices/${address}` })
    return dev
  }
  const notHeld = (op: string, dev: DeviceState): void => {
    if (dev.opens > 0) {
      throw busy(
        op,
        `this process holds ${dev.address} open through VFIO (${dev.opens} device handle${dev.opens === 1 ? '' : 's'}), and the kernel would block the ${op} until it is released, deadlocking this process; close the Device and its MappedRegions and Interrupts first (nothing was changed)`,
      )
    }
  }
  const bindVfio = (address: string, root?: string | null, op = 'bind'): Binding.BindResult => {
    const a = parseAddressArg(op, address)
    noRoot(op, root)
    const dev = find(a)
    if (dev.driver === 'vfio-pci') return { alreadyBound: true }
    notHeld(op, dev)
    const previous = dev.driver
    dev.driver = 'vfio-pci'
    dev.driverOverride = 'vfio-pci'
    return previous === undefined ? { alreadyBound: false } : { previousDriver: previous, alreadyBound: false }
  }
  const unbindVfio = (address: string, restore?: string | null, root?: string | null, op = 'unbind'): string | null => {
    const a = parseAddressArg(op, address)
    const wanted = toOptText(op, 'restore', restore)
    noRoot(op, root)
    if (wanted !== undefined && wanted !== 'vfio-pci' && ![...sys.devices.values()].some((d) => d.hostDriver === wanted)) {
      throw new VfioError(ErrorCode.NOT_FOUND, `driver ${wanted} not found at /sys/bus/pci/drivers/${wanted} (load its module (\`modprobe ${wanted}\`) and retry; ${a} was not unbound)`, {
        path: `/sys/bus/pci/drivers/${wanted}`,
      })
    }
    const dev = find(a)
    if (dev.driver !== undefined && dev.driver !== 'vfio-pci') {
      if (dev.driver === wanted) return dev.driver
      throw invalid('unbind', `${a} is bound to ${dev.driver}, not vfio-pci; nothing was changed (unbind only releases devices from vfio-pci)`)
    }
    notHeld('unbind', dev)
    dev.driverOverride = undefined
    dev.driver = dev.hostDriver
    if (wanted !== undefined && dev.driver !== wanted) {
      if (wanted === 'vfio-pci') dev.driverOverride = 'vfio-pci'
      dev.driver = wanted
    }
    return dev.driver ?? null
  }
  const listDevices = (root?: string | null, op = 'listDevices'): Binding.PciDevice[] => {
    noRoot(op, root)
    return [...sys.devices.values()].sort((x, y) => (x.address < y.address ? -1 : x.address > y.address ? 1 : 0)).map(listed)
  }
  const later = <T>(f: () => T): Promise<T> =>
    new Promise<T>((resolve, reject) =>
      setImmediate(() => {
        try {
          resolve(f())
        } catch (err) {
          reject(err)
        }
      }),
    )
  const nothing = (): void => {}

  const binding: NativeBinding = {
    __napiBindingTarget: 'native',
    Container,
    Device,
    DmaBuffer,
    DmaSlice,
    Interrupts,
    MappedRegion,
    WaitCancel,
    bindVfio: (address, root) => bindVfio(address, root),
    bindVfioAsync: (address, root) => {
      // The argument checks throw at once, as the native ones do; the work is on a later turn.
      parseAddressArg('bindAsync', address)
      toOptText('bindAsync', 'root', root)
      return later(() => bindVfio(address, root, 'bindAsync'))
    },
    closedMessage: (what) => closedMessage(what),
    // The real addon's accessors come from here; the mock's are its own members below.
    fastAccessors: () => Object.fromEntries(FAST_ACCESSOR_NAMES.map((name) => [name, binding[name]])),
    interruptWaiterOpen: (token) => {
      const op = 'InterruptWaiter.open'
      const t = waiterToken(op, token)
      const share = sharedVectors.get(t)
      if (share === undefined) throw notShared(op, t)
      if (share.opened) {
        throw busy(op, `token ${t} (vector ${share.claim.start + share.i}) is open in another InterruptWaiter: one waiter reads a vector; close that one first, or share another vector`)
      }
      share.opened = true
      return share.claim.start + share.i
    },
    interruptWaiterWait: (token, timeoutMs) => {
      const op = 'InterruptWaiter.wait'
      if (!(timeoutMs >= 0 && timeoutMs <= 60_000)) {
        throw invalid(op, `timeoutMs ${timeoutMs} must be from 0 to 60000 (the cap keeps a thread from blocking for ever): wait in a loop for longer`)
      }
      const t = waiterToken(op, token)
      const share = sharedVectors.get(t)
      if (share === undefined) throw notShared(op, t)
      if (!share.opened) throw invalid(op, `token ${t} is not open: InterruptWaiter.open(token) first`)
      let n = share.claim.pending[share.i] ?? 0
      if (n === 0 && timeoutMs > 0) Atomics.wait(sleeper, 0, 0, timeoutMs)
      n = share.claim.pending[share.i] ?? 0
      share.claim.pending[share.i] = 0
      return n
    },
    interruptWaiterClose: (token) => {
      sharedVectors.delete(waiterToken('InterruptWaiter.close', token))
    },
    dmaRmb: nothing,
    mmioReadU8: (h, offset) => fastRegion('readU8', h).readU8(offset),
    mmioReadU16: (h, offset) => fastRegion('readU16', h).readU16(offset),
    mmioReadU32: (h, offset) => fastRegion('readU32', h).readU32(offset),
    mmioReadU32Many: (h, values) => fastRegion('readU32Many', h).readU32Many(values),
    mmioWriteU8: (h, offset, value) => fastRegion('writeU8', h).writeU8(offset, value),
    mmioWriteU16: (h, offset, value) => fastRegion('writeU16', h).writeU16(offset, value),
    mmioWriteU32: (h, offset, value) => fastRegion('writeU32', h).writeU32(offset, value),
    regionReadU8: (h, index, offset) => preadLe('region.readU8', h, index, offset, 1),
    regionReadU16: (h, index, offset) => preadLe('region.readU16', h, index, offset, 2),
    regionReadU32: (h, index, offset) => preadLe('region.readU32', h, index, offset, 4),
    regionReadU64: (h, index, offset) => fastDevice('region.readU64', h).regionRead(index, offset, 8).readBigUInt64LE(0),
    regionWriteU8: (h, index, offset, value) => pwriteLe('region.writeU8', h, index, offset, value, 1),
    regionWriteU16: (h, index, offset, value) => pwriteLe('region.writeU16', h, index, offset, value, 2),
    regionWriteU32: (h, index, offset, value) => pwriteLe('region.writeU32', h, index, offset, value, 4),
    regionWriteU64: (h, index, offset, value) => {
      if (value < 0n || value >= 2n ** 64n) throw outOfRange('region.writeU64', 'value must be in [0, 2^64)')
      const b = Buffer.alloc(8)
      b.writeBigUInt64LE(value)
      fastDevice('region.writeU64', h).regionWrite(index, offset, b)
    },
    regionReadInto: (h, index, offset, target) => {
      const d = fastDevice('region.readInto', h)
      target.set(d.regionRead(index, offset, target.length))
    },
    dmaWmb: nothing,
    errorCodes: () => Object.values(ErrorCode).filter((c) => c !== ErrorCode.ABORTED),
    features: () => [],
    listPciDevices: (root) => listDevices(root),
    listPciDevicesAsync: (root) => {
      toOptText('listDevicesAsync', 'root', root)
      return later(() => listDevices(root, 'listDevicesAsync'))
    },
    mb: nothing,
    // The mock has no mdev parent, so no mdev types or devices (the core's answers).
    mdevTypes: (root) => (noRoot('mdevTypes', root), []),
    mdevDevices: (root) => (noRoot('mdevDevices', root), []),
    createMdev: (parent, type, uuid, root) => {
      for (const [name, v] of [['parent', parent], ['type', type], ['uuid', uuid]] as const) toText('createMdev', name, v)
      noRoot('createMdev', root)
      if (!MDEV_UUID.test(uuid)) {
        throw invalid('create mdev', `${JSON.stringify(uuid)} is not a UUID in canonical form (8-4-4-4-12 hex digits, e.g. 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001; \`uuidgen\` makes one)`)
      }
      const path = `/sys/class/mdev_bus/${parent}/mdev_supported_types/${type}/create`
      return later(() => {
        throw new VfioError(ErrorCode.NOT_FOUND, `mdev type ${parent}/${type} not found at ${path} (no mdev parent is registered: load its driver (e.g. \`modprobe mtty\`))`, { path })
      })
    },
    removeMdev: (uuid, root) => {
      toText('removeMdev', 'uuid', uuid)
      noRoot('removeMdev', root)
      const path = `/sys/bus/mdev/devices/${uuid}/remove`
      return later(() => {
        throw new VfioError(ErrorCode.NOT_FOUND, `mdev ${uuid} not found at ${path} (list the mdevs there are with mdevDevices())`, { path })
      })
    },
    pageSize: () => MOCK_PAGE_SIZE,
    parsePciAddress: (address) => parseAddressArg('parseAddress', address),
    pciDevice: (address, root) => {
      const a = parseAddressArg('getDevice', address)
      noRoot('getDevice', root)
      return listed(find(a))
    },
    rmb: nothing,
    unbindVfio: (address, restore, root) => unbindVfio(address, restore, root),
    unbindVfioAsync: (address, restore, root) => {
      parseAddressArg('unbindAsync', address)
      toOptText('unbindAsync', 'restore', restore)
      toOptText('unbindAsync', 'root', root)
      return later(() => unbindVfio(address, restore, root, 'unbindAsync'))
    },
    // The mock makes VfioError instances itself.
    useErrorClass: nothing,
    wmb: nothing,
  }
  return binding
}

function notConstructible(what: string, factory: string): VfioError {
  return new VfioError(ErrorCode.INVALID_ARGUMENT, `${what} objects are not constructed directly: use ${factory}`)
}

const U64_MAX = (1n << 64n) - 1n

/** The core's `dma_slice::check_range`: a slice of at least one byte inside `len`. */
function checkSliceRange(what: string, offset: number, size: number, len: number): void {
  if (size === 0) throw invalid('slice', `${what}: a slice needs a length of at least 1 byte`)
  if (BigInt(offset) + BigInt(size) > BigInt(len)) throw outOfRange('slice', `${what}: [${hex(offset)}, +${hex(size)}) lies past its size ${hex(len)}`)
}

/** A huge page size as the core names and shows it (`HugePageSize`). */
interface HugePage {
  name: '2M' | '1G'
  bytes: bigint
  display: string
}

/** Rust's `{:?}` of a string, closely enough for the names a test passes. */
function rustDebug(text: string): string {
  let out = '"'
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0
    if (ch === '"' || ch === '\\') out += `\\${ch}`
    else if (ch === '\n') out += '\\n'
    else if (ch === '\r') out += '\\r'
    else if (ch === '\t') out += '\\t'
    else if (ch === '\0') out += '\\0'
    else if (cp < 0x20 || cp === 0x7f) out += `\\u{${cp.toString(16)}}`
    else out += ch
  }
  return `${out}"`
}

/** `error::huge_page_size`: `2M` or `1G`. */
function hugePageSize(op: string, name: string): HugePage {
  if (name === '2M') return { name, bytes: 2n << 20n, display: '2 MiB' }
  if (name === '1G') return { name, bytes: 1n << 30n, display: '1 GiB' }
  throw invalid(op, `hugePages must be '2M' or '1G', got ${rustDebug([...name].slice(0, 16).join(''))}`)
}

/** The core's `huge_pages::mmap_error` when the mock's pool of `huge` cannot back `len` bytes. */
function checkHugePool(pools: HugePagePools, huge: HugePage, len: bigint): void {
  const kb = huge.bytes >> 10n
  const dir = `/sys/kernel/mm/hugepages/hugepages-${kb}kB`
  const target = `${huge.display} huge pages for a DMA buffer of ${hex(len)} bytes`
  const free = pools[huge.name]
  if (free === undefined) {
    // What mmap(MAP_HUGETLB) says on a kernel without that pool.
    throw unsupported('mmap', `${target}: Invalid argument (os error 22): this kernel or CPU offers no ${huge.display} huge pages (${dir} is missing); choose another hugePages size or none`)
  }
  const needed = len / huge.bytes
  if (BigInt(free) >= needed) return
  const freePath = `${dir}/free_hugepages`
  const how =
    huge.name === '2M'
      ? `\`echo N > /proc/sys/vm/nr_hugepages\` (the default size) or \`echo N > ${dir}/nr_hugepages\``
      : `\`echo N > ${dir}/nr_hugepages\`, or hugepagesz=1G hugepages=N on the kernel command line (memory fragments after boot)`
  throw new VfioError(
    ErrorCode.OUT_OF_RANGE,
    `mmap of ${needed} ${huge.display} huge pages failed: Cannot allocate memory (os error 12) (${free} ${huge.display} huge pages are free (${freePath}; HugePages_Free in /proc/meminfo for the default size) and this buffer needs ${needed}: reserve more as root with ${how})`,
    { errno: 12, syscall: 'mmap', path: freePath },
  )
}

/** The core's choice of an IOVA (`dma_map` with `IovaPlacement::Lowest`, `iova_alloc::lowest_free`): never page 0. */
function lowestIova(ranges: Binding.IovaRange[], mappings: MappingState[], size: bigint, align: bigint, limit: bigint): bigint {
  const page = BigInt(MOCK_PAGE_SIZE)
  const usable = ranges.length === 0 ? [{ start: 0n, end: U64_MAX }] : ranges
  const past = usable.filter((r) => r.end >= page).map((r) => ({ start: r.start > page ? r.start : page, end: r.end }))
  past.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
  const used = mappings.map((m) => ({ iova: m.iova, size: BigInt(m.size) })).sort((a, b) => (a.iova < b.iova ? -1 : 1))
  const alignUp = (v: bigint): bigint | undefined => (v + align - 1n > U64_MAX ? undefined : (v + align - 1n) & ~(align - 1n))
  for (const r of past) {
    const last = r.end < limit ? r.end : limit
    let candidate = alignUp(r.start)
    while (candidate !== undefined) {
      const candidateLast = candidate + size - 1n
      if (candidateLast > U64_MAX || candidateLast > last) break
      let below: { iova: bigint; size: bigint } | undefined
      for (const m of used) if (m.iova <= candidateLast) below = m
      if (below !== undefined && below.iova + below.size > candidate) candidate = alignUp(below.iova + below.size)
      else return candidate
    }
  }
  const shown = ranges.length === 0 ? 'the whole 64-bit space (the kernel reports no ranges)' : ranges.map((r) => `[${hex(r.start)}, ${hex(r.end)}]`).join(', ')
  throw outOfRange(
    'allocate_dma',
    `no free IOVA for size ${hex(size)} aligned to ${hex(align)} with its last byte at most ${hex(limit)} (dmaMask) in the usable ranges ${shown} beside the ${mappings.length} current mappings (dmaMappings()): unmap buffers, allocate less, or relax align or dmaMask`,
  )
}

/** The core's `check_iova_ranges`: `[iova, end)` inside one usable range. */
function checkIovaRanges(op: string, iova: bigint, end: bigint, ranges: Binding.IovaRange[]): void {
  const last = end - 1n
  if (ranges.length === 0 || ranges.some((r) => r.start <= iova && last <= r.end)) return
  let why = 'it lies outside them'
  for (let i = 0; i + 1 < ranges.length; i++) {
    const a = ranges[i]
    const b = ranges[i + 1]
    if (a === undefined || b === undefined) continue
    const gs = a.end + 1n
    const ge = b.start - 1n
    if (iova <= ge && gs <= last) {
      why = gs <= 0xfee0_0000n && 0xfee0_0000n <= ge ? `it overlaps the reserved range [${hex(gs)}, ${hex(ge)}] (the MSI window)` : `it overlaps the reserved range [${hex(gs)}, ${hex(ge)}]`
      break
    }
  }
  const usable = ranges.map((r) => `[${hex(r.start)}, ${hex(r.end)}]`).join(', ')
  throw invalid(op, `[${hex(iova)}, ${hex(end)}) is not usable: ${why}; the IOMMU's usable IOVA ranges are ${usable} (iommuInfo().iovaRanges)`)
}

/** Lexically normalizes an absolute path (`.`, `..`, repeated slashes). */
function normalize(path: string): string {
  const out: string[] = []
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') out.pop()
    else out.push(part)
  }
  return `/${out.join('/')}`
}

/** The core's `Sysfs::resolve_device` over the declared devices. */
function resolveDevice(sys: SystemState, text: string): DeviceState {
  const op = 'resolve device'
  const parts = parseAddressParts(text)
  if (parts !== undefined) {
    const address = formatAddress(parts)
    const dev = sys.devices.get(address)
    if (dev === undefined) throw new VfioError(ErrorCode.NOT_FOUND, `PCI device ${address} not found at /sys/bus/pci/devices/${address}${NOT_FOUND_HINT}`, { path: `/sys/bus/pci/devices/${address}` })
    return dev
  }
  if (MDEV_UUID.test(text)) {
    // An mdev UUID: the mock has no mediated devices.
    const path = `/sys/bus/mdev/devices/${text}`
    throw new VfioError(ErrorCode.NOT_FOUND, `device not found at ${path}${NOT_FOUND_HINT}`, { path })
  }
  if (!text.startsWith('/')) {
    throw invalid(
      op,
      `${JSON.stringify(text)} is neither a PCI address (DDDD:BB:DD.F or BB:DD.F, e.g. 0000:00:03.0), an mdev UUID, nor an absolute sysfs path (e.g. /sys/bus/pci/devices/0000:00:03.0)`,
    )
  }
  const path = normalize(text)
  for (const dev of sys.devices.values()) {
    if (path === `/sys/bus/pci/devices/${dev.address}` || path === sysfsPath(dev.address)) return dev
  }
  if (path === '/sys' || path.startsWith('/sys/')) {
    // Nothing else exists in the mock's sysfs.
    throw new VfioError(ErrorCode.NOT_FOUND, `device not found at ${text}${NOT_FOUND_HINT}`, { path: text })
  }
  throw invalid(op, `${JSON.stringify(text)} resolves to ${path}, which is not a device directory under /sys/devices or /sys/bus`)
}

// --- the device side of interrupts ---------------------------------------------------

function scheduleFlush(claim: ClaimState): void {
  if (claim.flushQueued || claim.callback === undefined || !claim.pending.some((n, i) => n > 0 && claim.shared[i] === undefined)) return
  claim.flushQueued = true
  // The native poller reads each eventfd on its own thread and calls back on a later
  // turn of the event loop: never inside the call that raised.
  setImmediate(() => {
    claim.flushQueued = false
    for (let i = 0; i < claim.count; i++) {
      const n = claim.pending[i] ?? 0
      const cb = claim.callback
      // A shared vector's waiter reads it, not the poller.
      if (n > 0 && cb !== undefined && claim.shared[i] === undefined) {
        claim.pending[i] = 0
        cb(claim.start + i, n)
      }
    }
  })
}

/** Adds one to vector `i`'s eventfd counter (a trigger, or the device's interrupt). */
function signal(claim: ClaimState, i: number): void {
  claim.pending[i] = (claim.pending[i] ?? 0) + 1
  scheduleFlush(claim)
}

function raiseClaimed(dev: DeviceState, claim: ClaimState, i: number): boolean {
  const automasked = ((dev.irqs[claim.index]?.flags ?? 0) & IRQ_AUTOMASKED) !== 0
  if (claim.masked[i]) {
    if (automasked) claim.level[i] = true
    return false
  }
  if (automasked) claim.masked[i] = true
  signal(claim, i)
  return true
}

/**
 * The device raises `vector` of IRQ `index`: it reaches the `Interrupts` holding that
 * vector, as the kernel's eventfd would. Returns whether it was signalled: not when no
 * live `Interrupts` has the vector enabled, when MSI/MSI-X is raised without bus
 * mastering, or when an automasked (INTx) vector is masked (it fires on unmask then).
 */
export function raiseInterrupt(dev: DeviceState, index: number, vector: number): boolean {
  const claim = dev.claims.get(index)
  if (claim === undefined || vector < claim.start || vector >= claim.start + claim.count) return false
  if ((index === MSI || index === MSIX) && ((dev.regions[CONFIG_INDEX]?.memory.readUInt16LE(COMMAND) ?? 0) & COMMAND_BUS_MASTER) === 0) return false
  return raiseClaimed(dev, claim, vector - claim.start)
}

/** Builds the region and IRQ tables of a declared device; see `MockDeviceSpec` in testing.ts. */
export const FLAGS = { REGION_READ, REGION_WRITE, REGION_MMAP, REGION_CAPS, IRQ_EVENTFD, IRQ_MASKABLE, IRQ_AUTOMASKED, IRQ_NORESIZE }
