/**
 * Host-only micro-benchmark of the call paths into the addon (no device, no guest):
 * a plain JS call, a napi free function (`dmaRmb`), the facade's `barrier.dmaRmb()`, a
 * napi class method and getter (`WaitCancel`, constructible anywhere), and the
 * facade's `DmaBuffer.readU32` over a JS stand-in for the native handle, through the
 * native accessor (no view allowed) and through the zero-copy view (the fast path).
 * Interleaved batches after a warm-up; prints the median, the spread and the ratio to
 * the napi free function. `--quick` (CI): a few iterations, to show it runs.
 *
 * Last, the package's resident memory: the RSS of a node that loaded the built package
 * and its addon (`dist/`, `pageSize()`), over a bare node's (median of a few runs each).
 *
 * Usage: node --import tsx bench/napi-calls.ts [--quick] [--batches N]
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { barrier, DmaBuffer } from '../ts/index'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding = require('../native/binding.cjs') as typeof import('../native/binding')

const argv = process.argv.slice(2)
const quick = argv.includes('--quick')
const batchesArg = argv.indexOf('--batches')
const batches = batchesArg >= 0 ? Number(argv[batchesArg + 1]) : quick ? 2 : 15
const n = quick ? 1000 : 200_000

/** A stand-in for the native DmaBuffer: what the facade calls, in JS. */
function standIn(): Parameters<typeof DmaBuffer.fromNative>[0] {
  const mem = Buffer.alloc(4096)
  const fake = {
    iova: 0x100000n,
    size: 4096,
    mapped: true,
    closed: false,
    readU32: (o: number) => mem.readUInt32LE(o),
    view: () => mem,
    close: () => undefined,
  }
  return fake as unknown as Parameters<typeof DmaBuffer.fromNative>[0]
}

let sink = 0
const jsFn = (): number => sink++
const cancel = new binding.WaitCancel()
const viaNative = DmaBuffer.fromNative(standIn(), false)
const viaView = DmaBuffer.fromNative(standIn(), true)

const variants: [string, () => unknown][] = [
  ['plain JS function', () => jsFn()],
  ['napi free function (dmaRmb)', () => binding.dmaRmb()],
  ['facade barrier.dmaRmb()', () => barrier.dmaRmb()],
  ['napi class method (WaitCancel.cancel)', () => cancel.cancel()],
  ['napi getter (WaitCancel.cancelled)', () => cancel.cancelled],
  ['facade DmaBuffer.readU32, native path (JS stand-in)', () => (sink ^= viaNative.readU32(0))],
  ['facade DmaBuffer.readU32, view path', () => (sink ^= viaView.readU32(0))],
]

function once(fn: () => unknown): number {
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) fn()
  return Number(process.hrtime.bigint() - start) / n
}

const samples = variants.map(() => [] as number[])
for (let b = 0; b <= batches; b++) {
  const order = variants.map((_, i) => i)
  if (b % 2 === 1) order.reverse()
  for (const i of order) {
    const ns = once(variants[i]![1])
    if (b > 0) samples[i]!.push(ns) // batch 0 warms up
  }
}

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN
const free = median(samples[1]!)
console.log(`napi call paths on the host, ${batches} batches of ${n}${quick ? ' (--quick: the numbers mean nothing)' : ''}`)
console.log('| path | median | min–max | / free function |')
console.log('|---|---|---|---|')
variants.forEach(([name], i) => {
  const v = samples[i]!
  console.log(`| ${name} | ${median(v).toFixed(1)} ns | ${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)} ns | ${(median(v) / free).toFixed(2)}× |`)
})
if (sink === 0.5) console.log(sink)

/** The RSS, in bytes, of a fresh node running `script`, which prints it. */
function rssOf(script: string): number {
  const r = spawnSync(process.execPath, ['-e', `${script};process.stdout.write(String(process.memoryUsage().rss))`], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`node -e failed (${r.status ?? r.signal}): ${r.stderr}`)
  return Number(r.stdout)
}
const runs = quick ? 1 : 5
const bare: number[] = []
const loaded: number[] = []
const dist = JSON.stringify(join(__dirname, '..', 'dist', 'index.js'))
for (let i = 0; i < runs; i++) {
  bare.push(rssOf(''))
  loaded.push(rssOf(`require(${dist}).pageSize()`))
}
const mb = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MB`
console.log(`\npackage RSS over bare node: ${mb(median(loaded) - median(bare))} (bare ${mb(median(bare))}, with the package and its addon loaded ${mb(median(loaded))}; median of ${runs})`)
