/**
 * The packed form of a device's info, regions and IRQ indices that `device.layout()`
 * answers in one native crossing (`src/device_layout.rs`, which this must follow):
 * `numbers` is a header of 8 (group, flags, numRegions, numIrqs, info bits,
 * maxInterrupts, region count, IRQ count), then 5 per region (index, bits, flags, size,
 * offset), then 4 per IRQ index (index, bits, flags, count). Bits, from bit 0: info
 * `pci`, `canReset`; region `present`, `readable`, `writable`, `mappable`; IRQ
 * `eventfd`, `maskable`, `automasked`.
 */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'

const HEADER = 8
const REGION = 5
const IRQ = 4

/** What a `Device` is built from. */
export interface UnpackedLayout {
  info: Binding.DeviceInfo
  regions: Binding.RegionInfo[]
  irqs: Binding.IrqInfo[]
}

const bit = (bits: number, i: number): boolean => ((bits >>> i) & 1) === 1

/** The objects `layout` packs; `ERR_VFIO_IO` when its numbers do not add up. */
export function unpackLayout(layout: Binding.DeviceLayout): UnpackedLayout {
  const n = layout.numbers
  const regionCount = n[6] ?? 0
  const irqCount = n[7] ?? 0
  if (n.length < HEADER || n.length !== HEADER + REGION * regionCount + IRQ * irqCount) {
    throw new VfioError(ErrorCode.IO, `the device layout has ${n.length} numbers, which do not match its ${regionCount} regions and ${irqCount} IRQ indices`)
  }
  const at = (i: number): number => n[i] ?? 0
  const infoBits = at(4)
  const info: Binding.DeviceInfo = {
    name: layout.name,
    sysfsPath: layout.sysfsPath,
    group: at(0),
    flags: at(1),
    numRegions: at(2),
    numIrqs: at(3),
    pci: bit(infoBits, 0),
    canReset: bit(infoBits, 1),
    maxInterrupts: at(5),
  }
  const caps = new Map(layout.regionCaps.map((c) => [c.index, c.caps]))
  const regions: Binding.RegionInfo[] = []
  for (let r = 0, o = HEADER; r < regionCount; r++, o += REGION) {
    const index = at(o)
    const bits = at(o + 1)
    regions.push({
      index,
      present: bit(bits, 0),
      flags: at(o + 2),
      size: at(o + 3),
      offset: at(o + 4),
      readable: bit(bits, 1),
      writable: bit(bits, 2),
      mappable: bit(bits, 3),
      caps: caps.get(index) ?? [],
    })
  }
  const irqs: Binding.IrqInfo[] = []
  for (let q = 0, o = HEADER + REGION * regionCount; q < irqCount; q++, o += IRQ) {
    const bits = at(o + 1)
    irqs.push({ index: at(o), flags: at(o + 2), count: at(o + 3), eventfd: bit(bits, 0), maskable: bit(bits, 1), automasked: bit(bits, 2) })
  }
  return { info, regions, irqs }
}

const bits = (...flags: boolean[]): number => flags.reduce((acc, on, i) => acc | (on ? 1 << i : 0), 0)

/** Packs as the native `device.layout()` does: for the mock binding, and round-trip tests. */
export function packLayout(info: Binding.DeviceInfo, regions: readonly Binding.RegionInfo[], irqs: readonly Binding.IrqInfo[]): Binding.DeviceLayout {
  const numbers = [info.group, info.flags, info.numRegions, info.numIrqs, bits(info.pci, info.canReset), info.maxInterrupts, regions.length, irqs.length]
  for (const r of regions) numbers.push(r.index, bits(r.present, r.readable, r.writable, r.mappable), r.flags, r.size, r.offset)
  for (const q of irqs) numbers.push(q.index, bits(q.eventfd, q.maskable, q.automasked), q.flags, q.count)
  return {
    name: info.name,
    sysfsPath: info.sysfsPath,
    numbers: Float64Array.from(numbers),
    regionCaps: regions.filter((r) => r.caps.length > 0).map((r) => ({ index: r.index, caps: r.caps })),
  }
}
