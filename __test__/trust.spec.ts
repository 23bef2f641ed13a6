/**
 * Hostile input and forgotten objects, on the host: every wrong argument has a stable
 * code (checked before any system call), and what a caller forgets is reclaimed. The
 * kernel-facing half (real devices, crashes in a child process, soaks) is in
 * `guest/trust.spec.ts`.
 */
import test from 'ava'
import { Container, Device, DmaBuffer, DmaSlice, Interrupts, MappedRegion, sysfs } from '../ts/index'
import { fakeInterrupts } from './fakes'
import { collectUntil, throwsCode } from './helpers'

const MiB = 'x'.repeat(1 << 20)

test('options that are not objects, and options of the wrong type, have a code', (t) => {
  throwsCode(t, () => new Container(null as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container(5 as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container({ createKvmVm: 'yes' as never }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container({ path: 5 as never }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.listDevices(null as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.listDevices({ root: 5 as never }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.getDevice('00:03.0', { root: {} as never }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.bind('00:03.0', [] as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.unbind('00:03.0', { restore: 5 as never }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.parseAddress(undefined as never), 'ERR_VFIO_INVALID_ARGUMENT')
})

test('internal constructors refuse anything but a native handle', (t) => {
  for (const C of [Device, Interrupts, MappedRegion, DmaBuffer, DmaSlice]) {
    throwsCode(t, () => new (C as unknown as new (n?: unknown) => unknown)(), 'ERR_VFIO_INVALID_ARGUMENT')
    throwsCode(t, () => new (C as unknown as new (n?: unknown) => unknown)(null), 'ERR_VFIO_INVALID_ARGUMENT')
  }
})

test('NUL characters, empty and over-long strings are refused natively, never echoed whole', (t) => {
  throwsCode(t, () => new Container({ path: '/dev/vfio/vfio\0x' }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container({ path: '' }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.parseAddress('0000:00:03.0\0'), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.getDevice('00:03.0', { root: '/tmp\0' }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => sysfs.unbind('00:03.0', { restore: 'vfio\0pci' }), 'ERR_VFIO_INVALID_ARGUMENT')
  for (const fn of [
    () => new Container({ path: MiB }),
    () => sysfs.parseAddress(MiB),
    () => sysfs.getDevice('00:03.0', { root: MiB }),
    () => sysfs.listDevices({ root: MiB }),
    () => sysfs.parseAddress(MiB.slice(0, 4000)),
  ]) {
    const err = throwsCode(t, fn, 'ERR_VFIO_INVALID_ARGUMENT')
    t.true(err.message.length < 300, `message of ${err.message.length} characters`)
  }
})

test('integers are checked natively, never truncated to 32 bits', (t) => {
  // napi would turn 2^32 + 3 into 3 (an open fd) and -1 into 0xffffffff.
  throwsCode(t, () => new Container({ kvmDeviceFd: 2 ** 32 + 3 }), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => new Container({ mshvDeviceFd: 2 ** 31 }), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => new Container({ kvmDeviceFd: -1 }), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => new Container({ kvmDeviceFd: NaN }), 'ERR_VFIO_INVALID_ARGUMENT')
})

test('next() with a signal that is not an AbortSignal rejects with a code', async (t) => {
  const irq = Interrupts.fromNative(fakeInterrupts().native)
  for (const bad of [{ signal: 'x' }, null, 5, { signal: {} }]) {
    const err = await t.throwsAsync(irq.next(bad as never))
    t.is((err as { code?: string }).code, 'ERR_VFIO_INVALID_ARGUMENT')
  }
  irq.close()
})

test('no interrupt event is emitted after close(), even when closed inside a listener', (t) => {
  const f = fakeInterrupts(undefined, 1, 0, 2)
  const irq = Interrupts.fromNative(f.native)
  let seen = 0
  irq.on('interrupt', () => {
    seen++
    irq.close()
  })
  // The native thread may have queued many wake-ups before close(): all are dropped.
  for (let i = 0; i < 64; i++) f.fire(i % 2)
  t.is(seen, 1)
  t.true(irq.closed)
})

test('removeAllListeners() keeps the keep-alive bookkeeping: a later listener refs again', async (t) => {
  const f = fakeInterrupts()
  const irq = Interrupts.fromNative(f.native)
  irq.on('interrupt', () => {})
  await Promise.resolve()
  t.true(f.referenced())
  irq.removeAllListeners()
  t.false(f.referenced(), 'no listener left: unref')
  irq.on('interrupt', () => {})
  await Promise.resolve()
  t.true(f.referenced(), 'a new listener refs the process again')
  irq.removeAllListeners('interrupt')
  t.false(f.referenced())
  irq.on('interrupt', () => {})
  await Promise.resolve()
  t.true(f.referenced())
  // Repeated removals neither pile up the library's hooks nor lose them.
  for (let i = 0; i < 20; i++) irq.removeAllListeners('newListener').removeAllListeners('removeListener')
  t.is(irq.listenerCount('newListener'), 1)
  t.is(irq.listenerCount('removeListener'), 1)
  irq.removeAllListeners()
  t.false(f.referenced())
  irq.close()
  t.false(f.referenced())
})

test('a forgotten Interrupts is collected although its native callback lives on', async (t) => {
  const f = fakeInterrupts()
  let collected = false
  const registry = new FinalizationRegistry(() => (collected = true))
  ;(() => {
    const irq = Interrupts.fromNative(f.native)
    irq.on('interrupt', () => {})
    irq.removeAllListeners()
    registry.register(irq, 'irq')
  })()
  t.true(await collectUntil(() => collected), 'the facade was garbage-collected')
  f.fire(0) // the native callback outlives the facade: it must not throw
})
