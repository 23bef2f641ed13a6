/**
 * Type checks at the facade's boundary. The facade owns the *types* of what a caller
 * passes (numbers, strings, bytes, option objects, signals) and throws a
 * `VfioTypeError` (`ERR_VFIO_INVALID_ARGUMENT`) naming the parameter; the native
 * layer owns the *values* (integer, range, NUL, length), checked once before any
 * allocation or system call, so the raw binding is exactly as safe as the facade.
 */
import { types } from 'node:util'
import { VfioTypeError } from './errors'

/** Longest string shown back in a message; longer ones are cut. */
const SHOWN = 64

/** A short, safe rendering of a wrong value for a message. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'string') {
    const shown = value.length > SHOWN ? `${value.slice(0, SHOWN)}… (${value.length} characters)` : value
    return `the string ${JSON.stringify(shown)}`
  }
  if (typeof value === 'object') return types.isProxy(value) ? 'a Proxy' : `an object (${Object.prototype.toString.call(value)})`
  if (typeof value === 'function') return 'a function'
  return `${typeof value} ${String(value)}`
}

/**
 * An integer-valued number (offsets, lengths, indices, values); a bigint becomes a
 * number (one past 2^53 stays past it, so the native range check still refuses it).
 */
export function num(name: string, value: unknown): number {
  if (typeof value === 'number') return value
  if (typeof value === 'bigint') return Number(value)
  throw new VfioTypeError(`${name} must be a number or bigint, got ${describe(value)}`)
}

/** An optional {@link num} option. */
export function optNum(name: string, value: unknown): number | undefined {
  return value === undefined ? undefined : num(name, value)
}

/** A u64 given as a number or bigint, passed on as a bigint. */
export function u64(name: string, value: unknown): bigint {
  if (typeof value === 'bigint') return value
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new VfioTypeError(`${name} must be a safe integer or a bigint, got ${value}`)
    }
    return BigInt(value)
  }
  throw new VfioTypeError(`${name} must be a number or bigint, got ${describe(value)}`)
}

/**
 * A u64 given as a number or bigint, passed on as a number when that is exact (a safe
 * integer: cheaper to pass than a bigint), else as the bigint.
 */
export function exactU64(name: string, value: unknown): number | bigint {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value
  return u64(name, value)
}

/**
 * Bytes to write: a real TypedArray, DataView or ArrayBuffer (not a Proxy of one). Bytes
 * in a SharedArrayBuffer are copied first: native code must not read memory that another
 * thread may write during the call, and the copy is what the call writes.
 */
export function bytes(name: string, value: unknown): Uint8Array {
  const view = readTarget(name, value)
  return isShared(view) ? view.slice() : view
}

/**
 * The bytes a read fills: as {@link bytes}, but the caller's memory itself; a read into
 * one that {@link isShared} goes through a copy (see `readThroughCopy`).
 */
export function readTarget(name: string, value: unknown): Uint8Array {
  if (types.isProxy(value)) throw new VfioTypeError(`${name} must be a Buffer, TypedArray or ArrayBuffer, got a Proxy`)
  if (types.isUint8Array(value)) return value
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  if (types.isAnyArrayBuffer(value)) return new Uint8Array(value)
  throw new VfioTypeError(`${name} must be a Buffer, TypedArray or ArrayBuffer, got ${describe(value)}`)
}

/** Whether `view` lies in a SharedArrayBuffer, which other threads may use meanwhile. */
export function isShared(view: ArrayBufferView): boolean {
  // `instanceof` first: plain JS, true for nearly every buffer (those of this realm).
  const buffer = view.buffer
  return !(buffer instanceof ArrayBuffer) && types.isSharedArrayBuffer(buffer)
}

/**
 * Runs the native `fill` on `into`, or, when `into` is shared, on a private copy that is
 * then copied into it by JS (native code writes only memory no other thread uses).
 */
export function readThroughCopy<T extends Uint8Array | Uint32Array>(into: T, fill: (into: T) => void): void {
  if (!isShared(into)) {
    fill(into)
    return
  }
  const copy = into.slice() as T
  fill(copy)
  into.set(copy)
}

/**
 * The offsets of a batch read copied into a `Uint32Array` (the output, `into` when given:
 * its first `offsets.length` elements), so the native call gets one array. A plain
 * array's elements must be integers in [0, 2^32): `Uint32Array.set` would wrap others.
 */
export function u32Batch(name: string, offsets: unknown, into: unknown): Uint32Array {
  // `instanceof` first: it is plain JS, where `types.isUint32Array` is a call into C++
  // (which also knows arrays of other realms). A Proxy is never a Uint32Array (V8 says
  // so), so only arrays need the (native) Proxy check.
  const typed = offsets instanceof Uint32Array || types.isUint32Array(offsets)
  if (!typed && (!Array.isArray(offsets) || types.isProxy(offsets))) {
    throw new VfioTypeError(`${name} must be an array of numbers or a Uint32Array, got ${describe(offsets)}`)
  }
  if (!typed) {
    for (let i = 0; i < offsets.length; i++) {
      const o: unknown = offsets[i]
      if (typeof o !== 'number' || o >>> 0 !== o) throw new VfioTypeError(`${name}[${i}] must be an integer in [0, 2^32), got ${describe(o)}`)
    }
  }
  const n = (offsets as ArrayLike<number>).length
  let out: Uint32Array
  if (into === undefined) {
    out = new Uint32Array(n)
  } else {
    if (!(into instanceof Uint32Array) && !types.isUint32Array(into)) throw new VfioTypeError(`into must be a Uint32Array, got ${describe(into)}`)
    if (into.length < n) throw new VfioTypeError(`into holds ${into.length} values, fewer than the ${n} offsets`)
    out = into.length === n ? into : into.subarray(0, n)
  }
  if (out !== offsets) out.set(offsets as ArrayLike<number>)
  return out
}

/** A string (its value — empty, NUL, length — is checked natively). */
export function str(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new VfioTypeError(`${name} must be a string, got ${describe(value)}`)
  return value
}

/** An optional string option. */
export function optStr(name: string, value: unknown): string | undefined {
  return value === undefined ? undefined : str(name, value)
}

/** An optional boolean option. */
export function optBool(name: string, value: unknown): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value
  throw new VfioTypeError(`${name} must be a boolean, got ${describe(value)}`)
}

/** An optional AbortSignal option. */
export function optSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined || value instanceof AbortSignal) return value
  throw new VfioTypeError(`${name} must be an AbortSignal, got ${describe(value)}`)
}

/** An options object: `undefined` means none; anything but a plain object is refused. */
export function options<T extends object>(name: string, value: unknown): Partial<T> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value) || types.isProxy(value)) {
    throw new VfioTypeError(`${name} must be an object, got ${describe(value)}`)
  }
  return value as Partial<T>
}

/** A native handle given to an internal constructor. */
export function handle<N extends object>(what: string, factory: string, value: unknown): N {
  if (typeof value !== 'object' || value === null) {
    throw new VfioTypeError(`${what} objects are not constructed directly: use ${factory}`)
  }
  return value as N
}
