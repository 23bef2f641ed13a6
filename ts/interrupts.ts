/**
 * Interrupts: vectors of one IRQ index, delivered by a native epoll thread.
 * An `Interrupts` object is an EventEmitter (`'interrupt'`) and an async iterable.
 * An idle one does not keep the process alive; a listener, an iterator or a
 * pending `next()` does.
 */
import { EventEmitter } from 'node:events'
import type * as Binding from '../native/binding'
import { IrqIndex } from './constants'
import { ErrorCode, VfioAbortError, VfioError } from './errors'
import { closedError, NativeSlot } from './handle'
import { native } from './native'
import { handle, num, optNum, optSignal, options } from './validate'

/** One wake-up: `count` interrupts on `vector` since the last one. */
export interface InterruptEvent {
  /** The vector, from the index's `start`. */
  vector: number
  /** How many interrupts on it since the last event (at least 1). */
  count: number
}

/** The events of {@link Interrupts}: `irq.on('interrupt', (e) => ...)`. */
export interface InterruptsEvents {
  /** Every wake-up, as it arrives (listeners see all of them, whoever else waits). */
  interrupt: [event: InterruptEvent]
}

/** What a wait takes: {@link Interrupts.next} and {@link Interrupts.events}. */
export interface WaitOptions {
  /** Only this vector (from the index's `start`); any vector when omitted. */
  vector?: number
  /**
   * Ends the wait: it rejects with a {@link VfioAbortError} (`name` `'AbortError'`, code
   * `ERR_VFIO_ABORTED`, `cause` the signal's reason). `AbortSignal.timeout(ms)` is a timeout.
   */
  signal?: AbortSignal
}

interface Waiter {
  /** The vector it waits for; `undefined` for any. */
  vector: number | undefined
  resolve(e: InterruptEvent): void
  reject(err: unknown): void
}

/**
 * The tokens this thread shared and whose Interrupts are open. Node joins worker threads
 * at exit before it tears the env down; ending the shares on `'exit'` wakes their
 * waiters first, so a blocked worker does not hold the exit up for its timeout.
 */
const liveShares = new Set<number>()
let exitHookInstalled = false

function endSharesAtExit(token: number): void {
  liveShares.add(token)
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const t of liveShares) native().interruptWaiterClose(t)
    liveShares.clear()
  })
}

/** What the owning device can tell an aborted wait (why no MSI arrived). */
export interface InterruptsContext {
  /** Whether the device has bus mastering off (then it cannot send MSI or MSI-X). */
  busMasterOff?: () => boolean
}

/**
 * Enabled vectors of one IRQ index. Close it (or the GC does) to disable them.
 *
 * Delivery: each wake-up goes to every `'interrupt'` listener and to the oldest pending
 * {@link Interrupts.next} that waits for its vector (or for any). A wake-up that neither
 * a listener nor a waiter took is queued for a later `next()`; queued wake-ups of one
 * vector merge into one (their counts add up), so the queue never holds more than
 * `count` entries.
 */
export class Interrupts extends EventEmitter<InterruptsEvents> implements AsyncIterable<InterruptEvent> {
  readonly #slot: NativeSlot<Binding.Interrupts>
  /** Undelivered wake-ups, oldest first, at most one per vector. */
  readonly #queue: InterruptEvent[] = []
  readonly #waiters = new Set<Waiter>()
  readonly #context: InterruptsContext
  #iterators = 0
  /** Tokens of the vectors {@link Interrupts.shareVector} handed over. */
  readonly #shares: number[] = []
  #referenced = false
  #removingAll = false
  #refCheckPending = false

  /** IRQ index (see `IrqIndex`). */
  readonly index: number
  /** First vector. */
  readonly start: number
  /** Number of vectors. */
  readonly count: number

  /** @internal Wraps the handle `device.enableIrq()` made. */
  static fromNative(nativeHandle: Binding.Interrupts, context: InterruptsContext = {}): Interrupts {
    return new Interrupts(nativeHandle, context)
  }

  private constructor(nativeHandle: Binding.Interrupts, context: InterruptsContext) {
    super()
    const n = handle<Binding.Interrupts>('Interrupts', 'device.enableIrq()', nativeHandle)
    this.#slot = new NativeSlot(n, 'interrupts')
    this.#context = context
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
    // EventEmitter's own events, which the typed event map leaves out.
    const emitter: EventEmitter = this
    if (!emitter.listeners('newListener').includes(this.#onNewListener)) emitter.on('newListener', this.#onNewListener)
    if (!emitter.listeners('removeListener').includes(this.#onRemoveListener)) emitter.on('removeListener', this.#onRemoveListener)
  }

  /** Removes listeners; the library's own bookkeeping stays (and the process is unref'd). */
  override removeAllListeners(event?: keyof InterruptsEvents | 'newListener' | 'removeListener'): this {
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
    let taken = false
    for (const w of this.#waiters) {
      if (w.vector !== undefined && w.vector !== event.vector) continue
      this.#waiters.delete(w)
      // Not now: an `await irq.next()` loop waits again before the event loop turns, and
      // unref()+ref() would be two napi calls per interrupt for nothing.
      this.#updateRefSoon()
      w.resolve(event)
      taken = true
      break
    }
    // After the waiter: a listener that throws must not cost a waiter its wake-up.
    if (this.listenerCount('interrupt') > 0) {
      this.emit('interrupt', event)
      taken = true
    }
    if (!taken) this.#enqueue(event)
  }

  #enqueue(event: InterruptEvent): void {
    const same = this.#queue.find((e) => e.vector === event.vector)
    if (same) same.count += event.count
    else this.#queue.push({ ...event })
  }

  /** Takes the oldest queued wake-up of `vector` (any vector when undefined). */
  #dequeue(vector: number | undefined): InterruptEvent | undefined {
    const i = vector === undefined ? 0 : this.#queue.findIndex((e) => e.vector === vector)
    if (i < 0 || i >= this.#queue.length) return undefined
    return this.#queue.splice(i, 1)[0]
  }

  /** {@link Interrupts.#updateRef} once the microtasks run now have settled (next turn of the loop), at most one pending. */
  #updateRefSoon(): void {
    if (this.#refCheckPending) return
    this.#refCheckPending = true
    setImmediate(() => {
      this.#refCheckPending = false
      this.#updateRef()
    })
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

  /** The checked options of a wait; a vector is checked against the enabled range natively. */
  #waitOptions(waitOptions: WaitOptions | undefined): { vector: number | undefined; signal: AbortSignal | undefined } {
    const o = options<WaitOptions>('options', waitOptions)
    const signal = optSignal('signal', o.signal)
    const vector = optNum('vector', o.vector)
    return { vector, signal }
  }

  #abortError(signal: AbortSignal, vector: number | undefined): VfioAbortError {
    const what = vector === undefined ? 'the wait for an interrupt' : `the wait for vector ${vector}`
    let hint = ''
    const messageSignalled = this.index === IrqIndex.MSI || this.index === IrqIndex.MSIX
    if (messageSignalled) {
      let off = false
      try {
        off = this.#context.busMasterOff?.() ?? false
      } catch {
        // The device is gone or closed: nothing more to say about why.
      }
      if (off) hint = '; bus mastering is off (PCI COMMAND bit 2), so the device cannot send MSI/MSI-X messages: call device.setBusMaster(true)'
    }
    return new VfioAbortError(`${what} was aborted${hint}`, signal)
  }

  /**
   * The next interrupt, of `vector` or of any vector; queued wake-ups first, then what
   * is pending on the eventfd. Rejects with {@link VfioAbortError} when `signal` aborts
   * (on MSI/MSI-X the message says when bus mastering is off) and `ERR_VFIO_CLOSED` when
   * the object closes. Listeners and waiters coexist: see the class documentation.
   */
  next(waitOptions?: WaitOptions): Promise<InterruptEvent> {
    let vector: number | undefined
    let signal: AbortSignal | undefined
    try {
      ;({ vector, signal } = this.#waitOptions(waitOptions))
      const queued = this.#dequeue(vector)
      if (queued) return Promise.resolve(queued)
      if (this.#slot.closed) return Promise.reject(closedError('interrupts'))
      if (vector !== undefined) {
        // Checks the vector, and takes what the poller has not read yet.
        const pending = this.#n().takePending(vector)
        if (pending > 0) return Promise.resolve({ vector, count: pending })
      }
    } catch (err) {
      return Promise.reject(err)
    }
    if (signal?.aborted) return Promise.reject(this.#abortError(signal, vector))
    return new Promise<InterruptEvent>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters.delete(waiter)
        this.#updateRef()
        reject(this.#abortError(signal as AbortSignal, vector))
      }
      const waiter: Waiter = {
        vector,
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

  /**
   * Takes what is pending on `vector` without waiting: the queued wake-ups' count plus
   * what the eventfd holds; 0 when nothing is. Wake-ups the native thread read just
   * before this call still arrive as events.
   */
  takePending(vector: number = this.start): number {
    const v = num('vector', vector)
    const native = this.#n().takePending(v)
    const queued = this.#dequeue(v)
    return native + (queued?.count ?? 0)
  }

  /**
   * Iterates over interrupts (of `vector`, or of all) until the object closes or the
   * loop breaks; `signal` ends it with a {@link VfioAbortError}, like Node's
   * `events.on()`. `for await (const e of irq)` is `irq.events()`.
   */
  events(waitOptions?: WaitOptions): AsyncIterableIterator<InterruptEvent> {
    const { vector, signal } = this.#waitOptions(waitOptions)
    if (vector !== undefined) {
      // Checks the vector now (not at the first turn of the loop); keeps what was pending.
      const pending = this.#n().takePending(vector)
      if (pending > 0) this.#enqueue({ vector, count: pending })
    }
    return this.#iterate(vector, signal)
  }

  async *#iterate(vector: number | undefined, signal: AbortSignal | undefined): AsyncIterableIterator<InterruptEvent> {
    this.#iterators++
    this.#updateRef()
    try {
      for (;;) {
        try {
          yield await this.next({ vector, signal })
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

  /** Iterates over the interrupts of every vector: `irq.events()`. */
  [Symbol.asyncIterator](): AsyncIterableIterator<InterruptEvent> {
    return this.events()
  }

  /**
   * Hands `vector` over to one {@link InterruptWaiter} (in a worker thread, or any): returns
   * its token, a number to `postMessage`. From then on the native epoll thread leaves the
   * vector to the waiter: no `'interrupt'` events or `next()` for it (wake-ups read before
   * still arrive), and `takePending(vector)` is `ERR_VFIO_BUSY`. `close()` wakes the waiter
   * with `ERR_VFIO_CLOSED`. `ERR_VFIO_BUSY` when the vector is shared already, or while an
   * `'interrupt'` listener or a `next()`/`events()` of it (or of any vector) waits here.
   */
  shareVector(vector: number = this.start): number {
    const v = num('vector', vector)
    const n = this.#n()
    const waitsHere = [...this.#waiters].some((w) => w.vector === undefined || w.vector === v)
    if (this.listenerCount('interrupt') > 0 || waitsHere) {
      const who = this.listenerCount('interrupt') > 0 ? "an 'interrupt' listener" : 'a pending next() or events() of it or of any vector'
      throw new VfioError(
        ErrorCode.BUSY,
        `shareVector: vector ${v} is listened to here (${who}), which would never see it again: remove the listener or end the wait first, or share another vector`,
      )
    }
    const token = n.shareVector(v)
    this.#shares.push(token)
    endSharesAtExit(token)
    return token
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
    for (const t of this.#shares) liveShares.delete(t)
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
