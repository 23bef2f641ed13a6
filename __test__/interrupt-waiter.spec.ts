/**
 * `irq.shareVector()` and `InterruptWaiter` over the mock: the token flow, one consumer
 * per vector, the timeout and its cap, closing, bad tokens. The blocking wake-up across
 * threads is the core's (cargo tests) and the guest's (`__test__/guest/waiter.spec.ts`).
 */
import test from 'ava'
import { Container, ErrorCode, InterruptWaiter, IrqIndex, MAX_WAIT_MS } from '../ts/index'
import { MockSystem, mockEdu } from '../ts/testing'
import { throwsCode } from './helpers'

const sys = MockSystem.install()
const edu = sys.addDevice(mockEdu())
test.after.always(() => sys.uninstall())

function openMsi() {
  const c = new Container()
  const d = c.openDevice(edu.address)
  d.setBusMaster(true)
  const irq = d.enableMsi(1)
  return { irq, [Symbol.dispose]: () => (irq.close(), d.close(), c.close()) }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

test.serial('a shared vector is read by its waiter, not by the event loop', async (t) => {
  using s = openMsi()
  const token = s.irq.shareVector(0)
  t.true(Number.isInteger(token) && token > 0)
  t.is(structuredClone(token), token, 'postMessage carries it as it is')
  using waiter = InterruptWaiter.open(token)
  t.is(waiter.vector, 0)
  t.is(waiter.wait(0), 0, 'nothing pending')
  t.true(edu.raise(IrqIndex.MSI, 0))
  t.true(edu.raise(IrqIndex.MSI, 0))
  t.is(waiter.wait(1000), 2, 'the count since the last wait')
  const seen: number[] = []
  s.irq.on('interrupt', (e) => seen.push(e.count))
  t.true(edu.raise(IrqIndex.MSI, 0))
  await turn()
  t.deepEqual(seen, [], 'no event for a shared vector')
  t.is(waiter.wait(MAX_WAIT_MS), 1)
})

test.serial('one consumer per vector: sharing, opening and taking twice are ERR_VFIO_BUSY', async (t) => {
  using s = openMsi()
  const token = s.irq.shareVector(0)
  t.regex(throwsCode(t, () => s.irq.shareVector(0), ErrorCode.BUSY).message, /shared already \(token \d+\).*close that InterruptWaiter/)
  using waiter = InterruptWaiter.open(token)
  t.regex(throwsCode(t, () => InterruptWaiter.open(token), ErrorCode.BUSY).message, /open in another InterruptWaiter/)
  t.regex(throwsCode(t, () => s.irq.takePending(0), ErrorCode.BUSY).message, /shared with an InterruptWaiter/)
  const err = await t.throwsAsync(s.irq.next({ vector: 0 }))
  t.is((err as { code?: string }).code, ErrorCode.BUSY)
  // Its waiter closed: the vector can be shared again, under a new token; the old one is dead.
  waiter.close()
  t.true(waiter.closed)
  throwsCode(t, () => waiter.wait(0), ErrorCode.CLOSED)
  const again = s.irq.shareVector(0)
  t.not(again, token)
  t.regex(throwsCode(t, () => InterruptWaiter.open(token), ErrorCode.CLOSED).message, /no longer shares a vector/)
  InterruptWaiter.open(again).close()
})

test.serial('a vector listened to on the event loop is not shared', async (t) => {
  using s = openMsi()
  const onIrq = (): void => {}
  s.irq.on('interrupt', onIrq)
  t.regex(throwsCode(t, () => s.irq.shareVector(0), ErrorCode.BUSY).message, /'interrupt' listener/)
  s.irq.off('interrupt', onIrq)
  const ac = new AbortController()
  const pending = s.irq.next({ signal: ac.signal })
  t.regex(throwsCode(t, () => s.irq.shareVector(0), ErrorCode.BUSY).message, /pending next\(\)/)
  ac.abort()
  await t.throwsAsync(pending)
  t.true(s.irq.shareVector(0) > 0, 'nothing waits any more')
})

test.serial('the timeout: 0 after it, required to be from 0 to 60000 ms', (t) => {
  using s = openMsi()
  using waiter = InterruptWaiter.open(s.irq.shareVector(0))
  const start = process.hrtime.bigint()
  t.is(waiter.wait(30), 0)
  t.true(Number(process.hrtime.bigint() - start) / 1e6 >= 29, 'it waited')
  for (const bad of [MAX_WAIT_MS + 1, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    t.regex(throwsCode(t, () => waiter.wait(bad), ErrorCode.INVALID_ARGUMENT).message, /from 0 to 60000/)
  }
  throwsCode(t, () => waiter.wait('10' as unknown as number), ErrorCode.INVALID_ARGUMENT)
})

test.serial('closing the Interrupts ends its shares with ERR_VFIO_CLOSED', (t) => {
  const s = openMsi()
  const token = s.irq.shareVector(0)
  const waiter = InterruptWaiter.open(token)
  s[Symbol.dispose]()
  t.regex(throwsCode(t, () => waiter.wait(1000), ErrorCode.CLOSED).message, /token \d+ no longer shares a vector: its Interrupts \(or device\) closed/)
  throwsCode(t, () => InterruptWaiter.open(token), ErrorCode.CLOSED)
  waiter.close()
  waiter.close()
})

test('a number no shareVector() gave is ERR_VFIO_INVALID_ARGUMENT', (t) => {
  for (const bad of [0, 1.5, -3, 2 ** 40, Number.NaN]) {
    t.regex(throwsCode(t, () => InterruptWaiter.open(bad), ErrorCode.INVALID_ARGUMENT).message, /not a token interrupts\.shareVector\(\) gave/)
  }
})
