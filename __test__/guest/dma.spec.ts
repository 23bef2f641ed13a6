/**
 * DMA for driver authors against the real kernel: IOVAs the library chooses (usable
 * ranges, alignment, DMA masks), huge-page backing, and slices, with QEMU's edu device
 * doing the DMA. Run in the QEMU guest (`npm run test:guest`); fails outside it.
 */
import test from 'ava'
import fs from 'node:fs'
import { ErrorCode, sysfs, type DmaBuffer, type DmaSlice, type IommuInfo } from '../../ts/index'
import { collectUntil } from '../helpers'
import { code, DMA, DMA_LEN, EDU, eduDma, openEdu } from './devices'

const MiB = 1 << 20
const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages'
const HUGE_2M_FREE = '/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages'
const HUGE_1G_POOL = '/sys/kernel/mm/hugepages/hugepages-1048576kB'

test.before(() => {
  if (process.env.VFIO_GUEST !== '1' || !fs.existsSync('/dev/vfio/vfio')) {
    throw new Error('the guest suite needs the QEMU guest: run `npm run test:guest`')
  }
  // This file's own device state: edu bound to vfio-pci, whatever ran before.
  sysfs.bind(EDU)
  const driver = sysfs.getDevice(EDU).driver
  if (driver !== 'vfio-pci') throw new Error(`edu is bound to ${driver}, not vfio-pci`)
})

/** Whether `[iova, iova + size)` lies inside one of the IOMMU's usable ranges. */
function insideRanges(info: IommuInfo, iova: bigint, size: number): boolean {
  const last = iova + BigInt(size) - 1n
  return info.iovaRanges.some((r) => r.start <= iova && last <= r.end)
}

/** A repeatable byte pattern. */
function pattern(length: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (i * 13 + seed) & 0xff))
}

/** Copies `length` bytes from `src` through edu's buffer to `dst` by edu's DMA engine. */
async function copyThroughEdu(e: ReturnType<typeof openEdu>, src: bigint, dst: bigint, length = DMA_LEN): Promise<void> {
  await eduDma(e.bar, src, DMA.BUFFER, false, e.irq, length)
  await eduDma(e.bar, DMA.BUFFER, dst, true, e.irq, length)
}

/** The number in a one-number file (`/proc/sys/vm/nr_hugepages`, `free_hugepages`). */
function readCount(path: string): number {
  return Number(fs.readFileSync(path, 'utf8').trim())
}

test.serial('allocations without an iova are disjoint, inside the usable ranges, aligned, and the device reaches them', async (t) => {
  using e = openEdu()
  const info = e.c.iommuInfo()
  t.log(`iovaRanges ${info.iovaRanges.map((r) => `[${r.start.toString(16)}, ${r.end.toString(16)}]`).join(' ')}, pgsizes ${info.iovaPgsizes.toString(16)}`)
  const requests: [number, number | undefined][] = [
    [4096, undefined],
    [8192, undefined],
    [4096, 0x10000],
    [3 * 4096, 0x200000],
    [4096, undefined],
  ]
  const buffers = requests.map(([size, align]) => e.c.allocateDma(size, align === undefined ? {} : { align }))
  try {
    t.log(`chosen IOVAs: ${buffers.map((b) => `0x${b.iova.toString(16)}+0x${b.size.toString(16)}`).join(', ')}`)
    // The lowest usable IOVA past page 0: a device that DMAs to address 0 must fault, not hit a buffer.
    t.is(buffers[0].iova, info.iovaRanges[0].start > 4096n ? info.iovaRanges[0].start : 4096n, 'the first one is the lowest usable IOVA past page 0')
    buffers.forEach((b, i) => {
      const [size, align = 4096] = requests[i]
      t.is(b.size, size)
      t.is(b.iova % BigInt(align), 0n, `buffer ${i} is aligned to ${align}`)
      t.true(insideRanges(info, b.iova, b.size), `buffer ${i} is usable`)
    })
    const spans = buffers.map((b) => [b.iova, b.iova + BigInt(b.size)] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1))
    for (let i = 1; i < spans.length; i++) t.true(spans[i - 1][1] <= spans[i][0], `mappings ${i - 1} and ${i} do not overlap`)
    t.deepEqual(
      e.c.dmaMappings(),
      spans.map(([iova, end]) => ({ iova, size: Number(end - iova) })),
    )
    // The last small one fills the hole the 64 KiB alignment left.
    t.true(buffers[4].iova < buffers[2].iova)
    // edu really reaches the chosen IOVAs, the lowest one included.
    const data = pattern(DMA_LEN, 1)
    buffers[0].write(0, data)
    await copyThroughEdu(e, buffers[0].iova, buffers[3].iova)
    t.true(buffers[3].read(0, DMA_LEN).equals(data))
    // A freed IOVA is used again.
    const freed = buffers[1].iova
    buffers[1].close()
    using again = e.c.allocateDma(4096)
    t.is(again.iova, freed)
  } finally {
    for (const b of buffers) b.close()
  }
})

test.serial('dmaMask: a 32-bit mask keeps buffers below 4 GiB; a mask too small gives a coded error', async (t) => {
  using e = openEdu()
  const low = [0, 1, 2].map(() => e.c.allocateDma(0x10000, { dmaMask: 0xffffffff }))
  try {
    for (const b of low) t.true(b.iova + BigInt(b.size) - 1n <= 0xffffffffn, `0x${b.iova.toString(16)} is below 4 GiB`)
    // edu itself decodes 28 address bits: its mask is 0x0fffffff.
    using eduBuffer = e.c.allocateDma(4096, { dmaMask: 0x0fffffffn })
    t.true(eduBuffer.iova <= 0x0ffff000n)
    eduBuffer.write(0, pattern(DMA_LEN, 2))
    await copyThroughEdu(e, eduBuffer.iova, low[2].iova)
    t.true(low[2].read(0, DMA_LEN).equals(pattern(DMA_LEN, 2)))
    // No room below the mask: nothing fits 8 KiB under 0x1000, and page 0 is never chosen.
    const tooSmall = code(t, () => e.c.allocateDma(8192, { dmaMask: 0xfff }), ErrorCode.OUT_OF_RANGE)
    t.is(tooSmall.errno, undefined, 'refused before the kernel is asked')
    t.regex(tooSmall.message, /no free IOVA for size 0x2000 aligned to 0x1000 with its last byte at most 0xfff/)
    t.regex(tooSmall.message, /usable ranges \[0x0, 0x[0-9a-f]+\]/)
    t.regex(tooSmall.message, /relax align or dmaMask/)
    t.log(tooSmall.message)
    code(t, () => e.c.allocateDma(4096, { dmaMask: 0xfff }), ErrorCode.OUT_OF_RANGE)
    // An explicit IOVA is checked against the mask and the alignment given with it.
    const above = code(t, () => e.c.allocateDma(8192, { iova: 0xfffff000, dmaMask: 0xffffffff }), ErrorCode.OUT_OF_RANGE)
    t.regex(above.message, /ends above the dmaMask 0xffffffff/)
    code(t, () => e.c.allocateDma(4096, { iova: 0x301000, align: 0x10000 }), ErrorCode.INVALID_ARGUMENT)
    code(t, () => e.c.allocateDma(4096, { align: 0x1800 }), ErrorCode.INVALID_ARGUMENT)
    code(t, () => e.c.allocateDma(4096, { align: 2 ** 53 }), ErrorCode.OUT_OF_RANGE)
    code(t, () => e.c.allocateDma(4096, { dmaMask: -1n }), ErrorCode.OUT_OF_RANGE)
    code(t, () => e.c.allocateDma(4096, { hugePages: '4K' as never }), ErrorCode.INVALID_ARGUMENT)
  } finally {
    for (const b of low) b.close()
  }
})

test.serial('huge pages: a 2 MiB buffer edu DMAs into; none reserved gives a coded error that says how to reserve', async (t) => {
  const before = fs.readFileSync(NR_HUGEPAGES, 'utf8').trim()
  try {
    fs.writeFileSync(NR_HUGEPAGES, '4')
    t.is(readCount(NR_HUGEPAGES), 4, 'the guest reserved 4 huge pages')
    const free = readCount(HUGE_2M_FREE)
    using e = openEdu()
    using src = e.c.allocateDma(4096)
    {
      using huge = e.c.allocateDma(2 * MiB, { hugePages: '2M' })
      t.log(`huge buffer at 0x${huge.iova.toString(16)}; free 2 MiB pages ${free} -> ${readCount(HUGE_2M_FREE)}`)
      t.is(huge.size, 2 * MiB)
      t.is(huge.iova % BigInt(2 * MiB), 0n, 'aligned to its page size by default')
      t.is(readCount(HUGE_2M_FREE), free - 1, 'it took one huge page')
      t.true(huge.view.equals(Buffer.alloc(2 * MiB)), 'zeroed')
      src.write(0, pattern(DMA_LEN, 3))
      // Into the second half of the huge page, through a slice's IOVA.
      using upper = huge.slice(MiB + 0x800, DMA_LEN)
      await copyThroughEdu(e, src.iova, upper.iova)
      t.true(upper.view.equals(pattern(DMA_LEN, 3)))
      t.true(huge.read(MiB + 0x800, DMA_LEN).equals(pattern(DMA_LEN, 3)))
      t.is(huge.readU8(MiB + 0x7ff), 0, 'nothing before the transfer was written')
      const split = code(t, () => e.c.allocateDma(3 * MiB, { hugePages: '2M' }), ErrorCode.INVALID_ARGUMENT)
      t.regex(split.message, /multiple of the 2 MiB huge page size 0x200000 \(huge pages are never split: ask for 0x400000\)/)
    }
    t.deepEqual(e.c.dmaMappings().map((m) => m.iova), [src.iova], 'closing unmapped it')
    // The memory lives as long as a view of it: the page is freed once the views are collected.
    t.true(await collectUntil(() => readCount(HUGE_2M_FREE) === free), 'the page came back')
    fs.writeFileSync(NR_HUGEPAGES, '0')
    const none = code(t, () => e.c.allocateDma(2 * MiB, { hugePages: '2M' }), ErrorCode.OUT_OF_RANGE)
    t.log(none.message)
    t.is(none.errno, 12, 'ENOMEM from mmap')
    t.is((none as unknown as { syscall?: string }).syscall, 'mmap')
    t.is((none as unknown as { path?: string }).path, HUGE_2M_FREE)
    t.regex(none.message, /0 2 MiB huge pages are free/)
    t.regex(none.message, /needs 1/)
    t.regex(none.message, /echo N > \/proc\/sys\/vm\/nr_hugepages/)
    t.deepEqual(e.c.dmaMappings().map((m) => m.iova), [src.iova], 'nothing was mapped')
    // 1 GiB pages: none reserved where the CPU has them, no pool where it has not.
    const oneGiB = fs.existsSync(HUGE_1G_POOL)
    t.log(`1 GiB huge page pool: ${oneGiB ? 'present' : 'absent'}`)
    code(t, () => e.c.allocateDma(1 << 30, { hugePages: '1G' }), oneGiB ? ErrorCode.OUT_OF_RANGE : ErrorCode.UNSUPPORTED)
  } finally {
    fs.writeFileSync(NR_HUGEPAGES, before)
  }
  t.is(fs.readFileSync(NR_HUGEPAGES, 'utf8').trim(), before, 'restored')
})

test.serial('slices: edu DMA to a slice IOVA lands at its offset; closing the buffer ends the slice', async (t) => {
  using e = openEdu()
  using src = e.c.allocateDma(4096)
  const dst: DmaBuffer = e.c.allocateDma(3 * 4096)
  const s: DmaSlice = dst.slice(0x1800, 0x1000)
  t.is(s.iova, dst.iova + 0x1800n)
  t.is(s.offset, 0x1800)
  t.is(s.size, 0x1000)
  t.true(s.mapped)
  t.is(s.buffer, dst)
  src.write(0, pattern(DMA_LEN, 4))
  await copyThroughEdu(e, src.iova, s.iova)
  t.true(s.view.subarray(0, DMA_LEN).equals(pattern(DMA_LEN, 4)), "in the slice's view")
  t.true(dst.view.subarray(0x1800, 0x1800 + DMA_LEN).equals(pattern(DMA_LEN, 4)), "at the slice's offset of the buffer")
  t.true(dst.view.subarray(0, 0x1800).every((b) => b === 0), 'nothing before it')
  t.is(s.readU32(0), pattern(4, 4).readUInt32LE(0))
  // A slice of a slice, and the device writing through it.
  using inner = s.slice(0x800, 0x100)
  t.is(inner.iova, dst.iova + 0x2000n)
  await eduDma(e.bar, DMA.BUFFER, inner.iova, true, e.irq, 0x100)
  t.true(inner.read(0, 0x100).equals(pattern(0x100, 4)))
  // Bounds are the slice's own.
  code(t, () => s.readU32(0x1000), ErrorCode.OUT_OF_RANGE)
  code(t, () => s.write(0xfff, Buffer.alloc(2)), ErrorCode.OUT_OF_RANGE)
  code(t, () => s.slice(0xf00, 0x101), ErrorCode.OUT_OF_RANGE)
  code(t, () => dst.slice(3 * 4096, 1), ErrorCode.OUT_OF_RANGE)
  code(t, () => dst.slice(0, 0), ErrorCode.INVALID_ARGUMENT)
  code(t, () => dst.slice(-1, 4), ErrorCode.OUT_OF_RANGE)
  // Closing the buffer unmaps it and ends every slice.
  dst.close()
  t.deepEqual(e.c.dmaMappings().map((m) => m.iova), [src.iova])
  t.true(s.closed && inner.closed)
  t.false(s.mapped)
  for (const fn of [() => s.readU32(0), () => s.view, () => inner.write(0, Buffer.alloc(1)), () => s.slice(0, 1), () => s.iova]) {
    code(t, fn, ErrorCode.CLOSED)
  }
  s.close()
})
