/** DMA buffers: memory the library owns, mapped at an IOVA in the IOMMU. */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'
import { closedError } from './handle'
import { externalBuffersAllowed } from './native'
import { VolatileHandle } from './region'
import { bytes, handle, num, readTarget } from './validate'

/** Whether `o` is an integer offset in [0, 2^32) with `width` bytes at it inside `v`, aligned to `width`. */
function fits(v: Buffer, o: number, width: number): boolean {
  return o >>> 0 === o && o % width === 0 && o + width <= v.length
}

/**
 * What a DMA buffer and its slices share: an IOVA, a size and whether it is mapped.
 *
 * The accessors read and write DMA memory (RAM, not MMIO) in JavaScript through the
 * zero-copy view where the runtime allows one, with no call into the addon: an
 * in-range, aligned offset (and a value that fits) is served by the view; anything
 * else, and every access once closed, goes to the native accessor, which gives the
 * same errors as before (`ERR_VFIO_INVALID_ARGUMENT`, `ERR_VFIO_OUT_OF_RANGE`,
 * `ERR_VFIO_CLOSED`). The view keeps the memory alive (its finalizer holds the native
 * memory), so nothing read through it can be freed memory; `close()` drops it.
 */
abstract class DmaMemory<N extends Binding.DmaBuffer | Binding.DmaSlice> extends VolatileHandle<N> {
  /** The view the accessors use, or `undefined` (no view allowed, or closed): native then. */
  protected abstract get fastView(): Buffer | undefined

  /** Reads 8 bits at `offset`. */
  override readU8(offset: number): number {
    const v = this.fastView
    return v !== undefined && offset >>> 0 === offset && offset < v.length ? v[offset]! : super.readU8(offset)
  }
  /** Reads 16 bits at `offset` (2-aligned). */
  override readU16(offset: number): number {
    const v = this.fastView
    return v !== undefined && fits(v, offset, 2) ? v.readUInt16LE(offset) : super.readU16(offset)
  }
  /** Reads 32 bits at `offset` (4-aligned). */
  override readU32(offset: number): number {
    const v = this.fastView
    return v !== undefined && fits(v, offset, 4) ? v.readUInt32LE(offset) : super.readU32(offset)
  }
  /** Reads 64 bits at `offset` (8-aligned). */
  override readU64(offset: number): bigint {
    const v = this.fastView
    return v !== undefined && fits(v, offset, 8) ? v.readBigUInt64LE(offset) : super.readU64(offset)
  }
  /** Writes 8 bits. */
  override writeU8(offset: number, value: number): void {
    const v = this.fastView
    if (v !== undefined && offset >>> 0 === offset && offset < v.length && value >>> 0 === value && value <= 0xff) v[offset] = value
    else super.writeU8(offset, value)
  }
  /** Writes 16 bits (2-aligned). */
  override writeU16(offset: number, value: number): void {
    const v = this.fastView
    if (v !== undefined && fits(v, offset, 2) && value >>> 0 === value && value <= 0xffff) v.writeUInt16LE(value, offset)
    else super.writeU16(offset, value)
  }
  /** Writes 32 bits (4-aligned). */
  override writeU32(offset: number, value: number): void {
    const v = this.fastView
    if (v !== undefined && fits(v, offset, 4) && value >>> 0 === value) v.writeUInt32LE(value, offset)
    else super.writeU32(offset, value)
  }
  /** Writes 64 bits (8-aligned). */
  override writeU64(offset: number, value: bigint | number): void {
    const v = this.fastView
    if (v !== undefined && fits(v, offset, 8) && typeof value === 'bigint' && value >= 0n && value <= 0xffff_ffff_ffff_ffffn) {
      v.writeBigUInt64LE(value, offset)
    } else {
      super.writeU64(offset, value)
    }
  }
  /** Copies `length` bytes at `offset` into a new Buffer. */
  override read(offset: number, length: number): Buffer {
    const v = this.fastView
    if (v !== undefined && offset >>> 0 === offset && length >>> 0 === length && offset + length <= v.length) {
      return Buffer.from(v.subarray(offset, offset + length))
    }
    return super.read(offset, length)
  }
  /** Copies `target.byteLength` bytes from `offset` into `target` (no allocation). */
  override readInto(offset: number, target: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    const v = this.fastView
    if (v !== undefined && offset >>> 0 === offset) {
      const t = readTarget('target', target)
      if (offset + t.length <= v.length) {
        t.set(v.subarray(offset, offset + t.length))
        return
      }
    }
    super.readInto(offset, target)
  }
  /** Copies `data` to `offset`. */
  override write(offset: number, data: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    const v = this.fastView
    if (v !== undefined && offset >>> 0 === offset) {
      const b = bytes('data', data)
      if (offset + b.length <= v.length) {
        v.set(b, offset)
        return
      }
    }
    super.write(offset, data)
  }

  /** The IOVA devices use for the first byte. */
  abstract get iova(): bigint

  /** The size in bytes. */
  get size(): number {
    return this.native.size
  }

  /** Whether the buffer is mapped in the IOMMU. */
  get mapped(): boolean {
    return !this.closed && this.native.mapped
  }
}

/**
 * A DMA buffer. Devices reach it at {@link DmaBuffer.iova}; JavaScript reaches it
 * through `read`/`write`, the `readU*`/`writeU*` accessors, or the zero-copy {@link DmaBuffer.view}.
 * Its memory lives as long as this object or a view of it does.
 */
export class DmaBuffer extends DmaMemory<Binding.DmaBuffer> {
  #view: Buffer | undefined
  /** The IOVA, read once: it is fixed, and every slice's `iova` is reckoned from it. */
  #iova: bigint | undefined
  readonly #external: boolean

  /** @internal Wraps the handle `container.allocateDma()` made. */
  static fromNative(n: Binding.DmaBuffer, external = externalBuffersAllowed()): DmaBuffer {
    return new DmaBuffer(n, external)
  }

  private constructor(n: Binding.DmaBuffer, external = externalBuffersAllowed()) {
    super(handle('DmaBuffer', 'container.allocateDma()', n), 'DMA buffer')
    this.#external = external
  }

  /** Whether {@link DmaBuffer.view} is available (not in Electron, nor with VFIO_IOCTLS_NO_EXTERNAL_BUFFERS=1 set when its container was made). */
  get hasView(): boolean {
    return this.#external
  }

  /**
   * A zero-copy `Buffer` over the memory: what JavaScript writes there, the device
   * reads. Throws `ERR_VFIO_UNSUPPORTED` where external buffers are forbidden; use
   * `read`/`write` there.
   */
  get view(): Buffer {
    if (!this.#external) {
      throw new VfioError(
        ErrorCode.UNSUPPORTED,
        'this runtime forbids external buffers (Electron, or VFIO_IOCTLS_NO_EXTERNAL_BUFFERS is set): use read()/write()',
      )
    }
    this.#view ??= this.native.view()
    return this.#view
  }

  /**
   * The `length` bytes at `offset` as a {@link DmaSlice}: its own `iova` (this one's plus
   * `offset`), `view` and bounds-checked accessors. It keeps the mapping alive while
   * it is open, and throws `ERR_VFIO_CLOSED` once this buffer is closed. Throws
   * `ERR_VFIO_OUT_OF_RANGE` past the end, `ERR_VFIO_INVALID_ARGUMENT` for a length of 0.
   */
  slice(offset: number, length: number): DmaSlice {
    const o = num('offset', offset)
    const n = num('length', length)
    return DmaSlice.fromNative(this.native.slice(o, n), this, { offset: o, size: n })
  }

  /** The IOVA devices use for the first byte. */
  override get iova(): bigint {
    const n = this.native // ERR_VFIO_CLOSED once closed, cached or not
    this.#iova ??= n.iova
    return this.#iova
  }

  /**
   * @internal A slice of a range the caller knows is inside (a {@link DmaPool}'s), whose
   * `close()` runs `onRelease` once. Its native slice is made only if an access needs it:
   * a napi call and a native object per slice would cost more than the rest of a pool's
   * allocate and close.
   */
  carve(offset: number, length: number, onRelease: () => void): DmaSlice {
    return DmaSlice.lazy(() => this.native.slice(offset, length), this, { offset, size: length }, onRelease)
  }

  /** Removes the IOMMU mapping; the memory stays readable. Throws `ERR_VFIO_INVALID_ARGUMENT` when not mapped. */
  unmap(): void {
    this.native.unmap()
  }

  /** The cached view once made, else one made now where allowed and open. */
  protected override get fastView(): Buffer | undefined {
    return this.#view ?? (this.#external && !this.closed ? this.view : undefined)
  }

  protected override onClose(): void {
    this.#view = undefined
  }
}

/**
 * A range of a {@link DmaBuffer} with its own IOVA, for the queues, PRP lists and data
 * areas a driver carves out of one buffer. Accessor offsets are relative to the slice
 * and checked against its size. It keeps the buffer's mapping alive until it is closed;
 * once the buffer is closed every access throws `ERR_VFIO_CLOSED`.
 */
export class DmaSlice extends DmaMemory<Binding.DmaSlice> {
  readonly #buffer: DmaBuffer
  #view: Buffer | undefined

  /** Called once when the slice closes (a {@link DmaPool} takes its range back). */
  readonly #onRelease: (() => void) | undefined

  /** Where it starts in its buffer and its size: fixed, so known without asking the addon. */
  readonly #offset: number
  readonly #size: number

  /**
   * @internal Wraps the handle `dmaBuffer.slice()` made, whose place in the buffer the
   * caller knows (`at`); `onRelease` runs at `close()`.
   */
  static fromNative(n: Binding.DmaSlice, buffer: DmaBuffer, at: { offset: number; size: number }, onRelease?: () => void): DmaSlice {
    return new DmaSlice(n, undefined, buffer, at, onRelease)
  }

  /** @internal A slice at `at` of `buffer` whose native handle `make` makes at its first use (see `DmaBuffer.carve`). */
  static lazy(make: () => Binding.DmaSlice, buffer: DmaBuffer, at: { offset: number; size: number }, onRelease?: () => void): DmaSlice {
    return new DmaSlice(undefined, make, buffer, at, onRelease)
  }

  private constructor(
    n: Binding.DmaSlice | undefined,
    make: (() => Binding.DmaSlice) | undefined,
    buffer: DmaBuffer,
    at: { offset: number; size: number },
    onRelease?: () => void,
  ) {
    // A handle is checked, as every class checks its own (`new DmaSlice()` from JavaScript is refused).
    super(make === undefined ? handle<Binding.DmaSlice>('DmaSlice', 'dmaBuffer.slice()', n) : undefined, 'DMA slice', make)
    this.#buffer = buffer
    this.#offset = at.offset
    this.#size = at.size
    this.#wordAligned = at.offset % 8 === 0
    this.#onRelease = onRelease
  }

  /**
   * Whether the slice starts 8-aligned in its (page-aligned) buffer: only then is an
   * offset aligned in the slice also aligned in memory, which the view path assumes.
   * Other slices take the native path, which refuses what is unaligned in memory.
   */
  readonly #wordAligned: boolean

  /** The buffer this is a slice of. */
  get buffer(): DmaBuffer {
    return this.#buffer
  }

  /**
   * `ERR_VFIO_CLOSED` once this slice is closed, as every member throws, without making
   * its native slice: the members that JavaScript answers check this (and the buffer,
   * where the native slice would).
   */
  #checkOpen(): void {
    if (super.closed) throw closedError('DMA slice')
  }

  /** The IOVA devices use for the first byte: the buffer's plus `offset`. */
  override get iova(): bigint {
    this.#checkOpen()
    return this.#buffer.iova + BigInt(this.#offset)
  }

  /** Where the slice starts in its buffer, in bytes. */
  get offset(): number {
    this.#checkOpen()
    return this.#offset
  }

  /** The size in bytes. */
  override get size(): number {
    this.#checkOpen()
    return this.#size
  }

  /** Whether its buffer is mapped in the IOMMU. */
  override get mapped(): boolean {
    return !this.closed && this.#buffer.mapped
  }

  /** Whether this slice or its buffer was closed. */
  override get closed(): boolean {
    return super.closed || this.#buffer.closed
  }

  /**
   * A zero-copy `Buffer` over the slice's bytes (a `subarray` of the buffer's view).
   * Throws `ERR_VFIO_CLOSED` once the slice or its buffer is closed, and
   * `ERR_VFIO_UNSUPPORTED` where the buffer has no view.
   */
  get view(): Buffer {
    this.#checkOpen()
    if (this.#buffer.closed) throw closedError('DMA buffer')
    this.#view ??= this.#buffer.view.subarray(this.#offset, this.#offset + this.#size)
    return this.#view
  }

  /** The `length` bytes at `offset` of this slice, as a slice of the same buffer. */
  slice(offset: number, length: number): DmaSlice {
    const o = num('offset', offset)
    const n = num('length', length)
    // The native slice checked the range, so the new one lies at this one's offset plus `o`.
    return DmaSlice.fromNative(this.native.slice(o, n), this.#buffer, { offset: this.#offset + o, size: n })
  }

  /** The cached view while the buffer is open; made now where allowed and open. */
  protected override get fastView(): Buffer | undefined {
    if (this.#buffer.closed || !this.#wordAligned) return undefined
    return this.#view ?? (this.#buffer.hasView && !this.closed ? this.view : undefined)
  }

  protected override onClose(): void {
    this.#view = undefined
    this.#onRelease?.()
  }
}
