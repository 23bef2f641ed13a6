/**
 * A small driver for QEMU's edu device, and the tests of it that run unchanged against
 * the mock backend on the host (`__test__/mock.spec.ts`) and against the real edu in
 * the guest (`__test__/guest/mock-edu.spec.ts`): the proof that the mock behaves like the
 * real device path on what it models.
 */
import type { TestFn } from 'ava'
import { Container, ErrorCode, IrqIndex, RegionIndex, type Device, type DmaBuffer, type Interrupts, type MappedRegion } from '../ts/index'

/** edu's registers (BAR0). */
export const EDU = {
  ID: 0x00,
  LIVENESS: 0x04,
  FACTORIAL: 0x08,
  STATUS: 0x20,
  IRQ_STATUS: 0x24,
  IRQ_RAISE: 0x60,
  IRQ_ACK: 0x64,
  DMA_SRC: 0x80,
  DMA_DST: 0x88,
  DMA_COUNT: 0x90,
  DMA_CMD: 0x98,
  DMA_BUFFER: 0x40000,
} as const

/** A user-mode driver of edu: what a user of the library writes. */
export class EduDriver implements Disposable {
  readonly container: Container
  readonly device: Device
  readonly bar: MappedRegion
  #irq: Interrupts | undefined

  constructor(address: string) {
    this.container = new Container()
    this.device = this.container.openDevice(address)
    this.device.setBusMaster()
    this.bar = this.device.regions[RegionIndex.BAR0].map()
  }

  /** The identification register. */
  id(): number {
    return this.bar.readU32(EDU.ID)
  }

  /** Writes `v` to the liveness register and reads back its complement. */
  liveness(v: number): number {
    this.bar.writeU32(EDU.LIVENESS, v)
    return this.bar.readU32(EDU.LIVENESS)
  }

  /** n! by polling the busy bit. */
  async factorial(n: number): Promise<number> {
    this.bar.writeU32(EDU.STATUS, 0)
    this.bar.writeU32(EDU.FACTORIAL, n)
    await this.bar.waitU32(EDU.STATUS, { mask: 1, value: 0, timeout: 5000 })
    return this.bar.readU32(EDU.FACTORIAL)
  }

  /** MSI, enabled once. */
  get irq(): Interrupts {
    this.#irq ??= this.device.enableMsi(1)
    return this.#irq
  }

  /** n! with the completion interrupt; acknowledges it. */
  async factorialIrq(n: number): Promise<{ value: number; status: number }> {
    const irq = this.irq
    this.bar.writeU32(EDU.STATUS, 0x80)
    const done = irq.next({ signal: AbortSignal.timeout(10_000) })
    this.bar.writeU32(EDU.FACTORIAL, n)
    await done
    const status = this.bar.readU32(EDU.IRQ_STATUS)
    this.bar.writeU32(EDU.IRQ_ACK, status)
    this.bar.writeU32(EDU.STATUS, 0)
    return { value: this.bar.readU32(EDU.FACTORIAL), status }
  }

  /** One DMA transfer of `length` bytes (device buffer ↔ `buffer`), waiting for its MSI. */
  async dma(buffer: DmaBuffer, toRam: boolean, length: number, deviceOffset = 0): Promise<void> {
    const irq = this.irq
    const dev = BigInt(EDU.DMA_BUFFER + deviceOffset)
    this.bar.writeU64(EDU.DMA_SRC, toRam ? dev : buffer.iova)
    this.bar.writeU64(EDU.DMA_DST, toRam ? buffer.iova : dev)
    this.bar.writeU64(EDU.DMA_COUNT, BigInt(length))
    const done = irq.next({ signal: AbortSignal.timeout(10_000) })
    this.bar.writeU64(EDU.DMA_CMD, 1n | (toRam ? 2n : 0n) | 4n)
    await done
    const status = this.bar.readU32(EDU.IRQ_STATUS)
    this.bar.writeU32(EDU.IRQ_ACK, status)
  }

  close(): void {
    this.#irq?.close()
    this.bar.close()
    this.device.close()
    this.container.close()
  }

  [Symbol.dispose](): void {
    this.close()
  }
}

/** QEMU 7.2's edu aborts on a transfer that ends exactly at its buffer's end: stay one short. */
const DMA_LEN = 4095

function factorialU32(n: number): number {
  let f = 1
  for (let i = n; i > 0; i--) f = Math.imul(f, i) >>> 0
  return f
}

/** Registers the edu tests on `test`; `address` is where edu is (declared or bound by the caller's hooks). */
export function eduTests(test: TestFn, address: string): void {
  test.serial('edu: identification and liveness', (t) => {
    using edu = new EduDriver(address)
    t.is(edu.id(), 0x010000ed)
    t.is(edu.liveness(0x12345678), ~0x12345678 >>> 0)
    t.is(edu.liveness(0), 0xffffffff)
    t.is(edu.device.info.name, address)
    t.true(edu.device.info.pci)
    t.deepEqual(edu.device.capabilities().map((c) => c.kind), ['msi'])
    t.deepEqual(edu.device.bars().map((b) => [b.index, b.type, b.size]), [[0, 'memory', 1 << 20]])
    t.is(edu.device.config.readU16(0), 0x1234)
    t.is(edu.device.config.readU16(2), 0x11e8)
    t.true(edu.device.irqs[IrqIndex.MSI].count >= 1)
    t.true(edu.device.irqs[IrqIndex.INTX].maskable && edu.device.irqs[IrqIndex.INTX].automasked)
  })

  test.serial('edu: factorial by polling the busy bit', async (t) => {
    using edu = new EduDriver(address)
    t.is(await edu.factorial(5), 120)
    t.is(await edu.factorial(12), 479001600)
    t.is(await edu.factorial(13), factorialU32(13))
  })

  test.serial('edu: factorial with the MSI completion, raise and acknowledge', async (t) => {
    using edu = new EduDriver(address)
    const r = await edu.factorialIrq(10)
    t.is(r.value, 3628800)
    t.is(r.status & 1, 1)
    t.is(edu.bar.readU32(EDU.IRQ_STATUS), 0)
    // A driver-raised interrupt arrives as an event, and the status shows its bits.
    const seen = edu.irq.next({ signal: AbortSignal.timeout(10_000) })
    edu.bar.writeU32(EDU.IRQ_RAISE, 0x40)
    t.deepEqual(await seen, { vector: 0, count: 1 })
    t.is(edu.bar.readU32(EDU.IRQ_STATUS), 0x40)
    edu.bar.writeU32(EDU.IRQ_ACK, 0x40)
    t.is(edu.bar.readU32(EDU.IRQ_STATUS), 0)
    // A user-space trigger reaches the same path.
    const triggered = edu.irq.next({ signal: AbortSignal.timeout(10_000) })
    edu.irq.trigger(0)
    t.deepEqual(await triggered, { vector: 0, count: 1 })
  })

  test.serial('edu: DMA round trip through the IOMMU, byte for byte', async (t) => {
    using edu = new EduDriver(address)
    using src = edu.container.allocateDma(4096, { iova: 0x10_0000 })
    using dst = edu.container.allocateDma(4096, { iova: 0x20_0000 })
    const pattern = Buffer.alloc(DMA_LEN)
    for (let i = 0; i < DMA_LEN; i++) pattern[i] = (i * 7 + 3) & 0xff
    src.write(0, pattern)
    await edu.dma(src, false, DMA_LEN)
    await edu.dma(dst, true, DMA_LEN)
    t.true(dst.read(0, DMA_LEN).equals(pattern))
    t.is(dst.readU8(DMA_LEN), 0)
    t.deepEqual(
      edu.container.dmaMappings().map((m) => [m.iova, m.size]),
      [
        [0x10_0000n, 4096],
        [0x20_0000n, 4096],
      ],
    )
  })

  test.serial('edu: the errors a driver meets are the same', (t) => {
    using edu = new EduDriver(address)
    const code = (fn: () => unknown): string | undefined => (t.throws(fn) as { code?: string } | undefined)?.code
    t.is(code(() => edu.bar.readU32(2)), ErrorCode.INVALID_ARGUMENT)
    t.is(code(() => edu.bar.readU32(1 << 20)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => edu.bar.writeU8(0, 256)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => edu.device.regionRead(RegionIndex.BAR1, 0, 4)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => edu.device.mapRegion(RegionIndex.CONFIG)), ErrorCode.UNSUPPORTED)
    t.is(code(() => edu.container.allocateDma(4096, { iova: 0x1001 })), ErrorCode.INVALID_ARGUMENT)
    t.is(code(() => edu.container.allocateDma(4096, { iova: 0xfee0_0000 })), ErrorCode.INVALID_ARGUMENT)
    t.is(code(() => edu.device.enableMsi(2)), ErrorCode.OUT_OF_RANGE)
    const msi = edu.irq
    t.is(code(() => edu.device.enableIntx()), ErrorCode.BUSY)
    t.is(code(() => msi.trigger(1)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => edu.device.disableIrq(IrqIndex.MSI)), ErrorCode.BUSY)
    using other = new Container()
    t.is(code(() => other.openDevice(address)), ErrorCode.BUSY)
    t.is(code(() => other.openDevice('0000:00:1e.0')), ErrorCode.NOT_FOUND)
    edu.bar.close()
    t.is(code(() => edu.bar.readU32(0)), ErrorCode.CLOSED)
  })

  test.serial('edu: registers as numbers: mapped (free functions), by pread/pwrite, into a buffer; closed handles refuse', (t) => {
    // edu's BAR0 answers 4-byte accesses (8 from 0x80); config space answers any width.
    using edu = new EduDriver(address)
    const bar0 = edu.device.regions[RegionIndex.BAR0]
    const config = edu.device.regions[RegionIndex.CONFIG]
    // The same register through the mapping and through the device fd.
    t.is(bar0.readU32(EDU.ID), 0x010000ed)
    t.is(edu.device.regionReadU32(RegionIndex.BAR0, EDU.ID), 0x010000ed)
    bar0.writeU32(EDU.LIVENESS, 0x0f0f_0f0f)
    t.is(edu.bar.readU32(EDU.LIVENESS), 0xf0f0_f0f0)
    edu.bar.writeU32(EDU.LIVENESS, 1)
    t.is(bar0.readU32(EDU.LIVENESS), 0xffff_fffe)
    edu.device.regionWriteU32(RegionIndex.BAR0, EDU.LIVENESS, 2)
    t.is(edu.bar.readU32(EDU.LIVENESS), 0xffff_fffd)
    // 64 bits by pwrite (the kernel may split it into two 4-byte writes: edu keeps the low one).
    bar0.writeU64(EDU.DMA_SRC, 0x1234_5678_9abc_def0n)
    t.is(edu.bar.readU32(EDU.DMA_SRC), 0x9abc_def0)
    // Config space: ids as numbers of each width, and into a caller's buffer.
    t.is(config.readU16(0), 0x1234)
    t.is(config.readU8(2), 0xe8)
    t.is(edu.device.regionReadU16(RegionIndex.CONFIG, 2), 0x11e8)
    t.is(edu.device.regionReadU8(RegionIndex.CONFIG, 0), 0x34)
    t.is(config.readU32(0), 0x11e8_1234)
    t.is(config.readU64(0), BigInt(config.readU32(0)) | (BigInt(config.readU32(4)) << 32n))
    const into = Buffer.alloc(4)
    config.readInto(0, into)
    t.is(into.readUInt32LE(0), 0x11e8_1234)
    edu.device.regionReadInto(RegionIndex.BAR0, EDU.ID, into)
    t.is(into.readUInt32LE(0), 0x010000ed)
    // Config writes of each width land (the interrupt line register is plain storage).
    const line = config.readU8(0x3c)
    config.writeU8(0x3c, 0x5a)
    t.is(config.readU8(0x3c), 0x5a)
    edu.device.regionWriteU8(RegionIndex.CONFIG, 0x3c, line)
    t.is(config.readU8(0x3c), line)
    const command = config.readU16(4)
    config.writeU16(4, command)
    t.is(edu.device.regionReadU16(RegionIndex.CONFIG, 4), command)
    edu.device.regionWriteU16(RegionIndex.CONFIG, 4, command)
    edu.device.regionWriteU64(RegionIndex.BAR0, EDU.DMA_SRC, 0n)
    t.is(edu.bar.readU32(EDU.DMA_SRC), 0)
    // The errors are the class methods' ones.
    const code = (fn: () => unknown): string | undefined => (t.throws(fn) as { code?: string } | undefined)?.code
    t.is(code(() => bar0.readU32(1 << 20)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => edu.device.regionReadU32(RegionIndex.BAR1, 0)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => config.writeU8(0x3c, 256)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => config.writeU16(0x3c, 0x1_0000)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => edu.bar.writeU16(EDU.LIVENESS, 0x1_0000)), ErrorCode.OUT_OF_RANGE)
    t.is(code(() => edu.bar.readU16(1)), ErrorCode.INVALID_ARGUMENT)
    t.is(code(() => bar0.readU32(1.5)), ErrorCode.INVALID_ARGUMENT)
    // A mapping closed while its free-function handle is kept: the closed error, also once
    // a new mapping took the slot.
    const other = bar0.map()
    other.close()
    t.is(code(() => other.readU32(EDU.ID)), ErrorCode.CLOSED)
    t.is(code(() => other.writeU32(EDU.LIVENESS, 0)), ErrorCode.CLOSED)
    t.is(code(() => other.readU32Many([EDU.ID])), ErrorCode.CLOSED)
    using again = bar0.map()
    t.is(again.readU32(EDU.ID), 0x010000ed)
    t.deepEqual([...again.readU32Many(new Uint32Array([EDU.ID, EDU.LIVENESS]))], [0x010000ed, 0xffff_fffd])
    t.is(code(() => other.readU8(EDU.ID)), ErrorCode.CLOSED)
    edu.device.close()
    t.is(code(() => bar0.readU32(EDU.ID)), ErrorCode.CLOSED)
    t.is(code(() => edu.device.regionReadU8(RegionIndex.BAR0, 0)), ErrorCode.CLOSED)
    t.is(edu.bar.readU32(EDU.ID), 0x010000ed, 'a mapping keeps its device open')
  })
}
