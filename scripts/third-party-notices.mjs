#!/usr/bin/env node
/**
 * Writes THIRD-PARTY-NOTICES.md: the licences of the Rust crates linked into the addon
 * (`vfio-ioctls.linux-*.node`), for the root package and each npm/<platform>/ package.
 *
 *   node scripts/third-party-notices.mjs           # (re)write THIRD-PARTY-NOTICES.md, also in each npm/<platform>/
 *   node scripts/third-party-notices.mjs --check   # exit 1 if any of them is not what it would write
 *
 * Reads `cargo metadata --format-version 1 --filter-platform <target>` for each target
 * in package.json's `napi.targets` and walks the dependency graph of the
 * `vfio-ioctls-node` crate along normal dependencies only: dev-dependencies and
 * build-dependencies are never linked into the binary, and neither are proc-macro crates
 * (they run in the compiler), so their subtrees are listed apart, without texts. The
 * project's own crates (path dependencies) are under the package's licence and not
 * listed. For each crate: name, version, licence expression (Cargo.toml's `license`)
 * and every licence file in its source directory (in ~/.cargo/registry, where cargo
 * unpacked it): LICENSE*, LICENCE*, COPYING*, NOTICE*, UNLICENSE*, or `license-file`.
 * A text identical to one printed already is referred to instead of repeated.
 * The output has no absolute paths and a stable order, so --check can compare it.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CRATE = 'vfio-ioctls-node'
const OUT = 'THIRD-PARTY-NOTICES.md'
const LICENCE_FILE = /^(licen[cs]e|copying|notice|unlicense|copyright)([-._].*)?$/i

/** `cargo metadata` for one target triple. */
function metadata(target) {
  const json = execFileSync('cargo', ['metadata', '--format-version', '1', '--filter-platform', target], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  return JSON.parse(json)
}

/**
 * The crates reachable from CRATE along normal dependencies, in `linked` (through no
 * proc macro) and `buildOnly` (proc macros and what only they use), as package objects.
 */
function collect(meta, linked, buildOnly) {
  const packages = new Map(meta.packages.map((p) => [p.id, p]))
  const nodes = new Map(meta.resolve.nodes.map((n) => [n.id, n]))
  const root = meta.packages.find((p) => p.name === CRATE && p.source === null)
  if (!root) throw new Error(`no workspace crate ${CRATE} in cargo metadata`)
  const isProcMacro = (p) => p.targets.some((t) => t.kind.includes('proc-macro'))
  const walk = (start, into, throughProcMacros) => {
    const seen = new Set([start])
    const stack = [start]
    while (stack.length > 0) {
      const node = nodes.get(stack.pop())
      for (const dep of node?.deps ?? []) {
        if (!dep.dep_kinds.some((k) => k.kind === null)) continue // dev or build only
        const p = packages.get(dep.pkg)
        if (!throughProcMacros && isProcMacro(p)) {
          walk(dep.pkg, buildOnly, true)
          if (p.source !== null) buildOnly.set(p.id, p)
          continue
        }
        if (seen.has(dep.pkg)) continue
        seen.add(dep.pkg)
        if (p.source !== null) into.set(p.id, p) // path crates are the project's own
        stack.push(dep.pkg)
      }
    }
  }
  walk(root.id, linked, false)
}

/** The licence files of a crate's source directory, `[{ file, text }]`, sorted by name. */
function licenceTexts(p) {
  const dir = path.dirname(p.manifest_path)
  let names
  try {
    names = fs.readdirSync(dir).filter((f) => LICENCE_FILE.test(f) && fs.statSync(path.join(dir, f)).isFile())
  } catch {
    return [] // not unpacked here
  }
  if (p.license_file && !names.includes(p.license_file)) {
    const f = path.join(dir, p.license_file)
    if (fs.existsSync(f)) names.push(p.license_file)
  }
  return names.sort().map((file) => ({ file, text: fs.readFileSync(path.join(dir, file), 'utf8').replace(/\r\n/g, '\n').trimEnd() }))
}

/** A Markdown heading's anchor as GitHub and npm make it. */
const anchor = (s) => s.toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-')

/** A fence longer than any run of backticks in `text`. */
function fence(text) {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length))
  return '`'.repeat(longest + 1)
}

const byName = (a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version, undefined, { numeric: true })

export function render() {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  const targets = pkg.napi?.targets ?? []
  if (targets.length === 0) throw new Error('package.json has no napi.targets')
  const linked = new Map()
  const buildOnly = new Map()
  for (const target of targets) collect(metadata(target), linked, buildOnly)
  for (const id of linked.keys()) buildOnly.delete(id) // linked through another path
  const crates = [...linked.values()].sort(byName)
  const tools = [...buildOnly.values()].sort(byName)

  const lines = []
  lines.push('# Third-party notices', '')
  lines.push(
    `The native addon of ${pkg.name} (\`${pkg.napi.binaryName}.linux-*.node\`, shipped in the`,
    `\`${pkg.name}-linux-*\` packages) is built from Rust and links the crates below. Their`,
    'licences follow, with the licence texts from each crate\'s published source.',
    `The project's own crates (\`${CRATE}\`, \`vfio-ioctls\`) are under the package's licence,`,
    `${pkg.license}.`,
    '',
    `Generated by \`node scripts/third-party-notices.mjs\` from \`cargo metadata\` (normal`,
    `dependencies of \`${CRATE}\` for ${targets.map((t) => `\`${t}\``).join(', ')});`,
    'do not edit by hand.',
    '',
  )
  lines.push('| crate | version | licence |', '|---|---|---|')
  for (const p of crates) lines.push(`| [${p.name}](#${anchor(`${p.name} ${p.version}`)}) | ${p.version} | ${p.license ?? '(none given)'} |`)
  lines.push('')
  if (tools.length > 0) {
    lines.push(
      'Used while compiling only, not linked into the binary (procedural macros and what only',
      'they use): ' + tools.map((p) => `${p.name} ${p.version} (${p.license ?? 'no licence given'})`).join(', ') + '.',
      '',
    )
  }
  const printed = new Map() // text -> "crate version, FILE"
  for (const p of crates) {
    lines.push(`## ${p.name} ${p.version}`, '')
    lines.push(`Licence: ${p.license ?? '(none given in Cargo.toml)'}`)
    if (p.repository) lines.push(`Source: ${p.repository}`)
    lines.push('')
    const texts = licenceTexts(p)
    if (texts.length === 0) {
      lines.push('The published crate has no licence file; its Cargo.toml gives the licence expression above.', '')
    }
    for (const { file, text } of texts) {
      const where = `${p.name} ${p.version}, ${file}`
      const same = printed.get(text)
      if (same !== undefined) {
        lines.push(`${file}: the same text as [${same.where}](#${same.anchor}).`, '')
        continue
      }
      printed.set(text, { where, anchor: anchor(`${p.name} ${p.version}`) })
      const f = fence(text)
      lines.push(`${file}:`, '', f + 'text', text, f, '')
    }
  }
  return lines.join('\n').trimEnd() + '\n'
}

/** Where the notices go: the root package and every npm/<platform>/ package. */
function destinations() {
  const npm = path.join(ROOT, 'npm')
  const dirs = fs.existsSync(npm) ? fs.readdirSync(npm).filter((d) => fs.existsSync(path.join(npm, d, 'package.json'))).sort() : []
  return [path.join(ROOT, OUT), ...dirs.map((d) => path.join(npm, d, OUT))]
}

function main() {
  const check = process.argv.includes('--check')
  const text = render()
  const stale = []
  for (const file of destinations()) {
    const rel = path.relative(ROOT, file)
    const now = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined
    if (now === text) continue
    if (check) stale.push(rel)
    else {
      fs.writeFileSync(file, text)
      console.error(`wrote ${rel}`)
    }
  }
  if (stale.length > 0) {
    console.error(`not current: ${stale.join(', ')}; run node scripts/third-party-notices.mjs`)
    process.exit(1)
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main()
