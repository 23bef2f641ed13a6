/**
 * Tables of bad inputs, run the same against the native binding and against the mock
 * backend; each entry's outcome is `ok` or the error's code and message. The host spec
 * (`mock-equivalence.spec.ts`) compares the calls that need no device; the guest spec
 * (`guest/mock-edu.spec.ts`) compares the ones on an open edu.
 */
import { Container, IrqIndex, RegionIndex, sysfs } from '../ts/index'
import { native } from '../ts/native'

/** One outcome: `ok` (with the value, when small) or `code: message`. */
export function outcome(fn: () => unknown): string {
  try {
    const v = fn()
    return typeof v === 'string' || typeof v === 'boolean' ? `ok ${v}` : 'ok'
  } catch (err) {
    const e = err as { code?: string; message?: string }
    return `${e.code ?? 'NO CODE'}: ${e.message ?? String(err)}`
  }
}

const numbers = [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 53, 1e21, -0]
const texts = ['', 'a\0b', 'x'.repeat(4097), 'é'.repeat(2049), '0000:00:03.0\0']
const addresses = [
  '0000:00:03.0', '00:03.0', 'ABCD:Ef:1F.7', '10000:01:00.1', 'ffffffff:ff:1f.7',
  '0000:00:03', '0000:00:20.0', '0000:00:03.8', '00:03.0/../x', ' 00:03.0', '0000:00:03.0\n',
  '../../etc', '000:00:03.0', '000000000:00:03.0', '0000:0:03.0', '0000:00:3.0', '0000:00:03.00',
  '+000:00:03.0', '0000:00:03.0.0', '0:0000:00:03.0', '0000:00:03:0', '0000:g0:03.0', '0000:00:03.',
  '0'.repeat(60) + ':00:03.0', '0'.repeat(70),
]

/** The calls that need no device: pure argument checks of the binding and the facade. */
export function pureTable(): [string, string][] {
  const rows: [string, string][] = []
  const row = (name: string, fn: () => unknown): void => {
    rows.push([name, outcome(fn)])
  }
  for (const a of [...addresses, ...texts]) row(`parseAddress(${JSON.stringify(a).slice(0, 40)})`, () => sysfs.parseAddress(a))
  // Large floats: Rust writes the shortest digits, then zeros (2^63 is 9223372036854776000).
  for (const n of [...numbers, 2 ** 63, -(2 ** 70), 1.5e300, 123456789e30]) {
    row(`new Container({ kvmDeviceFd: ${n} })`, () => new Container({ kvmDeviceFd: n }))
    row(`new Container({ mshvDeviceFd: ${n} })`, () => new Container({ mshvDeviceFd: n }))
  }
  row('new Container({ kvmDeviceFd: 1, createKvmVm: true })', () => new Container({ kvmDeviceFd: 1, createKvmVm: true }))
  row('new Container({ kvmDeviceFd: 1, mshvDeviceFd: 2 })', () => new Container({ kvmDeviceFd: 1, mshvDeviceFd: 2 }))
  for (const s of texts) {
    row(`new Container({ path: ${JSON.stringify(s).slice(0, 20)} })`, () => new Container({ path: s }))
    row(`getDevice(${JSON.stringify(s).slice(0, 20)})`, () => sysfs.getDevice(s))
    row(`bind(${JSON.stringify(s).slice(0, 20)})`, () => sysfs.bind(s))
    row(`unbind(00:03.0, { restore: ${JSON.stringify(s).slice(0, 20)} })`, () => sysfs.unbind('00:03.0', { restore: s }))
    row(`listDevices({ root: ${JSON.stringify(s).slice(0, 20)} })`, () => sysfs.listDevices({ root: s }))
  }
  for (const what of ['device', 'container', 'DMA buffer', 'mapped region', 'interrupts']) row(`closedMessage(${what})`, () => native().closedMessage(what))
  row('errorCodes()', () => native().errorCodes().join(','))
  return rows
}

/** Bad inputs on an open edu at `address` (bound to vfio-pci, memory decoding on). */
export function deviceTable(address: string): [string, string][] {
  const rows: [string, string][] = []
  const row = (name: string, fn: () => unknown): void => {
    rows.push([name, outcome(fn)])
  }
  using c = new Container()
  row('iommuInfo() before a device', () => c.iommuInfo())
  row('allocateDma before a device', () => c.allocateDma(4096, { iova: 0x100000 }))
  for (const a of ['../../etc', '/sys/bus/pci/devices/../../../../etc', '/sys/bus/pci/devices/../../../etc', '0000:00:03.8', '00:03', '0000:00:1e.0', '/sys/bus/pci/devices/0000:00:1e.0', 'relative/path']) {
    row(`openDevice(${a})`, () => c.openDevice(a).close())
  }
  using d = c.openDevice(address)
  d.setBusMaster()
  for (const n of [...numbers, 9, 99]) {
    row(`regionRead(${n}, 0, 4)`, () => d.regionRead(n, 0, 4))
    row(`regionRead(0, ${n}, 4)`, () => d.regionRead(RegionIndex.BAR0, n, 4))
    row(`regionRead(0, 0, ${n})`, () => d.regionRead(RegionIndex.BAR0, 0, n))
    row(`mapRegion(${n})`, () => d.mapRegion(n).close())
    row(`enableIrq(1, ${n}, 1)`, () => d.enableIrq(IrqIndex.MSI, { start: n, count: 1 }).close())
    row(`enableIrq(1, 0, ${n})`, () => d.enableIrq(IrqIndex.MSI, { start: 0, count: n }).close())
    row(`enableIrq(${n}, 0, 1)`, () => d.enableIrq(n, { start: 0, count: 1 }).close())
    row(`disableIrq(${n})`, () => d.disableIrq(n))
  }
  row('regionRead(BAR0, 2^20 - 2, 4)', () => d.regionRead(RegionIndex.BAR0, (1 << 20) - 2, 4))
  row('regionRead(BAR0, MAX_SAFE, 4)', () => d.regionRead(RegionIndex.BAR0, Number.MAX_SAFE_INTEGER, 4))
  row('regionWrite(CONFIG, 255, 2 bytes)', () => d.regionWrite(RegionIndex.CONFIG, 255, Buffer.alloc(2)))
  row('regionRead(BAR1, 0, 1)', () => d.regionRead(RegionIndex.BAR1, 0, 1))
  row('regionRead(VGA, 0, 1)', () => d.regionRead(RegionIndex.VGA, 0, 1))
  row('mapRegion(CONFIG)', () => d.mapRegion(RegionIndex.CONFIG))
  row('mapRegion(BAR1)', () => d.mapRegion(RegionIndex.BAR1))
  row('enableIrq(MSIX, 0, 1)', () => d.enableIrq(IrqIndex.MSIX, { count: 1 }).close())
  row('enableIrq(ERR, 0, 1)', () => d.enableIrq(IrqIndex.ERR, { count: 1 }).close())
  {
    using bar = d.mapRegion(RegionIndex.BAR0)
    for (const n of [...numbers, 1, 2, 3, 1 << 20, (1 << 20) - 4, (1 << 20) - 2]) {
      row(`bar.readU32(${n})`, () => bar.readU32(n))
      row(`bar.readU16(${n})`, () => bar.readU16(n))
      row(`bar.readU64(${n})`, () => bar.readU64(n))
      row(`bar.writeU8(0x04, ${n})`, () => bar.writeU8(0x04, n))
      row(`bar.writeU16(0x04, ${n})`, () => bar.writeU16(0x04, n))
      row(`bar.writeU32(0x04, ${n})`, () => bar.writeU32(0x04, n))
      row(`bar.read(${n}, 4)`, () => bar.read(n, 4))
      row(`bar.read(0, ${n})`, () => bar.read(0, n).length)
    }
    row('bar.writeU64(0x80, 2^64)', () => bar.writeU64(0x80, 1n << 64n))
    row('bar.writeU64(0x80, -1n)', () => bar.writeU64(0x80, -1n))
    row('bar.read(2^20, 0)', () => bar.read(1 << 20, 0).length)
    row('bar.write(2^20 - 1, 2 bytes)', () => bar.write((1 << 20) - 1, Buffer.alloc(2)))
    bar.close()
    row('closed bar.readU32(0)', () => bar.readU32(0))
    row('closed bar.read(0, 0)', () => bar.read(0, 0))
  }
  for (const [size, iova] of [[0, 0x100000], [100, 0x100000], [4096, 0x1001], [4096, 0xfee0_0000], [8192, 0xfedff000], [4096, 2 ** 52]] as const) {
    row(`allocateDma(${size}, ${iova})`, () => c.allocateDma(size, { iova }).close())
  }
  row('allocateDma(4096, 2^64 - 4096)', () => c.allocateDma(4096, { iova: (1n << 64n) - 4096n }).close())
  row('allocateDma(4096, 2^64)', () => c.allocateDma(4096, { iova: 1n << 64n }).close())
  {
    using a = c.allocateDma(8192, { iova: 0x100000 })
    row('overlapping allocateDma', () => c.allocateDma(4096, { iova: 0x101000 }).close())
    row('touching allocateDma', () => c.allocateDma(4096, { iova: 0x102000 }).close())
    {
      using above = c.allocateDma(4096, { iova: 0x104000 })
      row('allocateDma over two mappings', () => c.allocateDma(0x8000, { iova: 0x100000 }).close())
      row('allocateDma(4096, align 1M) beside mappings', () => {
        using b = c.allocateDma(4096, { align: 1 << 20 })
        return `0x${b.iova.toString(16)}`
      })
      row('allocateDma(8192, dmaMask 0x104fff) beside mappings', () => c.allocateDma(8192, { dmaMask: 0x10_4fffn, align: 1 << 20 }).close())
      above.close()
    }
    for (const n of [...numbers, 1, 8192, 8190]) {
      row(`dma.readU16(${n})`, () => a.readU16(n))
      row(`dma.writeU32(0, ${n})`, () => a.writeU32(0, n))
    }
    a.unmap()
    row('unmap twice', () => a.unmap())
    row('mapped after unmap', () => a.mapped)
    a.close()
    row('closed dma.readU8(0)', () => a.readU8(0))
  }
  // The library's choice of an IOVA and the checks of the DMA options (no mapping is left).
  const chosen = (size: number, o: Parameters<Container['allocateDma']>[1]) => (): string => {
    const b = c.allocateDma(size, o)
    try {
      return `0x${b.iova.toString(16)}`
    } finally {
      b.close()
    }
  }
  row('allocateDma(4096) chooses', chosen(4096, {}))
  row('allocateDma(8192, align 2M) chooses', chosen(8192, { align: 0x20_0000 }))
  row('allocateDma(4096, dmaMask 0x1fff) chooses', chosen(4096, { dmaMask: 0x1fffn }))
  for (const align of [0, 1, 2048, 0x3000, 4097, 1.5, -1, 2 ** 53, 2 ** 63]) row(`allocateDma(4096, align ${align})`, chosen(4096, { align }))
  for (const [size, mask] of [[8192, 0x1fffn], [4096, 0xfffn], [4096, 0n], [1 << 20, 0xf_ffffn], [4096, -1n], [4096, 1n << 64n]] as const) {
    row(`allocateDma(${size}, dmaMask ${mask})`, chosen(size, { dmaMask: mask }))
  }
  row('allocateDma(4096, iova 0x300000, align 2M)', chosen(4096, { iova: 0x30_0000, align: 0x20_0000 }))
  row('allocateDma(8192, iova 0xfffff000, dmaMask 2^32 - 1)', chosen(8192, { iova: 0xffff_f000, dmaMask: 0xffff_ffffn }))
  row('allocateDma(4096, iova 0x1001, align 2048)', chosen(4096, { iova: 0x1001, align: 2048 }))
  for (const [size, huge] of [[4096, '2M'], [0, '2M'], [3 << 20, '2M'], [2 << 20, '1G'], [4096, '3M'], [4096, ''], [4096, '2m'], [4096, 'x'.repeat(40)]] as const) {
    row(`allocateDma(${size}, hugePages ${huge.slice(0, 8)})`, chosen(size, { hugePages: huge as '2M' }))
  }
  row('allocateDma(4096, hugePages 2M, align 4096)', chosen(4096, { hugePages: '2M', align: 4096 }))
  {
    using b = c.allocateDma(8192, { iova: 0x10_0000 })
    for (const [o, n] of [[0, 0], [8192, 1], [0, 8193], [8191, 2], [-1, 1], [0, 1.5], [2 ** 53, 1]] as const) row(`dma.slice(${o}, ${n})`, () => b.slice(o, n).size)
    using s = b.slice(0x1000, 0x100)
    row('slice.iova', () => `0x${s.iova.toString(16)}`)
    row('slice.slice(0xf8, 0x10)', () => s.slice(0xf8, 0x10))
    row('slice.slice(0x10, 0)', () => s.slice(0x10, 0))
    row('slice.readU32(0x100)', () => s.readU32(0x100))
    row('slice.readU16(1)', () => s.readU16(1))
    row('slice.read(0xff, 2)', () => s.read(0xff, 2))
    using odd = b.slice(1, 16)
    row('odd slice.readU32(0)', () => odd.readU32(0))
    row('odd slice.writeU16(0, 1)', () => odd.writeU16(0, 1))
    row('odd slice.readU8(0)', () => odd.readU8(0))
    b.close()
    row('slice after its buffer closed: readU8(0)', () => s.readU8(0))
    row('slice after its buffer closed: closed', () => s.closed)
    row('slice after its buffer closed: mapped', () => s.mapped)
  }
  row('dmaMappings() after', () => JSON.stringify(c.dmaMappings().map((m) => [String(m.iova), m.size])))
  row('hotResetInfo() on the root bus', () => d.hotResetInfo())
  row('hotReset() on the root bus', () => d.hotReset())
  {
    using msi = d.enableMsi(1)
    row('enableMsi again', () => d.enableMsi(1))
    row('enableIntx while MSI', () => d.enableIntx())
    row('disableIrq(MSI) while held', () => d.disableIrq(IrqIndex.MSI))
    for (const n of [...numbers, 1, 2]) {
      row(`trigger(${n})`, () => msi.trigger(n))
      row(`takePending(${n})`, () => msi.takePending(n))
    }
    msi.close()
    row('closed trigger(0)', () => msi.trigger(0))
  }
  row('disableIrq(MSI) after close', () => d.disableIrq(IrqIndex.MSI))
  {
    using other = new Container()
    row('openDevice from another container', () => other.openDevice(address))
  }
  row('bind while open', () => sysfs.bind(address))
  row('unbind while open', () => sysfs.unbind(address))
  d.close()
  row('closed regionRead', () => d.regionRead(0, 0, 4))
  row('closed regionRead with a bad index', () => d.regionRead(-1, 0, 4))
  c.close()
  row('closed container groupIds', () => c.groupIds())
  return rows
}
