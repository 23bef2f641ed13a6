/**
 * The facade's DMA API against fakes: how `allocateDma` options reach the binding,
 * their type checks, and slices (view, lifetime). Values, bounds and the kernel are the
 * native layer's, tested in the core and in the guest (`__test__/guest/dma.spec.ts`).
 */
import test from 'ava'
import { Container, DmaBuffer } from '../ts/index'
import { native } from '../ts/native'
import { fakeContainer, fakeMemory } from './fakes'
import { recorder, throwsCode } from './helpers'

/** A `Container` over a fake native container, and its recorded calls. */
function container(): { c: Container; allocations: ReturnType<typeof fakeContainer>['allocations'] } {
  const fake = fakeContainer()
  const restore = fake.install(native() as unknown as { Container: unknown })
  try {
    return { c: new Container(), allocations: fake.allocations }
  } finally {
    restore()
  }
}

test('allocateDma passes no options object without options, and IOVAs and masks as numbers where exact', (t) => {
  const { c, allocations } = container()
  c.allocateDma(4096)
  c.allocateDma(8192, { iova: 0x100000, align: 0x200000, dmaMask: 0xffffffff, hugePages: '2M' })
  c.allocateDma(4096, { iova: 0x200000n, dmaMask: 2n ** 64n - 1n, hugePages: '1G' })
  c.allocateDma(4096, {})
  t.deepEqual(allocations, [
    [4096, undefined],
    [8192, { iova: 0x100000, align: 0x200000, dmaMask: 0xffffffff, hugePages: '2M' }],
    [4096, { iova: 0x200000n, dmaMask: 2n ** 64n - 1n, hugePages: '1G' }],
    [4096, {}],
  ])
  const [m] = c.dmaMappings()
  t.is(typeof m.iova, 'bigint')
  t.is(typeof m.size, 'number', 'sizes are numbers everywhere')
})

test('allocateDma option types are checked before the binding is called', (t) => {
  const { c, allocations } = container()
  throwsCode(t, () => c.allocateDma(4096, null as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => c.allocateDma('4096' as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => c.allocateDma(4096, { align: '4096' as never }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => c.allocateDma(4096, { dmaMask: 1.5 }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => c.allocateDma(4096, { iova: 2 ** 60 }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => c.allocateDma(4096, { hugePages: 2 as never }), 'ERR_VFIO_INVALID_ARGUMENT')
  t.deepEqual(allocations, [])
})

test('a slice has its own IOVA and size, and its view is the buffer view at its offset', (t) => {
  const rec = recorder()
  using d = DmaBuffer.fromNative(fakeMemory(rec), true)
  using s = d.slice(0x100, 0x40)
  t.is(s.buffer, d)
  t.is(s.iova, d.iova + 0x100n)
  t.is(s.offset, 0x100)
  t.is(s.size, 0x40)
  t.true(s.mapped)
  t.is(s.view.length, 0x40)
  t.is(s.view, s.view, 'made once')
  s.view[4] = 0xab
  t.is(d.view[0x104], 0xab, 'the same memory')
  s.writeU32(8, 0x11223344)
  t.is(d.readU32(0x108), 0x11223344)
  const inner = s.slice(8, 8)
  t.is(inner.offset, 0x108)
  t.is(inner.iova, d.iova + 0x108n)
  t.is(inner.buffer, d)
  t.is(inner.readU32(0), 0x11223344)
  t.deepEqual(
    rec.calls.filter((x) => x.startsWith('slice')),
    ['slice(256,64)', 'slice(8,8)'],
  )
  throwsCode(t, () => d.slice('1' as never, 4), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => s.slice(0, null as never), 'ERR_VFIO_INVALID_ARGUMENT')
})

test('closing the buffer closes its slices; closing a slice leaves the buffer open', (t) => {
  const d = DmaBuffer.fromNative(fakeMemory(), true)
  const s = d.slice(0, 16)
  const view = s.view
  t.is(view.length, 16)
  const other = d.slice(16, 16)
  other.close()
  t.true(other.closed)
  t.false(d.closed)
  throwsCode(t, () => other.view, 'ERR_VFIO_CLOSED')
  d.close()
  t.true(s.closed)
  t.false(s.mapped)
  throwsCode(t, () => s.view, 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.slice(0, 1), 'ERR_VFIO_CLOSED')
  s.close()
  s.close()
})

test('a slice of a buffer without a view has none either', (t) => {
  using d = DmaBuffer.fromNative(fakeMemory(), false)
  using s = d.slice(0, 8)
  throwsCode(t, () => s.view, 'ERR_VFIO_UNSUPPORTED')
  s.write(0, Buffer.from([1, 2]))
  t.deepEqual([...d.read(0, 2)], [1, 2])
})
