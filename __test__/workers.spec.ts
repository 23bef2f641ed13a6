import test from 'ava'
import { Worker } from 'node:worker_threads'
import path from 'node:path'

test('the addon loads in two worker threads at once', async (t) => {
  const binding = path.join(__dirname, '..', 'native', 'binding.cjs')
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const b = require(workerData)
    let code
    let errno
    try { new b.Container({ path: '/nonexistent/vfio' }) } catch (e) { code = e.code; errno = e.errno }
    parentPort.postMessage({ features: b.features(), pageSize: b.pageSize(), code, errno })
  `
  const run = () =>
    new Promise<{ features: string[]; pageSize: number; code: string; errno: number }>((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: binding })
      w.once('message', resolve)
      w.once('error', reject)
    })
  const results = await Promise.all([run(), run()])
  for (const r of results) {
    t.deepEqual(r.features, ['kvm', 'mshv', 'vfio_cdev'])
    t.is(r.pageSize, 4096)
    // Each thread's errors are made in its own env, with their properties.
    t.is(r.code, 'ERR_VFIO_NOT_FOUND')
    t.is(r.errno, 2)
  }
})
