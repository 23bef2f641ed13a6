/**
 * A blocking wait for one shared vector, in the thread that waits: no hop from the
 * native epoll thread to the event loop. For worker threads (`node:worker_threads`);
 * on the main thread only for a driver that accepts blocking its event loop.
 */
import { closedError } from './handle'
import { native } from './native'
import { num } from './validate'

/** The longest {@link InterruptWaiter.wait}, in ms: no call can block a thread for longer. */
export const MAX_WAIT_MS = 60_000

/**
 * One vector's interrupts, read in the calling thread. Made in a worker from the token
 * `irq.shareVector(vector)` gave on the thread that owns the {@link Interrupts}
 * (`postMessage` carries it: it is a number). One waiter per shared vector.
 *
 * ```ts
 * // main thread
 * worker.postMessage(irq.shareVector(0))
 * // worker
 * parentPort.once('message', (token: number) => {
 *   using waiter = InterruptWaiter.open(token)
 *   for (;;) if (waiter.wait(1000) > 0) handle()
 * })
 * ```
 */
export class InterruptWaiter {
  #token: number | undefined
  /** The vector it waits for. */
  readonly vector: number

  private constructor(token: number, vector: number) {
    this.#token = token
    this.vector = vector
  }

  /**
   * Takes the vector `token` shares. `ERR_VFIO_BUSY` when another waiter has it open,
   * `ERR_VFIO_CLOSED` when its Interrupts closed, `ERR_VFIO_INVALID_ARGUMENT` for a
   * number no `shareVector()` gave.
   */
  static open(token: number): InterruptWaiter {
    const t = num('token', token)
    return new InterruptWaiter(t, native().interruptWaiterOpen(t))
  }

  /**
   * Blocks the calling thread until the vector fires or `timeoutMs` (0 to
   * {@link MAX_WAIT_MS}) passes; returns the count of interrupts since the last wait,
   * 0 on timeout. `ERR_VFIO_CLOSED` when the Interrupts closes (which wakes this wait).
   */
  wait(timeoutMs: number): number {
    if (this.#token === undefined) throw closedError('interrupt waiter')
    // A hand-written napi function over the token (src/raw_callback.rs): the cheapest call there is.
    return native().interruptWaiterWait(this.#token, num('timeoutMs', timeoutMs))
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#token === undefined
  }

  /** Gives the vector back (a wait on it in another thread wakes). Idempotent. */
  close(): void {
    const t = this.#token
    if (t === undefined) return
    this.#token = undefined
    native().interruptWaiterClose(t)
  }

  /** `using` support. */
  [Symbol.dispose](): void {
    this.close()
  }
}
