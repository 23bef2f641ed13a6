/** DMA buffers: memory the library owns, mapped at an IOVA in the IOMMU. */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'
import { closedError } from './handle'
import { externalBuffersAllowed } from './native'
import { VolatileHandle } from './region'
import { handle, num } from './validate'

/** What a DMA buffer and its slices share: an IOVA, a size and whether it is mapped. */
abstract class DmaMemory<N extends Binding.DmaBuffer | Binding.DmaSlice> extends VolatileHandle<N> {
  /** The IOVA devices use for the first byte. */
  get iova(): bigint {
    return this.native.iova
  }

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
  readonly #external: boolean

  /** @internal Wraps the handle `container.allocateDma()` made. */
  static fromNative(n: Binding.DmaBuffer, external = externalBuffersAllowed()): DmaBuffer {
    return new DmaBuffer(n, external)
  }

  private constructor(n: Binding.DmaBuffer, external = externalBuffersAllowed()) {
    super(handle('DmaBuffer', 'container.allocateDma()', n), 'DMA buffer')
    this.#external = external
  }

  /** Whether {@link DmaBuffer.view} is available (not in Electron, nor with VFIO_IOCTLS_NO_EXTERNAL_BUFFERS=1). */
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
    return DmaSlice.fromNative(this.native.slice(o, n), this)
  }

  /** Removes the IOMMU mapping; the memory stays readable. Throws `ERR_VFIO_INVALID_ARGUMENT` when not mapped. */
  unmap(): void {
    this.native.unmap()
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

  /** @internal Wraps the handle `dmaBuffer.slice()` made. */
  static fromNative(n: Binding.DmaSlice, buffer: DmaBuffer): DmaSlice {
    return new DmaSlice(n, buffer)
  }

  private constructor(n: Binding.DmaSlice, buffer: DmaBuffer) {
    super(handle('DmaSlice', 'dmaBuffer.slice()', n), 'DMA slice')
    this.#buffer = buffer
  }

  /** The buffer this is a slice of. */
  get buffer(): DmaBuffer {
    return this.#buffer
  }

  /** Where the slice starts in its buffer, in bytes. */
  get offset(): number {
    return this.native.offset
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
    const n = this.native
    if (this.#buffer.closed) throw closedError('DMA buffer')
    this.#view ??= this.#buffer.view.subarray(n.offset, n.offset + n.size)
    return this.#view
  }

  /** The `length` bytes at `offset` of this slice, as a slice of the same buffer. */
  slice(offset: number, length: number): DmaSlice {
    const o = num('offset', offset)
    const n = num('length', length)
    return DmaSlice.fromNative(this.native.slice(o, n), this.#buffer)
  }

  protected override onClose(): void {
    this.#view = undefined
  }
}
