/** PCI config space for driver authors: capabilities, BARs and width-typed accessors. */
import type * as Binding from '../native/binding'
import { RegionIndex } from './constants'
import { ErrorCode, VfioError, VfioTypeError } from './errors'
import { describe, num } from './validate'

/** MSI (capability id `0x05`). */
export interface MsiCapability {
  /** The discriminant. */
  kind: 'msi'
  /** Capability id (`0x05`). */
  id: number
  /** Offset in config space. */
  offset: number
  /** Multiple Message Capable: log2 of the vectors the device can use (0 to 5). */
  multipleMessageCapable: number
  /** The vectors the device can use: `2 ** multipleMessageCapable`. */
  vectors: number
  /** The message address is 64-bit. */
  is64Bit: boolean
  /** Per-vector mask and pending bits. */
  perVectorMasking: boolean
}

/** MSI-X (capability id `0x11`). */
export interface MsixCapability {
  /** The discriminant. */
  kind: 'msix'
  /** Capability id (`0x11`). */
  id: number
  /** Offset in config space. */
  offset: number
  /** Table entries (vectors). */
  tableSize: number
  /** The BAR holding the table. */
  tableBir: number
  /** Offset of the table in that BAR. */
  tableOffset: number
  /** The BAR holding the pending-bit array. */
  pbaBir: number
  /** Offset of the pending-bit array in that BAR. */
  pbaOffset: number
}

/** PCI Express (capability id `0x10`). */
export interface PcieCapability {
  /** The discriminant. */
  kind: 'pcie'
  /** Capability id (`0x10`). */
  id: number
  /** Offset in config space. */
  offset: number
  /** Capability version (1 or 2). */
  version: number
  /** Device/port type: 0 endpoint, 1 legacy endpoint, 4 root port, 9 root-complex integrated endpoint, ... */
  deviceType: number
}

/** Power Management (capability id `0x01`). */
export interface PmCapability {
  /** The discriminant. */
  kind: 'pm'
  /** Capability id (`0x01`). */
  id: number
  /** Offset in config space. */
  offset: number
  /** The PMC register's version field. */
  version: number
}

/** Vendor-specific (capability id `0x09`). */
export interface VendorCapability {
  /** The discriminant. */
  kind: 'vendor'
  /** Capability id (`0x09`). */
  id: number
  /** Offset in config space. */
  offset: number
  /** Its length byte (header included). */
  length: number
}

/** A standard capability the library does not decode. */
export interface UnknownCapability {
  /** The discriminant. */
  kind: 'unknown'
  /** Capability id. */
  id: number
  /** Offset in config space. */
  offset: number
}

/** An extended capability (PCI Express config space, from `0x100`). */
export interface ExtendedCapability {
  /** The discriminant. */
  kind: 'extended'
  /** Extended capability id (16 bits, e.g. `0x0001` AER). */
  id: number
  /** Capability version. */
  version: number
  /** Offset in config space. */
  offset: number
}

/** One capability of config space, by `kind`. */
export type PciCapability = MsiCapability | MsixCapability | PcieCapability | PmCapability | VendorCapability | UnknownCapability | ExtendedCapability

/** One decoded BAR. */
export interface PciBar {
  /** BAR index (0 to 5); a 64-bit BAR takes the next slot too. */
  index: number
  /** Memory or I/O space. */
  type: 'memory' | 'io'
  /** A 64-bit memory BAR. */
  is64Bit: boolean
  /** Prefetchable memory. */
  prefetchable: boolean
  /** The base address the BAR register holds (flag bits cleared). */
  address: bigint
  /** The size, from the VFIO region (BARs are not probed). */
  size: number
}

function field(c: Binding.PciCapabilityInfo, value: number | undefined): number {
  if (value === undefined) throw new VfioError(ErrorCode.IO, `the native capability ${c.kind} at ${c.offset} lacks a field`)
  return value
}

/** @internal The facade's shape of a native capability. */
export function toCapability(c: Binding.PciCapabilityInfo): PciCapability {
  const { id, offset } = c
  switch (c.kind) {
    case 'msi': {
      const multipleMessageCapable = field(c, c.multipleMessageCapable)
      return { kind: 'msi', id, offset, multipleMessageCapable, vectors: 2 ** multipleMessageCapable, is64Bit: c.bits64 === true, perVectorMasking: c.perVectorMasking === true }
    }
    case 'msix':
      return {
        kind: 'msix',
        id,
        offset,
        tableSize: field(c, c.tableSize),
        tableBir: field(c, c.tableBir),
        tableOffset: field(c, c.tableOffset),
        pbaBir: field(c, c.pbaBir),
        pbaOffset: field(c, c.pbaOffset),
      }
    case 'pcie':
      return { kind: 'pcie', id, offset, version: field(c, c.version), deviceType: field(c, c.deviceType) }
    case 'pm':
      return { kind: 'pm', id, offset, version: field(c, c.version) }
    case 'vendor':
      return { kind: 'vendor', id, offset, length: field(c, c.length) }
    case 'extended':
      return { kind: 'extended', id, offset, version: field(c, c.version) }
    default:
      return { kind: 'unknown', id, offset }
  }
}

/** @internal The facade's shape of a native BAR. */
export function toBar(b: Binding.PciBarInfo): PciBar {
  return { index: b.index, type: b.memory ? 'memory' : 'io', is64Bit: b.bits64, prefetchable: b.prefetchable, address: b.address, size: b.size }
}

/** What {@link PciConfigSpace} needs of a device: its config region's size and access to it. */
export interface ConfigAccess {
  /** Reads `length` bytes at `offset` of region `index`. */
  regionRead(index: number, offset: number, length: number): Buffer
  /** Writes `data` at `offset` of region `index`. */
  regionWrite(index: number, offset: number, data: Uint8Array): void
  /** The region `index`'s size. */
  region(index: number): {
    /** The region's size in bytes. */
    readonly size: number
  }
}

/**
 * Width-typed, little-endian access to a device's PCI config space (its VFIO config
 * region): offsets must be integers, naturally aligned, and inside the region
 * (`ERR_VFIO_INVALID_ARGUMENT` / `ERR_VFIO_OUT_OF_RANGE`, before anything reaches the
 * kernel); values must fit the width (`ERR_VFIO_OUT_OF_RANGE`).
 */
export class PciConfigSpace {
  readonly #device: ConfigAccess

  /** @internal The config space of `device`. */
  static fromNative(device: ConfigAccess): PciConfigSpace {
    return new PciConfigSpace(device)
  }

  private constructor(device: ConfigAccess) {
    this.#device = device
  }

  /** The config region's size: 256 bytes, or 4096 for PCI Express config space. */
  get size(): number {
    return this.#device.region(RegionIndex.CONFIG).size
  }

  #check(op: string, offset: unknown, width: number): number {
    const o = num('offset', offset)
    if (!Number.isInteger(o)) throw new VfioError(ErrorCode.INVALID_ARGUMENT, `${op}: offset ${o} is not an integer`)
    const size = this.size
    if (o < 0 || o + width > size) {
      throw new VfioError(ErrorCode.OUT_OF_RANGE, `${op}: offset ${o} + ${width} lies outside the ${size} bytes of config space`)
    }
    if (o % width !== 0) throw new VfioError(ErrorCode.INVALID_ARGUMENT, `${op}: offset ${o} is not aligned to ${width} bytes`)
    return o
  }

  #value(op: string, value: unknown, width: number): number {
    if (typeof value !== 'number') throw new VfioTypeError(`${op}: value must be a number, got ${describe(value)}`)
    const max = 2 ** (8 * width) - 1
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new VfioError(ErrorCode.OUT_OF_RANGE, `${op}: value ${value} is not an integer in [0, ${max}]`)
    }
    return value
  }

  #read(op: string, offset: unknown, width: number): Buffer {
    const o = this.#check(op, offset, width)
    const b = this.#device.regionRead(RegionIndex.CONFIG, o, width)
    if (b.length !== width) throw new VfioError(ErrorCode.IO, `${op}: read ${b.length} bytes of ${width} at ${o}`)
    return b
  }

  #write(op: string, offset: unknown, width: number, value: unknown): void {
    const o = this.#check(op, offset, width)
    const v = this.#value(op, value, width)
    const b = Buffer.alloc(width)
    b.writeUIntLE(v, 0, width)
    this.#device.regionWrite(RegionIndex.CONFIG, o, b)
  }

  /** Reads 8 bits at `offset`. */
  readU8(offset: number): number {
    return this.#read('readU8', offset, 1).readUInt8(0)
  }

  /** Reads 16 bits at `offset` (2-aligned), little-endian. */
  readU16(offset: number): number {
    return this.#read('readU16', offset, 2).readUInt16LE(0)
  }

  /** Reads 32 bits at `offset` (4-aligned), little-endian. */
  readU32(offset: number): number {
    return this.#read('readU32', offset, 4).readUInt32LE(0)
  }

  /** Writes 8 bits at `offset`. */
  writeU8(offset: number, value: number): void {
    this.#write('writeU8', offset, 1, value)
  }

  /** Writes 16 bits at `offset` (2-aligned), little-endian. */
  writeU16(offset: number, value: number): void {
    this.#write('writeU16', offset, 2, value)
  }

  /** Writes 32 bits at `offset` (4-aligned), little-endian. */
  writeU32(offset: number, value: number): void {
    this.#write('writeU32', offset, 4, value)
  }
}
