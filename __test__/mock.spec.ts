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

test.serial('mock: allocateDma without an iova takes the lowest free one, as the core chooses (never page 0)', (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  const a = c.allocateDma(4096)
  t.is(a.iova, 0x1000n, 'the first page is never chosen')
  using b = c.allocateDma(8192)
  t.is(b.iova, 0x2000n)
  using big = c.allocateDma(4096, { align: 0x20_0000 })
  t.is(big.iova, 0x20_0000n)
  using low = c.allocateDma(4096, { dmaMask: 0xffff_ffffn })
  t.is(low.iova, 0x4000n)
  a.close()
  using again = c.allocateDma(4096)
  t.is(again.iova, 0x1000n, 'a freed gap is taken again')
  using at = c.allocateDma(4096, { iova: 0x10_0000, align: 0x1000 })
  t.is(at.iova, 0x10_0000n)
  t.deepEqual(
    c.dmaMappings().map((m) => [m.iova, m.size]),
    [
      [0x1000n, 4096],
      [0x2000n, 8192],
      [0x4000n, 4096],
      [0x10_0000n, 4096],
      [0x20_0000n, 4096],
    ],
  )
  const none = throwsCode(t, () => c.allocateDma(8192, { dmaMask: 0x1fffn }), ErrorCode.OUT_OF_RANGE)
  t.is(
    none.message,
    'allocate_dma: no free IOVA for size 0x2000 aligned to 0x1000 with its last byte at most 0x1fff (dmaMask) in the usable ranges [0x0, 0xfedfffff], [0xfef00000, 0x7fffffffff] beside the 5 current mappings (dmaMappings()): unmap buffers, allocate less, or relax align or dmaMask',
  )
  t.is(throwsCode(t, () => c.allocateDma(4096, { align: 2048 }), ErrorCode.INVALID_ARGUMENT).message, 'allocate_dma: align 0x800 must be a power of two of at least the page size 0x1000')
  throwsCode(t, () => c.allocateDma(4096, { align: 0x3000 }), ErrorCode.INVALID_ARGUMENT)
  t.regex(throwsCode(t, () => c.allocateDma(4096, { iova: 0x30_1000, align: 0x2000 }), ErrorCode.INVALID_ARGUMENT).message, /is not a multiple of align 0x2000/)
  t.regex(throwsCode(t, () => c.allocateDma(8192, { iova: 0xffff_f000, dmaMask: 0xffff_ffffn }), ErrorCode.OUT_OF_RANGE).message, /\[0xfffff000, 0x100000fff\] ends above the dmaMask 0xffffffff/)
  t.is(
    throwsCode(t, () => c.allocateDma(4096, { hugePages: '2M' }), ErrorCode.INVALID_ARGUMENT).message,
    'allocate_dma: size 0x1000 must be a non-zero multiple of the 2 MiB huge page size 0x200000 (huge pages are never split: ask for 0x200000)',
  )
  t.regex(throwsCode(t, () => c.allocateDma(2 << 20, { hugePages: '2M' }), ErrorCode.UNSUPPORTED).message, /offers no 2 MiB huge pages/, 'no pool declared')
  t.regex(throwsCode(t, () => c.allocateDma(4096, { hugePages: '3M' as '2M' }), ErrorCode.INVALID_ARGUMENT).message, /hugePages must be '2M' or '1G', got "3M"/)
  t.is(c.dmaMappings().length, 5, 'nothing refused was mapped')
  d.close()
})

test.serial('mock: DmaSlice: its own IOVA and bounds, shared memory, closed with its buffer', (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  const buf = c.allocateDma(8192, { iova: 0x50_0000 })
  const s = buf.slice(0x1000, 0x100)
  t.is(s.iova, 0x50_1000n)
  t.is(s.offset, 0x1000)
  t.is(s.size, 0x100)
  t.true(s.mapped)
  s.writeU32(4, 0xdeadbeef)
  t.is(buf.readU32(0x1004), 0xdeadbeef)
  t.deepEqual([...sys.dma.read(0x50_1004, 4)], [0xef, 0xbe, 0xad, 0xde])
  const inner = s.slice(0x10, 0x10)
  t.is(inner.iova, 0x50_1010n)
  t.is(inner.offset, 0x1010)
  t.is(throwsCode(t, () => s.slice(0xf8, 0x10), ErrorCode.OUT_OF_RANGE).message, 'slice: DMA slice at iova 0x501000: [0xf8, +0x10) lies past its size 0x100')
  t.is(throwsCode(t, () => buf.slice(0, 0), ErrorCode.INVALID_ARGUMENT).message, 'slice: DMA buffer at iova 0x500000: a slice needs a length of at least 1 byte')
  throwsCode(t, () => buf.slice(8192, 1), ErrorCode.OUT_OF_RANGE)
  t.regex(throwsCode(t, () => s.readU32(0x100), ErrorCode.OUT_OF_RANGE).message, /DMA slice at iova 0x501000: \[0x100, 0x104\) lies past its size 0x100/)
  const odd = buf.slice(1, 16)
  t.is(throwsCode(t, () => odd.readU32(0), ErrorCode.INVALID_ARGUMENT).message, 'read_u32: offset 0x0 is not naturally aligned in memory')
  t.is(odd.readU8(0), 0)
  buf.unmap()
  t.false(s.mapped)
  t.is(s.readU32(4), 0xdeadbeef, 'the memory stays after unmap')
  buf.close()
  t.true(s.closed)
  t.true(inner.closed)
  t.false(s.mapped)
  throwsCode(t, () => s.readU8(0), ErrorCode.CLOSED)
  d.close()
})

test.serial('mock: hot reset: ENODEV as ERR_VFIO_UNSUPPORTED on the root bus; behind a bridge every group on the bus must be held', async (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  const root = throwsCode(t, () => d.hotResetInfo(), ErrorCode.UNSUPPORTED) as Error & { errno?: number; syscall?: string }
  t.is(root.errno, 19)
  t.is(root.syscall, 'VFIO_DEVICE_GET_PCI_HOT_RESET_INFO')
  t.regex(root.message, /^VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on 0000:00:03\.0 failed: No such device \(os error 19\) \(the device can be reset neither by slot nor by bus/)
  throwsCode(t, () => d.hotReset(), ErrorCode.UNSUPPORTED)
  const rejected = await t.throwsAsync(d.hotResetAsync())
  t.is((rejected as { code?: string }).code, ErrorCode.UNSUPPORTED)
  const f0 = sys.addDevice({ address: '0000:02:00.0', vendor: 0x1234, device: 0x11e8, hotReset: true })
  const f1 = sys.addDevice({ address: '02:00.1', vendor: 0x1234, device: 0x11e8, hotReset: true })
  using h = new Container()
  using d0 = h.openDevice(f0.address)
  const expected = [
    { address: '0000:02:00.0', group: f0.group },
    { address: '0000:02:00.1', group: f1.group },
  ]
  t.deepEqual(d0.hotResetInfo(), expected)
  const denied = throwsCode(t, () => d0.hotReset(), ErrorCode.PERMISSION) as Error & { path?: string }
  t.is(denied.path, `/dev/vfio/${f1.group}`)
  t.regex(denied.message, new RegExp(`^VFIO_DEVICE_PCI_HOT_RESET of 0000:02:00\\.0: the reset would also reset 0000:02:00\\.1 \\(group ${f1.group}\\), whose IOMMU groups`))
  t.is(f0.resets, 0, 'nothing was reset')
  using d1 = h.openDevice(f1.address)
  t.deepEqual(d0.hotReset(), expected)
  t.deepEqual([f0.resets, f1.resets], [1, 1])
  t.deepEqual(await d1.hotResetAsync(), expected)
  t.deepEqual([f0.resets, f1.resets], [2, 2])
  d1.close()
  d0.close()
  d.close()
})

test.serial('mock: only the type1 backend is modelled; iommufd is refused as unsupported', (t) => {
  for (const iommu of ['iommufd', 'iommufd-compat'] as const) {
    const err = throwsCode(t, () => new Container({ iommu }), 'ERR_VFIO_UNSUPPORTED')
    t.regex(err.message, /real binding/)
  }
  using c = new Container({ iommu: 'auto' })
  t.is(c.iommu, 'type1')
  t.is(c.ioasId, null)
  throwsCode(t, () => c.allocHwpt(1), 'ERR_VFIO_UNSUPPORTED')
  using d = c.openDevice(edu.address)
  t.is(d.iommufdDevId, null)
  throwsCode(t, () => d.attachHwpt(1), 'ERR_VFIO_UNSUPPORTED')
  throwsCode(t, () => d.attachPasid(1, 1), 'ERR_VFIO_UNSUPPORTED')
  throwsCode(t, () => d.detachPasid(1), 'ERR_VFIO_UNSUPPORTED')
  throwsCode(t, () => d.attachPasid(-1, 1), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.detachHwpt(), 'ERR_VFIO_UNSUPPORTED')
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

test.serial('mock: huge pages come from the pools the system declares', (t) => {
  using s2 = MockSystem.install({ hugePages: { '2M': 2 } })
  s2.addDevice(mockEdu())
  using c = new Container()
  using d = c.openDevice('0000:00:03.0')
  const b = c.allocateDma(4 << 20, { hugePages: '2M' })
  t.is(b.iova, 0x20_0000n, 'aligned to the huge page size by default, past page 0')
  t.deepEqual(s2.freeHugePages, { '2M': 0 })
  const short = throwsCode(t, () => c.allocateDma(2 << 20, { hugePages: '2M' }), ErrorCode.OUT_OF_RANGE) as Error & { errno?: number; path?: string }
  t.is(short.errno, 12)
  t.is(short.path, '/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages')
  t.regex(short.message, /^mmap of 1 2 MiB huge pages failed: Cannot allocate memory \(os error 12\) \(0 2 MiB huge pages are free/)
  throwsCode(t, () => c.allocateDma(1 << 30, { hugePages: '1G' }), ErrorCode.UNSUPPORTED)
  b.close()
  t.deepEqual(s2.freeHugePages, { '2M': 2 })
  d.close()
})
