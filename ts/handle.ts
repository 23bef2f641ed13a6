/** The lifetime every class shares: one native handle, `close()` and `Symbol.dispose`. */
import { call, closedError } from './errors'

interface NativeClosable {
  close(): unknown
}

/** Owns one native handle; `close()` drops it at once and later calls throw `ERR_VFIO_CLOSED`. */
export abstract class Handle<N extends NativeClosable> {
  #native: N | undefined
  readonly #what: string

  protected constructor(nativeHandle: N, what: string) {
    this.#native = nativeHandle
    this.#what = what
  }

  /** The native handle; throws `ERR_VFIO_CLOSED` after `close()`. */
  protected get native(): N {
    if (this.#native === undefined) throw closedError(this.#what)
    return this.#native
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#native === undefined
  }

  /** Releases the native resources now. Closing twice is harmless. */
  close(): void {
    const n = this.#native
    if (n === undefined) return
    this.#native = undefined
    this.onClose()
    call(() => n.close())
  }

  /** Hook for subclasses, run before the native close. */
  protected onClose(): void {}

  /** `using` support: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close()
  }
}
