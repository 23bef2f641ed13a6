/**
 * Migration v2 against the real kernel. On 6.12, whose mtty (the kernel's sample mdev
 * driver) supports migration: a serial port's registers and FIFO move from one mtty mdev
 * to another (as a Buffer, and as a stream), pre-copy, and mtty's DMA logging. On 6.1
 * (no mtty) the spec asserts that the mtty parent is absent and that creating an mtty
 * mdev is refused. edu's refusals (no migration driver) are in edu.spec.ts, whose
 * coverage check needs every member called in its own process.
 */
import test, { type ExecutionContext } from 'ava'
import fs from 'node:fs'
import { Readable } from 'node:stream'
import { ErrorCode, sysfs, type Device } from '../../ts/index'
import { code, EDU, newContainer } from './devices'

/** 16550 registers at region 0 (the port's I/O BAR), as mtty emulates them. */
const UART = { TX_RX: 0, LCR: 3, LSR: 5, SCR: 7 }
const LSR_DATA_READY = 0x01
/** mtty-1's state: a 24-byte header and one 36-byte serial port (mtty.c). */
const MTTY_1_STATE = 60

const release = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()
const [major = 0, minor = 0] = release.split('.').map((p) => Number.parseInt(p, 10))
const hasMtty = major > 6 || (major === 6 && minor >= 12)

test.before(() => {
  if (process.env.VFIO_GUEST !== '1' || !fs.existsSync('/dev/vfio/vfio')) {
    throw new Error('the guest suite needs the QEMU guest: run `npm run test:guest`')
  }
  sysfs.bind(EDU)
})

/** On a kernel without mtty (6.1): creating one is refused, naming what is missing. */
async function noMtty(t: ExecutionContext): Promise<void> {
  await t.throwsAsync(sysfs.createMdev('mtty', 'mtty-1'), { code: ErrorCode.NOT_FOUND, message: /mdev type mtty\/mtty-1 not found/ })
}

function reg(d: Device, offset: number): number {
  return d.regionRead(0, offset, 1)[0] ?? -1
}

function setReg(d: Device, offset: number, value: number): void {
  d.regionWrite(0, offset, Uint8Array.of(value))
}

/** Two mtty-1 mdevs open in one container, handed to `body`, closed and removed after. */
async function withTwoMtty(body: (src: Device, dst: Device) => Promise<void>): Promise<void> {
  const a = await sysfs.createMdev('mtty', 'mtty-1')
  const b = await sysfs.createMdev('mtty', 'mtty-1')
  try {
    const c = newContainer()
    // One by UUID, one by its sysfs path.
    const src = c.openDevice(a)
    const dst = c.openDevice(`/sys/bus/mdev/devices/${b}`)
    c.close()
    try {
      await body(src, dst)
    } finally {
      src.close()
      dst.close()
    }
  } finally {
    await sysfs.removeMdev(a)
    await sysfs.removeMdev(b)
  }
}

test.serial('the mtty parent exists on 6.12 and not on 6.1', async (t) => {
  const types = sysfs.mdevTypes()
  if (hasMtty) {
    const one = types.find((x) => x.parent === 'mtty' && x.id === 'mtty-1')
    t.truthy(one, JSON.stringify(types))
    t.is(one?.deviceApi, 'vfio-pci')
    t.true((one?.availableInstances ?? 0) >= 2)
  } else {
    t.deepEqual(
      types.filter((x) => x.parent === 'mtty'),
      [],
    )
    await t.throwsAsync(sysfs.createMdev('mtty', 'mtty-1'), { code: ErrorCode.NOT_FOUND, message: /mdev type mtty\/mtty-1/ })
  }
  await t.throwsAsync(sysfs.createMdev('mtty', 'mtty-1', { uuid: '../../x' }), { code: ErrorCode.INVALID_ARGUMENT })
})

test.serial('a serial port moves from one mtty to another (saveState, loadState)', async (t) => {
  if (!hasMtty) return await noMtty(t)
  await withTwoMtty(async (src, dst) => {
    t.deepEqual(src.migration, { flags: 7, stopCopy: true, p2p: true, preCopy: true, states: ['error', 'stop', 'running', 'stop-copy', 'resuming', 'running-p2p', 'pre-copy', 'pre-copy-p2p'] })
    t.is(src.migrationState, 'running')
    t.is(src.migrationDataSize, MTTY_1_STATE)
    t.not(src.name, dst.name)
    setReg(src, UART.LCR, 0x03)
    setReg(src, UART.SCR, 0x5a)
    for (const byte of Buffer.from('vm!')) setReg(src, UART.TX_RX, byte)
    t.is(reg(dst, UART.SCR), 0, 'the target starts blank')

    const state = await src.saveState()
    t.is(state.length, MTTY_1_STATE)
    t.is(src.migrationState, 'stop')
    await dst.loadState(state)
    t.is(dst.migrationState, 'stop')
    await dst.setMigrationState('running')
    t.is(reg(dst, UART.LCR), 0x03)
    t.is(reg(dst, UART.SCR), 0x5a)
    t.truthy(reg(dst, UART.LSR) & LSR_DATA_READY)
    t.is(Buffer.from([reg(dst, UART.TX_RX), reg(dst, UART.TX_RX), reg(dst, UART.TX_RX)]).toString(), 'vm!')
    t.falsy(reg(dst, UART.LSR) & LSR_DATA_READY, 'the FIFO is drained')
    await src.setMigrationState('running')
  })
})

test.serial('the state streams: saveStateStream chunks into loadState through a Readable', async (t) => {
  if (!hasMtty) return await noMtty(t)
  await withTwoMtty(async (src, dst) => {
    setReg(src, UART.SCR, 0xa5)
    const chunks: Buffer[] = []
    for await (const chunk of src.saveStateStream({ chunkSize: 16 })) chunks.push(chunk)
    t.deepEqual(
      chunks.map((c) => c.length),
      [16, 16, 16, 12],
    )
    t.is(src.migrationState, 'stop')
    await dst.loadState(Readable.from(chunks))
    await dst.setMigrationState('running')
    t.is(reg(dst, UART.SCR), 0xa5)
    await src.setMigrationState('running')
  })
})

test.serial('pre-copy: the header ahead of the stop, the ports after it, one stream', async (t) => {
  if (!hasMtty) return await noMtty(t)
  await withTwoMtty(async (src, dst) => {
    setReg(src, UART.SCR, 0x3c)
    await src.setMigrationState('pre-copy')
    t.deepEqual(src.precopyInfo(), { initialBytes: 24, dirtyBytes: 0 })
    const stream: Buffer[] = []
    for await (const c of src.migrationData()) stream.push(c)
    t.is(Buffer.concat(stream).length, 24)
    t.deepEqual(src.precopyInfo(), { initialBytes: 0, dirtyBytes: 0 })
    await src.setMigrationState('stop-copy')
    const e = code(t, () => src.precopyInfo(), ErrorCode.INVALID_ARGUMENT)
    t.is(e.errno, 22, e.message)
    for await (const c of src.migrationData()) stream.push(c)
    const state = Buffer.concat(stream)
    t.is(state.length, MTTY_1_STATE)
    await src.setMigrationState('running')
    await dst.setMigrationState('resuming')
    await dst.writeMigrationData([state.subarray(0, 10), state.subarray(10)])
    await dst.setMigrationState('stop')
    await dst.setMigrationState('running')
    t.is(reg(dst, UART.SCR), 0x3c)
  })
})

test.serial('mtty refuses a stream that is not its state', async (t) => {
  if (!hasMtty) return await noMtty(t)
  await withTwoMtty(async (src, dst) => {
    const state = await src.saveState()
    state[0] = (state[0] ?? 0) ^ 0xff
    const e = await t.throwsAsync(dst.loadState(state), { code: ErrorCode.IO })
    t.regex(e?.message ?? '', /write on .* failed.*same type/)
    t.is(dst.migrationState, 'resuming')
    await t.throwsAsync(dst.setMigrationState('error'), { code: ErrorCode.INVALID_ARGUMENT, message: /ERROR is not a state/ })
  })
})

test.serial("mtty's DMA logging starts, reports no dirty page, and stops", async (t) => {
  if (!hasMtty) return await noMtty(t)
  await withTwoMtty(async (src) => {
    const range = { iova: 0x100000, length: 0x100000 }
    t.is(src.startDmaLogging(4096, [range]), 4096)
    code(t, () => src.startDmaLogging(4096, [range]), ErrorCode.BUSY)
    const bitmap = src.reportDmaLogging(range, 4096)
    t.is(bitmap.length, 32, '256 pages, 4 u64 words')
    t.true(bitmap.every((b) => b === 0))
    src.stopDmaLogging()
    code(t, () => src.stopDmaLogging(), ErrorCode.INVALID_ARGUMENT)
  })
})
