/** Shared test helpers: asserting error codes, and honest fakes of native handles. */
import type { ExecutionContext } from 'ava'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Asserts `fn` throws an error with `code` (and returns it). */
export function throwsCode(t: ExecutionContext, fn: () => unknown, code: string): Error & { code: string } {
  const err = t.throws(fn) as Error & { code: string }
  t.is(err?.code, code, `expected ${code}, got ${err?.code}: ${err?.message}`)
  return err
}

/** Records calls to a fake native object. */
export function recorder(): { calls: string[]; record(name: string, ...args: unknown[]): void } {
  const calls: string[] = []
  return {
    calls,
    record(name: string, ...args: unknown[]) {
      calls.push(`${name}(${args.map((a) => (typeof a === 'bigint' ? `${a}n` : JSON.stringify(a))).join(',')})`)
    },
  }
}

/** The engine's `gc()`, without `--expose-gc` (which worker threads refuse). */
export const gc: () => void = (() => {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
})()

/** Collects garbage until `done()` holds (finalizers run between turns), at most `turns` times. */
export async function collectUntil(done: () => boolean, turns = 20): Promise<boolean> {
  for (let i = 0; i < turns && !done(); i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return done()
}
