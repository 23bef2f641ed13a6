/**
 * Interrupts: vectors of one IRQ index, delivered by a native epoll thread.
 * An `Interrupts` object is an EventEmitter (`'interrupt'`) and an async iterable.
 * An idle one does not keep the process alive; a listener, an iterator or a
 * pending `next()` does.
 */
import { EventEmitter } from 'node:events'
import type * as Binding from '../native/binding'
import { call, closedError, ErrorCode, VfioError } from './errors'
import { uint } from './validate'

/** One wake-up: `count` interrupts on `vector` since the last one. */
export interface InterruptEvent {
  vector: number
  count: number
}

interface Waiter {
  resolve(e: InterruptEvent): void
  reject(err: unknown): void
}

/** Undelivered events kept at most; older ones merge into the newest of their vector. */
const MAX_QUEUED = 1024

/** Enabled vectors of one IRQ index. Close it (or the GC does) to disable them. */
export class Interrupts extends EventEmitter implements AsyncIterable<InterruptEvent> {
  #native: Binding.Interrupts | undefined
  readonly #queue: InterruptEvent[] = []
  readonly #waiters = new Set<Waiter>()
  #iterators = 0
  #referenced = false

  /** IRQ index (see `IrqIndex`). */
  readonly index: number
  /** First vector. */
  readonly start: number
  /** Number of vectors. */
  readonly count: number

  /** @internal */
  constructor(n: Binding.Interrupts) {
    super()
    this.#native = n
    this.index = n.index
    this.start = n.start
    this.count = n.count
    call(() => n.listen((vector, count) => this.#deliver({ vector, count })))
    this.on('newListener', (event) => event === 'interrupt' && queueMicrotask(() => this.#updateRef()))
    this.on('removeListener', (event) => event === 'interrupt' && this.#updateRef())
  }

  #n(): Binding.Interrupts {
    if (this.#native === undefined) throw closedError('interrupts')
    return this.#native
  }

  #deliver(event: InterruptEvent): void {
    if (this.listenerCount('interrupt') > 0) {
      this.emit('interrupt', event)
      return
    }
    const waiter = this.#waiters.values().next().value as Waiter | undefined
    if (waiter) {
      this.#waiters.delete(waiter)
      this.#updateRef()
      waiter.resolve(event)
      return
    }
    if (this.#queue.length >= MAX_QUEUED) {
      const same = this.#queue.find((e) => e.vector === event.vector)
      if (same) {
        same.count += event.count
        return
      }
      this.#queue.shift()
    }
    this.#queue.push(event)
  }

  #updateRef(): void {
    const n = this.#native
    if (n === undefined) return
    const want = this.listenerCount('interrupt') > 0 || this.#waiters.size > 0 || this.#iterators > 0
    if (want !== this.#referenced) {
      this.#referenced = want
      call(() => (want ? n.ref() : n.unref()))
    }
  }

  /**
   * The next interrupt (queued ones first). Rejects with `ERR_VFIO_ABORTED` when
   * `signal` aborts and `ERR_VFIO_CLOSED` when the object closes.
   */
  next(options: { signal?: AbortSignal } = {}): Promise<InterruptEvent> {
    const queued = this.#queue.shift()
    if (queued) return Promise.resolve(queued)
    if (this.#native === undefined) return Promise.reject(closedError('interrupts'))
    const { signal } = options
    if (signal?.aborted) return Promise.reject(new VfioError(ErrorCode.ABORTED, 'wait aborted', { cause: signal.reason }))
    return new Promise<InterruptEvent>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters.delete(waiter)
        this.#updateRef()
        reject(new VfioError(ErrorCode.ABORTED, 'wait aborted', { cause: signal?.reason }))
      }
      const waiter: Waiter = {
        resolve: (e) => {
          signal?.removeEventListener('abort', onAbort)
          resolve(e)
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort)
          reject(err)
        },
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#waiters.add(waiter)
      this.#updateRef()
    })
  }

  /** Iterates over interrupts until the object closes or the loop breaks. */
  async *[Symbol.asyncIterator](): AsyncIterator<InterruptEvent> {
    this.#iterators++
    this.#updateRef()
    try {
      while (this.#native !== undefined || this.#queue.length > 0) {
        try {
          yield await this.next()
        } catch (err) {
          if ((err as VfioError).code === ErrorCode.CLOSED) return
          throw err
        }
      }
    } finally {
      this.#iterators--
      this.#updateRef()
    }
  }

  /** Fires `vector` from user space (`VFIO_IRQ_SET_ACTION_TRIGGER` with no data). */
  trigger(vector = this.start): void {
    const v = uint('vector', vector, 0xffff_ffff)
    call(() => this.#n().trigger(v))
  }

  /** Masks `vector` (INTx and other maskable indices). */
  mask(vector = this.start): void {
    const v = uint('vector', vector, 0xffff_ffff)
    call(() => this.#n().mask(v))
  }

  /** Unmasks `vector`; after a level-triggered INTx, once the device is quiet. */
  unmask(vector = this.start): void {
    const v = uint('vector', vector, 0xffff_ffff)
    call(() => this.#n().unmask(v))
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#native === undefined
  }

  /** Disables the vectors, closes the eventfds and rejects pending waits. Idempotent. */
  close(): void {
    const n = this.#native
    if (n === undefined) return
    this.#native = undefined
    for (const w of this.#waiters) w.reject(closedError('interrupts'))
    this.#waiters.clear()
    if (this.#referenced) {
      this.#referenced = false
      call(() => n.unref())
    }
    call(() => n.close())
  }

  /** Same as `close()`. */
  disable(): void {
    this.close()
  }

  /** `using` support. */
  [Symbol.dispose](): void {
    this.close()
  }
}
