/**
 * Loads the native binding lazily, so that importing the package works anywhere
 * and the first use on a platform without it throws `ERR_VFIO_UNSUPPORTED`.
 */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'

/**
 * The hot accessors, which the addon registers by hand rather than through napi-rs
 * (whose glue costs a call with arguments about three times the call itself; see
 * src/raw_callback.rs): the object `fastAccessors()` returns, merged into the binding
 * once per thread. A host test checks that the addon has each of these.
 */
export interface FastAccessors {
  mmioReadU8(handle: number, offset: number): number
  mmioReadU16(handle: number, offset: number): number
  mmioReadU32(handle: number, offset: number): number
  mmioWriteU8(handle: number, offset: number, value: number): void
  mmioWriteU16(handle: number, offset: number, value: number): void
  mmioWriteU32(handle: number, offset: number, value: number): void
  /** Replaces each offset in `values` with the 32-bit value read there. */
  mmioReadU32Many(handle: number, values: Uint32Array): void
  regionReadU8(handle: number, index: number, offset: number): number
  regionReadU16(handle: number, index: number, offset: number): number
  regionReadU32(handle: number, index: number, offset: number): number
  regionWriteU8(handle: number, index: number, offset: number, value: number): void
  regionWriteU16(handle: number, index: number, offset: number, value: number): void
  regionWriteU32(handle: number, index: number, offset: number, value: number): void
  regionReadInto(handle: number, index: number, offset: number, target: Uint8Array): void
  interruptWaiterWait(token: number, timeoutMs: number): number
}

/** The names of {@link FastAccessors}, for the mock and the test that checks the addon. */
export const FAST_ACCESSOR_NAMES = [
  'mmioReadU8',
  'mmioReadU16',
  'mmioReadU32',
  'mmioWriteU8',
  'mmioWriteU16',
  'mmioWriteU32',
  'mmioReadU32Many',
  'regionReadU8',
  'regionReadU16',
  'regionReadU32',
  'regionWriteU8',
  'regionWriteU16',
  'regionWriteU32',
  'regionReadInto',
  'interruptWaiterWait',
] as const satisfies readonly (keyof FastAccessors)[]
// The list names every member of FastAccessors (a compile error otherwise).
type Unlisted = Exclude<keyof FastAccessors, (typeof FAST_ACCESSOR_NAMES)[number]>
const everyAccessorListed: [Unlisted] extends [never] ? true : Unlisted = true
void everyAccessorListed

export type NativeBinding = typeof Binding & FastAccessors

let binding: NativeBinding | undefined
let loadError: unknown
/** A binding installed in place of the native one (`vfio-ioctls/testing`'s mock). */
let substitute: NativeBinding | undefined

/** The binding, loaded on first call (or the substitute `useBinding` installed). */
export function native(): NativeBinding {
  if (substitute) return substitute
  if (binding) return binding
  if (process.platform !== 'linux') {
    throw new VfioError(
      ErrorCode.UNSUPPORTED,
      `VFIO is Linux-only; this is ${process.platform}. The package imports here, but no call can work.`,
    )
  }
  if (loadError === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const loaded = require('../native/binding.cjs') as typeof Binding
      // Native errors are made as VfioError instances, with code, errno, syscall, path.
      loaded.useErrorClass(VfioError as new (code: string, message: string, fields: object) => Error)
      binding = { ...loaded, ...(loaded.fastAccessors() as FastAccessors) }
      return binding
    } catch (err) {
      loadError = err
    }
  }
  throw new VfioError(ErrorCode.UNSUPPORTED, missingBinaryMessage(process.arch, currentLibc(), packageVersion(), loadError), { cause: loadError })
}

/**
 * @internal Installs `b` as what {@link native} returns (`undefined`: the native binding
 * again); returns what was installed before. For `vfio-ioctls/testing` only.
 */
export function useBinding(b: NativeBinding | undefined): NativeBinding | undefined {
  const before = substitute
  substitute = b
  return before
}

/** The C library a Linux build links against: the `gnu` or `musl` of a target triple. */
export type Libc = 'gnu' | 'musl'

/** The architectures (`process.arch`) that have a published binary package, for each libc. */
export const PUBLISHED_ARCHES: readonly string[] = ['x64', 'arm64']

/**
 * The libc of a process report's header (`process.report.getReport().header`): glibc
 * sets `glibcVersionRuntime`, musl does not. Pure. Without a report, `gnu` (the common
 * case; the message then says which package to try for musl).
 */
export function libcFromReportHeader(header: { glibcVersionRuntime?: unknown } | undefined | null): Libc {
  if (header === undefined || header === null) return 'gnu'
  return typeof header.glibcVersionRuntime === 'string' && header.glibcVersionRuntime !== '' ? 'gnu' : 'musl'
}

/**
 * The npm package that holds the binary for Linux on `arch` with `libc`, as
 * `optionalDependencies` lists them: `vfio-ioctls-linux-x64-gnu`,
 * `vfio-ioctls-linux-arm64-musl`, …. Pure; names a package also for an architecture
 * with none published (see {@link PUBLISHED_ARCHES}).
 */
export function platformPackageName(arch: string, libc: Libc): string {
  return `vfio-ioctls-linux-${arch}-${libc}`
}

/**
 * The message of the `ERR_VFIO_UNSUPPORTED` thrown when the binary does not load on
 * Linux: which package should have been installed, and how to fix it. Pure.
 */
export function missingBinaryMessage(arch: string, libc: Libc, version: string | undefined, loadError: unknown): string {
  const name = platformPackageName(arch, libc)
  const spec = version === undefined ? name : `${name}@${version}`
  const cause = describeLoadError(loadError)
  const libcName = libc === 'gnu' ? 'glibc' : 'musl'
  if (!PUBLISHED_ARCHES.includes(arch)) {
    return (
      `no vfio-ioctls binary for linux-${arch} (${libcName}): prebuilt packages exist for ` +
      `${PUBLISHED_ARCHES.map((a) => `linux-${a}`).join(' and ')} only. Build it from source ` +
      '(a Rust toolchain and `npm run build` in a checkout of vfio-ioctls). ' +
      `Loading it failed with: ${cause}`
    )
  }
  return (
    `no vfio-ioctls binary for linux-${arch} (${libcName}): the package ${name} should have been ` +
    'installed with vfio-ioctls (it is an optional dependency) but could not be loaded. ' +
    `Fix: \`npm install ${spec}\`; or reinstall without --omit=optional / --no-optional, and if the ` +
    'lockfile or node_modules came from another machine, delete node_modules and package-lock.json ' +
    'and run `npm install` again on this one. ' +
    `Loading it failed with: ${cause}`
  )
}

/**
 * The first line of each message down an error's `cause` chain (napi's loader chains
 * the failure of every place it looked), without repeats, at most 8 deep; without the
 * loader's own summary and its WebAssembly fallbacks (none is published) when anything
 * else is left.
 */
function describeLoadError(err: unknown): string {
  const lines: string[] = []
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const message = e instanceof Error ? e.message : String(e)
    const line = message.split('\n', 1)[0] ?? ''
    if (line !== '' && !lines.includes(line)) lines.push(line)
    e = e instanceof Error ? e.cause : undefined
  }
  const specific = lines.filter((l) => !l.startsWith('Cannot find native binding') && !/wasi/i.test(l))
  return (specific.length > 0 ? specific : lines).join('; ') || String(err)
}

/** This process's libc, from its report (Linux only). */
function currentLibc(): Libc {
  try {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: unknown } } | undefined
    return libcFromReportHeader(report?.header)
  } catch {
    return libcFromReportHeader(undefined)
  }
}

/** The version of vfio-ioctls, which its platform packages share; `undefined` if unreadable. */
function packageVersion(): string | undefined {
  try {
    // Relative to dist/ (and to ts/ under tsx): the package root.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../package.json') as { version?: string }).version
  } catch {
    return undefined
  }
}

/** Whether DMA buffers may expose zero-copy views (false in Electron, or when disabled). */
export function externalBuffersAllowed(): boolean {
  const env = process.env.VFIO_IOCTLS_NO_EXTERNAL_BUFFERS
  if (env !== undefined && env !== '' && env !== '0') return false
  return !(process.versions as Record<string, string | undefined>).electron
}
