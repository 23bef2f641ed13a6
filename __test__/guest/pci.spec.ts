/**
 * PCI config space against the real kernel: the capabilities and BARs edu and the NVMe
 * controller report through vfio-pci, the width-typed config accessors, and
 * `setBusMaster`. Run by `npm run test:guest`; fails (never skips) outside the guest.
 */
import test from 'ava'
import fs from 'node:fs'
import { Container, IrqIndex, PciConfig, RegionIndex, sysfs, type Device, type PciCapability } from '../../ts/index'
import { EDU, NVME, newContainer } from './devices'

test.before(() => {
  if (process.env.VFIO_GUEST !== '1' || !fs.existsSync('/dev/vfio/vfio')) {
    throw new Error('the guest suite needs the QEMU guest: run `npm run test:guest`')
  }
  sysfs.bind(EDU)
  sysfs.bind(NVME)
})

function open(address: string): { device: Device; [Symbol.dispose](): void } {
  const container = newContainer()
  const device = container.openDevice(address)
  return {
    device,
    [Symbol.dispose]() {
      device.close()
      container.close()
    },
  }
}

/** The standard list walked by hand through `config.readU8`: [id, offset] pairs. */
function walk(device: Device): [number, number][] {
  const out: [number, number][] = []
  if ((device.config.readU16(PciConfig.STATUS) & 0x10) === 0) return out
  for (let at = device.config.readU8(0x34) & 0xfc; at !== 0 && out.length < 48; at = device.config.readU8(at + 1) & 0xfc) {
    out.push([device.config.readU8(at), at])
  }
  return out
}

/** BAR `index`'s start address as sysfs reports it (`resource`, one line per resource). */
function sysfsBarStart(address: string, index: number): bigint {
  const line = fs.readFileSync(`/sys/bus/pci/devices/${address}/resource`, 'utf8').split('\n')[index] ?? ''
  return BigInt(line.split(' ')[0] ?? '0')
}

test.serial('edu: MSI (one vector, 64-bit, no masking) at 0x40 and nothing else, in 256 bytes of config space', (t) => {
  using h = open(EDU)
  const d = h.device
  t.is(d.config.size, 256)
  const caps = d.capabilities()
  t.log(JSON.stringify(caps))
  t.deepEqual(caps, [{ kind: 'msi', id: 0x05, offset: 0x40, multipleMessageCapable: 0, vectors: 1, is64Bit: true, perVectorMasking: false }])
  t.deepEqual(walk(d), caps.map((c) => [c.id, c.offset]))
  t.is(d.irqs[IrqIndex.MSI].count, 1)
})

test.serial('NVMe: MSI-X with its table and PBA in BAR0, PCI Express and PM; no extended capabilities', (t) => {
  using h = open(NVME)
  const d = h.device
  t.is(d.config.size, 4096)
  const caps = d.capabilities()
  t.log(JSON.stringify(caps))
  t.deepEqual(caps, [
    { kind: 'msix', id: 0x11, offset: 0x40, tableSize: 65, tableBir: 0, tableOffset: 0x2000, pbaBir: 0, pbaOffset: 0x3000 },
    { kind: 'pcie', id: 0x10, offset: 0x80, version: 2, deviceType: 9 },
    { kind: 'pm', id: 0x01, offset: 0x60, version: 3 },
  ])
  t.deepEqual(walk(d), caps.map((c) => [c.id, c.offset]))
  const msix = caps.find((c): c is Extract<PciCapability, { kind: 'msix' }> => c.kind === 'msix')
  // The table size agrees with the kernel's MSI-X vectors; the table and PBA lie inside BAR0.
  t.is(msix?.tableSize, d.irqs[IrqIndex.MSIX].count)
  const bar0 = d.regions[RegionIndex.BAR0]
  t.true((msix?.tableOffset ?? Infinity) + 16 * (msix?.tableSize ?? 0) <= bar0.size)
  t.true((msix?.pbaOffset ?? Infinity) < bar0.size)
  t.true(bar0.caps.some((c) => c.kind === 'msix-mappable'))
  // The extended header at 0x100 is there and says: no list.
  t.is(d.config.readU32(0x100), 0)
})

test.serial('BARs: decoded from config space, sized by the VFIO regions, at the addresses sysfs reports', (t) => {
  {
    using h = open(EDU)
    const bars = h.device.bars()
    t.deepEqual(bars, [{ index: 0, type: 'memory', is64Bit: false, prefetchable: false, address: sysfsBarStart(EDU, 0), size: 0x100000 }])
    t.is(bars[0]?.size, h.device.regions[RegionIndex.BAR0].size)
    t.not(bars[0]?.address, 0n)
    // The 32-bit BAR register holds the address, flag bits clear.
    t.is(BigInt(h.device.config.readU32(0x10)), bars[0]?.address)
  }
  {
    using h = open(NVME)
    const bars = h.device.bars()
    t.deepEqual(bars, [{ index: 0, type: 'memory', is64Bit: true, prefetchable: false, address: sysfsBarStart(NVME, 0), size: 0x4000 }])
    const low = h.device.config.readU32(0x10)
    t.is(low & 0x7, 0x4, 'a 64-bit memory BAR')
    t.is((BigInt(h.device.config.readU32(0x14)) << 32n) | BigInt((low & ~0xf) >>> 0), bars[0]?.address)
    // Only BAR0 is present: BAR1 (its upper half) and the rest have no region.
    t.deepEqual(
      h.device.regions.slice(0, 6).filter((r) => r.present).map((r) => r.index),
      [0],
    )
  }
})

test.serial('config accessors: ids by every width agree with each other, sysfs and regionRead; writes round-trip', (t) => {
  using h = open(EDU)
  const { config } = h.device
  t.is(config.readU16(PciConfig.VENDOR_ID), 0x1234)
  t.is(config.readU16(PciConfig.DEVICE_ID), 0x11e8)
  t.is(config.readU32(PciConfig.VENDOR_ID), 0x11e81234)
  t.deepEqual([0, 1, 2, 3].map((o) => config.readU8(o)), [0x34, 0x12, 0xe8, 0x11])
  t.is(config.readU32(0), h.device.regionRead(RegionIndex.CONFIG, 0, 4).readUInt32LE(0))
  const pci = sysfs.getDevice(EDU)
  t.is(config.readU16(PciConfig.VENDOR_ID), pci.vendor)
  t.is(config.readU16(PciConfig.DEVICE_ID), pci.device)
  // The interrupt line (0x3c) is a scratch register vfio-pci lets the user write.
  const line = config.readU8(0x3c)
  config.writeU8(0x3c, 0xa5)
  t.is(config.readU8(0x3c), 0xa5)
  config.writeU8(0x3c, line)
  t.is(config.readU8(0x3c), line)
  // Out of range, unaligned: refused before the kernel.
  t.is((t.throws(() => config.readU32(256)) as { code?: string }).code, 'ERR_VFIO_OUT_OF_RANGE')
  t.is((t.throws(() => config.readU16(3)) as { code?: string }).code, 'ERR_VFIO_INVALID_ARGUMENT')
})

test.serial('setBusMaster toggles bit 2 of the command register; on also sets memory decoding', (t) => {
  using h = open(EDU)
  const d = h.device
  const original = d.config.readU16(PciConfig.COMMAND)
  try {
    d.setBusMaster(false)
    const off = d.config.readU16(PciConfig.COMMAND)
    t.is(off & PciConfig.COMMAND_BUS_MASTER, 0)
    t.is(off & PciConfig.COMMAND_MEMORY, original & PciConfig.COMMAND_MEMORY, 'memory decoding untouched')
    d.setBusMaster()
    const on = d.config.readU16(PciConfig.COMMAND)
    t.is(on & PciConfig.COMMAND_BUS_MASTER, PciConfig.COMMAND_BUS_MASTER)
    t.is(on & PciConfig.COMMAND_MEMORY, PciConfig.COMMAND_MEMORY)
    t.is(on & ~(PciConfig.COMMAND_BUS_MASTER | PciConfig.COMMAND_MEMORY), off & ~(PciConfig.COMMAND_BUS_MASTER | PciConfig.COMMAND_MEMORY), 'other bits kept')
    // With memory decoding on, BAR0 answers (edu's id register).
    using bar0 = d.regions[RegionIndex.BAR0].map()
    t.is(bar0.readU32(0) & 0xffff, 0x00ed)
    d.setBusMaster(false)
    t.is(d.config.readU16(PciConfig.COMMAND) & PciConfig.COMMAND_BUS_MASTER, 0)
    t.is(bar0.readU32(0) & 0xffff, 0x00ed, 'memory decoding stays on')
  } finally {
    d.config.writeU16(PciConfig.COMMAND, original)
  }
})

test.serial('NVMe: mapped BAR0 at every width (free-function accessors) agrees with pread of the same registers', (t) => {
  using h = open(NVME)
  const d = h.device
  using bar = d.regions[RegionIndex.BAR0].map()
  // VS (0x08): the NVMe version, 1.4 on QEMU 7.2 (major 16 bits, minor 8, tertiary 8).
  const vs = bar.readU32(0x08)
  t.is(vs >>> 16, 1)
  t.is(bar.readU16(0x0a), vs >>> 16)
  t.is(bar.readU16(0x08), vs & 0xffff)
  t.is(d.regionReadU32(RegionIndex.BAR0, 0x08), vs)
  t.is(d.regionReadU16(RegionIndex.BAR0, 0x0a), vs >>> 16)
  // CAP (0x00, 64 bits): the low half through the mapping and by pread agree.
  t.is(bar.readU32(0x00), d.regionReadU32(RegionIndex.BAR0, 0x00))
  t.is(bar.readU8(0x0a), (vs >>> 16) & 0xff)
  t.is(bar.readU8(0x09), (vs >>> 8) & 0xff)
  // AQA (0x24) is plain storage (QEMU's NVMe ignores writes narrower than 32 bits):
  // a write through the mapping reads back by pread, and one by pwrite through the mapping.
  const aqa = bar.readU32(0x24)
  bar.writeU32(0x24, 0x0003_0007)
  t.is(d.regionReadU32(RegionIndex.BAR0, 0x24), 0x0003_0007)
  d.regionWriteU32(RegionIndex.BAR0, 0x24, aqa)
  t.is(bar.readU32(0x24), aqa)
})
