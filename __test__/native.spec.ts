import test from 'ava'
import { ErrorCode, VfioError } from '../ts/index'
import { FAST_ACCESSOR_NAMES, libcFromReportHeader, missingBinaryMessage, native, platformPackageName, PUBLISHED_ARCHES } from '../ts/native'
import { throwsCode } from './helpers'

test('platformPackageName names the optionalDependencies of package.json', (t) => {
  t.is(platformPackageName('x64', 'gnu'), 'vfio-ioctls-linux-x64-gnu')
  t.is(platformPackageName('arm64', 'musl'), 'vfio-ioctls-linux-arm64-musl')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require('../package.json') as { optionalDependencies: Record<string, string> }
  const names = PUBLISHED_ARCHES.flatMap((arch) => (['gnu', 'musl'] as const).map((libc) => platformPackageName(arch, libc)))
  t.deepEqual(names.sort(), Object.keys(pkg.optionalDependencies).sort())
})

test('libcFromReportHeader: glibcVersionRuntime means glibc, its absence musl', (t) => {
  t.is(libcFromReportHeader({ glibcVersionRuntime: '2.36' }), 'gnu')
  t.is(libcFromReportHeader({}), 'musl')
  t.is(libcFromReportHeader({ glibcVersionRuntime: '' }), 'musl')
  t.is(libcFromReportHeader({ glibcVersionRuntime: 2 }), 'musl')
  // No report at all: the common case, glibc.
  t.is(libcFromReportHeader(undefined), 'gnu')
  t.is(libcFromReportHeader(null), 'gnu')
  // This host (the tests run on glibc Linux).
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header
  t.is(libcFromReportHeader(header), header?.glibcVersionRuntime ? 'gnu' : 'musl')
})

test('missingBinaryMessage names the package, its version and the fix', (t) => {
  // As napi's loader chains them: its summary, then each place it looked.
  const cause = new Error('Cannot find native binding. npm has a bug\nmore', {
    cause: new Error("Cannot find module 'vfio-ioctls-wasm32-wasi'", {
      cause: new Error("Cannot find module 'vfio-ioctls-linux-x64-musl'\nRequire stack:\n- x", { cause: new Error("Cannot find module './vfio-ioctls.linux-x64-musl.node'") }),
    }),
  })
  const m = missingBinaryMessage('x64', 'musl', '0.1.0', cause)
  t.regex(m, /^no vfio-ioctls binary for linux-x64 \(musl\): the package vfio-ioctls-linux-x64-musl should have been installed/)
  t.true(m.includes('`npm install vfio-ioctls-linux-x64-musl@0.1.0`'), m)
  t.regex(m, /--omit=optional/)
  t.regex(m, /delete node_modules and package-lock\.json/)
  t.true(m.endsWith("Loading it failed with: Cannot find module 'vfio-ioctls-linux-x64-musl'; Cannot find module './vfio-ioctls.linux-x64-musl.node'"), m)
  t.false(m.includes('Require stack'))
  // Without a readable version, the name alone.
  t.true(missingBinaryMessage('arm64', 'gnu', undefined, 'x').includes('`npm install vfio-ioctls-linux-arm64-gnu`'))
  // Only the loader's summary: that, then.
  t.true(missingBinaryMessage('x64', 'gnu', '0.1.0', new Error('Cannot find native binding. x')).endsWith('Loading it failed with: Cannot find native binding. x'))
})

test('missingBinaryMessage on an architecture without a published package says to build from source', (t) => {
  const m = missingBinaryMessage('riscv64', 'gnu', '0.1.0', new Error('nope'))
  t.regex(m, /^no vfio-ioctls binary for linux-riscv64 \(glibc\): prebuilt packages exist for linux-x64 and linux-arm64 only/)
  t.regex(m, /npm run build/)
  t.false(m.includes('npm install vfio-ioctls-linux-riscv64'))
})

test('the hand-written accessors: the addon has each one, and bad calls get clear errors', (t) => {
  const b = native()
  const names = Object.keys(b)
  for (const name of FAST_ACCESSOR_NAMES) t.true(names.includes(name) && typeof b[name] === 'function', name)
  // And the other way: the addon hands out no function the list (and FastAccessors) lacks.
  t.deepEqual(Object.keys(b.fastAccessors()).sort(), [...FAST_ACCESSOR_NAMES].sort())
  // A handle no open object has: the closed error, as for a stale one.
  throwsCode(t, () => b.mmioReadU32(0, 0), ErrorCode.CLOSED)
  throwsCode(t, () => b.regionWriteU16(0, 0, 0, 1), ErrorCode.CLOSED)
  throwsCode(t, () => b.mmioReadU32Many(0, new Uint32Array(2)), ErrorCode.CLOSED)
  // Arguments that are not numbers, too few of them, the wrong typed array: which one.
  const call = b.mmioReadU32 as (...args: unknown[]) => number
  t.regex(throwsCode(t, () => call(0, '4'), ErrorCode.INVALID_ARGUMENT).message, /mmioReadU32: argument 2 must be a number/)
  t.regex(throwsCode(t, () => call(0), ErrorCode.INVALID_ARGUMENT).message, /argument 2 must be a number/)
  const many = b.mmioReadU32Many as (...args: unknown[]) => void
  t.regex(throwsCode(t, () => many(0, new Uint8Array(4)), ErrorCode.INVALID_ARGUMENT).message, /mmioReadU32Many: argument 2 must be a Uint32Array/)
  t.regex(throwsCode(t, () => many(0, [0, 4]), ErrorCode.INVALID_ARGUMENT).message, /argument 2 must be a Uint32Array/)
  const into = b.regionReadInto as (...args: unknown[]) => void
  t.regex(throwsCode(t, () => into(0, 0, 0, new Uint32Array(1)), ErrorCode.INVALID_ARGUMENT).message, /regionReadInto: argument 4 must be a Uint8Array/)
  // A Buffer is a Uint8Array.
  throwsCode(t, () => into(0, 0, 0, Buffer.alloc(4)), ErrorCode.CLOSED)
  // SharedArrayBuffer memory is taken too (through a copy; the guest suite checks the data).
  throwsCode(t, () => into(0, 0, 0, new Uint8Array(new SharedArrayBuffer(4))), ErrorCode.CLOSED)
  throwsCode(t, () => many(0, new Uint32Array(new SharedArrayBuffer(8))), ErrorCode.CLOSED)
  // Their errors are the facade's class, with the call's stack.
  const e = throwsCode(t, () => b.regionReadU32(0, 0, 0), ErrorCode.CLOSED)
  t.true(e instanceof VfioError)
})
