import test from 'ava'
import { DmaBuffer, MappedRegion } from '../ts/index'
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
