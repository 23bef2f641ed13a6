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
