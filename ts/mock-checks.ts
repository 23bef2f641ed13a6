/**
 * The native layer's value checks, written once more in TypeScript for the mock backend
 * (`vfio-ioctls/testing`), which must answer the same on any OS, where the addon does
 * not load. Each function mirrors one in `src/error.rs` or the core (named in its doc
 * comment), with the same code and the same message; `__test__/mock-equivalence.spec.ts`
 * compares them with the native ones wherever the addon loads, and
 * `__test__/guest/mock-equivalence.spec.ts` does so on a real device.
 */
import { ErrorCode, VfioError, type ErrorCodeValue } from './errors'

/** An error as the native layer makes it: `op: message`, `syscall` = `op`. */
export function mockError(code: ErrorCodeValue, op: string, message: string): VfioError {
  return new VfioError(code, `${op}: ${message}`, { syscall: op })
}

/** `ERR_VFIO_INVALID_ARGUMENT` (`error::invalid`, `VfioError::invalid`). */
export function invalid(op: string, message: string): VfioError {
  return mockError(ErrorCode.INVALID_ARGUMENT, op, message)
}

/** `ERR_VFIO_OUT_OF_RANGE` (`error::out_of_range`, `VfioError::out_of_range`). */
export function outOfRange(op: string, message: string): VfioError {
  return mockError(ErrorCode.OUT_OF_RANGE, op, message)
}

/** `ERR_VFIO_UNSUPPORTED` (`VfioError::unsupported`). */
export function unsupported(op: string, message: string): VfioError {
  return mockError(ErrorCode.UNSUPPORTED, op, message)
}

/** `ERR_VFIO_BUSY` (`VfioError::busy`). */
export function busy(op: string, message: string): VfioError {
  return mockError(ErrorCode.BUSY, op, message)
}

/** The core's `closed_message`: what a call on a closed `what` says. */
export function closedMessage(what: string): string {
  return `the ${what} is closed; open it again`
}

/** `ERR_VFIO_CLOSED` for a closed `what` (`error::closed`: no op, no syscall). */
export function closed(what: string): VfioError {
  return new VfioError(ErrorCode.CLOSED, closedMessage(what))
}

/** A number as Rust's `f64` Display writes it (`inf`, `NaN`, integers without exponent). */
export function rustF64(v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return 'inf'
  if (v === -Infinity) return '-inf'
  if (Number.isInteger(v)) {
    // Rust writes the shortest digits that read back as `v`, then zeros, never an
    // exponent: 2^63 is 9223372036854776000, 1e21 is 1000000000000000000000.
    const sign = v < 0 || Object.is(v, -0) ? '-' : ''
    const text = String(Math.abs(v))
    const e = text.indexOf('e+')
    if (e < 0) return sign + text
    const digits = text.slice(0, e).replace('.', '')
    return sign + digits.padEnd(Number(text.slice(e + 2)) + 1, '0')
  }
  return String(v)
}

/** `{:#x}` of Rust. */
export function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER

/** `error::to_u64`: a non-negative safe integer (offsets, lengths). */
export function toU64(op: string, what: string, value: number): number {
  if (!Number.isFinite(value) || !Number.isInteger(value)) throw invalid(op, `${what} must be an integer, got ${rustF64(value)}`)
  if (value < 0 || value > MAX_SAFE) throw outOfRange(op, `${what} must be in [0, 2^53 - 1], got ${rustF64(value)}`)
  return value
}

/** `error::to_u32`: an integer in `[0, 2^32)` (indices, vectors, counts, values). */
export function toU32(op: string, what: string, value: number): number {
  if (!Number.isFinite(value) || !Number.isInteger(value)) throw invalid(op, `${what} must be an integer, got ${rustF64(value)}`)
  if (value < 0 || value > 0xffff_ffff) throw outOfRange(op, `${what} must be in [0, 4294967295], got ${rustF64(value)}`)
  return value
}

/** `error::to_fd`: an integer in `[0, 2^31)`. */
export function toFd(op: string, what: string, value: number): number {
  const v = toU32(op, what, value)
  if (v > 0x7fff_ffff) throw outOfRange(op, `${what} ${v} is not a file descriptor`)
  return v
}

/** PATH_MAX, the longest string argument taken (`error::MAX_TEXT`). */
const MAX_TEXT = 4096

/** `error::to_text`: not empty, at most 4096 bytes (UTF-8), no NUL. */
export function toText(op: string, what: string, value: string): string {
  if (value === '') throw invalid(op, `${what} must not be empty`)
  const bytes = Buffer.byteLength(value, 'utf8')
  if (bytes > MAX_TEXT) throw invalid(op, `${what} is ${bytes} bytes long; at most ${MAX_TEXT} are taken`)
  const at = value.indexOf('\0')
  if (at >= 0) throw invalid(op, `${what} contains a NUL character at ${Buffer.byteLength(value.slice(0, at), 'utf8')}`)
  return value
}

/** `error::to_opt_text`. */
export function toOptText(op: string, what: string, value: string | undefined | null): string | undefined {
  return value === undefined || value === null ? undefined : toText(op, what, value)
}

/** `error::bigint_to_u64`: a bigint in `[0, 2^64)`. */
export function bigintToU64(op: string, what: string, value: bigint): bigint {
  if (value < 0n || value >= 1n << 64n) throw outOfRange(op, `${what} must be in [0, 2^64)`)
  return value
}

/** `error::number_or_bigint_to_u64`: a number ({@link toU64}) or a bigint ({@link bigintToU64}). */
export function numberOrBigintToU64(op: string, what: string, value: number | bigint): bigint {
  return typeof value === 'bigint' ? bigintToU64(op, what, value) : BigInt(toU64(op, what, value))
}

/** A decoded PCI address. */
export interface PciAddressParts {
  /** PCI domain (segment). */
  domain: number
  /** Bus. */
  bus: number
  /** Device (0 to 0x1f). */
  device: number
  /** Function (0 to 7). */
  function: number
}

/** The core's `hex_field(s, min, max)`: `min..=max` hex digits, nothing else. */
function hexField(s: string, min: number, max: number): number | undefined {
  if (s.length < min || s.length > max || !/^[0-9a-fA-F]+$/.test(s)) return undefined
  return parseInt(s, 16)
}

/** The core's `sysfs::address::parse_address`: `DDDD:BB:DD.F` or `BB:DD.F`. */
export function parseAddressParts(s: string): PciAddressParts | undefined {
  const dot = s.indexOf('.')
  if (dot < 0) return undefined
  const head = s.slice(0, dot)
  const fn = hexField(s.slice(dot + 1), 1, 1)
  if (fn === undefined) return undefined
  const parts = head.split(':')
  let domain: number | undefined
  let bus: string
  let device: string
  if (parts.length === 3) {
    domain = hexField(parts[0] ?? '', 4, 8)
    if (domain === undefined) return undefined
    bus = parts[1] ?? ''
    device = parts[2] ?? ''
  } else if (parts.length === 2) {
    domain = 0
    bus = parts[0] ?? ''
    device = parts[1] ?? ''
  } else {
    return undefined
  }
  const b = hexField(bus, 2, 2)
  const d = hexField(device, 2, 2)
  if (b === undefined || d === undefined || d > 31 || fn > 7) return undefined
  return { domain, bus: b, device: d, function: fn }
}

/** `DDDD:BB:DD.F`, as the core's `Display` of a PCI address writes it. */
export function formatAddress(a: PciAddressParts): string {
  const h = (v: number, n: number): string => v.toString(16).padStart(n, '0')
  return `${h(a.domain, 4)}:${h(a.bus, 2)}:${h(a.device, 2)}.${a.function.toString(16)}`
}

/** Longest address taken by the sysfs functions (`src/sysfs.rs` `MAX_ADDRESS`). */
const MAX_ADDRESS = 64

/** `src/sysfs.rs` `parse(op, address)`: text checks, length, then the address itself. */
export function parseAddressArg(op: string, address: string): string {
  toText(op, 'address', address)
  const len = Buffer.byteLength(address, 'utf8')
  if (len > MAX_ADDRESS) throw invalid(op, `address is ${len} bytes long; a PCI address is DDDD:BB:DD.F`)
  const parts = parseAddressParts(address)
  if (parts === undefined) {
    throw invalid(
      'parse PCI address',
      `${JSON.stringify(address)} is not a PCI address; expected DDDD:BB:DD.F or BB:DD.F in hex (device 00..1f, function 0..7), e.g. 0000:00:03.0`,
    )
  }
  return formatAddress(parts)
}
