import test from 'ava'
import fc from 'fast-check'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { formatArgv, main, parseArgv, UsageError, type Command } from '../ts/cli'

/**
 * Generated argument vectors per property run; the two properties below together
 * generate a million. `CLI_PROPERTY_RUNS` scales them down for a quick local run.
 */
const RUNS = Number(process.env.CLI_PROPERTY_RUNS ?? 500_000)

/** Runs `main`, collecting what it prints. */
async function cli(argv: string[], sysfsRoot?: string): Promise<{ rc: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const rc = await main(argv, { log: (s) => out.push(s), error: (s) => err.push(s) }, { sysfsRoot })
  return { rc, out: out.join('\n'), err: err.join('\n') }
}

/** A fake sysfs: 0000:00:03.0 on vfio-pci, 0000:00:1f.2 on virtio-pci, drivers ahci, vfio-pci, virtio-pci. */
function fakeSysfs(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-cli-'))
  for (const d of ['vfio-pci', 'virtio-pci', 'ahci']) {
    const dir = path.join(root, 'bus/pci/drivers', d)
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'bind'), '')
    fs.writeFileSync(path.join(dir, 'unbind'), '')
  }
  fs.mkdirSync(path.join(root, 'bus/pci/devices'), { recursive: true })
  fs.writeFileSync(path.join(root, 'bus/pci/drivers_probe'), '')
  const dev = (addr: string, group: number, driver: string) => {
    const dir = path.join(root, 'devices/pci0000:00', addr)
    fs.mkdirSync(dir, { recursive: true })
    const ids = { vendor: '0x1af4', device: '0x1000', class: '0x020000', revision: '0x00', subsystem_vendor: '0x1af4', subsystem_device: '0x0001' }
    for (const [k, v] of Object.entries(ids)) fs.writeFileSync(path.join(dir, k), `${v}\n`)
    fs.writeFileSync(path.join(dir, 'driver_override'), '(null)\n')
    fs.writeFileSync(path.join(dir, 'numa_node'), '-1\n')
    fs.symlinkSync(`../../../devices/pci0000:00/${addr}`, path.join(root, 'bus/pci/devices', addr))
    const g = path.join(root, 'kernel/iommu_groups', String(group), 'devices')
    fs.mkdirSync(g, { recursive: true })
    fs.symlinkSync(`../../../../devices/pci0000:00/${addr}`, path.join(g, addr))
    fs.symlinkSync(`../../../kernel/iommu_groups/${group}`, path.join(dir, 'iommu_group'))
    fs.symlinkSync(`../../../bus/pci/drivers/${driver}`, path.join(dir, 'driver'))
  }
  dev('0000:00:03.0', 1, 'vfio-pci')
  dev('0000:00:1f.2', 2, 'virtio-pci')
  return root
}

/** Every control file the CLI could write, with its content. */
function controlFiles(root: string): Record<string, string> {
  const files: Record<string, string> = { drivers_probe: fs.readFileSync(path.join(root, 'bus/pci/drivers_probe'), 'utf8') }
  for (const d of ['vfio-pci', 'virtio-pci', 'ahci']) {
    for (const f of ['bind', 'unbind']) files[`${d}/${f}`] = fs.readFileSync(path.join(root, 'bus/pci/drivers', d, f), 'utf8')
  }
  for (const a of ['0000:00:03.0', '0000:00:1f.2']) {
    files[`${a}/driver_override`] = fs.readFileSync(path.join(root, 'devices/pci0000:00', a, 'driver_override'), 'utf8')
  }
  return files
}

test('parseArgv reads every command and option form', (t) => {
  const cases: [string[], Command][] = [
    [['list'], { command: 'list', json: false }],
    [['--json', 'list'], { command: 'list', json: true }],
    [['info', '00:03.0', '--json'], { command: 'info', address: '00:03.0', json: true }],
    [['bind', '0000:00:03.0'], { command: 'bind', address: '0000:00:03.0' }],
    [['unbind', '0000:00:03.0'], { command: 'unbind', address: '0000:00:03.0' }],
    [['unbind', '--restore', 'ahci', 'x'], { command: 'unbind', address: 'x', restore: 'ahci' }],
    [['unbind', '--restore=-weird', '--', '-x'], { command: 'unbind', address: '-x', restore: '-weird' }],
    [['unbind', '--restore=', 'a'], { command: 'unbind', address: 'a', restore: '' }],
    [['help'], { command: 'help' }],
    [['frobnicate', '-h'], { command: 'help' }],
    [['list', 'extra', '--version'], { command: 'version' }],
    [['-v'], { command: 'version' }],
  ]
  for (const [argv, expected] of cases) t.deepEqual(parseArgv(argv), expected, argv.join(' '))
})

test('parseArgv refuses malformed command lines with a UsageError', (t) => {
  const bad: [string[], RegExp][] = [
    [[], /no command/],
    [['frobnicate'], /unknown command "frobnicate"/],
    // Names of Object.prototype members are not commands.
    [['constructor', 'x'], /unknown command "constructor"/],
    [['__proto__'], /unknown command "__proto__"/],
    [['toString'], /unknown command "toString"/],
    [['list', 'x'], /'list' takes no arguments/],
    [['info'], /'info' needs exactly one <address>/],
    [['bind', 'a', 'b'], /'bind' needs exactly one <address>/],
    [['bind', 'a', '--json'], /'bind' does not take --json/],
    [['list', '--restore', 'x'], /'list' does not take --restore/],
    [['unbind', 'a', '--restore'], /argument missing/],
    [['unbind', 'a', '--restore', '-x'], /ambiguous/],
    [['list', '--nope'], /Unknown option '--nope'/],
    [['list', '--json=1'], /does not take an argument/],
  ]
  for (const [argv, message] of bad) {
    const err = t.throws(() => parseArgv(argv), { instanceOf: UsageError, message }, JSON.stringify(argv))
    t.is(err?.showUsage, argv.length === 0)
  }
})

/** Tokens that steer the parser into every branch, mixed with arbitrary strings. */
const token = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('list', 'info', 'bind', 'unbind', 'help', '--json', '--restore', '--restore=ahci', '-h', '--help', '-v', '--version', '--', '-', '-j', '--nope', '--json=1', '-hv', 'ahci', '0000:00:03.0', '__proto__', 'constructor') },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }).map((s) => `-${s}`) },
)

test('parseArgv throws nothing but UsageError, for any argv', (t) => {
  const start = process.hrtime.bigint()
  // Most of these argv are refused: capturing a stack for each error would be most of
  // the time, and no stack is looked at (fast-check's report of a failure still has one).
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  t.teardown(() => {
    Error.stackTraceLimit = limit
  })
  fc.assert(
    fc.property(fc.array(token, { maxLength: 6 }), (argv) => {
      let cmd: Command
      try {
        cmd = parseArgv(argv)
      } catch (err) {
        if (err instanceof UsageError) return true
        throw err
      }
      // Whatever it accepts is well-formed and takes its address from argv.
      if ('address' in cmd && !argv.includes(cmd.address)) return false
      return ['help', 'version', 'list', 'info', 'bind', 'unbind'].includes(cmd.command)
    }),
    { numRuns: RUNS },
  )
  t.log(`${RUNS} argument vectors in ${Number(process.hrtime.bigint() - start) / 1e6} ms`)
  t.pass()
})

/** Valid commands, with any strings as addresses and driver names. */
const command: fc.Arbitrary<Command> = fc.oneof(
  fc.constant<Command>({ command: 'help' }),
  fc.constant<Command>({ command: 'version' }),
  fc.boolean().map((json): Command => ({ command: 'list', json })),
  fc.record({ address: fc.string(), json: fc.boolean() }).map((r): Command => ({ command: 'info', ...r })),
  fc.string().map((address): Command => ({ command: 'bind', address })),
  fc.record({ address: fc.string(), restore: fc.option(fc.string(), { nil: undefined }) }).map(
    ({ address, restore }): Command => (restore === undefined ? { command: 'unbind', address } : { command: 'unbind', address, restore }),
  ),
)

test('valid command lines round-trip through formatArgv and parseArgv, in any option order', (t) => {
  const start = process.hrtime.bigint()
  fc.assert(
    fc.property(command, fc.boolean(), fc.boolean(), (cmd, optionsFirst, separate) => {
      const argv = formatArgv(cmd)
      if (!isDeepStrictEqual(parseArgv(argv), cmd)) return false
      // The same with the options moved in front of the command (they come before any
      // `--`), and as `--restore X` where that is unambiguous.
      const sep = argv.indexOf('--')
      const head = sep === -1 ? argv : argv.slice(0, sep)
      const tail = sep === -1 ? [] : argv.slice(sep)
      let moved = optionsFirst ? [...head.filter((a) => a.startsWith('--')), ...head.filter((a) => !a.startsWith('--')), ...tail] : argv
      const restore = cmd.command === 'unbind' ? cmd.restore : undefined
      if (separate && restore !== undefined && !restore.startsWith('-')) {
        moved = moved.flatMap((a) => (a === `--restore=${restore}` ? ['--restore', restore] : [a]))
      }
      return isDeepStrictEqual(parseArgv(moved), cmd)
    }),
    { numRuns: RUNS },
  )
  t.log(`${RUNS} commands (${2 * RUNS} argument vectors) in ${Number(process.hrtime.bigint() - start) / 1e6} ms`)
  t.pass()
})

test('no command prints the usage and exits 2; a bad one points to --help', async (t) => {
  const none = await cli([])
  t.is(none.rc, 2)
  t.regex(none.err, /^Usage: vfio-ioctls <command>/)
  const bad = await cli(['frobnicate'])
  t.is(bad.rc, 2)
  t.is(bad.err, `vfio-ioctls: unknown command "frobnicate"\nRun 'vfio-ioctls --help' for usage.`)
  t.regex((await cli(['--help'])).out, /^Usage:/)
})

test('unbind of a device on another driver fails with its code and changes nothing', async (t) => {
  const root = fakeSysfs()
  const before = controlFiles(root)
  const r = await cli(['unbind', '00:1f.2'], root)
  t.is(r.rc, 1)
  t.is(r.out, '')
  t.regex(r.err, /^error: ERR_VFIO_INVALID_ARGUMENT: .*0000:00:1f\.2 is bound to virtio-pci, not vfio-pci; nothing was changed/)
  t.deepEqual(controlFiles(root), before)
})

test('unbind --restore of a driver that is not loaded fails before unbinding', async (t) => {
  const root = fakeSysfs()
  const before = controlFiles(root)
  const r = await cli(['unbind', '0000:00:03.0', '--restore', 'nosuchdrv'], root)
  t.is(r.rc, 1)
  t.is(r.out, '')
  t.regex(r.err, /^error: ERR_VFIO_NOT_FOUND: .*modprobe nosuchdrv.*0000:00:03\.0 was not unbound/)
  t.deepEqual(controlFiles(root), before)
})

test('unbind says what it did', async (t) => {
  const root = fakeSysfs()
  // The fake kernel does not rebind, so the device still shows vfio-pci afterwards.
  const r = await cli(['unbind', '0000:00:03.0'], root)
  t.is(r.rc, 0, r.err)
  t.is(r.out, '0000:00:03.0: unbound from vfio-pci; now bound to vfio-pci')
  t.is(controlFiles(root)['vfio-pci/unbind'], '0000:00:03.0')
  // Asking for the driver it already has: nothing to do.
  const same = await cli(['unbind', '0000:00:1f.2', '--restore', 'virtio-pci'], root)
  t.is(same.rc, 0, same.err)
  t.is(same.out, '0000:00:1f.2: already bound to virtio-pci; nothing changed')
  // A restore the (fake) kernel did not carry out is reported as a failure.
  const restore = await cli(['unbind', '0000:00:03.0', '--restore', 'ahci'], root)
  t.is(restore.rc, 1)
  t.is(restore.err, 'vfio-ioctls: 0000:00:03.0: --restore ahci was asked for, but the device is bound to vfio-pci')
  t.is(controlFiles(root)['ahci/bind'], '0000:00:03.0')
})
