/**
 * `npm run bench` (in the guest, one boot): raw syscalls and volatile loads vs upstream
 * `vfio-ioctls` 0.10 vs our Rust core (the `vfio-bench` binary, crates/vfio-bench) vs our
 * TypeScript API, on QEMU's edu device. Columns alternate batch by batch (the order
 * reverses every batch; each side closes its device while the other runs, since a VFIO
 * group opens once per process); the first batch is a warm-up. Prints the median and
 * the spread (min–max over the batches) per operation, the ratios ours/raw and
 * ours/upstream, and writes every number as JSON.
 *
 * The measured paths run on vCPU 0 with the device's interrupts (see `pinToCpu0`).
 *
 * Usage: node --import tsx bench/perf.ts [--quick] [--batches N] [--json PATH] [--bin PATH]
 * `--quick` (CI): 2 batches of a few iterations, to show the bench still runs; its
 * numbers mean nothing.
 */
import { spawnSync } from 'node:child_process'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { Container, InterruptWaiter, RegionIndex, barrier, sysfs, type DmaBuffer, type DmaSlice, type Interrupts, type MappedRegion, type Device } from '..'

const root = join(__dirname, '..')
const argv = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}
const quick = argv.includes('--quick')
const batches = Number(flag('--batches') ?? (quick ? 2 : 21))
const scale = quick ? 1 : 10
const jsonPath = flag('--json') ?? join(root, 'bench', 'results.json')
const bin = flag('--bin') ?? join(root, 'target', 'bench', 'release', 'vfio-bench')
const EDU = '0000:00:03.0'

/** Which addon this runs on: napi build copies target/{debug,release}'s library. */
function addonProfile(): string {
  try {
    const node = statSync(join(root, 'native', 'vfio-ioctls.linux-x64-gnu.node')).size
    for (const p of ['release', 'debug']) {
      try {
        if (statSync(join(root, 'target', 'x86_64-unknown-linux-gnu', p, 'libvfio_ioctls_node.so')).size === node) return p
      } catch {
        // not built in this profile
      }
    }
  } catch {
    // no addon for x64 gnu
  }
  return 'unknown'
}

type Sample = { op: string; variant: string; ns: number }

/** ns per call of `fn` over `n` calls, after `n / 4` untimed ones (so V8 has compiled it). */
function time(n: number, fn: () => void): number {
  for (let i = 0; i < n / 4; i++) fn()
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) fn()
  return Number(process.hrtime.bigint() - start) / n
}

async function timeAsync(n: number, fn: () => Promise<void>): Promise<number> {
  for (let i = 0; i < n / 4; i++) await fn()
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await fn()
  return Number(process.hrtime.bigint() - start) / n
}

interface Session {
  container: Container
  device: Device
  bar: MappedRegion
  dma: DmaBuffer
  irq: Interrupts
}

function openSession(): Session {
  const container = new Container()
  const device = container.openDevice(EDU)
  device.setBusMaster(true)
  const bar = device.regions[RegionIndex.BAR0].map()
  const dma = container.allocateDma(65536)
  const irq = device.enableMsi(1)
  return { container, device, bar, dma, irq }
}

function closeSession(s: Session): void {
  s.irq.close()
  s.dma.close()
  s.bar.close()
  s.device.close()
  s.container.close()
}

/** The MSI round trip through an `'interrupt'` listener and through the async iterator. */
async function msiEventRows(s: Session, n: number, add: (op: string, variant: string, ns: number) => void): Promise<void> {
  let wake: (() => void) | undefined
  const onIrq = (): void => wake?.()
  s.irq.on('interrupt', onIrq)
  add(
    'msiRoundTrip',
    'tsListener',
    await timeAsync(n, async () => {
      const woken = new Promise<void>((resolve) => (wake = resolve))
      s.bar.writeU32(0x60, 1)
      await woken
      s.bar.writeU32(0x64, 1)
    }),
  )
  s.irq.off('interrupt', onIrq)
  const it = s.irq.events()
  add(
    'msiRoundTrip',
    'tsIterator',
    await timeAsync(n, async () => {
      s.bar.writeU32(0x60, 1)
      await it.next()
      s.bar.writeU32(0x64, 1)
    }),
  )
  await it.return?.()
}

/**
 * The worker of `msiBlockingWait`/`tsWorker`: per iteration it asks the main thread
 * (`ctl[0] = 1`, Atomics.notify) to raise edu's MSI and blocks in `waiter.wait` until it
 * arrives; in `ping` mode the main thread only answers (`ctl[1]`), which is the cost of
 * the two thread hops alone. Posts ns per iteration.
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { InterruptWaiter } = require(workerData.pkg)
const ctl = new Int32Array(workerData.ctl)
const waiter = workerData.token === undefined ? undefined : InterruptWaiter.open(workerData.token)
const start = process.hrtime.bigint()
for (let i = 0; i < workerData.n; i++) {
  const seen = Atomics.load(ctl, 1)
  Atomics.store(ctl, 0, 1)
  Atomics.notify(ctl, 0)
  if (waiter) waiter.wait(10000)
  else Atomics.wait(ctl, 1, seen, 10000)
}
parentPort.postMessage(Number(process.hrtime.bigint() - start) / workerData.n)
waiter?.close()
`

/** Serves a {@link WORKER} from the main thread, blocking it (as a driver's service thread would). */
async function workerRound(s: Session, n: number, token: number | undefined): Promise<number> {
  const ctl = new Int32Array(new SharedArrayBuffer(8))
  const worker = new Worker(WORKER, { eval: true, workerData: { pkg: root, ctl: ctl.buffer, n, token } })
  const result = new Promise<number>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  for (let i = 0; i < n; i++) {
    if (Atomics.wait(ctl, 0, 0, 30_000) === 'timed-out') throw new Error('the bench worker stopped asking')
    Atomics.store(ctl, 0, 0)
    if (token === undefined) {
      Atomics.add(ctl, 1, 1)
      Atomics.notify(ctl, 1)
    } else {
      s.bar.writeU32(0x60, 1)
      s.bar.writeU32(0x64, 1)
    }
  }
  const ns = await result
  await worker.terminate()
  return ns
}

/**
 * `msiBlockingWait`: on the main thread (`ts`, the analogue of ours-Rust's read (or poll + read) in
 * the waiting thread), then from a worker (`tsWorker`: worker → main → raise → worker
 * wakes) beside `workerPing`, the same two hops without the MSI. Last: it shares the
 * vector, which then stays off the event loop until the session closes.
 */
async function msiBlockingRows(s: Session, n: number, add: (op: string, variant: string, ns: number) => void): Promise<void> {
  const mainWaiter = InterruptWaiter.open(s.irq.shareVector(0))
  add(
    'msiBlockingWait',
    'ts',
    // As many iterations as ours-Rust's row: a short loop's median is mostly noise here.
    time(10 * n, () => {
      s.bar.writeU32(0x60, 1)
      mainWaiter.wait(10_000)
      s.bar.writeU32(0x64, 1)
    }),
  )
  mainWaiter.close()
  add('msiBlockingWait', 'workerPing', await workerRound(s, n, undefined))
  add('msiBlockingWait', 'tsWorker', await workerRound(s, n, s.irq.shareVector(0)))
}

/** One batch of the TypeScript column, with the in-process baselines. */
async function tsBatch(): Promise<Sample[]> {
  const s = openSession()
  const out: Sample[] = []
  const add = (op: string, variant: string, ns: number): void => {
    out.push({ op, variant, ns })
  }
  try {
    let sink = 0
    const bar0 = s.device.regions[RegionIndex.BAR0]
    add('pread4', 'ts', time(100 * scale, () => (sink ^= bar0.readU32(0))))
    add('pread4', 'tsBuffer', time(50 * scale, () => void s.device.regionRead(RegionIndex.BAR0, 0, 4)))
    add('mmioReadU32', 'ts', time(1000 * scale, () => (sink ^= s.bar.readU32(0))))
    const offsets = Uint32Array.from({ length: 64 }, (_, i) => (i & 1) * 4)
    const values = new Uint32Array(64)
    add('mmioReadU32x64', 'ts', time(20 * scale, () => void s.bar.readU32Many(offsets, values)) / 64)
    const view = s.dma.view
    // The two baselines the goals compare with: a napi free function, a plain JS read.
    const nativeFree = (require('../native/binding.cjs') as { dmaRmb(): void }).dmaRmb
    add('napiFreeCall', 'ts', time(1000 * scale, () => nativeFree()))
    add('barrierFacade', 'ts', time(1000 * scale, () => barrier.dmaRmb()))
    add('dmaReadU32', 'ts', time(1000 * scale, () => (sink ^= s.dma.readU32(0))))
    add('dmaReadU32', 'jsView', time(10000 * scale, () => (sink ^= view.readUInt32LE(0))))
    add('dmaCopy64k', 'ts', time(2 * scale, () => void s.dma.read(0, 65536)))
    add('dmaCopy64k', 'jsView', time(2 * scale, () => void Buffer.from(view)))
    const target = Buffer.alloc(65536)
    add('dmaCopy64k', 'tsInto', time(2 * scale, () => s.dma.readInto(0, target)))
    const n = 10 * scale
    // Warm-up, as time() does: V8 compiles the paths before they are timed.
    for (let i = 0; i < n / 4; i++) s.container.allocateDma(4096).close()
    const bufs: DmaBuffer[] = []
    let t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) bufs.push(s.container.allocateDma(4096))
    add('map4k', 'ts', Number(process.hrtime.bigint() - t0) / n)
    t0 = process.hrtime.bigint()
    for (const b of bufs) b.close()
    add('unmap4k', 'ts', Number(process.hrtime.bigint() - t0) / n)
    // The same buffers carved from a DmaPool (its 2 MiB chunk mapped before the timing).
    {
      using pool = s.container.dmaPool()
      for (let i = 0; i < n / 4; i++) pool.allocate(4096).close()
      const carved: DmaSlice[] = []
      t0 = process.hrtime.bigint()
      for (let i = 0; i < n; i++) carved.push(pool.allocate(4096))
      add('map4k', 'tsPool', Number(process.hrtime.bigint() - t0) / n)
      t0 = process.hrtime.bigint()
      for (const b of carved) b.close()
      add('unmap4k', 'tsPool', Number(process.hrtime.bigint() - t0) / n)
    }
    const big: DmaBuffer[] = []
    t0 = process.hrtime.bigint()
    for (let i = 0; i < 64; i++) big.push(s.container.allocateDma(2 << 20))
    add('map2m', 'ts', Number(process.hrtime.bigint() - t0) / 64)
    for (const b of big) b.close()
    add(
      'msiRoundTrip',
      'ts',
      await timeAsync(2 * scale, async () => {
        const next = s.irq.next()
        s.bar.writeU32(0x60, 1)
        await next
        s.bar.writeU32(0x64, 1)
      }),
    )
    await msiEventRows(s, 2 * scale, add)
    await msiBlockingRows(s, 2 * scale, add)
    add(
      'openInfoClose',
      'ts',
      time(2 * scale, () => {
        // The group stays held by s.device.
        const d = s.container.openDevice(EDU)
        sink ^= d.info.numRegions + d.regions.length + d.irqs.length
        d.close()
      }),
    )
    if (sink === 0.5) console.log(sink)
  } finally {
    closeSession(s)
  }
  return out
}

/** One batch of the Rust columns (raw, ours, upstream), from the vfio-bench binary. */
function rustBatch(): Sample[] {
  const r = spawnSync(bin, [...(quick ? ['--quick'] : []), '--batches', '1', EDU], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${bin} failed (${r.status ?? r.signal}): ${r.stderr}${r.error?.message ?? ''}`)
  if (r.stderr) process.stderr.write(r.stderr)
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { op: string; variant: string; medianNs: number })
    .map((x) => ({ op: x.op, variant: x.variant, ns: x.medianNs }))
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}

function fmt(ns: number | undefined): string {
  if (ns === undefined || Number.isNaN(ns)) return '–'
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`
  return `${ns.toFixed(1)} ns`
}

/**
 * Pins the measured paths to vCPU 0, as a latency-minded driver pins itself and routes its
 * interrupts: new IRQs (the edu's MSI, enabled later) go to CPU 0, and so does this
 * thread, with the threads it starts from now on (the epoll thread, the worker, the Rust
 * bench). V8's compiler and GC threads, started already, keep both vCPUs. Unpinned, an
 * MSI that landed on the other, idle vCPU waited for the emulator to wake it (50–100 µs
 * under TCG, in some batches and not others), and the interrupt rows measured that.
 */
function pinToCpu0(): string {
  try {
    writeFileSync('/proc/irq/default_smp_affinity', '1')
  } catch (err) {
    return `not pinned: /proc/irq/default_smp_affinity: ${(err as Error).message}`
  }
  const r = spawnSync('taskset', ['-p', '-c', '0', String(process.pid)], { encoding: 'utf8' })
  if (r.status !== 0) return `not pinned: taskset: ${r.stderr || r.error?.message || r.status}`
  return 'pinned to vCPU 0 (this thread, the threads it starts, new IRQs)'
}

async function main(): Promise<void> {
  sysfs.bind(EDU)
  const pinning = pinToCpu0()
  const all: Sample[] = []
  for (let b = 0; b <= batches; b++) {
    const order = b % 2 === 0 ? ['rust', 'ts'] : ['ts', 'rust']
    for (const side of order) {
      const got = side === 'rust' ? rustBatch() : await tsBatch()
      if (b > 0) all.push(...got) // batch 0 warms up
    }
  }
  const key = (s: Sample): string => `${s.op}/${s.variant}`
  const groups = new Map<string, number[]>()
  for (const s of all) groups.set(key(s), [...(groups.get(key(s)) ?? []), s.ns])
  const stat = (op: string, variant: string): { median: number; min: number; max: number } | undefined => {
    const v = groups.get(`${op}/${variant}`)
    return v === undefined ? undefined : { median: median(v), min: Math.min(...v), max: Math.max(...v) }
  }
  const ops: [string, string][] = [
    ['pread4', 'pread 4 B of BAR0'],
    ['mmioReadU32', 'mapped BAR readU32 (MMIO)'],
    ['mmioReadU32x64', 'readU32Many, 64 registers (per register)'],
    ['dmaReadU32', 'readU32 on a DMA buffer'],
    ['dmaCopy64k', '64 KiB copy out of DMA memory'],
    ['map4k', 'allocate + map 4 KiB'],
    ['unmap4k', 'unmap 4 KiB'],
    ['map2m', 'allocate + map 2 MiB (64 buffers, per buffer)'],
    ['msiRoundTrip', 'MSI round trip (raise → eventfd → ack)'],
    ['msiBlockingWait', 'MSI, blocking wait in the waiting thread (raise → read, or poll + read → ack)'],
    ['openInfoClose', 'open → info/regions/irqs → close, group held'],
  ]
  const profile = addonProfile()
  const date = new Date().toISOString()
  console.log(`\nvfio-ioctls bench, ${date}, ${profile} addon, ${batches} batches, ${pinning}${quick ? ' (--quick: the numbers mean nothing)' : ''}`)
  console.log('median (min–max over the batches); ratios of medians\n')
  const head = ['op', 'raw', 'upstream 0.10', 'ours-Rust', 'ours-TS', 'other variants', 'Rust/raw', 'TS/raw', 'Rust/upstream', 'TS/upstream']
  const rows: string[][] = []
  const ratio = (a: number | undefined, b: number | undefined): string =>
    a === undefined || b === undefined ? '–' : `${(a / b).toFixed(2)}×`
  const cell = (s: { median: number; min: number; max: number } | undefined): string =>
    s === undefined ? '–' : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`
  const json: Record<string, unknown> = { date, addon: profile, batches, pinning, quick, ops: {} }
  for (const [op, label] of ops) {
    const raw = stat(op, 'raw')
    const up = stat(op, 'upstream')
    const ours = stat(op, 'ours')
    const ts = stat(op, 'ts')
    // Every other variant of the op (a JS view, a readInto, a Buffer read, a listener...).
    const others = [...groups.keys()]
      .filter((k) => k.startsWith(`${op}/`))
      .map((k) => k.slice(op.length + 1))
      .filter((v) => !['raw', 'upstream', 'ours', 'ts'].includes(v))
    rows.push([
      label,
      cell(raw),
      cell(up),
      cell(ours),
      cell(ts),
      others.length === 0 ? '–' : others.map((v) => `${v}: ${fmt(stat(op, v)?.median)}`).join('; '),
      ratio(ours?.median, raw?.median),
      ratio(ts?.median, raw?.median),
      ratio(ours?.median, up?.median),
      ratio(ts?.median, up?.median),
    ])
    ;(json.ops as Record<string, unknown>)[op] = { label, raw, upstream: up, oursRust: ours, oursTs: ts, ...Object.fromEntries(others.map((v) => [v, stat(op, v)])) }
  }
  const free = stat('napiFreeCall', 'ts')
  const facade = stat('barrierFacade', 'ts')
  // The variants the table's columns leave out: the paths an interrupt can take.
  const paths: [string, string, string][] = [
    ['msiRoundTrip', 'oursHop', 'Rust: epoll thread → channel → waiting thread'],
    ['msiRoundTrip', 'ts', "TS: await irq.next()"],
    ['msiRoundTrip', 'tsListener', "TS: 'interrupt' listener"],
    ['msiRoundTrip', 'tsIterator', 'TS: for await (irq.events())'],
    ['msiBlockingWait', 'ours', 'Rust: IrqWaiter.wait in the waiting thread'],
    ['msiBlockingWait', 'ts', 'TS: InterruptWaiter.wait on the main thread'],
    ['msiBlockingWait', 'tsWorker', 'TS: worker asks main to raise, blocks in wait (two hops)'],
    ['msiBlockingWait', 'workerPing', 'TS: the same two hops, no MSI'],
  ]
  const interruptPaths: Record<string, unknown> = {}
  console.log('\ninterrupt paths, median (min–max):')
  for (const [op, variant, label] of paths) {
    const st = stat(op, variant)
    interruptPaths[`${op}/${variant}`] = { label, ...st }
    console.log(`  ${label}: ${cell(st)}`)
  }
  const wait = stat('msiBlockingWait', 'ts')
  const rustWait = stat('msiBlockingWait', 'ours')
  console.log(`  TS blocking wait / Rust blocking wait: ${ratio(wait?.median, rustWait?.median)} (goal ≤ 1.5×)`)
  json.interruptPaths = interruptPaths
  json.napiFreeCall = free
  json.barrierFacade = facade
  console.log(`| ${head.join(' | ')} |`)
  console.log(`|${head.map(() => '---').join('|')}|`)
  for (const r of rows) console.log(`| ${r.join(' | ')} |`)
  console.log(`\nnapi call without arguments (dmaRmb): ${fmt(free?.median)}; barrier.dmaRmb(): ${fmt(facade?.median)}`)
  // The issue's goals, each a ratio of two medians of this run.
  const goals: [string, [string, string], [string, string], number][] = [
    ['ours-Rust MMIO readU32 / raw', ['mmioReadU32', 'ours'], ['mmioReadU32', 'raw'], 1.5],
    ['ours-Rust DMA readU32 / raw', ['dmaReadU32', 'ours'], ['dmaReadU32', 'raw'], 1.5],
    ['ours-Rust pread 4 B / upstream', ['pread4', 'ours'], ['pread4', 'upstream'], 1.05],
    ['ours-Rust map 4 KiB / upstream', ['map4k', 'ours'], ['map4k', 'upstream'], 1.05],
    ['ours-Rust unmap 4 KiB / upstream', ['unmap4k', 'ours'], ['unmap4k', 'upstream'], 1.05],
    ['ours-Rust open / upstream', ['openInfoClose', 'ours'], ['openInfoClose', 'upstream'], 1.05],
    ['ours-TS bar.readU32 / napi call without arguments', ['mmioReadU32', 'ts'], ['napiFreeCall', 'ts'], 3],
    ['ours-TS readU32Many per register / ours-Rust', ['mmioReadU32x64', 'ts'], ['mmioReadU32x64', 'ours'], 1.5],
    ['ours-TS dma.readU32 / view.readUInt32LE', ['dmaReadU32', 'ts'], ['dmaReadU32', 'jsView'], 2],
    ['ours-TS pread 4 B / upstream', ['pread4', 'ts'], ['pread4', 'upstream'], 3],
    ['ours-TS allocateDma 4 KiB / upstream allocate + map', ['map4k', 'ts'], ['map4k', 'upstream'], 1.5],
    ['ours-TS dmaBuffer.close() 4 KiB / upstream unmap', ['unmap4k', 'ts'], ['unmap4k', 'upstream'], 1.5],
    // The same goals where the caller lets buffers be carved from a pool's mapping.
    ['ours-TS pool.allocate 4 KiB / upstream allocate + map', ['map4k', 'tsPool'], ['map4k', 'upstream'], 1.5],
    ['ours-TS pool slice close() / upstream unmap', ['unmap4k', 'tsPool'], ['unmap4k', 'upstream'], 1.5],
    ['ours-TS MSI round trip / Rust epoll-thread hop', ['msiRoundTrip', 'ts'], ['msiRoundTrip', 'oursHop'], 1.3],
    ['ours-TS blocking wait / ours-Rust', ['msiBlockingWait', 'ts'], ['msiBlockingWait', 'ours'], 1.5],
    ['ours-TS open / ours-Rust', ['openInfoClose', 'ts'], ['openInfoClose', 'ours'], 2],
  ]
  console.log('\n| goal | ratio | at most | met |')
  console.log('|---|---|---|---|')
  const goalJson: Record<string, unknown>[] = []
  for (const [label, [aOp, aVar], [bOp, bVar], limit] of goals) {
    const a = stat(aOp, aVar)?.median
    const b = stat(bOp, bVar)?.median
    const r = a === undefined || b === undefined ? undefined : a / b
    console.log(`| ${label} | ${r === undefined ? '– (not measured)' : `${r.toFixed(2)}×`} | ${limit}× | ${r === undefined ? '–' : r <= limit ? 'yes' : 'no'} |`)
    goalJson.push({ goal: label, ratio: r ?? null, limit })
  }
  json.goals = goalJson
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`)
  console.log(`JSON: ${jsonPath}`)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
