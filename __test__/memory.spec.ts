import test from 'ava'
import { barrier, DmaBuffer, MappedRegion } from '../ts/index'
import { fakeMemory } from './fakes'
import { recorder, throwsCode } from './helpers'

for (const [name, make] of [
  ['MappedRegion', () => MappedRegion.fromNative(fakeMemory())],
  ['DmaBuffer', () => DmaBuffer.fromNative(fakeMemory(), true)],
] as const) {
  // Types are the facade's to check; values (range, integer) the native layer's, which
  // the guest suite asserts against the real binding (trust.spec.ts).
  test(`${name}: accessor argument types are checked before the native call`, (t) => {
    const m = make()
    throwsCode(t, () => m.readU32('4' as never), 'ERR_VFIO_INVALID_ARGUMENT')
    throwsCode(t, () => m.writeU8(0, null as never), 'ERR_VFIO_INVALID_ARGUMENT')
    throwsCode(t, () => m.writeU64(0, 1.5), 'ERR_VFIO_INVALID_ARGUMENT')
    throwsCode(t, () => m.writeU64(0, {} as never), 'ERR_VFIO_INVALID_ARGUMENT')
    throwsCode(t, () => m.write(0, 42 as never), 'ERR_VFIO_INVALID_ARGUMENT')
    throwsCode(t, () => m.write(0, new Proxy(new Uint8Array(4), {})), 'ERR_VFIO_INVALID_ARGUMENT')
    const long = throwsCode(t, () => m.readU32('x'.repeat(1 << 20) as never), 'ERR_VFIO_INVALID_ARGUMENT')
    t.true(long.message.length < 200, 'a 1 MiB argument is not echoed whole')
  })

  test(`${name}: widths round trip and close ends access`, (t) => {
    const m = make()
    m.writeU32(8, 0xdeadbeef)
    t.is(m.readU32(8), 0xdeadbeef)
    m.writeU64(16, 0x1122334455667788n)
    t.is(m.readU64(16), 0x1122334455667788n)
    m.write(32, Buffer.from('abc'))
    t.is(m.read(32, 3).toString(), 'abc')
    m.close()
    m.close()
    throwsCode(t, () => m.readU32(0), 'ERR_VFIO_CLOSED')
    throwsCode(t, () => m.write(0, Buffer.alloc(1)), 'ERR_VFIO_CLOSED')
  })
}

test('DmaBuffer: the view is made once and cached', (t) => {
  const rec = recorder()
  const n = fakeMemory(rec)
  const d = DmaBuffer.fromNative(n, true)
  t.true(d.hasView)
  t.is(d.view, d.view)
  t.is(rec.calls.filter((c) => c === 'view()').length, 1)
})

test('DmaBuffer without external buffers: view is unsupported, read/write still work', (t) => {
  const rec = recorder()
  const d = DmaBuffer.fromNative(fakeMemory(rec), false)
  t.false(d.hasView)
  throwsCode(t, () => d.view, 'ERR_VFIO_UNSUPPORTED')
  d.write(0, Buffer.from([1, 2, 3]))
  t.deepEqual([...d.read(0, 3)], [1, 2, 3])
  t.false(rec.calls.includes('view()'))
})

test('DmaBuffer: the environment variable selects the copying path', (t) => {
  const before = process.env.VFIO_IOCTLS_NO_EXTERNAL_BUFFERS
  process.env.VFIO_IOCTLS_NO_EXTERNAL_BUFFERS = '1'
  try {
    t.false(DmaBuffer.fromNative(fakeMemory()).hasView)
  } finally {
    if (before === undefined) delete process.env.VFIO_IOCTLS_NO_EXTERNAL_BUFFERS
    else process.env.VFIO_IOCTLS_NO_EXTERNAL_BUFFERS = before
  }
  t.true(DmaBuffer.fromNative(fakeMemory()).hasView)
})

test('waitU32: resolves when the masked value matches, without blocking the event loop', async (t) => {
  const rec = recorder()
  const n = fakeMemory(rec)
  const r = MappedRegion.fromNative(n)
  const waiting = r.waitU32(0x1c, { mask: 0x1, value: 0x1, timeout: 5000 })
  let ticks = 0
  const timer = setInterval(() => ++ticks, 1)
  await new Promise((resolve) => setTimeout(resolve, 20))
  r.writeU32(0x1c, 0x8001)
  t.is(await waiting, 0x8001)
  clearInterval(timer)
  t.true(ticks > 0, 'the event loop ran while waiting')
  t.true(rec.calls.includes('waitU32(28,1,1,5000)'), rec.calls.join(' '))
  r.writeU32(0x20, 7)
  t.is(await r.waitU32(0x20, { value: 7 }), 7, 'mask defaults to all bits')
  t.true(rec.calls.includes(`waitU32(32,${0xffffffff},7,1000)`), 'timeout defaults to 1000 ms')
})

test('waitU32: timeout, abort and bad options', async (t) => {
  const r = MappedRegion.fromNative(fakeMemory())
  await t.throwsAsync(r.waitU32(0, { value: 1, timeout: 5 }), { code: 'ERR_VFIO_TIMEOUT' })
  const ac = new AbortController()
  const waiting = r.waitU32(0, { value: 1, signal: ac.signal })
  setTimeout(() => ac.abort(new Error('stop')), 5)
  const err = (await t.throwsAsync(waiting)) as Error & { code?: string; cause?: unknown }
  t.is(err.name, 'AbortError')
  t.is(err.code, 'ERR_VFIO_ABORTED')
  t.is((err.cause as Error).message, 'stop')
  await t.throwsAsync(r.waitU32(0, { value: 1, signal: AbortSignal.abort() }), { name: 'AbortError' })
  await t.throwsAsync(r.waitU32(0, undefined as never), { name: 'VfioTypeError', message: /value must be a number/ })
  await t.throwsAsync(r.waitU32(0, { value: 1, signal: 'x' as never }), { name: 'VfioTypeError' })
})

test('barrier: mb, rmb, wmb, dmaRmb, dmaWmb are the native fences', (t) => {
  for (const [name, fence] of Object.entries(barrier)) {
    t.is(typeof fence, 'function', name)
    t.is(fence(), undefined, name)
  }
  t.deepEqual(Object.keys(barrier).sort(), ['dmaRmb', 'dmaWmb', 'mb', 'rmb', 'wmb'])
})

test('DmaBuffer accessors: in range and aligned through the view, anything else native, closed after close', (t) => {
  const rec = recorder()
  const d = DmaBuffer.fromNative(fakeMemory(rec), true)
  d.writeU32(8, 0xdeadbeef)
  t.is(d.readU32(8), 0xdeadbeef)
  d.writeU64(16, 0xffff_ffff_ffff_ffffn)
  t.is(d.readU64(16), 0xffff_ffff_ffff_ffffn)
  d.writeU16(2, 0xbeef)
  t.is(d.readU16(2), 0xbeef)
  d.writeU8(1, 7)
  t.is(d.readU8(1), 7)
  d.write(4090, Buffer.from('abcdef'))
  t.is(d.read(4090, 6).toString(), 'abcdef')
  t.deepEqual(
    rec.calls.filter((c) => c.startsWith('readU32') || c.startsWith('writeU32')),
    [],
    'the view served every in-range access',
  )
  // Unaligned, past the end, a value that does not fit: the native accessor answers
  // (and gives its errors; the guest suite checks them against the real binding).
  // (The fake's own Buffer throws its RangeError there.)
  d.readU32(2)
  t.throws(() => d.readU32(4096))
  t.throws(() => d.writeU32(4, 2 ** 32))
  t.deepEqual(
    rec.calls.filter((c) => c.startsWith('readU32') || c.startsWith('writeU32')),
    ['readU32(2)', 'readU32(4096)', 'writeU32(4,4294967296)'],
  )
  const view = d.view
  d.close()
  throwsCode(t, () => d.readU32(0), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.writeU32(0, 1), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.read(0, 4), 'ERR_VFIO_CLOSED')
  t.is(view.length, 4096, 'a view the caller holds stays valid memory')
})

test('DmaSlice accessors through the view: ERR_VFIO_CLOSED once the slice closes, native once the buffer does', (t) => {
  const rec = recorder()
  const d = DmaBuffer.fromNative(fakeMemory(rec), true)
  const s = d.slice(4096 - 64, 64)
  s.writeU32(0, 0x12345678)
  t.is(d.readU32(4096 - 64), 0x12345678)
  t.is(s.readU32(0), 0x12345678)
  const inner = s.slice(8, 8)
  inner.writeU64(0, 5n)
  t.is(s.readU64(8), 5n)
  inner.close()
  throwsCode(t, () => inner.readU64(0), 'ERR_VFIO_CLOSED')
  t.is(s.readU32(0), 0x12345678)
  t.false(rec.calls.some((c) => c.startsWith('readU32')), 'the view served the slices')
  d.close()
  // The native slice refuses access once its buffer closed (the guest suite checks the
  // ERR_VFIO_CLOSED against the real binding); the fake only records that it was asked.
  s.readU32(0)
  t.true(rec.calls.includes('readU32(0)'), 'a closed buffer\'s slice no longer uses the view')
})

test('readU32Many: one native call with the offsets in one array; readInto fills the caller\'s buffer', (t) => {
  const rec = recorder()
  const r = MappedRegion.fromNative(fakeMemory(rec))
  r.writeU32(0, 11)
  r.writeU32(8, 22)
  t.deepEqual([...r.readU32Many([8, 0, 8])], [22, 11, 22])
  const into = new Uint32Array(4)
  const got = r.readU32Many(Uint32Array.of(0, 8), into)
  t.deepEqual([...got], [11, 22])
  t.is(got.buffer, into.buffer, 'the values are in `into`')
  const inPlace = Uint32Array.of(8, 0)
  t.is(r.readU32Many(inPlace, inPlace), inPlace)
  t.deepEqual([...inPlace], [22, 11])
  t.is(rec.calls.filter((c) => c.startsWith('readU32Many')).length, 3)
  throwsCode(t, () => r.readU32Many([0, -4]), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => r.readU32Many([2 ** 32]), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => r.readU32Many(['0'] as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => r.readU32Many([0, 4], new Uint32Array(1)), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => r.readU32Many([0], [0] as never), 'ERR_VFIO_INVALID_ARGUMENT')
  const target = Buffer.alloc(4)
  r.readInto(8, target)
  t.is(target.readUInt32LE(0), 22)
  throwsCode(t, () => r.readInto(0, 'abcd' as never), 'ERR_VFIO_INVALID_ARGUMENT')
  const d = DmaBuffer.fromNative(fakeMemory(rec), true)
  d.writeU32(4, 33)
  const dt = new Uint8Array(4)
  d.readInto(4, dt)
  t.deepEqual([...dt], [33, 0, 0, 0])
  t.false(rec.calls.includes('readInto(4,4)'), 'DMA memory: through the view')
  r.close()
  throwsCode(t, () => r.readU32Many([0]), 'ERR_VFIO_CLOSED')
})

test('MappedRegion: native code never gets SharedArrayBuffer memory (reads land through a copy, writes take a snapshot)', (t) => {
  const native = fakeMemory()
  const seen: boolean[] = []
  const isShared = (a: ArrayBufferView): boolean => a.buffer instanceof SharedArrayBuffer
  const { readInto, readU32Many, write } = native
  native.readInto = (o, target) => (seen.push(isShared(target)), readInto(o, target))
  native.readU32Many = (values) => (seen.push(isShared(values)), readU32Many(values))
  native.write = (o, data) => (seen.push(isShared(data)), write(o, data))
  const m = MappedRegion.fromNative(native)
  const data = new Uint8Array(new SharedArrayBuffer(8))
  data.set([1, 2, 3, 4, 5, 6, 7, 8])
  m.write(16, data)
  const into = new Uint8Array(new SharedArrayBuffer(8))
  m.readInto(16, into)
  t.deepEqual([...into], [1, 2, 3, 4, 5, 6, 7, 8])
  const values = new Uint32Array(new SharedArrayBuffer(8))
  values.set([16, 20])
  t.is(m.readU32Many(values, values), values)
  t.deepEqual([...values], [0x04030201, 0x08070605])
  t.deepEqual(seen, [false, false, false])
  // An ArrayBuffer's memory goes to the native call itself (no copy on the common path).
  const plain = new Uint8Array(8)
  native.readInto = (o, target) => (t.is(target, plain), readInto(o, target))
  m.readInto(16, plain)
  t.is(plain[7], 8)
})
