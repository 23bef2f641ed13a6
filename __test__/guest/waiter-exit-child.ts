// Run by waiter.spec.ts in its own process: a worker (unref'd, so it does not keep the
// process alive) blocks in a 30 s wait on edu's MSI vector, and the main thread ends.
// Node joins worker threads at exit: the shares ending on 'exit' must wake it at once.
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { openEdu } from './devices'

const s = openEdu()
const flag = new SharedArrayBuffer(4)
const worker = new Worker(path.join(__dirname, 'waiter-worker.cjs'), { workerData: { dist: path.join(__dirname, '..', '..', 'dist', 'index.js'), flag } })
worker.once('message', () => {
  worker.postMessage({ wait: 30_000 })
  const f = new Int32Array(flag)
  const until = Date.now() + 10_000
  while (Atomics.load(f, 0) === 0 && Date.now() < until) Atomics.wait(f, 0, 0, 10)
  worker.unref()
  console.log(`blocked at ${Date.now()}`) // the main thread has nothing left to do: the process exits
})
worker.postMessage({ token: s.irq.shareVector(0) })
