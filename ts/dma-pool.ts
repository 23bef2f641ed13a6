/**
 * DMA buffers carved from larger mappings: a driver that needs many small buffers
 * (queue entries, PRP lists, data pages) maps a few chunks once and hands out slices
 * of them. Mapping a buffer costs a MAP_DMA, an mmap and a native object each time; a
 * carved one costs a slice (no syscall).
 */
import type { Container, HugePageSize } from './container'
import type { DmaBuffer, DmaSlice } from './dma'
import { ErrorCode, VfioError } from './errors'
import { closedError } from './handle'
import { native } from './native'
import { num, optNum, optStr, options } from './validate'

/** How {@link Container.dmaPool} maps its chunks. */
export interface DmaPoolOptions {
  /** The size of each mapping the pool carves from; default 2 MiB. A multiple of the page size. */
  chunkSize?: number
  /** Back the chunks with huge pages (`chunkSize` a multiple of their size). */
  hugePages?: HugePageSize
  /** The highest address the device can reach; every chunk lies below it. */
  dmaMask?: bigint | number
}

/** What {@link DmaPool.allocate} takes. */
export interface DmaPoolAllocation {
  /** The slice's IOVA is a multiple of this power of two; default the page size, at most the chunk size. */
  align?: number
}

/** A free range of one chunk: `[offset, offset + size)`. */
interface FreeRange {
  offset: number
  size: number
}

interface Chunk {
  buffer: DmaBuffer
  /** Its IOVA, read once (a native getter crossing each time otherwise); exact: IOVAs are below 2^53. */
  iova: number
  /** Free ranges, sorted by offset, never adjacent (they merge). */
  free: FreeRange[]
  /** How many slices are out. */
  used: number
}

/**
 * Carves DMA slices out of a few large mappings of one container. Each slice is a
 * {@link DmaSlice} (its own `iova`, `view`, accessors), zeroed when handed out;
 * `slice.close()` gives its range back (so does the garbage collector, for a slice
 * nobody closed). `close()` unmaps every chunk: the slices then throw `ERR_VFIO_CLOSED`.
 */
export class DmaPool implements Disposable {
  readonly #container: Container
  readonly #chunkSize: number
  readonly #hugePages: HugePageSize | undefined
  readonly #dmaMask: bigint | number | undefined
  readonly #chunks: Chunk[] = []
  readonly #pageSize = native().pageSize()
  #closed = false
  /** Ranges of slices collected without `close()`, given back when collected. */
  readonly #collected = new FinalizationRegistry<() => void>((giveBack) => giveBack())

  /** @internal Made by `container.dmaPool()`. */
  static create(container: Container, poolOptions?: DmaPoolOptions): DmaPool {
    return new DmaPool(container, poolOptions)
  }

  private constructor(container: Container, poolOptions?: DmaPoolOptions) {
    const o = options<DmaPoolOptions>('options', poolOptions ?? {})
    this.#container = container
    this.#chunkSize = num('chunkSize', o.chunkSize ?? 2 * 2 ** 20)
    const page = this.#pageSize
    if (!Number.isSafeInteger(this.#chunkSize) || this.#chunkSize <= 0 || this.#chunkSize % page !== 0) {
      throw new VfioError(ErrorCode.INVALID_ARGUMENT, `chunkSize must be a positive multiple of the page size (${page}), got ${this.#chunkSize}`)
    }
    const hugePages = optStr('hugePages', o.hugePages)
    this.#hugePages = hugePages as HugePageSize | undefined
    this.#dmaMask = o.dmaMask
  }

  /** How many chunks are mapped. */
  get chunks(): number {
    return this.#chunks.length
  }

  /** How many slices are out (handed out, not yet closed or collected). */
  get slices(): number {
    return this.#chunks.reduce((n, c) => n + c.used, 0)
  }

  /** The size of each chunk. */
  get chunkSize(): number {
    return this.#chunkSize
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed
  }

  /**
   * A zeroed slice of `size` bytes, from the first chunk with room (a new chunk is
   * mapped when none has). `ERR_VFIO_OUT_OF_RANGE` for a size above the chunk size,
   * `ERR_VFIO_INVALID_ARGUMENT` for a size of 0 or an `align` that is not a power of two.
   */
  allocate(size: number, allocation?: DmaPoolAllocation): DmaSlice {
    if (this.#closed) throw closedError('DMA pool')
    const n = num('size', size)
    const a = optNum('align', allocation === undefined ? undefined : options<DmaPoolAllocation>('options', allocation).align) ?? this.#pageSize
    if (!Number.isSafeInteger(n) || n <= 0) throw new VfioError(ErrorCode.INVALID_ARGUMENT, `size must be a positive integer, got ${n}`)
    if (!Number.isSafeInteger(a) || a <= 0 || (a & (a - 1)) !== 0 || a > this.#chunkSize) {
      throw new VfioError(ErrorCode.INVALID_ARGUMENT, `align must be a power of two of at most the chunk size (${this.#chunkSize}), got ${a}`)
    }
    if (n > this.#chunkSize) {
      throw new VfioError(ErrorCode.OUT_OF_RANGE, `size ${n} exceeds the pool's chunk size ${this.#chunkSize}: use container.allocateDma() for it, or a pool of larger chunks`)
    }
    for (const chunk of this.#chunks) {
      const s = this.#carve(chunk, n, a)
      if (s !== undefined) return s
    }
    const buffer = this.#mapChunk()
    if (buffer.iova > BigInt(Number.MAX_SAFE_INTEGER)) {
      // Never seen (the lowest free IOVA is taken), but the carving arithmetic is in numbers.
      buffer.close()
      throw new VfioError(ErrorCode.OUT_OF_RANGE, `a pool chunk was mapped at IOVA 0x${buffer.iova.toString(16)}, past 2^53: give the pool a dmaMask below it`)
    }
    const chunk: Chunk = { buffer, iova: Number(buffer.iova), free: [{ offset: 0, size: this.#chunkSize }], used: 0 }
    this.#chunks.push(chunk)
    const s = this.#carve(chunk, n, a)
    if (s === undefined) throw new VfioError(ErrorCode.IO, `a fresh chunk of ${this.#chunkSize} bytes had no room for ${n}`)
    return s
  }

  /** Unmaps every chunk; slices still open throw `ERR_VFIO_CLOSED` from now on. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    for (const c of this.#chunks.splice(0)) c.buffer.close()
  }

  /** `using` support: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close()
  }

  #mapChunk(): DmaBuffer {
    const opts: Parameters<Container['allocateDma']>[1] = {}
    if (this.#hugePages !== undefined) opts.hugePages = this.#hugePages
    if (this.#dmaMask !== undefined) opts.dmaMask = this.#dmaMask
    return this.#container.allocateDma(this.#chunkSize, opts)
  }

  /** A slice of `chunk` from its first free range that fits `size` at `align`, or `undefined`. */
  #carve(chunk: Chunk, size: number, align: number): DmaSlice | undefined {
    // Chunks are page-aligned in IOVA (and align ≤ chunkSize), so aligning the offset aligns the IOVA
    // for align ≤ the chunk's own alignment; check the IOVA itself for larger ones.
    const base = chunk.iova
    for (let i = 0; i < chunk.free.length; i++) {
      const r = chunk.free[i]!
      const start = alignUp(base, r.offset, align)
      if (start + size > r.offset + r.size) continue
      const before: FreeRange = { offset: r.offset, size: start - r.offset }
      const after: FreeRange = { offset: start + size, size: r.offset + r.size - (start + size) }
      chunk.free.splice(i, 1, ...[before, after].filter((f) => f.size > 0))
      chunk.used++
      let released = false
      const giveBack = (): void => {
        if (released) return
        released = true
        this.#giveBack(chunk, start, size)
      }
      const token = {}
      const wrapped = chunk.buffer.carve(start, size, () => {
        this.#collected.unregister(token)
        giveBack()
      })
      this.#collected.register(wrapped, giveBack, token)
      if (chunk.buffer.hasView) wrapped.view.fill(0)
      else wrapped.write(0, new Uint8Array(size))
      return wrapped
    }
    return undefined
  }

  #giveBack(chunk: Chunk, offset: number, size: number): void {
    if (this.#closed || !this.#chunks.includes(chunk)) return
    chunk.used--
    const free = chunk.free
    let i = 0
    while (i < free.length && free[i]!.offset < offset) i++
    free.splice(i, 0, { offset, size })
    // Merge with the neighbours so that a freed chunk is one range again.
    if (i + 1 < free.length && free[i]!.offset + free[i]!.size === free[i + 1]!.offset) {
      free[i]!.size += free[i + 1]!.size
      free.splice(i + 1, 1)
    }
    if (i > 0 && free[i - 1]!.offset + free[i - 1]!.size === free[i]!.offset) {
      free[i - 1]!.size += free[i]!.size
      free.splice(i, 1)
    }
  }
}

/** The offset in `[from, …)` whose IOVA (`base + offset`) is a multiple of `align` (all exact integers below 2^53). */
function alignUp(base: number, from: number, align: number): number {
  return from + ((align - ((base + from) % align)) % align)
}
