/**
 * Interrupts: vectors of one IRQ index, delivered by a native epoll thread.
 * An `Interrupts` object is an EventEmitter (`'interrupt'`) and an async iterable.
 * An idle one does not keep the process alive; a listener, an iterator or a
 * pending `next()` does.
 */
import { EventEmitter } from 'node:events'
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'
import { closedError, NativeSlot } from './handle'
import { handle, num, optSignal, options } from './validate'

/** One wake-up: `count` interrupts on `vector` since the last one. */
export interface InterruptEvent {
  /** The vector, from the index's `start`. */
  vector: number
  /** How many interrupts on it since the last event (at least 1). */
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
  readonly #slot: NativeSlot<Binding.Interrupts>
  readonly #queue: InterruptEvent[] = []
  readonly #waiters = new Set<Waiter>()
  #iterators = 0
  #referenced = false
  #removingAll = false

  /** IRQ index (see `IrqIndex`). */
  readonly index: number
  /** First vector. */
  readonly start: number
  /** Number of vectors. */
  readonly count: number

  /** @internal Wraps the handle `device.enableIrq()` made. */
  static fromNative(nativeHandle: Binding.Interrupts): Interrupts {
    return new Interrupts(nativeHandle)
  }

  private constructor(nativeHandle: Binding.Interrupts) {
    super()
    const n = handle<Binding.Interrupts>('Interrupts', 'device.enableIrq()', nativeHandle)
    this.#slot = new NativeSlot(n, 'interrupts')
    this.index = n.index
    this.start = n.start
    this.count = n.count
    // The native thread-safe function holds this callback for as long as the native
    // object lives; a weak reference lets a forgotten Interrupts be collected (and its
    // vectors disabled, its device released) instead of living for ever.
    const deliver = Interrupts.#weakDelivery(new WeakRef(this))
    n.listen(deliver)
    this.#watchListeners()
  }

  /**
   * The callback the native thread calls. It must hold the object weakly and nothing
   * else: the native thread-safe function keeps it alive for as long as the native
   * handle lives, so a closure over the constructor's scope (which holds the native
   * handle) would keep a forgotten Interrupts, its vectors and its device for ever.
   */
  static #weakDelivery(owner: WeakRef<Interrupts>): (vector: number, count: number) => void {
    return (vector, count) => {
      const irq = owner.deref()
      if (irq !== undefined) irq.#deliver({ vector, count })
    }
  }

  readonly #onNewListener = (event: string | symbol): void => {
    if (event === 'interrupt') queueMicrotask(() => this.#updateRef())
  }
  readonly #onRemoveListener = (event: string | symbol): void => {
    if (event === 'interrupt') this.#updateRef()
  }

  /** Keeps the ref count in step with 'interrupt' listeners, however they are added (idempotent). */
  #watchListeners(): void {
    if (!this.listeners('newListener').includes(this.#onNewListener)) this.on('newListener', this.#onNewListener)
    if (!this.listeners('removeListener').includes(this.#onRemoveListener)) this.on('removeListener', this.#onRemoveListener)
  }

  /** Removes listeners; the library's own bookkeeping stays (and the process is unref'd). */
  override removeAllListeners(event?: string | symbol): this {
    // EventEmitter's own removeAllListeners() calls this method again per event name.
    // It also tells "no argument" from `undefined` by `arguments.length`.
    const removeAll = (): this => (event === undefined ? super.removeAllListeners() : super.removeAllListeners(event))
    if (this.#removingAll) return removeAll()
    this.#removingAll = true
    try {
      removeAll()
    } finally {
      this.#removingAll = false
    }
    if (event === undefined || event === 'newListener' || event === 'removeListener') this.#watchListeners()
    this.#updateRef()
    return this
  }

  #n(): Binding.Interrupts {
    return this.#slot.get()
  }

  #deliver(event: InterruptEvent): void {
    // Wake-ups the native thread queued before close() are dropped: none after close.
    if (this.#slot.closed) return
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
    const n = this.#slot.peek()
    if (n === undefined) return
    const want = this.listenerCount('interrupt') > 0 || this.#waiters.size > 0 || this.#iterators > 0
    if (want !== this.#referenced) {
      this.#referenced = want
      if (want) n.ref()
      else n.unref()
    }
  }

  /**
   * The next interrupt (queued ones first). Rejects with `ERR_VFIO_ABORTED` when
   * `signal` aborts and `ERR_VFIO_CLOSED` when the object closes.
   */
  next(nextOptions?: { signal?: AbortSignal }): Promise<InterruptEvent> {
    let signal: AbortSignal | undefined
    try {
      signal = optSignal('signal', options<{ signal: AbortSignal }>('options', nextOptions).signal)
    } catch (err) {
      return Promise.reject(err)
    }
    const queued = this.#queue.shift()
    if (queued) return Promise.resolve(queued)
    if (this.#slot.closed) return Promise.reject(closedError('interrupts'))
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
      while (!this.#slot.closed || this.#queue.length > 0) {
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
    const v = num('vector', vector)
    this.#n().trigger(v)
  }

  /** Masks `vector` (INTx and other maskable indices). */
  mask(vector = this.start): void {
    const v = num('vector', vector)
    this.#n().mask(v)
  }

  /** Unmasks `vector`; after a level-triggered INTx, once the device is quiet. */
  unmask(vector = this.start): void {
    const v = num('vector', vector)
    this.#n().unmask(v)
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#slot.closed
  }

  /** Disables the vectors, closes the eventfds and rejects pending waits. Idempotent. */
  close(): void {
    const n = this.#slot.take()
    if (n === undefined) return
    for (const w of this.#waiters) w.reject(closedError('interrupts'))
    this.#waiters.clear()
    if (this.#referenced) {
      this.#referenced = false
      n.unref()
    }
    n.close()
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
