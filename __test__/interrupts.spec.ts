import test from 'ava'
import { Interrupts, VfioAbortError } from '../ts/index'
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
  // The unref waits for the next turn of the event loop (a loop of `await irq.next()`
  // makes no ref/unref calls), then happens.
  await new Promise((resolve) => setImmediate(resolve))
  t.false(f.referenced())
  irq.close()
})

test('a loop of await next() refs once and unrefs once after it, not per interrupt', async (t) => {
  const f = fakeInterrupts()
  const irq = Interrupts.fromNative(f.native)
  for (let i = 0; i < 5; i++) {
    const next = irq.next()
    f.fire(0)
    t.deepEqual(await next, { vector: 0, count: 1 })
  }
  t.deepEqual(f.calls.filter((c) => c === 'ref()' || c === 'unref()'), ['ref()'])
  await new Promise((resolve) => setImmediate(resolve))
  t.false(f.referenced(), 'idle again: the process is not kept alive')
  t.deepEqual(f.calls.filter((c) => c === 'ref()' || c === 'unref()'), ['ref()', 'unref()'])
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

test('next({ vector }) waits for that vector; other wake-ups queue, merged per vector', async (t) => {
  const f = fakeInterrupts(undefined, 2, 3, 2)
  const irq = Interrupts.fromNative(f.native)
  const four = irq.next({ vector: 4 })
  f.fire(3, 1)
  f.fire(3, 2)
  f.fire(4, 1)
  t.deepEqual(await four, { vector: 4, count: 1 })
  t.deepEqual(await irq.next(), { vector: 3, count: 3 })
  // What the eventfd holds comes before waiting.
  f.pending.set(4, 7)
  t.deepEqual(await irq.next({ vector: 4 }), { vector: 4, count: 7 })
  throwsCode(t, () => irq.takePending('4' as never), 'ERR_VFIO_INVALID_ARGUMENT')
  await t.throwsAsync(irq.next({ vector: '4' as never }), { name: 'VfioTypeError' })
  irq.close()
})

test('takePending: queued wake-ups plus what the eventfd holds, without waiting', (t) => {
  const f = fakeInterrupts(undefined, 2, 0, 4)
  const irq = Interrupts.fromNative(f.native)
  t.is(irq.takePending(1), 0)
  f.fire(1, 2)
  f.pending.set(1, 3)
  t.is(irq.takePending(1), 5)
  t.is(irq.takePending(1), 0)
  t.is(irq.takePending(), 0)
  t.deepEqual(f.calls.filter((c) => c.startsWith('takePending')), ['takePending(1)', 'takePending(1)', 'takePending(1)', 'takePending(0)'])
  irq.close()
  throwsCode(t, () => irq.takePending(1), 'ERR_VFIO_CLOSED')
})

test('listeners and waiters coexist: both get a wake-up; one a listener took is not queued', async (t) => {
  const f = fakeInterrupts()
  const irq = Interrupts.fromNative(f.native)
  const heard: number[] = []
  irq.on('interrupt', (e) => heard.push(e.count))
  const waiting = irq.next()
  f.fire(0, 2)
  t.deepEqual(await waiting, { vector: 0, count: 2 })
  f.fire(0, 3)
  t.deepEqual(heard, [2, 3])
  irq.removeAllListeners('interrupt')
  // The second wake-up went to the listener only: nothing is queued for next().
  const ac = new AbortController()
  const late = irq.next({ signal: ac.signal })
  ac.abort()
  await t.throwsAsync(late, { name: 'AbortError' })
  irq.close()
})

test('aborted waits follow Node: AbortError, ERR_VFIO_ABORTED, the reason as cause; MSI says when bus mastering is off', async (t) => {
  const msi = Interrupts.fromNative(fakeInterrupts(undefined, 1).native, { busMasterOff: () => true })
  const reason = new Error('enough')
  const err = (await t.throwsAsync(msi.next({ signal: AbortSignal.abort(reason) }))) as VfioAbortError
  t.true(err instanceof VfioAbortError)
  t.is(err.name, 'AbortError')
  t.is(err.code, 'ERR_VFIO_ABORTED')
  t.is(err.cause, reason)
  t.regex(err.message, /bus mastering is off.*setBusMaster\(true\)/)
  msi.close()
  const on = Interrupts.fromNative(fakeInterrupts(undefined, 1).native, { busMasterOff: () => false })
  const quiet = (await t.throwsAsync(on.next({ vector: 0, signal: AbortSignal.abort() }))) as VfioAbortError
  t.is(quiet.message, 'the wait for vector 0 was aborted')
  on.close()
  const intx = Interrupts.fromNative(fakeInterrupts(undefined, 0).native, { busMasterOff: () => true })
  const plain = (await t.throwsAsync(intx.next({ signal: AbortSignal.abort() }))) as VfioAbortError
  t.is(plain.message, 'the wait for an interrupt was aborted')
  intx.close()
})

test('events({ vector, signal }): that vector only, ended by the signal with AbortError, unref after', async (t) => {
  const f = fakeInterrupts(undefined, 2, 0, 2)
  const irq = Interrupts.fromNative(f.native)
  const ac = new AbortController()
  const seen: number[] = []
  const loop = (async () => {
    for await (const e of irq.events({ vector: 1, signal: ac.signal })) {
      seen.push(e.count)
      if (seen.length === 2) ac.abort()
    }
  })()
  await Promise.resolve()
  t.true(f.referenced())
  f.fire(0, 9)
  f.fire(1, 1)
  await new Promise((r) => setImmediate(r))
  f.fire(1, 2)
  await t.throwsAsync(loop, { name: 'AbortError' })
  t.deepEqual(seen, [1, 2])
  t.false(f.referenced())
  // Vector 0's wake-up waited in the queue.
  t.deepEqual(irq.takePending(0), 9)
  t.throws(() => irq.events({ vector: 'x' as never }), { name: 'VfioTypeError' })
  irq.close()
})

test('events are typed (the misspelt name is a compile error, checked by npm run typecheck)', (t) => {
  t.plan(1)
  const f = fakeInterrupts()
  const irq = Interrupts.fromNative(f.native)
  // @ts-expect-error 'interupt' is not an event of Interrupts
  irq.on('interupt', () => t.fail())
  irq.on('interrupt', (e) => t.is(e.vector, 0))
  f.fire(0)
  irq.removeAllListeners()
  irq.close()
})
