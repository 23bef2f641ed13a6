/**
 * `irq.shareVector()` + `InterruptWaiter` on the real kernel: a worker thread blocks on
 * edu's MSI vector and wakes for the MSI the main thread makes edu raise; the timeout;
 * closing the Interrupts wakes a blocked worker with ERR_VFIO_CLOSED; a process whose
 * worker is blocked exits at once. One worker, reused.
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { ErrorCode, sysfs } from '../../ts/index'
import { code, EDU, openEdu, REG } from './devices'

type Reply = { vector?: number; count?: number; ms?: number; code?: string; message?: string }

const flag = new SharedArrayBuffer(4)
let worker: Worker

function ask(message: object): Promise<Reply> {
  return new Promise((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
    worker.postMessage(message)
  })
}

/** Resolves once the worker is about to block in `wait` (then it reads the eventfd's count whenever it arrives). */
async function blocked(): Promise<void> {
  const f = new Int32Array(flag)
  const end = Date.now() + 10_000
  while (Atomics.load(f, 0) === 0) {
    if (Date.now() > end) throw new Error('the worker never started its wait')
    await new Promise((r) => setTimeout(r, 1))
  }
}

test.before(() => {
  if (process.env.VFIO_GUEST !== '1' || !fs.existsSync('/dev/vfio/vfio')) {
    throw new Error('the guest suite needs the QEMU guest: run `npm run test:guest`')
  }
  sysfs.bind(EDU)
  const dist = path.join(__dirname, '..', '..', 'dist', 'index.js')
  worker = new Worker(path.join(__dirname, 'waiter-worker.cjs'), { workerData: { dist, flag } })
})
test.after.always(async () => {
  await worker?.terminate()
})

test.serial('a worker blocked on the shared MSI vector wakes for the MSI; 0 after its timeout', async (t) => {
  using s = openEdu()
  const token = s.irq.shareVector(0)
  t.deepEqual(await ask({ token }), { vector: 0 })
  code(t, () => s.irq.takePending(0), ErrorCode.BUSY)
  code(t, () => s.irq.shareVector(0), ErrorCode.BUSY)
  for (let i = 0; i < 3; i++) {
    const reply = ask({ wait: 10_000 })
    await blocked()
    s.bar.writeU32(REG.IRQ_RAISE, 0x1)
    const r = await reply
    t.true((r.count ?? 0) >= 1, JSON.stringify(r))
    t.true((r.ms ?? Infinity) < 10_000, 'woken, not timed out')
    s.bar.writeU32(REG.IRQ_ACK, 0x1)
  }
  const r = await ask({ wait: 50 })
  t.is(r.count, 0, JSON.stringify(r))
  t.true((r.ms ?? 0) >= 49, `${r.ms} ms`)
})

test.serial('closing the Interrupts wakes a blocked worker with ERR_VFIO_CLOSED', async (t) => {
  const s = openEdu()
  t.deepEqual(await ask({ token: s.irq.shareVector(0) }), { vector: 0 })
  const reply = ask({ wait: 30_000 })
  await blocked()
  await new Promise((r) => setTimeout(r, 100)) // in poll by now
  const start = Date.now()
  s[Symbol.dispose]()
  const r = await reply
  t.is(r.code, ErrorCode.CLOSED, JSON.stringify(r))
  t.true(Date.now() - start < 5000, `woken after ${Date.now() - start} ms`)
  const again = await ask({ wait: 0 })
  t.is(again.code, ErrorCode.CLOSED)
  t.regex(again.message ?? '', /no longer shares a vector/)
})

test.serial('a process whose worker is blocked in a wait exits at once', (t) => {
  const child = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'waiter-exit-child.ts')], { encoding: 'utf8', timeout: 90_000 })
  const end = Date.now()
  t.is(child.status, 0, child.stderr)
  const blockedAt = Number(/blocked at (\d+)/.exec(child.stdout)?.[1])
  t.true(blockedAt > 0, child.stdout)
  // From the worker's wait to the process's end; node is slow in the guest, a 30 s wait is not.
  const ms = end - blockedAt
  t.true(ms < 10_000, `exited ${ms} ms after the worker blocked (it waits 30 s)`)
})
