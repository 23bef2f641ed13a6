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
 *
 * A lazy slot (`make` instead of a handle) makes its handle at the first `get()`: for
 * objects that JavaScript can mostly serve alone, where making a native object for
 * each would cost more than the object's whole use (a pool's slices).
 */
export class NativeSlot<N> {
  #native: N | undefined
  /** Makes the handle of a lazy slot at the first `get()`; cleared once made or taken. */
  #make: (() => N) | undefined
  readonly #what: string

  constructor(nativeHandle: N | undefined, what: string, make?: () => N) {
    this.#native = nativeHandle
    this.#make = make
    this.#what = what
  }

  /** The native handle (made now in a lazy slot); throws `ERR_VFIO_CLOSED` once taken. */
  get(): N {
    if (this.#native === undefined) {
      if (this.#make === undefined) throw closedError(this.#what)
      // Kept when it throws (a closed parent): the next get() tries, and throws, again.
      this.#native = this.#make()
      this.#make = undefined
    }
    return this.#native
  }

  /** The native handle, or `undefined` once taken or not made yet (no throw). */
  peek(): N | undefined {
    return this.#native
  }

  /** Takes the handle out for closing; `undefined` when it was taken already, or never made. */
  take(): N | undefined {
    const n = this.#native
    this.#native = undefined
    this.#make = undefined
    return n
  }

  /** Whether the handle was taken. */
  get closed(): boolean {
    return this.#native === undefined && this.#make === undefined
  }
}

/** Owns one native handle; `close()` drops it at once and later calls throw `ERR_VFIO_CLOSED`. */
export abstract class Handle<N extends NativeClosable> {
  readonly #slot: NativeSlot<N>

  /** Owns `nativeHandle`; or, given `make` (and no handle), a lazy one (see {@link NativeSlot}). */
  protected constructor(nativeHandle: N, what: string)
  protected constructor(nativeHandle: N | undefined, what: string, make: (() => N) | undefined)
  protected constructor(nativeHandle: N | undefined, what: string, make?: () => N) {
    this.#slot = new NativeSlot(nativeHandle, what, make)
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
    if (this.#slot.closed) return
    const n = this.#slot.take()
    this.onClose()
    n?.close() // none when a lazy handle was never made: nothing native to release
  }

  /** Hook for subclasses, run before the native close. */
  protected onClose(): void {}

  /** `using` support: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close()
  }
}
