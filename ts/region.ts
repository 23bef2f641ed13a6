/** Device regions: info, read/write through the device fd, and mmapped access. */
import type * as Binding from '../native/binding'
import { VfioAbortError } from './errors'
import { Handle } from './handle'
import { native, type NativeBinding } from './native'
import { bytes, handle, num, optSignal, options, readTarget, readThroughCopy, u32Batch, u64 } from './validate'
import type { Device } from './device'

/** A capability of a region (`VFIO_REGION_INFO_CAP_*`). */
export type RegionCap =
  | {
      /** Only `areas` of the region can be mmapped (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`). */
      kind: 'sparse-mmap'
      /** The mmap-able areas. */
      areas: MmapArea[]
    }
  | {
      /** A device-specific region's type (`VFIO_REGION_INFO_CAP_TYPE`). */
      kind: 'type'
      /** The type (`VFIO_REGION_TYPE_*`). */
      type: number
      /** The subtype, by type. */
      subtype: number
    }
  | {
      /** The MSI-X table may be mmapped along with the rest of its BAR (`VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`). */
      kind: 'msix-mappable'
    }
  | {
      /** NVLink2 target address (`VFIO_REGION_INFO_CAP_NVLINK2_SSATGT`). */
      kind: 'nvlink2-ssatgt'
      /** The target address. */
      tgt: bigint
    }
  | {
      /** NVLink2 link speed (`VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD`). */
      kind: 'nvlink2-lnkspd'
      /** The link speed. */
      linkSpeed: number
    }
  | {
      /** A capability this library does not know. */
      kind: 'unknown'
      /** Its id. */
      id: number
      /** Its version. */
      version: number
    }

/** An mmap-able area, relative to the region's start. */
export interface MmapArea {
  /** Offset from the region's start, in bytes. */
  offset: number
  /** Size in bytes. */
  size: number
}

function toCap(c: Binding.RegionCap): RegionCap {
  switch (c.kind) {
    case 'sparse-mmap':
      return { kind: 'sparse-mmap', areas: c.areas ?? [] }
    case 'type':
      return { kind: 'type', type: c.type ?? 0, subtype: c.subtype ?? 0 }
    case 'msix-mappable':
      return { kind: 'msix-mappable' }
    case 'nvlink2-ssatgt':
      return { kind: 'nvlink2-ssatgt', tgt: c.tgt ?? 0n }
    case 'nvlink2-lnkspd':
      return { kind: 'nvlink2-lnkspd', linkSpeed: c.linkSpeed ?? 0 }
    default:
      return { kind: 'unknown', id: c.id ?? 0, version: c.version ?? 0 }
  }
}

/**
 * One region of a device; `device.regions[i].index === i`, also for regions the
 * device does not implement (`present` false).
 */
export class Region {
  /** VFIO region index. */
  readonly index: number
  /** Whether the device implements it. */
  readonly present: boolean
  /** `VFIO_REGION_INFO_FLAG_*` bits. */
  readonly flags: number
  /** Size in bytes. */
  readonly size: number
  /** Offset of the region in the device fd. */
  readonly offset: number
  /** Can be read. */
  readonly readable: boolean
  /** Can be written. */
  readonly writable: boolean
  /** Can be mmapped (see `caps` for sparse areas). */
  readonly mappable: boolean
  /** Capabilities in chain order. */
  readonly caps: readonly RegionCap[]
  readonly #device: Device

  /** @internal The region `info` of `device`. */
  static fromNative(device: Device, info: Binding.RegionInfo): Region {
    return new Region(device, info)
  }

  private constructor(device: Device, info: Binding.RegionInfo) {
    this.#device = device
    this.index = info.index
    this.present = info.present
    this.flags = info.flags
    this.size = info.size
    this.offset = info.offset
    this.readable = info.readable
    this.writable = info.writable
    this.mappable = info.mappable
    this.caps = Object.freeze(info.caps.map(toCap))
  }

  /** Reads `length` bytes at `offset` (pread). The device must be open. */
  read(offset: number | bigint, length: number): Buffer {
    return this.#device.regionRead(this.index, offset, length)
  }

  /** Writes `data` at `offset` (pwrite). The device must be open. */
  write(offset: number | bigint, data: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    this.#device.regionWrite(this.index, offset, data)
  }

  /** Reads `target.byteLength` bytes at `offset` into `target` (one pread, no allocation). */
  readInto(offset: number | bigint, target: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    this.#device.regionReadInto(this.index, offset, target)
  }

  /** Reads 8 bits at `offset` as a number (one pread). */
  readU8(offset: number | bigint): number {
    return this.#device.regionReadU8(this.index, offset)
  }

  /** Reads 16 bits (little-endian) at `offset` (one 2-byte pread). */
  readU16(offset: number | bigint): number {
    return this.#device.regionReadU16(this.index, offset)
  }

  /** Reads 32 bits (little-endian) at `offset` (one 4-byte pread). */
  readU32(offset: number | bigint): number {
    return this.#device.regionReadU32(this.index, offset)
  }

  /** Reads 64 bits (little-endian) at `offset` (one 8-byte pread). */
  readU64(offset: number | bigint): bigint {
    return this.#device.regionReadU64(this.index, offset)
  }

  /** Writes 8 bits at `offset` (one pwrite). */
  writeU8(offset: number | bigint, value: number): void {
    this.#device.regionWriteU8(this.index, offset, value)
  }

  /** Writes 16 bits (little-endian) at `offset` (one 2-byte pwrite). */
  writeU16(offset: number | bigint, value: number): void {
    this.#device.regionWriteU16(this.index, offset, value)
  }

  /** Writes 32 bits (little-endian) at `offset` (one 4-byte pwrite). */
  writeU32(offset: number | bigint, value: number): void {
    this.#device.regionWriteU32(this.index, offset, value)
  }

  /** Writes 64 bits (little-endian) at `offset` (one 8-byte pwrite). */
  writeU64(offset: number | bigint, value: bigint | number): void {
    this.#device.regionWriteU64(this.index, offset, value)
  }

  /** Maps the region's mmap-able areas into the process. */
  map(): MappedRegion {
    return this.#device.mapRegion(this.index)
  }
}

/** Volatile, bounds- and alignment-checked access shared by mapped regions, DMA buffers and their slices. */
export interface VolatileMemory {
  /** Reads 8 bits at `offset`. */
  readU8(offset: number): number
  /** Reads 16 bits (little-endian) at `offset`, 2-aligned. */
  readU16(offset: number): number
  /** Reads 32 bits (little-endian) at `offset`, 4-aligned. */
  readU32(offset: number): number
  /** Reads 64 bits (little-endian) at `offset`, 8-aligned. */
  readU64(offset: number): bigint
  /** Writes 8 bits at `offset`. */
  writeU8(offset: number, value: number): void
  /** Writes 16 bits (little-endian) at `offset`, 2-aligned. */
  writeU16(offset: number, value: number): void
  /** Writes 32 bits (little-endian) at `offset`, 4-aligned. */
  writeU32(offset: number, value: number): void
  /** Writes 64 bits (little-endian) at `offset`, 8-aligned. */
  writeU64(offset: number, value: bigint | number): void
  /** Copies `length` bytes from `offset` into a new `Buffer`. */
  read(offset: number, length: number): Buffer
  /** Copies `target.byteLength` bytes from `offset` into `target` (no allocation). */
  readInto(offset: number, target: Uint8Array | ArrayBufferView | ArrayBuffer): void
  /**
   * Reads the 32-bit values (little-endian, 4-aligned) at `offsets`, in order, in one call:
   * a batch of registers for the cost of one `readU32`. Every offset is checked before
   * the first read, so on an error nothing was read. The values go to `into` (its first
   * `offsets.length` elements) when given, else to a new `Uint32Array`; that array is
   * returned. `offsets` may be `into` itself: each offset is replaced by its value.
   */
  readU32Many(offsets: readonly number[] | Uint32Array, into?: Uint32Array): Uint32Array
  /** Copies `data` to `offset`. */
  write(offset: number, data: Uint8Array | ArrayBufferView | ArrayBuffer): void
}

type NativeVolatile = Binding.MappedRegion | Binding.DmaBuffer | Binding.DmaSlice

/** Implements {@link VolatileMemory} over a native handle. */
export abstract class VolatileHandle<N extends NativeVolatile> extends Handle<N> implements VolatileMemory {
  /** Reads 8 bits at `offset`. */
  readU8(offset: number): number {
    const o = num('offset', offset)
    return this.native.readU8(o)
  }
  /** Reads 16 bits at `offset` (2-aligned). */
  readU16(offset: number): number {
    const o = num('offset', offset)
    return this.native.readU16(o)
  }
  /** Reads 32 bits at `offset` (4-aligned). */
  readU32(offset: number): number {
    const o = num('offset', offset)
    return this.native.readU32(o)
  }
  /** Reads 64 bits at `offset` (8-aligned). */
  readU64(offset: number): bigint {
    const o = num('offset', offset)
    return this.native.readU64(o)
  }
  /** Writes 8 bits. */
  writeU8(offset: number, value: number): void {
    const o = num('offset', offset)
    const v = num('value', value)
    this.native.writeU8(o, v)
  }
  /** Writes 16 bits (2-aligned). */
  writeU16(offset: number, value: number): void {
    const o = num('offset', offset)
    const v = num('value', value)
    this.native.writeU16(o, v)
  }
  /** Writes 32 bits (4-aligned). */
  writeU32(offset: number, value: number): void {
    const o = num('offset', offset)
    const v = num('value', value)
    this.native.writeU32(o, v)
  }
  /** Writes 64 bits (8-aligned). */
  writeU64(offset: number, value: bigint | number): void {
    const o = num('offset', offset)
    const v = u64('value', value)
    this.native.writeU64(o, v)
  }
  /** Copies `length` bytes at `offset` into a new Buffer. */
  read(offset: number, length: number): Buffer {
    const o = num('offset', offset)
    const n = num('length', length)
    return this.native.read(o, n)
  }
  /** Copies `target.byteLength` bytes from `offset` into `target` (no allocation). */
  readInto(offset: number, target: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    const o = num('offset', offset)
    readThroughCopy(readTarget('target', target), (t) => this.native.readInto(o, t))
  }
  /** Reads the 32-bit values at `offsets` in one call, into `into` or a new array (see {@link VolatileMemory.readU32Many}). */
  readU32Many(offsets: readonly number[] | Uint32Array, into?: Uint32Array): Uint32Array {
    const values = u32Batch('offsets', offsets, into)
    readThroughCopy(values, (v) => this.native.readU32Many(v))
    return values
  }
  /** Copies `data` to `offset`. */
  write(offset: number, data: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    const o = num('offset', offset)
    const b = bytes('data', data)
    this.native.write(o, b)
  }
}

/**
 * A region mapped into this process. Keeps its device open until closed.
 *
 * The 8-, 16- and 32-bit accessors are plain native functions over the region's handle
 * (`mmioReadU32(handle, offset)`, hand-written napi callbacks: src/raw_callback.rs), not
 * class methods: a class method costs about ten of those calls, too much for a register
 * access. They stay native and volatile.
 */
export class MappedRegion extends VolatileHandle<Binding.MappedRegion> {
  /** The binding whose free functions take {@link MappedRegion.#fast}. */
  readonly #binding: NativeBinding
  /**
   * The free functions' handle (a stale one gives the closed error); -1 for a native
   * handle that has none (the facade's test fakes): the class methods serve then.
   */
  readonly #fast: number

  /** @internal Wraps the handle `device.mapRegion()` made. */
  static fromNative(n: Binding.MappedRegion): MappedRegion {
    return new MappedRegion(n)
  }

  private constructor(n: Binding.MappedRegion) {
    super(handle('MappedRegion', 'region.map()', n), 'mapped region')
    this.#binding = native()
    this.#fast = n.fastHandle
  }

  /** Reads 8 bits at `offset`. */
  override readU8(offset: number): number {
    return this.#fast >= 0 ? this.#binding.mmioReadU8(this.#fast, num('offset', offset)) : super.readU8(offset)
  }
  /** Reads 16 bits at `offset` (2-aligned). */
  override readU16(offset: number): number {
    return this.#fast >= 0 ? this.#binding.mmioReadU16(this.#fast, num('offset', offset)) : super.readU16(offset)
  }
  /** Reads 32 bits at `offset` (4-aligned). */
  override readU32(offset: number): number {
    return this.#fast >= 0 ? this.#binding.mmioReadU32(this.#fast, num('offset', offset)) : super.readU32(offset)
  }
  /** Reads the 32-bit values at `offsets` in one call, into `into` or a new array (see {@link VolatileMemory.readU32Many}). */
  override readU32Many(offsets: readonly number[] | Uint32Array, into?: Uint32Array): Uint32Array {
    if (this.#fast < 0) return super.readU32Many(offsets, into)
    const values = u32Batch('offsets', offsets, into)
    this.#binding.mmioReadU32Many(this.#fast, values)
    return values
  }
  /** Writes 8 bits. */
  override writeU8(offset: number, value: number): void {
    if (this.#fast >= 0) this.#binding.mmioWriteU8(this.#fast, num('offset', offset), num('value', value))
    else super.writeU8(offset, value)
  }
  /** Writes 16 bits (2-aligned). */
  override writeU16(offset: number, value: number): void {
    if (this.#fast >= 0) this.#binding.mmioWriteU16(this.#fast, num('offset', offset), num('value', value))
    else super.writeU16(offset, value)
  }
  /** Writes 32 bits (4-aligned). */
  override writeU32(offset: number, value: number): void {
    if (this.#fast >= 0) this.#binding.mmioWriteU32(this.#fast, num('offset', offset), num('value', value))
    else super.writeU32(offset, value)
  }
  /** The region index. */
  get index(): number {
    return this.native.index
  }
  /** The region size. */
  get size(): number {
    return this.native.size
  }
  /** The accessible (mmapped) areas. */
  get areas(): MmapArea[] {
    return this.native.areas
  }

  /**
   * Waits until the 32-bit register at `offset`, masked by `mask` (default all bits),
   * equals `value`, without blocking the event loop: one native thread polls every
   * pending wait of the process (1–50 µs apart, backing off), so none takes a libuv
   * pool thread. Resolves with the whole value read. Rejects with `ERR_VFIO_TIMEOUT`
   * after `timeout` ms (default 1000; the message has the last value read), with a
   * {@link VfioAbortError} when `signal` aborts, with `ERR_VFIO_CLOSED` when the region
   * closes meanwhile, and with `ERR_VFIO_INVALID_ARGUMENT` for a `value` outside `mask`.
   */
  async waitU32(offset: number, waitOptions: RegisterWaitOptions): Promise<number> {
    const o = num('offset', offset)
    const opts = options<RegisterWaitOptions>('options', waitOptions)
    const value = num('value', opts.value)
    const mask = num('mask', opts.mask ?? 0xffff_ffff)
    const timeout = num('timeout', opts.timeout ?? 1000)
    const signal = optSignal('signal', opts.signal)
    const aborted = `the wait for register 0x${o.toString(16)} was aborted`
    if (signal?.aborted) throw new VfioAbortError(aborted, signal)
    const cancel = new (native().WaitCancel)()
    const onAbort = (): void => cancel.cancel()
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const got = await this.native.waitU32(o, mask, value, timeout, cancel)
      if (got === null) throw new VfioAbortError(aborted, signal as AbortSignal)
      return got
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }
}

/** What {@link MappedRegion.waitU32} waits for. */
export interface RegisterWaitOptions {
  /** What the masked register must equal (no bits outside `mask`). */
  value: number
  /** The bits compared; default all 32. */
  mask?: number
  /** Milliseconds before it rejects with `ERR_VFIO_TIMEOUT`; default 1000. */
  timeout?: number
  /** Ends the wait with a {@link VfioAbortError}. */
  signal?: AbortSignal
}

