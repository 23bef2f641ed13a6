/**
 * In-process fakes of the native handles, for testing the facade's own logic
 * (argument checks, lifetimes, event delivery). They model no kernel behaviour:
 * everything kernel-facing is tested in the guest (`__test__/guest`).
 */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from '../ts/index'
import { packLayout } from '../ts/device-layout'
import { recorder } from './helpers'

/**
 * The public members of a binding class, with the binding's types. Each fake is an
 * object literal of this type, so it must have every member `native/binding.d.ts`
 * declares and no other: when the binding drifts, the fakes stop compiling
 * (`npm run typecheck`) instead of silently testing the facade against a stale shape.
 * The classes napi declares have public members only, so such a literal is also a
 * value of the class type the facade's constructors take.
 */
export type Native<C> = Pick<C, keyof C>

export function fakeDevice() {
  const rec = recorder()
  let closed = false
  const regions: Binding.RegionInfo[] = Array.from({ length: 9 }, (_, index) => ({
    index,
    present: index !== 8,
    flags: index === 0 ? 7 : index === 7 ? 3 : 0,
    size: index === 0 ? 0x100000 : index === 7 ? 256 : 0,
    offset: index * 0x10000000000,
    readable: index === 0 || index === 7,
    writable: index === 0 || index === 7,
    mappable: index === 0,
    caps: index === 0 ? [{ kind: 'sparse-mmap', areas: [{ offset: 0, size: 0x1000 }] }] : [],
  }))
  const config = fakeConfigSpace()
  const migrationChunks: Buffer[] = []
  const info = (): Binding.DeviceInfo => ({
      name: '0000:00:03.0',
      sysfsPath: '/sys/devices/pci0000:00/0000:00:03.0',
      group: 1,
      flags: 3,
      numRegions: 9,
      numIrqs: 5,
      pci: true,
      canReset: true,
      maxInterrupts: 1,
    })
  const irqs = (): Binding.IrqInfo[] => [0, 1, 2, 3, 4].map((index) => ({ index, flags: 1, count: index < 2 ? 1 : 0, eventfd: true, maskable: index === 0, automasked: index === 0 }))
  const n: Native<Binding.Device> = {
    layout: () => packLayout(info(), regions, irqs()),
    info,
    regions: () => regions,
    // No free-function handle: the facade uses the class methods, which record.
    fastHandle: -1,
    irqs,
    regionRead: (i: number, o: number, l: number) => (rec.record('regionRead', i, o, l), i === 7 ? Buffer.from(config.subarray(o, o + l)) : Buffer.alloc(l)),
    regionWrite: (i: number, o: number, d: Uint8Array) => (rec.record('regionWrite', i, o, d.length), i === 7 && config.set(d, o)),
    mapRegion: (i: number) => (rec.record('mapRegion', i), fakeMemory(rec)),
    reset: () => rec.record('reset'),
    resetAsync: async () => rec.record('resetAsync'),
    hotResetInfo: () => (rec.record('hotResetInfo'), fakeHotResetDevices()),
    hotReset: () => (rec.record('hotReset'), fakeHotResetDevices()),
    hotResetAsync: async () => (rec.record('hotResetAsync'), fakeHotResetDevices()),
    enableIrq: (i: number, s: number, c: number) => (rec.record('enableIrq', i, s, c), fakeInterrupts(rec, i, s, c).native),
    disableIrq: (i: number) => rec.record('disableIrq', i),
    capabilities: () => (rec.record('capabilities'), fakeCapabilities),
    bars: () => (rec.record('bars'), fakeBars),
    iommufdDevId: 1,
    attachHwpt: (pt: number) => rec.record('attachHwpt', pt),
    attachPasid: (pasid: number, pt: number) => rec.record('attachPasid', pasid, pt),
    detachPasid: (pasid: number) => rec.record('detachPasid', pasid),
    detachHwpt: () => rec.record('detachHwpt'),
    // Migration: records the calls; reads hand out `migrationChunks`, then the end.
    migrationSupport: () => (rec.record('migrationSupport'), { flags: 7, stopCopy: true, p2p: true, preCopy: true, states: ['error', 'stop', 'running'] }),
    migrationState: () => (rec.record('migrationState'), 'running'),
    setMigrationState: async (state: string) => rec.record('setMigrationState', state),
    migrationDataSize: () => (rec.record('migrationDataSize'), 60),
    precopyInfo: () => (rec.record('precopyInfo'), { initialBytes: 24, dirtyBytes: 0 }),
    readMigrationData: async (length: number) => (rec.record('readMigrationData', length), migrationChunks.shift() ?? Buffer.alloc(0)),
    writeMigrationData: async (data: Uint8Array) => rec.record('writeMigrationData', Buffer.from(data).toString()),
    saveState: async () => (rec.record('saveState'), Buffer.from('state')),
    loadState: async (data: Uint8Array) => rec.record('loadState', Buffer.from(data).toString()),
    startDmaLogging: (pageSize: number, ranges: Binding.DmaLoggingRange[]) => (rec.record('startDmaLogging', pageSize, ranges), pageSize),
    stopDmaLogging: () => rec.record('stopDmaLogging'),
    reportDmaLogging: (range: Binding.DmaLoggingRange, pageSize: number) => (rec.record('reportDmaLogging', range, pageSize), Buffer.alloc(8)),
    exportDmaBuf: (index: number, ranges: Binding.RegionRange[]) => (rec.record('exportDmaBuf', index, ranges), 99),
    close: () => {
      closed = true
      rec.record('close')
    },
    get closed() {
      return closed
    },
  }
  return { native: n, calls: rec.calls, config, migrationChunks }
}

/** What the fake device's hot reset affects: itself and a second function in another group. */
export function fakeHotResetDevices(): Binding.HotResetDevice[] {
  return [
    { address: '0000:00:03.0', group: 1 },
    { address: '0000:00:03.1', group: 2 },
  ]
}

/**
 * The fake device's 256 bytes of config space (region 7): edu's ids (1234:11e8), the
 * command register 0, a capability list (MSI at 0x40, PCI Express at 0x80) and BAR0 at
 * 0xfea00000. Reads of region 7 return these bytes; writes change them.
 */
export function fakeConfigSpace(): Buffer {
  const c = Buffer.alloc(256)
  c.writeUInt16LE(0x1234, 0x00)
  c.writeUInt16LE(0x11e8, 0x02)
  c.writeUInt16LE(0x0010, 0x06)
  c.writeUInt32LE(0x00ff0010, 0x08)
  c.writeUInt32LE(0xfea00000, 0x10)
  c.writeUInt8(0x40, 0x34)
  c.set([0x05, 0x80, 0x80, 0x00], 0x40)
  c.set([0x10, 0x00, 0x02, 0x00], 0x80)
  return c
}

/** What the fake device's `capabilities()` answers: each kind once, the native shape. */
export const fakeCapabilities: Binding.PciCapabilityInfo[] = [
  { kind: 'msi', id: 0x05, offset: 0x40, multipleMessageCapable: 2, bits64: true, perVectorMasking: false },
  { kind: 'msix', id: 0x11, offset: 0x50, tableSize: 64, tableBir: 0, tableOffset: 0x2000, pbaBir: 4, pbaOffset: 0x3000 },
  { kind: 'pcie', id: 0x10, offset: 0x80, version: 2, deviceType: 0 },
  { kind: 'pm', id: 0x01, offset: 0x60, version: 3 },
  { kind: 'vendor', id: 0x09, offset: 0x70, length: 8 },
  { kind: 'unknown', id: 0x0d, offset: 0x78 },
  { kind: 'extended', id: 0x0001, offset: 0x100, version: 1 },
]

/** What the fake device's `bars()` answers. */
export const fakeBars: Binding.PciBarInfo[] = [
  { index: 0, memory: true, bits64: false, prefetchable: false, address: 0xfea00000n, size: 0x100000 },
  { index: 2, memory: true, bits64: true, prefetchable: true, address: 0x1_0000_0000n, size: 0x4000 },
  { index: 4, memory: false, bits64: false, prefetchable: false, address: 0xc000n, size: 0x20 },
]

/** The accessors of a fake memory over `mem` (a buffer, or a slice's part of it). */
function fakeAccessors(mem: Buffer, rec: ReturnType<typeof recorder>) {
  return {
    readU8: (o: number) => mem.readUInt8(o),
    readU16: (o: number) => mem.readUInt16LE(o),
    readU32: (o: number) => (rec.record('readU32', o), mem.readUInt32LE(o)),
    readU64: (o: number) => mem.readBigUInt64LE(o),
    writeU8: (o: number, v: number) => mem.writeUInt8(v, o),
    writeU16: (o: number, v: number) => mem.writeUInt16LE(v, o),
    writeU32: (o: number, v: number) => (rec.record('writeU32', o, v), mem.writeUInt32LE(v, o)),
    writeU64: (o: number, v: bigint) => mem.writeBigUInt64LE(v, o),
    read: (o: number, l: number) => Buffer.from(mem.subarray(o, o + l)),
    write: (o: number, d: Uint8Array) => mem.set(d, o),
    readInto: (o: number, t: Uint8Array) => (rec.record('readInto', o, t.length), t.set(mem.subarray(o, o + t.length))),
    readU32Many: (values: Uint32Array) => {
      rec.record('readU32Many', values.length)
      values.forEach((o, i) => (values[i] = mem.readUInt32LE(o)))
    },
  }
}

/**
 * A slice of a fake buffer: `length` bytes at `offset` of `mem`, closed when `parentClosed()`.
 * Only the shape: bounds are the native layer's, tested in the core and the guest.
 */
function fakeSlice(mem: Buffer, iova: bigint, offset: number, length: number, parentClosed: () => boolean, rec: ReturnType<typeof recorder>): Native<Binding.DmaSlice> {
  let closed = false
  return {
    iova: iova + BigInt(offset),
    offset,
    size: length,
    mapped: true,
    ...fakeAccessors(mem.subarray(offset, offset + length), rec),
    slice: (o: number, l: number) => (rec.record('slice', o, l), fakeSlice(mem, iova, offset + o, l, parentClosed, rec)),
    close: () => {
      closed = true
      rec.record('close')
    },
    get closed() {
      return closed || parentClosed()
    },
  }
}

/** One object that is both a mapped region and a DMA buffer: the accessors are the same. */
export function fakeMemory(rec = recorder()): Native<Binding.MappedRegion> & Native<Binding.DmaBuffer> {
  const mem = Buffer.alloc(0x1000)
  let closed = false
  return {
    index: 0,
    size: 0x1000,
    areas: [{ offset: 0, size: 0x1000 }],
    // No free-function handle: the facade uses the class methods, which record.
    fastHandle: -1,
    iova: 0x100000n,
    mapped: true,
    ...fakeAccessors(mem, rec),
    view: () => (rec.record('view'), mem),
    slice: (o: number, l: number) => (rec.record('slice', o, l), fakeSlice(mem, 0x100000n, o, l, () => closed, rec)),
    unmap: () => rec.record('unmap'),
    // Polls the fake memory each millisecond, as the native watcher polls a mapping.
    waitU32: (o: number, mask: number, value: number, timeout: number, cancel: Binding.WaitCancel) => {
      rec.record('waitU32', o, mask, value, timeout)
      const end = Date.now() + timeout
      return new Promise<number | null>((resolve, reject) => {
        const poll = (): void => {
          const v = mem.readUInt32LE(o)
          if (cancel.cancelled) resolve(null)
          else if (((v & mask) >>> 0) === value) resolve(v)
          else if (Date.now() >= end) reject(new VfioError(ErrorCode.TIMEOUT, `waitU32: last read 0x${v.toString(16)}`))
          else setTimeout(poll, 1)
        }
        poll()
      })
    },
    close: () => {
      closed = true
      rec.record('close')
    },
    get closed() {
      return closed
    },
  }
}

export function fakeInterrupts(rec = recorder(), index = 1, start = 0, count = 1) {
  let fire: ((vector: number, count: number) => void) | undefined
  /** What each vector's eventfd holds, for `takePending`. */
  const pending = new Map<number, number>()
  let refs = 0
  let closed = false
  const n: Native<Binding.Interrupts> = {
    index,
    start,
    count,
    listen: (cb: (v: number, c: number) => void) => {
      rec.record('listen')
      fire = cb
    },
    ref: () => {
      refs = 1
      rec.record('ref')
    },
    unref: () => {
      refs = 0
      rec.record('unref')
    },
    trigger: (v: number) => {
      rec.record('trigger', v)
      queueMicrotask(() => fire?.(v, 1))
    },
    stop: () => rec.record('stop'),
    shareVector: (v: number) => {
      rec.record('shareVector', v)
      return 1
    },
    takePending: (v: number) => {
      rec.record('takePending', v)
      const c = pending.get(v) ?? 0
      pending.delete(v)
      return c
    },
    mask: (v: number) => rec.record('mask', v),
    unmask: (v: number) => rec.record('unmask', v),
    close: () => {
      closed = true
      rec.record('close')
    },
    get closed() {
      return closed
    },
  }
  return {
    native: n,
    calls: rec.calls,
    fire: (v: number, c = 1) => fire?.(v, c),
    pending,
    referenced: () => refs > 0,
  }
}

/**
 * A container whose `allocateDma` records what the facade passed (`allocations`) and hands out fake
 * buffers; `install()` makes the next `new Container()` wrap it (the binding's exports
 * are a plain object), and returns the function that puts the real class back.
 */
export function fakeContainer(rec = recorder()) {
  let closed = false
  const allocations: [number, Binding.DmaOptions | null | undefined][] = []
  const n: Native<Binding.Container> = {
    hasHypervisorDevice: false,
    iommu: 'iommufd',
    ioasId: 2,
    allocHwpt: (devId: number) => (rec.record('allocHwpt', devId), 3),
    destroyHwpt: (id: number) => rec.record('destroyHwpt', id),
    apiVersion: () => 0,
    checkExtension: () => true,
    groupIds: () => [1],
    iommuInfo: () => ({ flags: 3, iovaPgsizes: 0x40201000n, iovaRanges: [{ start: 0n, end: 0xfedfffffn }], dmaAvail: 65535 }),
    dmaMappings: () => [{ iova: 0x100000n, size: 4096 }],
    openDevice: (a: string) => (rec.record('openDevice', a), fakeDevice().native),
    allocateDma: (size: number, options?: Binding.DmaOptions | null) => (allocations.push([size, options]), fakeMemory(rec)),
    close: () => {
      closed = true
      rec.record('close')
    },
    get closed() {
      return closed
    },
  }
  const install = (binding: { Container: unknown }): (() => void) => {
    const real = binding.Container
    binding.Container = function FakeContainer() {
      return n
    }
    return () => {
      binding.Container = real
    }
  }
  return { native: n, calls: rec.calls, allocations, install }
}
