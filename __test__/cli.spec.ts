import test from 'ava'
import fc from 'fast-check'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { errorJson, fallbackNote, formatArgv, main, parseArgv, PciIds, UsageError, vfioInfoJson, type CliOptions, type Command } from '../ts/cli'
import { Device, Region, sysfs, VfioError } from '../ts/index'
import { fakeDevice } from './fakes'

/**
 * Generated argument vectors per property run; the two properties below together
 * generate a million. `CLI_PROPERTY_RUNS` scales them down for a quick local run.
 */
const RUNS = Number(process.env.CLI_PROPERTY_RUNS ?? 500_000)

/** A path that is no file: no pci.ids, no /dev/vfio/vfio. */
const NOWHERE = path.join(os.tmpdir(), 'vfio-cli-nowhere', 'none')

/**
 * Runs `main`, collecting what it prints. By default without pci.ids, and with a
 * container path that does not exist (so `info` on any host sees VFIO unavailable).
 */
async function cli(argv: string[], sysfsRoot?: string, options: CliOptions = {}): Promise<{ rc: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const rc = await main(argv, { log: (s) => out.push(s), error: (s) => err.push(s) }, { sysfsRoot, pciIds: [NOWHERE], containerPath: NOWHERE, ...options })
  return { rc, out: out.join('\n'), err: err.join('\n') }
}

/** A small pci.ids: two vendors with devices and a subsystem, two classes. */
const PCI_IDS = `# pci.ids, abridged for the tests
#	Syntax:
#	vendor  vendor_name
1af4  Red Hat, Inc.
	1000  Virtio network device
		1af4 0001  Virtio network device
	1001  Virtio block device
8086  Intel Corporation
	2922  82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]
ffff  Illegal Vendor ID

# List of known device classes, subclasses and programming interfaces
C 01  Mass storage controller
	06  SATA controller
		01  AHCI 1.0
C 02  Network controller
	00  Ethernet controller
C ff  Unassigned class
`

/** Writes `text` as a pci.ids file; returns its path. */
function pciIdsFile(text = PCI_IDS): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-pci-ids-')), 'pci.ids')
  fs.writeFileSync(file, text)
  return file
}

/**
 * A fake sysfs: 0000:00:03.0 on vfio-pci (group 1), 0000:00:1f.2 on virtio-pci (group 2),
 * 0000:00:1f.3 with no driver (an 8086:2922 SATA controller, group 2 too); drivers ahci,
 * vfio-pci, virtio-pci.
 */
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
  const virtio = { vendor: '0x1af4', device: '0x1000', class: '0x020000', revision: '0x00', subsystem_vendor: '0x1af4', subsystem_device: '0x0001' }
  const dev = (addr: string, group: number, driver: string | undefined, ids: Record<string, string> = virtio) => {
    const dir = path.join(root, 'devices/pci0000:00', addr)
    fs.mkdirSync(dir, { recursive: true })
    for (const [k, v] of Object.entries(ids)) fs.writeFileSync(path.join(dir, k), `${v}\n`)
    fs.writeFileSync(path.join(dir, 'driver_override'), '(null)\n')
    fs.writeFileSync(path.join(dir, 'numa_node'), '-1\n')
    fs.symlinkSync(`../../../devices/pci0000:00/${addr}`, path.join(root, 'bus/pci/devices', addr))
    const g = path.join(root, 'kernel/iommu_groups', String(group), 'devices')
    fs.mkdirSync(g, { recursive: true })
    fs.symlinkSync(`../../../../devices/pci0000:00/${addr}`, path.join(g, addr))
    fs.symlinkSync(`../../../kernel/iommu_groups/${group}`, path.join(dir, 'iommu_group'))
    if (driver !== undefined) fs.symlinkSync(`../../../bus/pci/drivers/${driver}`, path.join(dir, 'driver'))
  }
  dev('0000:00:03.0', 1, 'vfio-pci')
  dev('0000:00:1f.2', 2, 'virtio-pci')
  dev('0000:00:1f.3', 2, undefined, { vendor: '0x8086', device: '0x2922', class: '0x010601', revision: '0x02', subsystem_vendor: '0x1af4', subsystem_device: '0x1100' })
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
    [['bind', '0000:00:03.0'], { command: 'bind', address: '0000:00:03.0', json: false }],
    [['bind', '--json', '0000:00:03.0'], { command: 'bind', address: '0000:00:03.0', json: true }],
    [['unbind', '0000:00:03.0'], { command: 'unbind', address: '0000:00:03.0', json: false }],
    [['unbind', '0000:00:03.0', '--json'], { command: 'unbind', address: '0000:00:03.0', json: true }],
    [['unbind', '--restore', 'ahci', 'x'], { command: 'unbind', address: 'x', restore: 'ahci', json: false }],
    [['unbind', '--restore=-weird', '--json', '--', '-x'], { command: 'unbind', address: '-x', restore: '-weird', json: true }],
    [['unbind', '--restore=', 'a'], { command: 'unbind', address: 'a', restore: '', json: false }],
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
    [['bind', 'a', '--restore', 'x'], /'bind' does not take --restore/],
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
  { weight: 3, arbitrary: fc.constantFrom('list', 'info', 'bind', 'unbind', 'help', '--json', '--restore', '--restore=ahci', '-h', '--help', '-v', '--version', '--', '-', '-j', '--nope', '--json=1', '-hv', 'ahci', '0000:00:03.0', '__proto__', 'constructor', 'sandbox', '--device', '--device=edu', 'nvme,size=1G', 'edu,nvme', '--timeout', '--kernel', '--accel=tcg', '--verbose') },
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
  // fc.assert throws with the shrunk counterexample when a property fails.
  t.notThrows(() =>
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
      // A sandbox's command is what follows the first `--`.
      if (cmd.command === 'sandbox' && !isDeepStrictEqual(cmd.argv, argv.slice(argv.indexOf('--') + 1))) return false
      return ['help', 'version', 'list', 'info', 'bind', 'unbind', 'sandbox'].includes(cmd.command)
    }),
    { numRuns: RUNS },
    ),
  )
  t.log(`${RUNS} argument vectors in ${Number(process.hrtime.bigint() - start) / 1e6} ms`)
})

/** Valid commands, with any strings as addresses and driver names. */
const command: fc.Arbitrary<Command> = fc.oneof(
  fc.constant<Command>({ command: 'help' }),
  fc.constant<Command>({ command: 'version' }),
  fc.boolean().map((json): Command => ({ command: 'list', json })),
  fc.record({ address: fc.string(), json: fc.boolean() }).map((r): Command => ({ command: 'info', ...r })),
  fc.record({ address: fc.string(), json: fc.boolean() }).map((r): Command => ({ command: 'bind', ...r })),
  fc.record({ address: fc.string(), restore: fc.option(fc.string(), { nil: undefined }), json: fc.boolean() }).map(
    ({ address, restore, json }): Command => (restore === undefined ? { command: 'unbind', address, json } : { command: 'unbind', address, restore, json }),
  ),
  fc
    .record({
      devices: fc.subarray(['edu', 'nvme'] as const, { minLength: 1 }).chain((kinds) => fc.shuffledSubarray(kinds, { minLength: kinds.length })),
      size: fc.integer({ min: 256, max: 2 ** 28 }).map((pages) => pages * 4096),
      accel: fc.constantFrom('auto', 'kvm', 'tcg') as fc.Arbitrary<'auto' | 'kvm' | 'tcg'>,
      timeout: fc.option(fc.integer({ min: 1, max: 9_999_999 }), { nil: undefined }),
      kernel: fc.option(fc.oneof(fc.constant('6.12'), fc.stringMatching(/^linux-image-[0-9][0-9a-z.+~-]{0,20}$/)), { nil: undefined }),
      verbose: fc.boolean(),
      argv: fc.array(fc.string(), { minLength: 1, maxLength: 4 }),
    })
    .map(({ devices, size, accel, timeout, kernel, verbose, argv }): Command => ({
      command: 'sandbox',
      devices: devices.map((kind) => (kind === 'edu' ? { kind } : { kind, size })),
      accel,
      ...(timeout === undefined ? {} : { timeout }),
      ...(kernel === undefined ? {} : { kernel }),
      verbose,
      argv,
    })),
)

test('valid command lines round-trip through formatArgv and parseArgv, in any option order', (t) => {
  const start = process.hrtime.bigint()
  // fc.assert throws with the shrunk counterexample when a property fails.
  t.notThrows(() =>
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
    ),
  )
  t.log(`${RUNS} commands (${2 * RUNS} argument vectors) in ${Number(process.hrtime.bigint() - start) / 1e6} ms`)
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

/** Keys whose values are counts, indices or numbers of things: JSON numbers (or null). */
const NUMBER_KEYS = new Set(['index', 'count', 'group', 'iommuGroup', 'numaNode', 'numRegions', 'numIrqs', 'maxInterrupts', 'linkSpeed', 'version', 'dmaAvail', 'errno'])
/** Keys whose values are hardware values: `"0x…"` hex strings (or null). */
const HEX_KEYS = new Set(['vendor', 'device', 'class', 'revision', 'subsystemVendor', 'subsystemDevice', 'flags', 'size', 'offset', 'iovaPgsizes', 'start', 'end', 'type', 'subtype', 'tgt', 'id'])

/** Asserts the one number format all through a JSON document: numbers only under NUMBER_KEYS, lowercase hex strings under HEX_KEYS. */
function assertNumberFormat(t: import('ava').ExecutionContext, value: unknown, where = '$'): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => assertNumberFormat(t, v, `${where}[${i}]`))
    return
  }
  if (typeof value !== 'object' || value === null) return
  for (const [k, v] of Object.entries(value)) {
    const at = `${where}.${k}`
    if (typeof v === 'number') t.true(NUMBER_KEYS.has(k), `${at} is a number (${v}) but not a count or index`)
    if (HEX_KEYS.has(k) && typeof v !== 'object') t.regex(String(v), /^0x[0-9a-f]+$/, `${at} is not a 0x hex string`)
    if (v === undefined) t.fail(`${at} is undefined`)
    assertNumberFormat(t, v, at)
  }
}

const PCI_KEYS = ['address', 'sysfsPath', 'vendor', 'device', 'class', 'revision', 'subsystemVendor', 'subsystemDevice', 'vendorName', 'deviceName', 'className', 'driver', 'driverOverride', 'iommuGroup', 'groupMembers', 'numaNode', 'vfioUsable']
const ERROR_KEYS = ['code', 'message', 'errno', 'syscall', 'path']

test('list --json: every key, hex ids, null for absent, names from pci.ids', async (t) => {
  const root = fakeSysfs()
  const r = await cli(['list', '--json'], root, { pciIds: [NOWHERE, pciIdsFile()] })
  t.is(r.rc, 0, r.err)
  const devices = JSON.parse(r.out) as Record<string, unknown>[]
  t.deepEqual(
    devices.map((d) => d.address),
    ['0000:00:03.0', '0000:00:1f.2', '0000:00:1f.3'],
  )
  for (const d of devices) t.deepEqual(Object.keys(d), PCI_KEYS)
  assertNumberFormat(t, devices)
  const [edu, nic, sata] = devices
  t.like(edu, {
    vendor: '0x1af4',
    device: '0x1000',
    class: '0x020000',
    revision: '0x00',
    subsystemVendor: '0x1af4',
    subsystemDevice: '0x0001',
    vendorName: 'Red Hat, Inc.',
    deviceName: 'Virtio network device',
    className: 'Ethernet controller',
    driver: 'vfio-pci',
    driverOverride: null,
    iommuGroup: 1,
    numaNode: null,
    vfioUsable: true,
  })
  t.like(nic, { driver: 'virtio-pci', iommuGroup: 2, vfioUsable: false })
  t.like(sata, { vendor: '0x8086', device: '0x2922', class: '0x010601', revision: '0x02', vendorName: 'Intel Corporation', deviceName: '82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]', className: 'SATA controller', driver: null })
  t.deepEqual(sata?.groupMembers, ['0000:00:1f.2'])
})

test('list without pci.ids: names are null and the NAME column is left out; no error', async (t) => {
  const root = fakeSysfs()
  const r = await cli(['list', '--json'], root)
  t.is(r.rc, 0, r.err)
  t.is(r.err, '')
  for (const d of JSON.parse(r.out) as Record<string, unknown>[]) t.like(d, { vendorName: null, deviceName: null, className: null })
  const human = await cli(['list'], root)
  t.is(human.rc, 0, human.err)
  const lines = human.out.split('\n')
  t.is(lines[0], 'ADDRESS       ID         CLASS   DRIVER      GROUP  VFIO  GROUP MEMBERS')
  t.regex(lines[3] ?? '', /^0000:00:1f\.3\s+8086:2922\s+010601\s+-\s+2\s+no\s+0000:00:1f\.2$/)
})

test('list with pci.ids names each device (an unknown device by its vendor)', async (t) => {
  const root = fakeSysfs()
  const ids = PCI_IDS.replace('\t1000  Virtio network device\n', '')
  const r = await cli(['list'], root, { pciIds: [pciIdsFile(ids)] })
  t.is(r.rc, 0, r.err)
  const lines = r.out.split('\n')
  t.regex(lines[0] ?? '', /GROUP MEMBERS\s+NAME$/)
  t.regex(lines[1] ?? '', /^0000:00:03\.0 .* Red Hat, Inc\. device 1000$/)
  t.regex(lines[3] ?? '', /^0000:00:1f\.3 .* Intel Corporation 82801IR\/IO\/IH \(ICH9R\/DO\/DH\) 6 port SATA Controller \[AHCI mode\]$/)
})

test('PciIds reads nothing before the first lookup, and the first file that exists', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-pci-ids-'))
  const file = path.join(dir, 'pci.ids')
  const ids = new PciIds([path.join(dir, 'absent'), file])
  // Written after the constructor: found, so nothing was read before.
  fs.writeFileSync(file, PCI_IDS)
  t.is(ids.vendorName(0x8086), 'Intel Corporation')
  t.is(ids.deviceName(0x1af4, 0x1001), 'Virtio block device')
  t.is(ids.deviceName(0x1af4, 0x0001), null, 'a subsystem line is not a device')
  t.is(ids.deviceName(0x1234, 0x11e8), null)
  t.is(ids.vendorName(0x1234), null)
  t.is(ids.className(0x010601), 'SATA controller')
  t.is(ids.className(0x028000), 'Network controller', 'an unknown subclass: the class name')
  t.is(ids.className(0x00ff00), null)
  // Read once: a later change of the file is not seen.
  fs.writeFileSync(file, '')
  t.is(ids.vendorName(0x1af4), 'Red Hat, Inc.')
  // No file, an unreadable one (a directory), an empty one: null names, no error.
  for (const paths of [[NOWHERE], [dir], [file], []]) {
    const none = new PciIds(paths)
    t.is(none.vendorName(0x8086), null)
    t.is(none.deviceName(0x8086, 0x2922), null)
    t.is(none.className(0x010601), null)
  }
  // CRLF line ends and stray lines are read as well as they can be.
  const crlf = new PciIds([pciIdsFile('8086  Intel Corporation\r\n\t2922  SATA\r\nnot an id line\n\tzzzz  x\nC 01  Mass storage controller\r\n')])
  t.is(crlf.vendorName(0x8086), 'Intel Corporation')
  t.is(crlf.deviceName(0x8086, 0x2922), 'SATA')
  t.is(crlf.className(0x010000), 'Mass storage controller')
})

test('info without VFIO falls back to the sysfs view, with a note saying why', async (t) => {
  const root = fakeSysfs()
  const r = await cli(['info', '00:03.0'], root, { pciIds: [pciIdsFile()] })
  t.is(r.rc, 0, r.err)
  const lines = r.out.split('\n')
  t.deepEqual(lines.slice(0, 3), ['device 0000:00:03.0 (sysfs view)', '  id        1af4:1000 rev 00  class 020000  subsystem 1af4:0001', '  name      Red Hat, Inc. Virtio network device (Ethernet controller)'])
  t.true(lines.includes('  driver    vfio-pci'))
  t.true(lines.includes('  group     1'))
  t.true(lines.includes('  vfio      usable'))
  t.regex(lines.at(-1) ?? '', /^note: VFIO is unavailable \(ERR_VFIO_NOT_FOUND: .*\)\. This is the sysfs view \(ids, driver, IOMMU group\); regions and IRQs need VFIO\.$/)
  // Not bound to vfio-pci: the note says to bind it.
  const other = await cli(['info', '0000:00:1f.2'], root)
  t.is(other.rc, 0, other.err)
  t.true(other.out.split('\n').includes('  group     2  with 0000:00:1f.3'))
  t.regex(other.out, /\nnote: VFIO is unavailable \(ERR_VFIO_NOT_FOUND: .*\), and 0000:00:1f\.2 is bound to virtio-pci, not vfio-pci\. .*regions and IRQs need VFIO and the device bound to vfio-pci \(vfio-ioctls bind 0000:00:1f\.2\)\.$/)
  t.false(other.out.includes('  name'), 'no pci.ids: no name line')
  const none = await cli(['info', '0000:00:1f.3'], root)
  t.regex(none.out, /note: VFIO is unavailable .*, and 0000:00:1f\.3 is not bound to any driver, not vfio-pci\./)
  // A sysfs path works the same way.
  const byPath = await cli(['info', path.join(root, 'bus/pci/devices/0000:00:1f.2')], root)
  t.is(byPath.rc, 0, byPath.err)
  t.regex(byPath.out, /^device 0000:00:1f\.2 \(sysfs view\)/)
})

test('fallbackNote: VFIO unavailable, or the device not bound to vfio-pci, or not opening', (t) => {
  const root = fakeSysfs()
  const err = (code: string, stage: string) => Object.assign(new VfioError(code as never, 'the kernel said no'), { stage })
  const onVfio = sysfs.getDevice('0000:00:03.0', { root })
  const onVirtio = sysfs.getDevice('0000:00:1f.2', { root })
  t.is(
    fallbackNote(err('ERR_VFIO_NOT_FOUND', 'device'), onVirtio),
    '0000:00:1f.2 is bound to virtio-pci, not vfio-pci, so it cannot be opened through VFIO (ERR_VFIO_NOT_FOUND). This is the sysfs view (ids, driver, IOMMU group); for regions and IRQs bind it first: vfio-ioctls bind 0000:00:1f.2',
  )
  t.is(
    fallbackNote(err('ERR_VFIO_GROUP_NOT_VIABLE', 'device'), onVfio),
    '0000:00:03.0 could not be opened through VFIO (ERR_VFIO_GROUP_NOT_VIABLE: the kernel said no). This is the sysfs view (ids, driver, IOMMU group); regions and IRQs need VFIO.',
  )
  t.is(
    fallbackNote(err('ERR_VFIO_PERMISSION', 'container'), onVfio),
    'VFIO is unavailable (ERR_VFIO_PERMISSION: the kernel said no). This is the sysfs view (ids, driver, IOMMU group); regions and IRQs need VFIO.',
  )
  // A vfio-pci variant driver counts as bound.
  t.regex(fallbackNote(err('ERR_VFIO_BUSY', 'device'), { ...onVfio, driver: 'mlx5_vfio_pci' }), /^0000:00:03\.0 could not be opened through VFIO \(ERR_VFIO_BUSY/)
})

test('info --json without VFIO: the sysfs view, every key, the VFIO error', async (t) => {
  const root = fakeSysfs()
  const r = await cli(['info', '--json', '0000:00:1f.3'], root, { pciIds: [pciIdsFile()] })
  t.is(r.rc, 0, r.err)
  const doc = JSON.parse(r.out) as Record<string, unknown> & { vfioError: Record<string, unknown>; pci: Record<string, unknown> }
  t.deepEqual(Object.keys(doc), ['address', 'view', 'note', 'vfioError', 'pci', 'device', 'iommu', 'regions', 'irqs'])
  t.like(doc, { address: '0000:00:1f.3', view: 'sysfs', device: null, iommu: null, regions: null, irqs: null })
  t.regex(String(doc.note), /^VFIO is unavailable .*not bound to any driver/)
  t.deepEqual(Object.keys(doc.vfioError), ERROR_KEYS)
  t.is(doc.vfioError.code, 'ERR_VFIO_NOT_FOUND')
  t.deepEqual(Object.keys(doc.pci), PCI_KEYS)
  t.like(doc.pci, { vendor: '0x8086', className: 'SATA controller', driver: null })
  assertNumberFormat(t, doc)
})

test('info of a device that does not exist, or a malformed address, fails (JSON on stdout with --json)', async (t) => {
  const root = fakeSysfs()
  const r = await cli(['info', '0000:00:09.0'], root)
  t.is(r.rc, 1)
  t.is(r.out, '')
  t.regex(r.err, /^error: ERR_VFIO_NOT_FOUND: /)
  const j = await cli(['info', '0000:00:09.0', '--json'], root)
  t.is(j.rc, 1)
  t.is(j.err, '')
  const doc = JSON.parse(j.out) as { error: Record<string, unknown> }
  t.deepEqual(Object.keys(doc), ['error'])
  t.deepEqual(Object.keys(doc.error), ERROR_KEYS)
  t.is(doc.error.code, 'ERR_VFIO_NOT_FOUND')
  const bad = await cli(['info', '--json', 'nonsense'], root)
  t.is(bad.rc, 1)
  t.like(JSON.parse(bad.out), { error: { code: 'ERR_VFIO_INVALID_ARGUMENT', errno: null } })
})

test('info --json through VFIO: one number format, every key, every kind of capability', (t) => {
  const device = Device.fromNative(fakeDevice().native)
  const caps = [
    { kind: 'sparse-mmap', areas: [{ offset: 0, size: 0x1000 }] },
    { kind: 'type', type: 1, subtype: 2 },
    { kind: 'msix-mappable' },
    { kind: 'nvlink2-ssatgt', tgt: 0x1_0000_0000_0000n },
    { kind: 'nvlink2-lnkspd', linkSpeed: 9 },
    { kind: 'unknown', id: 0x1f, version: 2 },
  ]
  const region = Region.fromNative(device, { index: 0, present: true, flags: 0xf, size: 0x100000, offset: 0, readable: true, writable: true, mappable: true, caps })
  const doc = vfioInfoJson(
    {
      device: device.info,
      iommu: { flags: 1, iovaPgsizes: 0x40201000n, iovaRanges: [{ start: 0n, end: 0xfedfffffn }, { start: 0xfef00000n, end: 0xffffffffffffffffn }] },
      regions: [region, ...device.regions.slice(1)],
      irqs: [...device.irqs],
    },
    undefined,
    new PciIds([NOWHERE]),
  ) as Record<string, never>
  assertNumberFormat(t, doc)
  t.deepEqual(Object.keys(doc), ['address', 'view', 'note', 'vfioError', 'pci', 'device', 'iommu', 'regions', 'irqs'])
  t.like(doc, { address: '0000:00:03.0', view: 'vfio', note: null, vfioError: null, pci: null })
  t.deepEqual(doc.device, { name: '0000:00:03.0', sysfsPath: '/sys/devices/pci0000:00/0000:00:03.0', group: 1, flags: '0x3', numRegions: 9, numIrqs: 5, pci: true, canReset: true, maxInterrupts: 1 })
  t.deepEqual(doc.iommu, {
    flags: '0x1',
    iovaPgsizes: '0x40201000',
    iovaRanges: [
      { start: '0x0', end: '0xfedfffff' },
      { start: '0xfef00000', end: '0xffffffffffffffff' },
    ],
    dmaAvail: null,
  })
  const regions = doc.regions as Record<string, unknown>[]
  t.deepEqual(regions[0], {
    index: 0,
    name: 'BAR0',
    present: true,
    size: '0x100000',
    offset: '0x0',
    flags: '0xf',
    readable: true,
    writable: true,
    mappable: true,
    caps: [
      { kind: 'sparse-mmap', areas: [{ offset: '0x0', size: '0x1000' }], type: null, subtype: null, tgt: null, linkSpeed: null, id: null, version: null },
      { kind: 'type', areas: null, type: '0x1', subtype: '0x2', tgt: null, linkSpeed: null, id: null, version: null },
      { kind: 'msix-mappable', areas: null, type: null, subtype: null, tgt: null, linkSpeed: null, id: null, version: null },
      { kind: 'nvlink2-ssatgt', areas: null, type: null, subtype: null, tgt: '0x1000000000000', linkSpeed: null, id: null, version: null },
      { kind: 'nvlink2-lnkspd', areas: null, type: null, subtype: null, tgt: null, linkSpeed: 9, id: null, version: null },
      { kind: 'unknown', areas: null, type: null, subtype: null, tgt: null, linkSpeed: null, id: '0x1f', version: 2 },
    ],
  })
  t.like(regions[7], { index: 7, name: 'CONFIG', size: '0x100', offset: '0x70000000000' })
  t.deepEqual((doc.irqs as unknown[])[2], { index: 2, name: 'MSIX', flags: '0x1', count: 0, eventfd: true, maskable: false, automasked: false })
  device.close()
})

test('bind says the binding does not persist across reboots; --json gives every key', async (t) => {
  const root = fakeSysfs()
  const r = await cli(['bind', '0000:00:03.0'], root)
  t.is(r.rc, 0, r.err)
  const lines = r.out.split('\n')
  t.is(lines[0], '0000:00:03.0: already bound to vfio-pci; nothing changed')
  t.regex(lines[1] ?? '', /^note: bindings do not persist across reboots; /)
  const j = await cli(['bind', '--json', '00:03.0'], root)
  t.is(j.rc, 0, j.err)
  t.deepEqual(JSON.parse(j.out), { address: '0000:00:03.0', driver: 'vfio-pci', previousDriver: null, alreadyBound: true })
  t.false(j.out.includes('note'), 'the JSON is only the document')
  // Errors as JSON: bind without the vfio-pci driver loaded.
  fs.rmSync(path.join(root, 'bus/pci/drivers/vfio-pci'), { recursive: true })
  const fail = await cli(['bind', '0000:00:1f.2', '--json'], root)
  t.is(fail.rc, 1)
  t.is(fail.err, '')
  const doc = JSON.parse(fail.out) as { error: Record<string, unknown> }
  t.deepEqual(Object.keys(doc.error), ERROR_KEYS)
  t.is(doc.error.code, 'ERR_VFIO_UNSUPPORTED')
})

test('unbind --json: the result, or the error, as one document', async (t) => {
  const root = fakeSysfs()
  const before = controlFiles(root)
  const refused = await cli(['unbind', '--json', '00:1f.2'], root)
  t.is(refused.rc, 1)
  t.is(refused.err, '')
  t.like(JSON.parse(refused.out), { error: { code: 'ERR_VFIO_INVALID_ARGUMENT' } })
  t.deepEqual(Object.keys((JSON.parse(refused.out) as { error: object }).error), ERROR_KEYS)
  t.deepEqual(controlFiles(root), before)
  const ok = await cli(['unbind', '0000:00:03.0', '--json'], root)
  t.is(ok.rc, 0, ok.err)
  // The fake kernel does not rebind: still vfio-pci.
  t.deepEqual(JSON.parse(ok.out), { address: '0000:00:03.0', previousDriver: 'vfio-pci', driver: 'vfio-pci', restore: null })
  const restore = await cli(['unbind', '0000:00:03.0', '--restore', 'ahci', '--json'], root)
  t.is(restore.rc, 1)
  t.is(restore.err, '')
  t.deepEqual(JSON.parse(restore.out), {
    error: { code: 'ERR_VFIO_IO', message: '0000:00:03.0: --restore ahci was asked for, but the device is bound to vfio-pci', errno: null, syscall: null, path: null },
  })
})

test('a malformed command line with --json: ERR_USAGE as JSON on stdout, exit 2', async (t) => {
  for (const argv of [['list', 'x', '--json'], ['--json'], ['info', '--json'], ['list', '--json', '--nope']]) {
    const r = await cli(argv)
    t.is(r.rc, 2, argv.join(' '))
    t.is(r.err, '')
    const doc = JSON.parse(r.out) as { error: Record<string, unknown> }
    t.deepEqual(Object.keys(doc.error), ERROR_KEYS)
    t.is(doc.error.code, 'ERR_USAGE')
  }
  // After `--`, `--json` is an address, not the option.
  const r = await cli(['list', '--', '--json'])
  t.is(r.rc, 2)
  t.regex(r.err, /'list' takes no arguments/)
})

test('errorJson: every key, positive errno, nulls for what an error lacks', (t) => {
  t.deepEqual(errorJson(Object.assign(new Error('no such file'), { code: 'ENOENT', errno: -2, syscall: 'open', path: '/x' })), { code: 'ENOENT', message: 'no such file', errno: 2, syscall: 'open', path: '/x' })
  t.deepEqual(errorJson(new Error('plain')), { code: null, message: 'plain', errno: null, syscall: null, path: null })
  t.deepEqual(errorJson('a string'), { code: null, message: 'a string', errno: null, syscall: null, path: null })
  t.deepEqual(errorJson(null), { code: null, message: 'null', errno: null, syscall: null, path: null })
})
