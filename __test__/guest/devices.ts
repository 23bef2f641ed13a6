/** What the guest suites share: the emulated devices, their registers, and small checks. */
import type { ExecutionContext } from 'ava'
import { Container, PciConfig, RegionIndex, type ContainerOptions, type Device, type IommuBackend, type Interrupts, type MappedRegion } from '../../ts/index'

/** QEMU's edu device, and the NVMe controller beside it (see guest/README.md). */
export const EDU = '0000:00:03.0'
export const NVME = '0000:00:04.0'
/** edu's registers in BAR0. */
export const REG = { ID: 0x00, LIVENESS: 0x04, FACTORIAL: 0x08, STATUS: 0x20, IRQ_STATUS: 0x24, IRQ_RAISE: 0x60, IRQ_ACK: 0x64 }
/** edu's DMA engine registers and the device-side buffer's address. */
export const DMA = { SRC: 0x80, DST: 0x88, COUNT: 0x90, CMD: 0x98, BUFFER: 0x40000 }

/** Asserts `fn` throws an error with code `expected`, and returns it. */
export function code(t: ExecutionContext, fn: () => unknown, expected: string): Error & { code?: string; errno?: number } {
  const err = t.throws(fn) as Error & { code?: string; errno?: number }
  t.is(err?.code, expected, err?.message)
  return err
}

/** Sets bus mastering and memory decoding in the command register (needed for DMA and MSI). */
export function enableBusMaster(device: Device): void {
  const config = device.regions[RegionIndex.CONFIG]
  const cmd = config.read(PciConfig.COMMAND, 2).readUInt16LE(0)
  config.write(PciConfig.COMMAND, Buffer.from(new Uint16Array([cmd | PciConfig.COMMAND_BUS_MASTER | PciConfig.COMMAND_MEMORY]).buffer))
}

// QEMU 7.2's edu rejects a transfer that ends exactly at its 4 KiB buffer's end (an
// off-by-one in its range check that aborts QEMU), so transfers stay one short of it.
export const DMA_LEN = 4095

/**
 * One edu DMA transfer of `length` bytes from `src` to `dst` (`toRam`: from edu's buffer
 * to an IOVA, else from an IOVA to edu's buffer), waiting for its MSI and acking it.
 */
export async function eduDma(bar: MappedRegion, src: bigint | number, dst: bigint | number, toRam: boolean, irq: Interrupts, length = DMA_LEN): Promise<void> {
  bar.writeU64(DMA.SRC, BigInt(src))
  bar.writeU64(DMA.DST, BigInt(dst))
  bar.writeU64(DMA.COUNT, BigInt(length))
  const done = irq.next({ signal: AbortSignal.timeout(5000) })
  bar.writeU64(DMA.CMD, BigInt(1 | (toRam ? 2 : 0) | 4))
  await done
  const status = bar.readU32(REG.IRQ_STATUS)
  bar.writeU32(REG.IRQ_ACK, status)
}

/**
 * The IOMMU backend the guest suites run on, from `VFIO_TEST_IOMMU` (as the kernel
 * tests): `type1` (the default), `iommufd-compat` or `iommufd`.
 */
export function testIommu(): IommuBackend {
  const mode = process.env.VFIO_TEST_IOMMU ?? ''
  if (mode === '' || mode === 'type1') return 'type1'
  if (mode === 'iommufd-compat' || mode === 'iommufd') return mode
  throw new Error(`VFIO_TEST_IOMMU=${JSON.stringify(mode)}: expected type1, iommufd-compat or iommufd`)
}

/** A container of the suite's backend (`testIommu()`), with `options` besides. */
export function newContainer(options: ContainerOptions = {}): Container {
  return new Container({ iommu: testIommu(), ...options })
}

/** What `groupIds()` shows while devices of `groups` are open: none on native iommufd. */
export function heldGroups(groups: number[]): number[] {
  return testIommu() === 'iommufd' ? [] : groups
}

/** A container with edu open, bus mastering on, BAR0 mapped and MSI enabled. */
export function openEdu(c = newContainer()) {
  const d = c.openDevice(EDU)
  enableBusMaster(d)
  const bar = d.regions[RegionIndex.BAR0].map()
  const irq = d.enableMsi(1)
  return {
    c,
    device: d,
    bar,
    irq,
    [Symbol.dispose]() {
      irq.close()
      bar.close()
      d.close()
      c.close()
    },
  }
}
