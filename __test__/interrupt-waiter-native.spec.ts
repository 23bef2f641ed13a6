/**
 * The native registry of shared vectors, on the host without a device: what a token
 * the registry never gave, or a timeout past the cap, gets (here and in a worker thread,
 * where waiters live). Sharing a real vector is the guest's (`__test__/guest/waiter.spec.ts`).
 */
import test from 'ava'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { ErrorCode, InterruptWaiter } from '../ts/index'
import { native } from '../ts/native'
import { throwsCode } from './helpers'

test('a token the registry never gave is refused, with what a token is', (t) => {
  for (const bad of [0, 1.5, -1, 2 ** 52, Number.NaN]) {
    t.regex(throwsCode(t, () => InterruptWaiter.open(bad), ErrorCode.INVALID_ARGUMENT).message, /is not a token interrupts\.shareVector\(\) gave/)
  }
  throwsCode(t, () => native().interruptWaiterClose(2 ** 52), ErrorCode.INVALID_ARGUMENT)
})

test('the timeout is checked before the token: from 0 to 60000 ms', (t) => {
  for (const bad of [60_001, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    t.regex(throwsCode(t, () => native().interruptWaiterWait(1, bad), ErrorCode.INVALID_ARGUMENT).message, /timeoutMs .* must be from 0 to 60000/)
  }
  t.regex(throwsCode(t, () => native().interruptWaiterWait(2 ** 52, 0), ErrorCode.INVALID_ARGUMENT).message, /not a token/)
})

test('in a worker thread, a forged token gets the same clear error', async (t) => {
  const code = `
    const { parentPort } = require('node:worker_threads')
    const { InterruptWaiter } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'index.js'))})
    try { InterruptWaiter.open(123456789) } catch (e) { parentPort.postMessage([e.code, e.message]) }
  `
  const worker = new Worker(code, { eval: true })
  const [errCode, message] = await new Promise<[string, string]>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  await worker.terminate()
  t.is(errCode, ErrorCode.INVALID_ARGUMENT)
  t.regex(message, /123456789 is not a token/)
})
