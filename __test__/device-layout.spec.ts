/**
 * The packed device layout (`device.layout()`, one crossing for the info, regions and
 * IRQ indices a `Device` is built from): the packing round-trips, a malformed one is
 * refused, and a device opened through the mock binding is built from it.
 */
import test from 'ava'
import type * as Binding from '../native/binding'
import { Container, IrqIndex, RegionIndex } from '../ts/index'
import { packLayout, unpackLayout } from '../ts/device-layout'
import { native } from '../ts/native'
import { MockSystem, mockEdu } from '../ts/testing'
import { throwsCode } from './helpers'

const info: Binding.DeviceInfo = {
  name: '0000:00:03.0',
  sysfsPath: '/sys/devices/pci0000:00/0000:00:03.0',
  group: 4294967295,
  flags: 3,
  numRegions: 10,
  numIrqs: 5,
  pci: true,
  canReset: false,
  maxInterrupts: 2048,
}
const regions: Binding.RegionInfo[] = Array.from({ length: 10 }, (_, index) => ({
  index,
  present: index !== 8,
  flags: index * 3,
  size: index === 0 ? 2 ** 40 : index,
  offset: index * 2 ** 40,
  readable: index % 2 === 0,
  writable: index % 3 === 0,
  mappable: index === 0 || index === 9,
  caps: index === 0 ? [{ kind: 'sparse-mmap', areas: [{ offset: 0, size: 0x1000 }] }] : index === 9 ? [{ kind: 'type', type: 3, subtype: 1 }] : [],
}))
const irqs: Binding.IrqInfo[] = Array.from({ length: 5 }, (_, index) => ({
  index,
  flags: index,
  count: index === 2 ? 2048 : 1,
  eventfd: index !== 3,
  maskable: index === 0,
  automasked: index === 4,
}))

test('a packed layout unpacks to the same info, regions (with their caps) and IRQ indices', (t) => {
  const packed = packLayout(info, regions, irqs)
  t.true(packed.numbers instanceof Float64Array)
  t.is(packed.numbers.length, 8 + 5 * 10 + 4 * 5)
  t.deepEqual(packed.regionCaps.map((c) => c.index), [0, 9], 'only regions with caps')
  t.deepEqual(unpackLayout(packed), { info, regions, irqs })
})

test('a layout whose numbers do not match its counts is refused', (t) => {
  const packed = packLayout(info, regions, irqs)
  throwsCode(t, () => unpackLayout({ ...packed, numbers: packed.numbers.subarray(0, packed.numbers.length - 1) }), 'ERR_VFIO_IO')
  throwsCode(t, () => unpackLayout({ ...packed, numbers: new Float64Array(3) }), 'ERR_VFIO_IO')
})

test('the real addon has the layout crossing', (t) => {
  const addon = native() as unknown as { Device: { prototype: Record<string, unknown> } }
  t.is(typeof addon.Device.prototype.layout, 'function')
})

test.serial('a device opened through the mock binding is built from its layout', (t) => {
  const sys = MockSystem.install()
  try {
    const edu = sys.addDevice(mockEdu())
    using c = new Container()
    using d = c.openDevice(edu.address)
    t.is(d.info.name, edu.address)
    t.true(d.info.pci)
    t.is(d.regions[RegionIndex.BAR0].size, 1 << 20)
    t.true(d.regions[RegionIndex.BAR0].mappable)
    t.false(d.regions[RegionIndex.BAR1].present)
    t.is(d.irqs[IrqIndex.MSI].count, 1)
    t.true(d.irqs[IrqIndex.MSI].eventfd)
    t.is(d.info.maxInterrupts, 1)
  } finally {
    sys.uninstall()
  }
})
