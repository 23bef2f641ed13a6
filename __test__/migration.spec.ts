import { Readable } from 'node:stream'
import test from 'ava'
import { Container, Device, ErrorCode, MIGRATION_STATES, sysfs } from '../ts/index'
import { MockSystem } from '../ts/testing'
import { fakeDevice } from './fakes'
import { throwsCode } from './helpers'

// The facade's migration members: argument checks and the calls they make (fakes), and
// what the mock backend answers (a device without a migration driver, as edu on vfio-pci).
// Migration itself runs in the guest on mtty (__test__/guest/migration.spec.ts).
const sys = MockSystem.install()
test.after.always(() => sys.uninstall())
sys.addDevice({ address: '0000:00:03.0', vendor: 0x1234, device: 0x11e8, regions: [{ index: 0, size: 0x1000 }] })

test('states are the kernel numbers in order, and only they are accepted', async (t) => {
  t.deepEqual(MIGRATION_STATES, ['error', 'stop', 'running', 'stop-copy', 'resuming', 'running-p2p', 'pre-copy', 'pre-copy-p2p'])
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  for (const bad of ['paused', 'RUNNING', 2, undefined]) {
    await t.throwsAsync(d.setMigrationState(bad as never), { code: ErrorCode.INVALID_ARGUMENT, message: /state must be one of 'error', 'stop'/ })
  }
  await d.setMigrationState('pre-copy-p2p')
  t.deepEqual(f.calls, ['setMigrationState("pre-copy-p2p")'])
  t.is(d.migrationState, 'running')
  t.deepEqual(d.migration?.states, ['error', 'stop', 'running'])
})

test('saveStateStream runs stop-copy, reads to the end, then stop', async (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  f.migrationChunks.push(Buffer.from('ab'), Buffer.from('c'))
  const chunks: Buffer[] = []
  for await (const c of d.saveStateStream({ chunkSize: 2 })) chunks.push(c)
  t.is(Buffer.concat(chunks).toString(), 'abc')
  t.deepEqual(f.calls, ['setMigrationState("stop-copy")', 'readMigrationData(2)', 'readMigrationData(2)', 'readMigrationData(2)', 'setMigrationState("stop")'])
  t.throws(() => d.migrationData({ chunkSize: 0 }), { code: ErrorCode.INVALID_ARGUMENT, message: /chunkSize/ })
  t.throws(() => d.migrationData({ chunkSize: 2 ** 30 }), { code: ErrorCode.INVALID_ARGUMENT })
})

test('loadState takes bytes in one call, or chunks from an iterable or a Readable', async (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  await d.loadState(Buffer.from('whole'))
  t.deepEqual(f.calls.splice(0), ['loadState("whole")'])
  await d.loadState(Readable.from([Buffer.from('one'), Buffer.from('two')]))
  t.deepEqual(f.calls.splice(0), ['setMigrationState("resuming")', 'writeMigrationData("one")', 'writeMigrationData("two")', 'setMigrationState("stop")'])
  await d.loadState([new Uint8Array([0x68, 0x69])])
  t.deepEqual(f.calls.splice(0, 2), ['setMigrationState("resuming")', 'writeMigrationData("hi")'])
  f.calls.splice(0)
  // A wrong source is refused before the state changes; a wrong chunk when it comes.
  await t.throwsAsync(d.loadState('text' as never), { code: ErrorCode.INVALID_ARGUMENT, message: /state must be a Buffer/ })
  await t.throwsAsync(d.loadState(42 as never), { code: ErrorCode.INVALID_ARGUMENT, message: /state must be a Buffer/ })
  t.deepEqual(f.calls, [])
  await t.throwsAsync(d.loadState(['text'] as never), { code: ErrorCode.INVALID_ARGUMENT, message: /state chunk must be a Buffer/ })
  t.deepEqual(f.calls, ['setMigrationState("resuming")'])
})

test('DMA logging and dma-buf ranges are checked before the native call', (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  throwsCode(t, () => d.startDmaLogging(4096, {} as never), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => d.startDmaLogging(4096, [{ iova: '0' as never, length: 4096 }]), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => d.reportDmaLogging(null as never, 4096), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => d.exportDmaBuf(0, [{ offset: 0 } as never]), ErrorCode.INVALID_ARGUMENT)
  t.deepEqual(f.calls, [])
  t.is(d.startDmaLogging(4096, [{ iova: 0x100000n, length: 4096 }]), 4096)
  t.is(d.exportDmaBuf(0, [{ offset: 0, length: 4096 }]), 99)
  t.deepEqual(f.calls, ['startDmaLogging(4096,[{"iova":1048576,"length":4096}])', 'exportDmaBuf(0,[{"offset":0,"length":4096}])'])
})

test('the mock backend has no migration driver, DMA logging or dma-buf export', async (t) => {
  const c = new Container()
  using d = c.openDevice('0000:00:03.0')
  c.close()
  t.is(d.migration, null)
  const e = throwsCode(t, () => d.migrationState, ErrorCode.UNSUPPORTED)
  t.regex(e.message, /does not implement VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE/)
  await t.throwsAsync(d.saveState(), { code: ErrorCode.UNSUPPORTED, message: /has no migration driver/ })
  await t.throwsAsync(d.setMigrationState('stop-copy'), { code: ErrorCode.UNSUPPORTED })
  await t.throwsAsync(d.setMigrationState('nope' as never), { code: ErrorCode.INVALID_ARGUMENT })
  throwsCode(t, () => d.precopyInfo(), ErrorCode.INVALID_ARGUMENT)
  const logging = throwsCode(t, () => d.startDmaLogging(4096, [{ iova: 0, length: 4096 }]), ErrorCode.UNSUPPORTED)
  t.regex(logging.message, /no DMA logging/)
  throwsCode(t, () => d.startDmaLogging(4096, []), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => d.stopDmaLogging(), ErrorCode.INVALID_ARGUMENT)
  const buf = throwsCode(t, () => d.exportDmaBuf(0, [{ offset: 0, length: 4096 }]), ErrorCode.UNSUPPORTED)
  t.regex(buf.message, /no VFIO_DEVICE_FEATURE_DMA_BUF/)
  throwsCode(t, () => d.exportDmaBuf(0, []), ErrorCode.INVALID_ARGUMENT)
})

test('the mock has no mdev parent; a malformed UUID is refused first', async (t) => {
  t.deepEqual(sysfs.mdevTypes(), [])
  t.deepEqual(sysfs.mdevDevices(), [])
  await t.throwsAsync(sysfs.createMdev('mtty', 'mtty-1', { uuid: 'x' }), { code: ErrorCode.INVALID_ARGUMENT, message: /canonical form/ })
  await t.throwsAsync(sysfs.createMdev('mtty', 'mtty-1'), { code: ErrorCode.NOT_FOUND, message: /modprobe mtty/ })
  await t.throwsAsync(sysfs.removeMdev('83b8f4f2-509f-382f-3c1e-e6bfe0fa1001'), { code: ErrorCode.NOT_FOUND })
  const c = new Container()
  t.throws(() => c.openDevice('83b8f4f2-509f-382f-3c1e-e6bfe0fa1001'), { code: ErrorCode.NOT_FOUND, message: /\/sys\/bus\/mdev\/devices\// })
  c.close()
})
