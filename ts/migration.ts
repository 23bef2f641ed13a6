/**
 * VFIO migration v2, device DMA logging and dma-buf export: the types of
 * {@link Device}'s migration members and the helpers behind them.
 *
 * A device that supports migration (`device.migration` is not null) moves through the
 * states of {@link MigrationState}; the kernel takes the arcs between two states. Some
 * states open a data session: `'stop-copy'` and `'pre-copy'` (read the device state)
 * and `'resuming'` (write one). `saveState()`/`loadState()` run the whole arc.
 * @module
 */
import type * as Binding from '../native/binding'
import { VfioTypeError } from './errors'
import { bytes, describe, num } from './validate'

/**
 * A migration state (`enum vfio_device_mig_state`): `'running'`, `'stop'`,
 * `'stop-copy'` (stopped, its state readable), `'resuming'` (stopped, taking a state),
 * `'running-p2p'` (running without peer-to-peer DMA), `'pre-copy'` and
 * `'pre-copy-p2p'` (running, its state readable ahead of the stop), and `'error'`
 * (a failed transition; only a reset leaves it, and it is no target).
 */
export type MigrationState = 'error' | 'stop' | 'running' | 'stop-copy' | 'resuming' | 'running-p2p' | 'pre-copy' | 'pre-copy-p2p'

/** Every {@link MigrationState}, by the kernel's number (`'error'` is 0). */
export const MIGRATION_STATES: readonly MigrationState[] = Object.freeze(['error', 'stop', 'running', 'stop-copy', 'resuming', 'running-p2p', 'pre-copy', 'pre-copy-p2p'])

/** What a device's migration driver supports (`VFIO_DEVICE_FEATURE_MIGRATION`). */
export interface MigrationSupport {
  /** `VFIO_MIGRATION_*` bits: 1 STOP_COPY, 2 P2P, 4 PRE_COPY. */
  flags: number
  /** `'stop'`, `'stop-copy'` and `'resuming'` exist (every migratable device). */
  stopCopy: boolean
  /** `'running-p2p'` exists. */
  p2p: boolean
  /** `'pre-copy'` exists (and `'pre-copy-p2p'` with `p2p`). */
  preCopy: boolean
  /** The states these flags give. */
  states: MigrationState[]
}

/**
 * Data left to read in `'pre-copy'` (`VFIO_MIG_GET_PRECOPY_INFO`).
 * @interface
 */
export type PrecopyInfo = Binding.PrecopyInfo

/** An IOVA range for DMA dirty logging. */
export interface DmaLoggingRange {
  /** Start IOVA (page-aligned). */
  iova: number | bigint
  /** Length in bytes (a multiple of the page size). */
  length: number | bigint
}

/** A range of a region, for dma-buf export. */
export interface RegionRange {
  /** Offset in the region. */
  offset: number | bigint
  /** Length in bytes. */
  length: number | bigint
}

/** How a migration data stream is read. */
export interface MigrationReadOptions {
  /** Bytes asked of the data fd per read (default 64 KiB, at most 16 MiB). */
  chunkSize?: number
}

/** Checks that `value` is a {@link MigrationState}; a `VfioTypeError` naming `name` otherwise. */
export function migrationState(name: string, value: unknown): MigrationState {
  const state = MIGRATION_STATES.find((s) => s === value)
  if (state === undefined) throw new VfioTypeError(`${name} must be one of ${MIGRATION_STATES.map((s) => `'${s}'`).join(', ')}, got ${describe(value)}`)
  return state
}

/** The native support with its states typed. */
export function toSupport(native: Binding.MigrationSupport | null): MigrationSupport | null {
  if (native === null) return null
  return { ...native, states: native.states.map((s) => migrationState('state', s)) }
}

/** A {@link DmaLoggingRange} for the binding. */
export function loggingRange(name: string, value: unknown): Binding.DmaLoggingRange {
  if (typeof value !== 'object' || value === null) throw new VfioTypeError(`${name} must be an object { iova, length }, got ${describe(value)}`)
  const r = value as Partial<DmaLoggingRange>
  return { iova: num(`${name}.iova`, r.iova), length: num(`${name}.length`, r.length) }
}

/** A {@link RegionRange} for the binding. */
export function regionRange(name: string, value: unknown): Binding.RegionRange {
  if (typeof value !== 'object' || value === null) throw new VfioTypeError(`${name} must be an object { offset, length }, got ${describe(value)}`)
  const r = value as Partial<RegionRange>
  return { offset: num(`${name}.offset`, r.offset), length: num(`${name}.length`, r.length) }
}

/** A list of ranges, each checked by `one`. */
export function rangeList<T>(name: string, value: unknown, one: (name: string, v: unknown) => T): T[] {
  if (!Array.isArray(value)) throw new VfioTypeError(`${name} must be an array, got ${describe(value)}`)
  return value.map((v: unknown, i) => one(`${name}[${i}]`, v))
}

/** The chunk size of {@link MigrationReadOptions}. */
export function chunkSize(opts: MigrationReadOptions): number {
  const n = num('chunkSize', opts.chunkSize ?? 64 * 1024)
  if (!Number.isInteger(n) || n < 1 || n > 16 * 1024 * 1024) throw new VfioTypeError(`chunkSize must be an integer from 1 to 16 MiB, got ${n}`)
  return n
}

/** Reads the session's data fd to its end, chunk by chunk, off the JS thread. */
export async function* readChunks(native: () => Binding.Device, size: number): AsyncGenerator<Buffer, void, undefined> {
  for (;;) {
    const chunk = await native().readMigrationData(size)
    if (chunk.length === 0) return
    yield chunk
  }
}

/** What {@link Device.loadState} takes: the bytes, or chunks of them. */
export type MigrationSource = Uint8Array | ArrayBufferView | ArrayBuffer | Iterable<Uint8Array> | AsyncIterable<Uint8Array>

/**
 * The chunks of `source` (bytes, or an iterable or async iterable of them, e.g. a
 * Readable), its shape checked now, before any state changes; each chunk as it comes.
 */
export function chunksOf(source: unknown): AsyncIterable<Uint8Array> {
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    const whole = bytes('state', source)
    return (async function* () {
      yield whole
    })()
  }
  const iterable = source as Partial<AsyncIterable<unknown> & Iterable<unknown>> | null
  if (iterable === null || typeof iterable !== 'object' || (typeof iterable[Symbol.asyncIterator] !== 'function' && typeof iterable[Symbol.iterator] !== 'function')) {
    throw new VfioTypeError(`state must be a Buffer, TypedArray, ArrayBuffer or an (async) iterable of them, got ${describe(source)}`)
  }
  return (async function* () {
    for await (const chunk of iterable as AsyncIterable<unknown>) yield bytes('state chunk', chunk)
  })()
}

/** Writes `chunks` to the data fd, off the JS thread (empty chunks are skipped). */
export async function writeChunks(native: () => Binding.Device, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const b of chunks) {
    if (b.length > 0) await native().writeMigrationData(b)
  }
}
