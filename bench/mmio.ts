/**
 * Benchmark, run in the guest (`npm run bench`): register access through the mmapped
 * BAR (volatile load via the addon) against pread on the device fd, and the zero-copy
 * DMA view against copying reads. Reports ratios measured in one run.
 */
import { Container, RegionIndex, sysfs } from '..'

const EDU = process.argv[2] ?? '0000:00:03.0'

function rate(name: string, n: number, fn: () => void): number {
  for (let i = 0; i < Math.min(n, 1000); i++) fn() // warm up
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) fn()
  const ns = Number(process.hrtime.bigint() - start) / n
  console.log(`${name.padEnd(40)} ${ns.toFixed(0).padStart(8)} ns/op`)
  return ns
}

sysfs.bind(EDU)
using container = new Container()
using device = container.openDevice(EDU)
using bar = device.regions[RegionIndex.BAR0].map()
const mapped = rate('BAR0 id: mapped readU32', 20000, () => bar.readU32(0))
const pread = rate('BAR0 id: regionRead (pread) 4 bytes', 20000, () => device.regionRead(RegionIndex.BAR0, 0, 4))
using dma = container.allocateDma(65536, { iova: 0x100000 })
const view = dma.view
let sink = 0
const zeroCopy = rate('DMA 64 KiB: sum through the view', 200, () => {
  for (let i = 0; i < view.length; i += 4096) sink += view[i]
})
const copying = rate('DMA 64 KiB: read() copy, then sum', 200, () => {
  const b = dma.read(0, 65536)
  for (let i = 0; i < b.length; i += 4096) sink += b[i]
})
console.log(`ratio pread/mapped: ${(pread / mapped).toFixed(2)}x; copy/view: ${(copying / zeroCopy).toFixed(2)}x (sink ${sink & 1})`)
