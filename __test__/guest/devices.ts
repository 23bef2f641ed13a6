/** What the guest suites share: the emulated devices, their registers, and small checks. */
import type { ExecutionContext } from 'ava'
import { PciConfig, RegionIndex, type Device } from '../../ts/index'

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
