/** A model of QEMU's `edu` device for the mock backend (`vfio-ioctls/testing`). */
import type { MockDevice, MockDeviceSpec, MockSystem } from './testing'

/** edu's registers in BAR0, and its DMA engine's (QEMU `docs/specs/edu.rst`). */
export const EDU_REGISTERS = {
  /** Identification, `0xRRrr00edu`: 0x010000ed. */
  ID: 0x00,
  /** Liveness check: reads back the bitwise NOT of what was written. */
  LIVENESS: 0x04,
  /** Factorial: write n, read n! (32 bits) once the status' busy bit clears. */
  FACTORIAL: 0x08,
  /** Status: bit 0 computing (read-only), bit 7 raise an interrupt when the factorial is done. */
  STATUS: 0x20,
  /** Interrupt status: the bits raised and not acknowledged (0x1 factorial, 0x100 DMA). */
  IRQ_STATUS: 0x24,
  /** Raise an interrupt: the value is ORed into the interrupt status. */
  IRQ_RAISE: 0x60,
  /** Acknowledge: the value is cleared from the interrupt status. */
  IRQ_ACK: 0x64,
  /** DMA source address (64 bits). */
  DMA_SRC: 0x80,
  /** DMA destination address (64 bits). */
  DMA_DST: 0x88,
  /** DMA transfer count in bytes (64 bits). */
  DMA_COUNT: 0x90,
  /** DMA command: bit 0 start (clears when done), bit 1 direction (1: device to RAM), bit 2 raise interrupt 0x100 when done. */
  DMA_CMD: 0x98,
  /** Where the device's 4 KiB DMA buffer appears in the DMA addresses. */
  DMA_BUFFER: 0x40000,
  /** The size of the DMA buffer. */
  DMA_BUFFER_SIZE: 0x1000,
} as const

/** Options of {@link mockEdu}. */
export interface MockEduOptions {
  /** PCI address; default `0000:00:03.0`, as in the project's guest. */
  address?: string
  /** IOMMU group; default a group of its own. */
  group?: number
  /** Milliseconds a DMA transfer takes; default 1 (QEMU's edu takes 100). */
  dmaDelay?: number
}

/**
 * A device spec of QEMU's `edu` (1234:11e8, rev 0x10): BAR0 of 1 MiB with the ID,
 * liveness, factorial (with the busy bit and the completion interrupt), interrupt
 * raise/acknowledge registers, and the DMA engine copying between its 4 KiB buffer at
 * 0x40000 and IOVAs through the mock IOMMU; MSI (one vector) and INTx.
 * `sys.addDevice(mockEdu())`.
 */
export function mockEdu(options: MockEduOptions = {}): MockDeviceSpec {
  const spec: MockDeviceSpec = {
    address: options.address ?? '0000:00:03.0',
    vendor: 0x1234,
    device: 0x11e8,
    revision: 0x10,
    class: 0x00ff00,
    regions: [{ index: 0, size: 1 << 20, mmap: true }],
    irqs: { intx: true, msi: 1, msix: 0 },
    model: (dev, sys) => eduModel(dev, sys, options.dmaDelay ?? 1),
  }
  if (options.group !== undefined) spec.group = options.group
  return spec
}

function eduModel(dev: MockDevice, sys: MockSystem, dmaDelay: number): void {
  const R = EDU_REGISTERS
  const BAR = 0
  const u32 = (offset: number): number => dev.peekU32(BAR, offset)
  const set = (offset: number, v: number): void => dev.pokeU32(BAR, offset, v)
  const u64 = (offset: number): bigint => dev.peek(BAR, offset, 8).readBigUInt64LE(0)
  let liveness = 0
  let factorial = 0
  let status = 0
  let irqStatus = 0
  const buffer = Buffer.alloc(R.DMA_BUFFER_SIZE)

  const raise = (bits: number): void => {
    irqStatus = (irqStatus | bits) >>> 0
    // edu signals MSI when the driver enabled it, else asserts INTx.
    if (dev.enabledIrq(1) !== undefined) dev.raise(1, 0)
    else if (dev.enabledIrq(0) !== undefined) dev.raise(0, 0)
  }

  const reset = (): void => {
    liveness = 0
    factorial = 0
    status = 0
    irqStatus = 0
  }
  dev.onReset(reset)
  // The read-only and computed registers are stored before each read.
  dev.onRead(BAR, R.ID, () => 0x010000ed)
  dev.onRead(BAR, R.LIVENESS, () => ~liveness >>> 0)
  dev.onWrite(BAR, R.LIVENESS, (v) => {
    liveness = Number(v)
  })
  dev.onRead(BAR, R.FACTORIAL, () => factorial)
  dev.onWrite(BAR, R.FACTORIAL, (v) => {
    if (status & 1) return
    factorial = Number(v)
    status |= 1
    setTimeout(() => {
      let f = 1
      for (let i = factorial; i > 0; i--) f = Math.imul(f, i) >>> 0
      factorial = f
      status &= ~1
      if (status & 0x80) raise(0x1)
    }, 1)
  })
  dev.onRead(BAR, R.STATUS, () => status)
  dev.onWrite(BAR, R.STATUS, (v) => {
    status = (status & 1) | (Number(v) & 0x80)
  })
  dev.onRead(BAR, R.IRQ_STATUS, () => irqStatus)
  dev.onWrite(BAR, R.IRQ_STATUS, () => set(R.IRQ_STATUS, irqStatus))
  dev.onWrite(BAR, R.IRQ_RAISE, (v) => raise(Number(v)))
  dev.onWrite(BAR, R.IRQ_ACK, (v) => {
    irqStatus = (irqStatus & ~Number(v)) >>> 0
  })
  dev.onWrite(
    BAR,
    R.DMA_CMD,
    (cmd) => {
      if ((cmd & 1n) === 0n) return
      setTimeout(() => {
        const src = u64(R.DMA_SRC)
        const dst = u64(R.DMA_DST)
        const count = Number(u64(R.DMA_COUNT) & 0xffff_ffffn)
        const start = BigInt(R.DMA_BUFFER)
        const end = start + BigInt(R.DMA_BUFFER_SIZE)
        const toRam = (cmd & 2n) !== 0n
        const inBuffer = (at: bigint): boolean => at >= start && at + BigInt(count) <= end
        // Without bus mastering the device's DMA goes nowhere; an IOMMU fault leaves memory as it was.
        if (dev.busMaster && count > 0) {
          try {
            if (toRam && inBuffer(src)) {
              const from = Number(src - start)
              sys.dma.write(dst, buffer.subarray(from, from + count))
            } else if (!toRam && inBuffer(dst)) {
              const to = Number(dst - start)
              sys.dma.read(src, count).copy(buffer, to)
            }
          } catch {
            // A real IOMMU reports the fault to the kernel's log; edu goes on.
          }
        }
        const now = u64(R.DMA_CMD) & ~1n
        const b = Buffer.alloc(8)
        b.writeBigUInt64LE(now)
        dev.poke(BAR, R.DMA_CMD, b)
        if (cmd & 4n) raise(0x100)
      }, dmaDelay)
    },
    { width: 8 },
  )
}
