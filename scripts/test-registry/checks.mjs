/**
 * The Node side of scripts/test-registry.sh: every check and helper that needs Node,
 * one subcommand each, so that the shell script keeps only the orchestration (build,
 * pack, verdaccio, npm) and the counting.
 *
 *   node checks.mjs <subcommand> [args...]
 *
 * A check exits 0 when it holds; otherwise it throws, so Node prints the error and
 * exits non-zero, and the shell's `check` shows that output under `not ok`. A helper
 * prints its result on stdout (diagnostics on stderr).
 *
 * The checks of the installed package (`installed`, `require`, `import`, `unsupported`)
 * must run from a copy of this file inside the app that installed it: bare specifiers
 * resolve from the importing file, and from here `vfio-ioctls` would resolve to this
 * repository itself (a package can import itself by its name), not to the install.
 */
import assert from 'node:assert'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

/** `require` as a CommonJS module next to this file would have it. */
const require = createRequire(import.meta.url)

const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))

/** Ends a helper with just `message` (no stack): its output is what the shell shows. */
function fail(message) {
  console.error(message)
  process.exit(1)
}

const subcommands = {
  /** ROOT: prints the root package's version. */
  version(root) {
    console.log(readJson(path.join(root, 'package.json')).version)
  },

  /** NAME: prints the URL a bare `import NAME` resolves to from here (the repo's own devDependencies). */
  resolve(name) {
    console.log(import.meta.resolve(name))
  },

  /** ROOT: esm/index.mjs exports what dist/index.js exports. */
  async 'esm-exports'(root) {
    for (const entry of ['index', 'testing']) {
      const esm = await import(pathToFileURL(path.join(root, `esm/${entry}.mjs`)).href)
      const { default: cjs } = await import(pathToFileURL(path.join(root, `dist/${entry}.js`)).href)
      const a = Object.keys(esm).filter((k) => k !== 'default').sort().join(' ')
      const b = Object.keys(cjs).filter((k) => k !== '__esModule').sort().join(' ')
      if (a !== b) throw new Error(entry + ': esm: ' + a + '\ncjs: ' + b)
    }
  },

  /** ROOT: the packages under npm/ are the root's optionalDependencies, at the root's version. */
  'platform-versions'(root) {
    const pkg = readJson(path.join(root, 'package.json'))
    const dirs = fs.readdirSync(path.join(root, 'npm'))
    const want = Object.fromEntries(
      dirs.map((d) => {
        const p = readJson(path.join(root, 'npm', d, 'package.json'))
        return [p.name, p.version]
      }),
    )
    // Compared as JSON with the same key order, so extra or missing packages count too.
    const keys = Object.keys(want).sort()
    if (JSON.stringify(want, keys) !== JSON.stringify(pkg.optionalDependencies, keys)) {
      throw new Error(JSON.stringify({ want, got: pkg.optionalDependencies }))
    }
    for (const v of Object.values(want)) if (v !== pkg.version) throw new Error('version ' + v + ' != ' + pkg.version)
  },

  /**
   * JSON DIR: from `npm pack --json` output, writes the sorted file list to
   * DIR/<name>.files, reports the sizes on stderr, prints the tarball's path.
   */
  'pack-files'(json, dir) {
    const [p] = JSON.parse(json)
    fs.writeFileSync(path.join(dir, p.name + '.files'), p.files.map((f) => f.path).sort().join('\n') + '\n')
    console.error('# ' + p.filename + ': ' + p.files.length + ' files, ' + p.size + ' bytes packed, ' + p.unpackedSize + ' unpacked')
    console.log(dir + '/' + p.filename)
  },

  /** Prints a TCP port free on 127.0.0.1 now. */
  'free-port'() {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      console.log(s.address().port)
      s.close()
    })
  },

  /** REGISTRY: waits up to 30 s for the registry to answer its ping. */
  async 'wait-registry'(registry) {
    const url = registry + '-/ping'
    const end = Date.now() + 30000
    for (;;) {
      try {
        const r = await fetch(url)
        if (r.ok) return
      } catch {
        // Not listening yet: poll again.
      }
      if (Date.now() > end) fail('no answer from ' + url)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  },

  /** REGISTRY: creates the user `ci` and prints its token. */
  async 'add-user'(registry) {
    let token
    try {
      const r = await fetch(registry + '-/user/org.couchdb.user:ci', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'ci', password: 'registry-test-' + process.pid }),
      })
      const b = await r.json()
      if (!b.token) throw new Error(r.status + ' ' + JSON.stringify(b))
      token = b.token
    } catch (e) {
      fail(e.message)
    }
    console.log(token)
  },

  /**
   * VERSION REGISTRY (in the app): exactly vfio-ioctls and vfio-ioctls-linux-x64-gnu at
   * VERSION are installed, and everything in the lock came from REGISTRY.
   */
  installed(version, registry) {
    const lock = readJson('package-lock.json')
    const pkgs = Object.entries(lock.packages).filter(([k]) => k)
    const inst = pkgs
      .filter(([k]) => fs.existsSync(k))
      .map(([k, p]) => k.replace('node_modules/', '') + '@' + p.version)
      .sort()
    const want = [`vfio-ioctls-linux-x64-gnu@${version}`, `vfio-ioctls@${version}`]
    if (JSON.stringify(inst) !== JSON.stringify(want)) throw new Error('installed: ' + inst.join(' '))
    for (const [k, p] of pkgs) if (p.resolved && !p.resolved.startsWith(registry)) throw new Error(k + ' from ' + p.resolved)
  },

  /** (In the app.) require('vfio-ioctls') works, and its binary comes from the platform package. */
  require() {
    const m = require('vfio-ioctls')
    assert.strictEqual(typeof m.Container, 'function')
    assert.deepStrictEqual(m.features(), ['kvm', 'mshv', 'vfio_cdev'])
    const bins = Object.keys(require.cache).filter((f) => f.endsWith('.node'))
    assert.deepStrictEqual(bins, [require.resolve('vfio-ioctls-linux-x64-gnu')])
  },

  /** (In the app.) import 'vfio-ioctls' gives named and default exports, the same module as require. */
  async import() {
    const vfio = await import('vfio-ioctls')
    const { Container, features, VfioError } = vfio
    assert.strictEqual(typeof Container, 'function')
    assert.deepStrictEqual(features(), ['kvm', 'mshv', 'vfio_cdev'])
    const cjs = require('vfio-ioctls')
    assert.strictEqual(Container, cjs.Container)
    assert.strictEqual(VfioError, cjs.VfioError)
    assert.strictEqual(vfio.default, cjs)
  },

  /** PACKAGE_JSON: the root package declares no os, cpu or libc (npm would refuse it elsewhere). */
  'no-platform-fields'(file) {
    const p = readJson(file)
    for (const k of ['os', 'cpu', 'libc']) if (p[k]) throw new Error('root package.json has ' + k)
  },

  /**
   * (In an app without the platform package.) It loads, and the first call throws
   * ERR_VFIO_UNSUPPORTED; on Linux (this test's glibc host) the message names the package
   * that should have been installed and the command that installs it.
   */
  unsupported() {
    const m = require('vfio-ioctls')
    if (typeof m.Container !== 'function') throw new Error('no Container')
    let err
    try {
      m.features()
    } catch (e) {
      err = e
    }
    if (err === undefined) throw new Error('features() did not throw')
    if (err.code !== 'ERR_VFIO_UNSUPPORTED') throw err
    if (process.platform === 'linux') {
      const { version } = readJson(require.resolve('vfio-ioctls/package.json'))
      const name = `vfio-ioctls-linux-${process.arch}-gnu`
      for (const part of [`the package ${name} should have been installed`, `\`npm install ${name}@${version}\``, '--omit=optional']) {
        if (!err.message.includes(part)) throw new Error(`the message lacks ${JSON.stringify(part)}: ${err.message}`)
      }
      console.log(err.message)
    }
  },

  /**
   * ROOT (in the app): vfio-ioctls and vfio-ioctls-linux-x64-gnu both hold
   * THIRD-PARTY-NOTICES.md, the repository's, which lists the crates linked (napi, libc).
   */
  notices(root) {
    const want = fs.readFileSync(path.join(root, 'THIRD-PARTY-NOTICES.md'), 'utf8')
    for (const pkg of ['vfio-ioctls', 'vfio-ioctls-linux-x64-gnu']) {
      const file = path.join(path.dirname(require.resolve(pkg + '/package.json')), 'THIRD-PARTY-NOTICES.md')
      if (!fs.existsSync(file)) throw new Error('missing: ' + file)
      if (fs.readFileSync(file, 'utf8') !== want) throw new Error(file + ' differs from the repository\'s')
    }
    for (const crate of ['napi', 'libc', 'vmm-sys-util']) {
      if (!new RegExp('^## ' + crate + ' ', 'm').test(want)) throw new Error('no section for ' + crate)
    }
  },
}

const [name, ...args] = process.argv.slice(2)
const run = Object.hasOwn(subcommands, name) ? subcommands[name] : undefined
if (run === undefined) {
  console.error(`usage: node checks.mjs <${Object.keys(subcommands).join('|')}> [args...]`)
  process.exit(2)
}
await run(...args)
