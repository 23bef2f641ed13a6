/** Shared test helpers: asserting error codes, and honest fakes of native handles. */
import type { ExecutionContext } from 'ava'

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
