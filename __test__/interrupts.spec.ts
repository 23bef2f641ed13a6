import test from 'ava'
import { Interrupts } from '../ts/index'
import { fakeInterrupts } from './fakes'
import { throwsCode } from './helpers'

test('an idle Interrupts object does not ref the process; a listener does', async (t) => {
  const f = fakeInterrupts()
  const irq = Interrupts.fromNative(f.native)
  t.false(f.referenced())
  const seen: number[] = []
  const listener = (e: { vector: number }) => seen.push(e.vector)
  irq.on('interrupt', listener)
  await Promise.resolve()
  t.true(f.referenced())
  f.fire(0)
  t.deepEqual(seen, [0])
  irq.off('interrupt', listener)
  t.false(f.referenced())
  irq.close()
})

test('next() resolves with queued or future interrupts and refs only while waiting', async (t) => {
  const f = fakeInterrupts(undefined, 2, 3, 2)
  const irq = Interrupts.fromNative(f.native)
  f.fire(4, 2)
  t.deepEqual(await irq.next(), { vector: 4, count: 2 })
  const pending = irq.next()
  t.true(f.referenced())
  irq.trigger(3)
  t.deepEqual(await pending, { vector: 3, count: 1 })
  t.false(f.referenced())
  irq.close()
})

test('next() rejects with ERR_VFIO_ABORTED on abort and ERR_VFIO_CLOSED on close', async (t) => {
  const f = fakeInterrupts()
  const irq = Interrupts.fromNative(f.native)
  const ac = new AbortController()
  const aborted = irq.next({ signal: ac.signal })
  ac.abort()
  const e1 = await t.throwsAsync(aborted)
  t.is((e1 as { code?: string }).code, 'ERR_VFIO_ABORTED')
  t.false(f.referenced())
  const pending = irq.next()
  irq.close()
  const e2 = await t.throwsAsync(pending)
  t.is((e2 as { code?: string }).code, 'ERR_VFIO_CLOSED')
  await t.throwsAsync(irq.next(), { message: /closed/ })
})

test('for await yields interrupts and ends when closed', async (t) => {
  const f = fakeInterrupts()
  const irq = Interrupts.fromNative(f.native)
  setImmediate(() => {
    f.fire(0, 1)
    setImmediate(() => {
      f.fire(0, 5)
      setImmediate(() => irq.close())
    })
  })
  const counts: number[] = []
  for await (const e of irq) counts.push(e.count)
  t.deepEqual(counts, [1, 5])
  t.false(f.referenced())
})

test('mask/unmask/trigger validate and pass vectors; calls after close throw', (t) => {
  const f = fakeInterrupts()
  const irq = Interrupts.fromNative(f.native)
  irq.mask()
  irq.unmask(0)
  throwsCode(t, () => irq.trigger('1' as never), 'ERR_VFIO_INVALID_ARGUMENT')
  irq.close()
  irq.close()
  throwsCode(t, () => irq.mask(), 'ERR_VFIO_CLOSED')
  t.deepEqual(f.calls, ['listen()', 'mask(0)', 'unmask(0)', 'close()'])
})
