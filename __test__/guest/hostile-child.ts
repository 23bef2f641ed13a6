/**
 * Run as a child process by trust.spec.ts: calls that once aborted the process (huge
 * lengths allocated before the range check) or were silently truncated to 32 bits by
 * napi, through the facade and through the raw binding. Prints one JSON line per case
 * *before* running it and one after, so a parent that sees the process die by a signal
 * knows which case killed it.
 */
import { Container, PciConfig, RegionIndex } from '../../ts/index'

const EDU = process.argv[2] ?? '0000:00:03.0'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const raw = require('../../native/binding.cjs') as typeof import('../../native/binding')

function attempt(name: string, fn: () => unknown): void {
  process.stdout.write(`${JSON.stringify({ start: name })}\n`)
  let code: string | undefined = 'none (it succeeded)'
  try {
    fn()
  } catch (err) {
    code = (err as { code?: string }).code ?? `no code: ${String(err)}`
  }
  process.stdout.write(`${JSON.stringify({ case: name, code })}\n`)
}

function throughTheFacade(): void {
  using container = new Container()
  using device = container.openDevice(EDU)
  using bar = device.regions[RegionIndex.BAR0].map()
  using dma = container.allocateDma(4096, { iova: 0x100000 })
  attempt('bar.read(0, 2**31)', () => bar.read(0, 2 ** 31))
  attempt('bar.read(0, 2**32-1)', () => bar.read(0, 2 ** 32 - 1))
  attempt('bar.read(0, 2**53-1)', () => bar.read(0, Number.MAX_SAFE_INTEGER))
  attempt('device.regionRead(0, 0, 2**32-1)', () => device.regionRead(0, 0, 2 ** 32 - 1))
  attempt('device.regionRead(7, 0, 2**31)', () => device.regionRead(RegionIndex.CONFIG, 0, 2 ** 31))
  attempt('dma.read(0, 2**32-1)', () => dma.read(0, 2 ** 32 - 1))
  attempt('dma.read(2**53-1, 1)', () => dma.read(Number.MAX_SAFE_INTEGER, 1))
  // With memory decoding off, vfio-pci answers a BAR access with SIGBUS.
  const config = device.regions[RegionIndex.CONFIG]
  const command = config.read(PciConfig.COMMAND, 2).readUInt16LE(0)
  config.write(PciConfig.COMMAND, Buffer.from(new Uint16Array([command & ~PciConfig.COMMAND_MEMORY]).buffer))
  attempt('bar.readU32(0) with memory decoding off (SIGBUS)', () => bar.readU32(0))
  attempt('bar.writeU32(4, 1) with memory decoding off (SIGBUS)', () => bar.writeU32(4, 1))
  attempt('bar.read(0, 4) with memory decoding off (SIGBUS)', () => bar.read(0, 4))
  config.write(PciConfig.COMMAND, Buffer.from(new Uint16Array([command | PciConfig.COMMAND_MEMORY]).buffer))
  if (bar.readU32(0) !== 0x010000ed) throw new Error('the BAR did not come back with memory decoding on')
}

throughTheFacade()
// The group is free again (a second container could not open it while the first held it).
const rawContainer = new raw.Container()
const rawDevice = rawContainer.openDevice(EDU)
const rawBar = rawDevice.mapRegion(0)
// Each of these would succeed on another region, vector or value if napi truncated it.
attempt('raw regionRead(2**32, 0, 4) (would be region 0)', () => rawDevice.regionRead(2 ** 32, 0, 4))
attempt('raw regionRead(-1, 0, 4) (would be region 0xffffffff)', () => rawDevice.regionRead(-1, 0, 4))
attempt('raw regionRead(0, 0, 2**32 + 4) (would be 4 bytes)', () => rawDevice.regionRead(0, 0, 2 ** 32 + 4))
attempt('raw mapRegion(2**32) (would be BAR0)', () => rawDevice.mapRegion(2 ** 32))
attempt('raw enableIrq(1, 0, 2**32 + 1) (would be 1 vector)', () => rawDevice.enableIrq(1, 0, 2 ** 32 + 1))
attempt('raw enableIrq(1, 0, 2**32 - 1) (eventfds until EMFILE)', () => rawDevice.enableIrq(1, 0, 2 ** 32 - 1))
attempt('raw writeU32(0x04, -1) (would write 0xffffffff)', () => rawBar.writeU32(0x04, -1))
attempt('raw writeU8(0x04, 256.5)', () => rawBar.writeU8(0x04, 256.5))
attempt('raw readU32(-4)', () => rawBar.readU32(-4))
rawBar.close()
rawDevice.close()
rawContainer.close()
process.stdout.write(`${JSON.stringify({ done: true })}\n`)
