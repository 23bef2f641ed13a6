/**
 * The mock backend (`vfio-ioctls/testing`) on the host: the edu driver's tests that the
 * guest runs against the real edu (`edu-driver.shared.ts`), then what only a test can
 * do with the mock (DMA as the device, IOMMU faults, raised interrupts, sysfs binding).
 */
import test from 'ava'
import { Container, ErrorCode, IrqIndex, RegionIndex, sysfs, pageSize } from '../ts/index'
import { MockDmaFault, MockSystem, mockEdu } from '../ts/testing'
import { EduDriver, eduTests } from './edu-driver.shared'
import { deviceTable } from './equivalence.shared'
import { throwsCode } from './helpers'

const sys = MockSystem.install()
const edu = sys.addDevice(mockEdu())
test.after.always(() => sys.uninstall())

eduTests(test, edu.address)

test.serial('mock: the device reads and writes DMA memory through the IOMMU; an unmapped IOVA faults', (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  using buf = c.allocateDma(2 * pageSize(), { iova: 0x30_0000 })
  buf.write(0, Buffer.from('hello'))
  t.deepEqual(sys.dma.read(0x30_0000, 5).toString(), 'hello')
  sys.dma.write(0x30_1ffe, Buffer.from([1, 2]))
  t.deepEqual([...buf.read(0x1ffe, 2)], [1, 2])
  const fault = t.throws(() => sys.dma.read(0x30_1fff, 2), { instanceOf: MockDmaFault })
  t.is(fault?.code, ErrorCode.IO)
  t.is(fault?.iova, 0x30_2000n)
  buf.unmap()
  t.false(sys.dma.mapped(0x30_0000))
  t.throws(() => sys.dma.write(0x30_0000, Buffer.from([9])), { instanceOf: MockDmaFault })
  t.deepEqual([...buf.read(0, 1)], [0x68])
  d.close()
})

test.serial('mock: the last device closing drops the IOMMU context and its mappings', (t) => {
  const c = new Container()
  const d = c.openDevice(edu.address)
  const buf = c.allocateDma(4096, { iova: 0x40_0000 })
  t.true(buf.mapped)
  t.deepEqual(c.groupIds(), [edu.group])
  d.close()
  t.deepEqual(c.groupIds(), [])
  t.false(buf.mapped)
  t.deepEqual(sys.mappings(), [])
  buf.close()
  c.close()
})

test.serial('mock: raised interrupts reach Interrupts asynchronously; none without bus mastering', async (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  using irq = d.enableMsi(1)
  t.deepEqual(edu.enabledIrq(IrqIndex.MSI), { start: 0, count: 1 })
  const seen: number[] = []
  irq.on('interrupt', (e) => seen.push(e.count))
  d.setBusMaster(true)
  t.true(edu.raise(IrqIndex.MSI, 0))
  t.true(edu.raise(IrqIndex.MSI, 0))
  t.deepEqual(seen, [], 'delivered on a later turn, as the native poller does')
  await new Promise((r) => setImmediate(r))
  t.deepEqual(seen, [2])
  d.setBusMaster(false)
  t.false(edu.raise(IrqIndex.MSI, 0))
  t.false(edu.raise(IrqIndex.INTX, 0), 'INTx is not enabled')
  throwsCode(t, () => edu.raise(9, 0), ErrorCode.OUT_OF_RANGE)
})

test.serial('mock: INTx is automasked until the driver unmasks it', async (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  using intx = d.enableIntx()
  t.true(edu.raise(IrqIndex.INTX))
  t.deepEqual(await intx.next({ signal: AbortSignal.timeout(1000) }), { vector: 0, count: 1 })
  t.false(edu.raise(IrqIndex.INTX), 'masked until unmask')
  intx.unmask()
  t.deepEqual(await intx.next({ signal: AbortSignal.timeout(1000) }), { vector: 0, count: 1 })
})

test.serial('mock: sysfs lists, unbinds and binds declared devices; an unbound device is not openable', (t) => {
  const list = sysfs.listDevices()
  t.deepEqual(list.map((d) => [d.address, d.vendor, d.device, d.driver, d.vfioUsable]), [[edu.address, 0x1234, 0x11e8, 'vfio-pci', true]])
  t.is(sysfs.unbind(edu.address), undefined)
  t.is(edu.driver, undefined)
  using c = new Container()
  const err = throwsCode(t, () => c.openDevice(edu.address), ErrorCode.NOT_FOUND)
  t.regex(err.message, /vfio-pci/)
  t.deepEqual(sysfs.bind(edu.address), { previousDriver: undefined, alreadyBound: false })
  t.deepEqual(sysfs.bind(edu.address), { previousDriver: undefined, alreadyBound: true })
  c.openDevice(edu.address).close()
  throwsCode(t, () => sysfs.getDevice('0000:00:1e.0'), ErrorCode.NOT_FOUND)
  throwsCode(t, () => sysfs.listDevices({ root: '/tmp' }), ErrorCode.UNSUPPORTED)
})

test.serial('mock: register hooks and whole-region handlers model a device', (t) => {
  const local = sys.addDevice({
    address: '01:00.0',
    vendor: 0x1af4,
    device: 0x1234,
    regions: [
      { index: 0, size: 4096, mmap: true },
      { index: 2, size: 256 },
      { index: 6, size: 2048, flags: 1, data: Buffer.from([0x55, 0xaa]) },
    ],
    irqs: { msi: 4, msix: 8 },
  })
  let writes = 0
  local.onRead(0, 0x10, () => 0xdeadbeef).onWrite(0, 0x14, (v) => {
    writes++
    local.pokeU32(0, 0x18, Number(v) * 2)
  })
  const log: string[] = []
  local.handle(2, {
    read: (o, w) => (log.push(`r${o}/${w}`), o),
    write: (o, w, v) => void log.push(`w${o}/${w}=${v}`),
  })
  using c = new Container()
  using d = c.openDevice('0000:01:00.0')
  t.is(d.info.group, local.group)
  t.not(local.group, edu.group)
  t.deepEqual(d.capabilities().map((cap) => cap.kind), ['msi', 'msix'])
  t.deepEqual(d.bars().map((b) => [b.index, b.size]), [[0, 4096], [2, 256]])
  using bar = d.regions[RegionIndex.BAR0].map()
  t.is(bar.readU32(0x10), 0xdeadbeef)
  bar.writeU32(0x14, 21)
  t.is(writes, 1)
  t.is(bar.readU32(0x18), 42)
  t.is(d.regionRead(2, 4, 4).readUInt32LE(0), 4)
  d.regionWrite(2, 1, Buffer.from([1, 2, 3]))
  t.deepEqual(log, ['r4/4', 'w1/1=1', 'w2/2=770'])
  t.deepEqual([...d.regions[RegionIndex.ROM].read(0, 2)], [0x55, 0xaa])
  throwsCode(t, () => d.regions[RegionIndex.ROM].write(0, Buffer.from([0])), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => d.regions[2].map(), ErrorCode.UNSUPPORTED)
  throwsCode(t, () => sys.addDevice({ address: '01:00.0', vendor: 1, device: 1 }), ErrorCode.BUSY)
})

test.serial('mock: the device table answers with the codes the native rules give', (t) => {
  const rows = new Map(deviceTable(edu.address))
  const codeOf = (name: string): string => (rows.get(name) ?? 'missing').split(':')[0] ?? ''
  t.is(codeOf('openDevice(0000:00:1e.0)'), ErrorCode.NOT_FOUND)
  t.is(codeOf('openDevice(../../etc)'), ErrorCode.INVALID_ARGUMENT)
  t.is(codeOf('openDevice(/sys/bus/pci/devices/../../../../etc)'), ErrorCode.INVALID_ARGUMENT)
  t.is(codeOf('openDevice(/sys/bus/pci/devices/../../../etc)'), ErrorCode.NOT_FOUND)
  t.is(codeOf('regionRead(99, 0, 4)'), ErrorCode.OUT_OF_RANGE)
  t.is(codeOf('bar.readU32(2)'), ErrorCode.INVALID_ARGUMENT)
  t.is(codeOf('allocateDma(4096, 4276092928)'), ErrorCode.INVALID_ARGUMENT)
  t.is(codeOf('overlapping allocateDma'), ErrorCode.INVALID_ARGUMENT)
  t.is(rows.get('touching allocateDma'), 'ok')
  t.is(codeOf('openDevice from another container'), ErrorCode.BUSY)
  t.is(rows.get('bind while open'), 'ok', 'bound to vfio-pci already: nothing to do')
  t.is(codeOf('unbind while open'), ErrorCode.BUSY)
  t.is(codeOf('closed regionRead'), ErrorCode.CLOSED)
  t.is(codeOf('closed regionRead with a bad index'), ErrorCode.CLOSED, 'the facade knows it is closed first')
  t.is(codeOf('trigger(1)'), ErrorCode.OUT_OF_RANGE)
  t.is(codeOf('unmap twice'), ErrorCode.INVALID_ARGUMENT)
})

test.serial('mock: installing twice is refused; uninstalling restores the real binding', (t) => {
  throwsCode(t, () => MockSystem.install(), ErrorCode.BUSY)
  t.is(MockSystem.current, sys)
  t.is(pageSize(), 4096)
  using driver = new EduDriver(edu.address)
  sys.uninstall()
  t.false(sys.installed)
  t.is(MockSystem.current, undefined)
  // Handles made through the mock go on working; new ones reach the kernel (none on this host).
  t.is(driver.id(), 0x010000ed)
  throwsCode(t, () => new Container(), ErrorCode.NOT_FOUND)
})
