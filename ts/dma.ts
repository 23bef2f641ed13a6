/** DMA buffers: memory the library owns, mapped at an IOVA in the IOMMU. */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'
import { externalBuffersAllowed } from './native'
import { VolatileHandle } from './region'
import { handle } from './validate'

/**
 * A DMA buffer. Devices reach it at {@link DmaBuffer.iova}; JavaScript reaches it
 * through `read`/`write`, the `readU*`/`writeU*` accessors, or the zero-copy {@link DmaBuffer.view}.
 * Its memory lives as long as this object or a view of it does.
 */
export class DmaBuffer extends VolatileHandle<Binding.DmaBuffer> {
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

  /** The IOVA devices use. */
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

  /** Removes the IOMMU mapping; the memory stays readable. Throws `ERR_VFIO_INVALID_ARGUMENT` when not mapped. */
  unmap(): void {
    this.native.unmap()
  }

  protected override onClose(): void {
    this.#view = undefined
  }
}
