import test from 'ava'
import type { EventEmitter } from 'node:events'
import { Container, Device, IrqIndex, RegionIndex } from '../ts/index'
import { MockSystem } from '../ts/testing'
import { fakeDevice, fakeHotResetDevices } from './fakes'
import { throwsCode } from './helpers'

// The tests of what a device does run on the mock backend, through a Container as a
// driver opens one; the ones that record which native calls the facade makes use fakes.
const sys = MockSystem.install()
test.after.always(() => sys.uninstall())
sys.addDevice({
  address: '0000:00:03.0',
  vendor: 0x1234,
  device: 0x11e8,
  regions: [{ index: 0, size: 0x100000, mmap: [{ offset: 0, size: 0x1000 }] }],
  irqs: { msi: 1 },
})

function open(): Device {
  const c = new Container()
  const d = c.openDevice('00:03.0')
  c.close()
  return d
}

test('regions are indexed by VFIO index, absent ones included', (t) => {
  using d = open()
  t.is(d.regions.length, 9)
  d.regions.forEach((r, i) => t.is(r.index, i))
  t.false(d.regions[RegionIndex.VGA].present)
  t.deepEqual(d.regions[RegionIndex.BAR0].caps, [{ kind: 'sparse-mmap', areas: [{ offset: 0, size: 0x1000 }] }])
  t.is(d.name, '0000:00:03.0')
  t.is(d.maxInterrupts, 1)
})

test('region argument types are checked before the native call', (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  throwsCode(t, () => d.regionRead('0' as never, 0, 4), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.regionRead(0, undefined as never, 4), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.regionWrite(0, 0, 'text' as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.region(9), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.region(0.5), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.mapRegion([0] as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.enableIrq(1, null as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.enableIrq(1, { count: '2' as never }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.disableIrq(Symbol('x') as never), 'ERR_VFIO_INVALID_ARGUMENT')
  t.deepEqual(f.calls, [])
})

test('internal constructors refuse what is not a native handle, with a code', (t) => {
  throwsCode(t, () => new (Device as unknown as new () => unknown)(), 'ERR_VFIO_INVALID_ARGUMENT')
})

test('valid calls reach the native handle with converted arguments', (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  d.regions[RegionIndex.CONFIG].read(2n, 2)
  d.regions[RegionIndex.CONFIG].write(4, new Uint16Array([4]))
  d.reset()
  d.enableMsi(1).close()
  d.regions[RegionIndex.BAR0].map().close()
  t.deepEqual(f.calls, [
    'regionRead(7,2,2)',
    'regionWrite(7,4,2)',
    'reset()',
    'enableIrq(1,0,1)',
    'listen()',
    'close()',
    'mapRegion(0)',
    'close()',
  ])
})

test('hot reset: the info, the reset and its Promise reach the native handle and return what it lists', async (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  t.deepEqual(d.hotResetInfo(), fakeHotResetDevices())
  t.deepEqual(d.hotReset(), fakeHotResetDevices())
  const pending = d.hotResetAsync()
  t.true(pending instanceof Promise)
  t.deepEqual(await pending, fakeHotResetDevices())
  t.deepEqual(f.calls, ['hotResetInfo()', 'hotReset()', 'hotResetAsync()'])
  d.close()
  throwsCode(t, () => d.hotResetInfo(), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.hotReset(), 'ERR_VFIO_CLOSED')
  await t.throwsAsync(d.hotResetAsync(), { code: 'ERR_VFIO_CLOSED' })
  t.deepEqual(f.calls, ['hotResetInfo()', 'hotReset()', 'hotResetAsync()', 'close()'])
})

test('every call after close throws ERR_VFIO_CLOSED; closing twice is harmless', (t) => {
  const d = open()
  d.close()
  d.close()
  t.true(d.closed)
  throwsCode(t, () => d.regionRead(0, 0, 4), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.regions[0].write(0, Buffer.alloc(4)), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.mapRegion(0), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.reset(), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.enableIntx(), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.disableIrq(0), 'ERR_VFIO_CLOSED')
  // The facade's closed handles use the core's wording, the same the binding's report.
  const err = t.throws(() => d.reset())
  t.is(err?.message, 'the device is closed; open it again')
  // Closed for good: its group left the container, so another container may take it.
  using other = new Container()
  other.openDevice('0000:00:03.0').close()
})

test('Symbol.dispose closes', (t) => {
  let d: Device | undefined
  {
    using opened = open()
    d = opened
    t.false(d.closed)
  }
  t.true(d.closed)
  using other = new Container()
  other.openDevice('0000:00:03.0').close()
})

test.serial("the REQ index is armed by the first 'request' listener, not by the open, and given back by close", (t) => {
  const d = open()
  t.false(d.watchesRequests)
  // Not armed: the caller may enable REQ itself.
  d.enableIrq(IrqIndex.REQ).close()
  const onRequest = (): void => {}
  d.on('request', onRequest)
  t.true(d.watchesRequests)
  throwsCode(t, () => d.enableIrq(IrqIndex.REQ), 'ERR_VFIO_BUSY')
  d.off('request', onRequest)
  d.once('request', onRequest)
  t.true(d.watchesRequests, 'armed once, until close')
  d.close()
  const again = open()
  again.enableIrq(IrqIndex.REQ).close()
  // removeAllListeners() (also with a 'removeListener' listener, which makes EventEmitter
  // remove event by event) leaves the watch for the first 'request' listener in place.
  ;(again as EventEmitter).on('removeListener', () => {})
  again.removeAllListeners()
  again.removeAllListeners('newListener')
  t.false(again.watchesRequests)
  again.on('request', onRequest)
  t.true(again.watchesRequests)
  again.close()
  // A listener on a closed device arms nothing and throws nothing.
  const closed = open()
  closed.close()
  closed.on('request', onRequest)
  t.false(closed.watchesRequests)
})
