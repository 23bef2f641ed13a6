/** The lifetime every class shares: one native handle, `close()` and `Symbol.dispose`. */
import { ErrorCode, VfioError } from './errors'
import { native } from './native'

/** `ERR_VFIO_CLOSED` for a call on a closed `what`, worded by the core. */
export function closedError(what: string): VfioError {
  return new VfioError(ErrorCode.CLOSED, native().closedMessage(what))
}

/** A native handle that can be released. */
export interface NativeClosable {
  close(): unknown
}

/**
 * Holds one native handle until it is taken for closing; after that `get()` throws
 * `ERR_VFIO_CLOSED`. Classes that must extend something else (an EventEmitter) own
 * one of these; the others extend {@link Handle}.
 */
export class NativeSlot<N> {
  #native: N | undefined
  readonly #what: string

  constructor(nativeHandle: N, what: string) {
    this.#native = nativeHandle
    this.#what = what
  }

  /** The native handle; throws `ERR_VFIO_CLOSED` once taken. */
  get(): N {
    if (this.#native === undefined) throw closedError(this.#what)
    return this.#native
  }

  /** The native handle, or `undefined` once taken (no throw). */
  peek(): N | undefined {
    return this.#native
  }

  /** Takes the handle out for closing; `undefined` when it was taken already. */
  take(): N | undefined {
    const n = this.#native
    this.#native = undefined
    return n
  }

  /** Whether the handle was taken. */
  get closed(): boolean {
    return this.#native === undefined
  }
}

/** Owns one native handle; `close()` drops it at once and later calls throw `ERR_VFIO_CLOSED`. */
export abstract class Handle<N extends NativeClosable> {
  readonly #slot: NativeSlot<N>

  protected constructor(nativeHandle: N, what: string) {
    this.#slot = new NativeSlot(nativeHandle, what)
  }

  /** The native handle; throws `ERR_VFIO_CLOSED` after `close()`. */
  protected get native(): N {
    return this.#slot.get()
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#slot.closed
  }

  /** Releases the native resources now. Closing twice is harmless. */
  close(): void {
    const n = this.#slot.take()
    if (n === undefined) return
    this.onClose()
    n.close()
  }

  /** Hook for subclasses, run before the native close. */
  protected onClose(): void {}

  /** `using` support: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close()
  }
}
