import test from 'ava'
import { Device, RegionIndex } from '../ts/index'
import { fakeDevice, fakeHotResetDevices } from './fakes'
import { throwsCode } from './helpers'

test('regions are indexed by VFIO index, absent ones included', (t) => {
  const d = Device.fromNative(fakeDevice().native)
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
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
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
  t.deepEqual(f.calls, ['close()'])
})

test('Symbol.dispose closes', (t) => {
  const f = fakeDevice()
  {
    using d = Device.fromNative(f.native)
    t.false(d.closed)
  }
  t.deepEqual(f.calls, ['close()'])
})
