/**
 * The ESM entry (esm/index.mjs) lists its named exports by hand: it must name exactly
 * what the CommonJS build exports, or an `import { X }` that `require` serves fails.
 * Checked in a plain node (this suite's TypeScript loader would turn `import()` into
 * `require`); scripts/test-registry.sh checks the packed package too.
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

test('esm/index.mjs exports the names dist/index.js exports', (t) => {
  const root = join(__dirname, '..')
  const script = `
    import { createRequire } from 'node:module'
    const esm = await import(${JSON.stringify(pathToFileURL(join(root, 'esm', 'index.mjs')).href)})
    const cjs = createRequire(import.meta.url)(${JSON.stringify(join(root, 'dist', 'index.js'))})
    console.log(JSON.stringify({ esm: Object.keys(esm).filter((k) => k !== 'default').sort(), cjs: Object.keys(cjs).sort() }))`
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
  t.is(r.status, 0, r.stderr)
  const { esm, cjs } = JSON.parse(r.stdout) as { esm: string[]; cjs: string[] }
  t.true(cjs.includes('Container'))
  t.deepEqual(esm, cjs)
})
