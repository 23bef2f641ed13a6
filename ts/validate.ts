/** Argument checks shared by the facade's classes. */
import { ErrorCode, VfioError, VfioTypeError } from './errors'

/** A non-negative safe integer (offsets, lengths, indices). */
export function uint(name: string, value: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value === 'bigint') {
    if (value < 0n || value > BigInt(max)) {
      throw new VfioError(ErrorCode.OUT_OF_RANGE, `${name} must be in [0, ${max}], got ${value}`)
    }
    return Number(value)
  }
  if (typeof value !== 'number') throw new VfioTypeError(`${name} must be a number, got ${typeof value}`)
  if (!Number.isInteger(value)) {
    throw new VfioError(ErrorCode.INVALID_ARGUMENT, `${name} must be an integer, got ${value}`)
  }
  if (value < 0 || value > max) {
    throw new VfioError(ErrorCode.OUT_OF_RANGE, `${name} must be in [0, ${max}], got ${value}`)
  }
  return value
}

/** A u64 given as a number or bigint. */
export function u64(name: string, value: unknown): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new VfioError(ErrorCode.INVALID_ARGUMENT, `${name} must be a safe integer or a bigint, got ${value}`)
    }
    value = BigInt(value)
  }
  if (typeof value !== 'bigint') throw new VfioTypeError(`${name} must be a number or bigint, got ${typeof value}`)
  if (value < 0n || value >= 1n << 64n) {
    throw new VfioError(ErrorCode.OUT_OF_RANGE, `${name} must be in [0, 2^64), got ${value}`)
  }
  return value
}

/** Bytes to write. */
export function bytes(name: string, value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  if (value instanceof ArrayBuffer) return new Uint8Array(value)
  throw new VfioTypeError(`${name} must be a Buffer, TypedArray or ArrayBuffer`)
}

/** A non-empty string. */
export function str(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new VfioTypeError(`${name} must be a string, got ${typeof value}`)
  if (value.length === 0) throw new VfioError(ErrorCode.INVALID_ARGUMENT, `${name} must not be empty`)
  return value
}
