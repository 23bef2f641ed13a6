// The worker of waiter.spec.ts: opens the token it is sent, then waits as told, in its
// own thread. `flag[0]` is set just before each wait blocks, so that main raises after.
const { parentPort, workerData } = require('node:worker_threads')
const { InterruptWaiter } = require(workerData.dist)

const flag = new Int32Array(workerData.flag)
let waiter
parentPort.on('message', (m) => {
  try {
    if (m.token !== undefined) {
      waiter = InterruptWaiter.open(m.token)
      parentPort.postMessage({ vector: waiter.vector })
      return
    }
    Atomics.store(flag, 0, 1)
    const start = process.hrtime.bigint()
    const count = waiter.wait(m.wait)
    Atomics.store(flag, 0, 0)
    parentPort.postMessage({ count, ms: Number(process.hrtime.bigint() - start) / 1e6 })
  } catch (e) {
    Atomics.store(flag, 0, 0)
    parentPort.postMessage({ code: e.code, message: e.message })
  }
})
