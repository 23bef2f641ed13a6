import test from 'ava'
import { Device, PciConfig, type PciCapability } from '../ts/index'
import { fakeDevice } from './fakes'
import { throwsCode } from './helpers'

test('capabilities() turns the native list into a union by kind', (t) => {
  const f = fakeDevice()
  const caps: PciCapability[] = Device.fromNative(f.native).capabilities()
  t.deepEqual(caps, [
    { kind: 'msi', id: 0x05, offset: 0x40, multipleMessageCapable: 2, vectors: 4, is64Bit: true, perVectorMasking: false },
    { kind: 'msix', id: 0x11, offset: 0x50, tableSize: 64, tableBir: 0, tableOffset: 0x2000, pbaBir: 4, pbaOffset: 0x3000 },
    { kind: 'pcie', id: 0x10, offset: 0x80, version: 2, deviceType: 0 },
    { kind: 'pm', id: 0x01, offset: 0x60, version: 3 },
    { kind: 'vendor', id: 0x09, offset: 0x70, length: 8 },
    { kind: 'unknown', id: 0x0d, offset: 0x78 },
    { kind: 'extended', id: 0x0001, offset: 0x100, version: 1 },
  ])
  // The discriminant narrows.
  const msix = caps.find((c) => c.kind === 'msix')
  t.is(msix?.kind === 'msix' ? msix.tableSize : undefined, 64)
  t.deepEqual(f.calls, ['capabilities()'])
})

test('capabilities() refuses a native capability missing its fields', (t) => {
  const f = fakeDevice()
  f.native.capabilities = () => [{ kind: 'msix', id: 0x11, offset: 0x40 }]
  throwsCode(t, () => Device.fromNative(f.native).capabilities(), 'ERR_VFIO_IO')
})

test('bars() names the space and keeps the 64-bit address a bigint', (t) => {
  const f = fakeDevice()
  t.deepEqual(Device.fromNative(f.native).bars(), [
    { index: 0, type: 'memory', is64Bit: false, prefetchable: false, address: 0xfea00000n, size: 0x100000 },
    { index: 2, type: 'memory', is64Bit: true, prefetchable: true, address: 0x1_0000_0000n, size: 0x4000 },
    { index: 4, type: 'io', is64Bit: false, prefetchable: false, address: 0xc000n, size: 0x20 },
  ])
})

test('config reads by width are little-endian from the config region', (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  t.is(d.config.size, 256)
  t.is(d.config.readU16(PciConfig.VENDOR_ID), 0x1234)
  t.is(d.config.readU16(PciConfig.DEVICE_ID), 0x11e8)
  t.is(d.config.readU32(PciConfig.VENDOR_ID), 0x11e81234)
  t.is(d.config.readU8(PciConfig.DEVICE_ID + 1), 0x11)
  t.is(d.config.readU32(0x10), 0xfea00000)
  t.deepEqual(f.calls, ['regionRead(7,0,2)', 'regionRead(7,2,2)', 'regionRead(7,0,4)', 'regionRead(7,3,1)', 'regionRead(7,16,4)'])
})

test('config writes by width round-trip', (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  d.config.writeU32(0x40, 0xdeadbeef)
  t.is(d.config.readU32(0x40), 0xdeadbeef)
  t.is(f.config.readUInt32LE(0x40), 0xdeadbeef)
  d.config.writeU16(0x42, 0x1234)
  t.is(d.config.readU32(0x40), 0x1234beef)
  d.config.writeU8(0x41, 0)
  t.is(d.config.readU16(0x40), 0x00ef)
  t.true(f.calls.includes('regionWrite(7,64,4)'))
})

test('config offsets and values are checked before the native call', (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  throwsCode(t, () => d.config.readU32(256), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.config.readU32(254), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.config.readU8(-1), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.config.readU16(1), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.config.readU32(2), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.config.readU8(0.5), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.config.readU8('0' as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.config.writeU8(0, 256), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.config.writeU16(0, -1), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.config.writeU32(0, 2 ** 32), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.config.writeU32(0, 1.5), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => d.config.writeU32(0, 1n as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => d.config.writeU32(256, 0), 'ERR_VFIO_OUT_OF_RANGE')
  t.deepEqual(f.calls, [])
})

test('setBusMaster sets bus mastering and memory decoding; false clears bus mastering only', (t) => {
  const f = fakeDevice()
  const d = Device.fromNative(f.native)
  d.setBusMaster()
  t.is(f.config.readUInt16LE(PciConfig.COMMAND), PciConfig.COMMAND_BUS_MASTER | PciConfig.COMMAND_MEMORY)
  d.setBusMaster(false)
  t.is(f.config.readUInt16LE(PciConfig.COMMAND), PciConfig.COMMAND_MEMORY)
  // Other bits are kept.
  f.config.writeUInt16LE(0x0401, PciConfig.COMMAND)
  d.setBusMaster(true)
  t.is(f.config.readUInt16LE(PciConfig.COMMAND), 0x0407)
  // Nothing to change: no write.
  const writes = f.calls.filter((c) => c.startsWith('regionWrite')).length
  d.setBusMaster(true)
  t.is(f.calls.filter((c) => c.startsWith('regionWrite')).length, writes)
  throwsCode(t, () => d.setBusMaster(1 as never), 'ERR_VFIO_INVALID_ARGUMENT')
})

test('config space and parsing need an open device', (t) => {
  const d = Device.fromNative(fakeDevice().native)
  d.close()
  throwsCode(t, () => d.capabilities(), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.bars(), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.config.readU16(0), 'ERR_VFIO_CLOSED')
  throwsCode(t, () => d.setBusMaster(), 'ERR_VFIO_CLOSED')
})
