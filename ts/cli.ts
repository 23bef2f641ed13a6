#!/usr/bin/env node
/**
 * `vfio-ioctls`: a small command-line tool over the public API.
 *
 * ```sh
 * vfio-ioctls list [--json]
 * vfio-ioctls info <address> [--json]
 * vfio-ioctls bind <address>
 * vfio-ioctls unbind <address> [--restore DRIVER]
 * ```
 */
import { parseArgs } from 'node:util'
import { Container, IrqFlags, RegionFlags, sysfs, VfioError, VfioTypeError, type IrqInfo, type PciDevice, type Region, type RegionCap } from './index'

/** Where the CLI writes: `console` by default, a recorder in tests. */
export interface Output {
  log(s: string): void
  error(s: string): void
}

/** Test seams of {@link main}. */
export interface CliOptions {
  /** Replaces `/sys` for `list`, `bind` and `unbind` (a fake tree in tests). */
  sysfsRoot?: string
}

/** A parsed command line: what {@link parseArgv} gives and {@link formatArgv} takes. */
export type Command =
  | { command: 'help' }
  | { command: 'version' }
  | { command: 'list'; json: boolean }
  | { command: 'info'; address: string; json: boolean }
  | { command: 'bind'; address: string }
  | { command: 'unbind'; address: string; restore?: string }

const USAGE = `Usage: vfio-ioctls <command> [options]

Commands:
  list [--json]                      PCI devices: id, class, driver, IOMMU group, VFIO-usable
  info <address> [--json]            open a device through VFIO; show its regions and IRQs
  bind <address>                     bind a device to vfio-pci (prints the previous driver)
  unbind <address> [--restore DRV]   unbind from vfio-pci (optionally bind DRV)

Options:
  --json           machine-readable output (list, info)
  --restore DRV    driver to bind after unbind
  -h, --help       this help
  -v, --version    the package version

<address> is a PCI address: 0000:00:03.0 or 00:03.0.`

const REGION_NAMES = ['BAR0', 'BAR1', 'BAR2', 'BAR3', 'BAR4', 'BAR5', 'ROM', 'CONFIG', 'VGA']
const IRQ_NAMES = ['INTX', 'MSI', 'MSIX', 'ERR', 'REQ']

/** A malformed command line; the CLI prints it with a pointer to `--help` and exits 2. */
export class UsageError extends Error {
  /** Print the whole usage text instead of the message (no command was given). */
  readonly showUsage: boolean

  constructor(message: string, options: { showUsage?: boolean } = {}) {
    super(message)
    this.name = 'UsageError'
    this.showUsage = options.showUsage === true
  }
}

/** The commands, how many positional arguments each takes, and which options. */
const COMMANDS: ReadonlyMap<string, { args: number; options: readonly string[] }> = new Map([
  ['list', { args: 0, options: ['json'] }],
  ['info', { args: 1, options: ['json'] }],
  ['bind', { args: 1, options: [] }],
  ['unbind', { args: 1, options: ['restore'] }],
])

const hex = (n: number | bigint, width = 0): string => n.toString(16).padStart(width, '0')
const regionName = (i: number): string => REGION_NAMES[i] ?? `REGION${i}`
const irqName = (i: number): string => IRQ_NAMES[i] ?? `IRQ${i}`

function regionFlagLetters(flags: number): string {
  return (
    (flags & RegionFlags.READ ? 'R' : '-') +
    (flags & RegionFlags.WRITE ? 'W' : '-') +
    (flags & RegionFlags.MMAP ? 'M' : '-') +
    (flags & RegionFlags.CAPS ? 'C' : '-')
  )
}

function irqFlagNames(flags: number): string {
  const names: string[] = []
  if (flags & IrqFlags.EVENTFD) names.push('eventfd')
  if (flags & IrqFlags.MASKABLE) names.push('maskable')
  if (flags & IrqFlags.AUTOMASKED) names.push('automasked')
  if (flags & IrqFlags.NORESIZE) names.push('noresize')
  return names.join(',') || '-'
}

function describeCap(cap: RegionCap): string {
  switch (cap.kind) {
    case 'sparse-mmap':
      return `sparse-mmap[${cap.areas.map((a) => `0x${hex(a.offset)}+0x${hex(a.size)}`).join(' ')}]`
    case 'type':
      return `type(0x${hex(cap.type)}/0x${hex(cap.subtype)})`
    case 'msix-mappable':
      return 'msix-mappable'
    case 'nvlink2-ssatgt':
      return `nvlink2-ssatgt(0x${hex(cap.tgt)})`
    case 'nvlink2-lnkspd':
      return `nvlink2-lnkspd(${cap.linkSpeed})`
    default:
      return `unknown(id=${cap.id},v${cap.version})`
  }
}

/** Left-aligned columns, two spaces apart. */
function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)))
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd())
}

const json = (v: unknown): string => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `0x${hex(x)}` : x), 2)

function list(asJson: boolean, out: Output, root: string | undefined): number {
  const devices = sysfs.listDevices({ root })
  if (asJson) {
    out.log(json(devices))
    return 0
  }
  const rows = [['ADDRESS', 'ID', 'CLASS', 'DRIVER', 'GROUP', 'VFIO', 'GROUP MEMBERS']]
  for (const d of devices) {
    const others = d.groupMembers.filter((m) => m !== d.address)
    rows.push([
      d.address,
      `${hex(d.vendor, 4)}:${hex(d.device, 4)}`,
      hex(d.class, 6),
      d.driver ?? '-',
      d.iommuGroup === undefined ? '-' : String(d.iommuGroup),
      d.vfioUsable ? 'yes' : 'no',
      others.length ? others.join(',') : '-',
    ])
  }
  for (const line of table(rows)) out.log(line)
  return 0
}

function regionJson(r: Region): object {
  return {
    index: r.index,
    name: regionName(r.index),
    present: r.present,
    size: r.size,
    offset: r.offset,
    flags: r.flags,
    readable: r.readable,
    writable: r.writable,
    mappable: r.mappable,
    caps: r.caps,
  }
}

function info(address: string, asJson: boolean, out: Output): number {
  // Reject a malformed address before touching /dev/vfio (a sysfs path passes as it is).
  if (!address.startsWith('/')) address = sysfs.parseAddress(address)
  using container = new Container()
  using device = container.openDevice(address)
  let pci: PciDevice | undefined
  try {
    pci = sysfs.getDevice(device.name)
  } catch {
    pci = undefined // not a PCI address (a platform device's sysfs path)
  }
  let iommu: ReturnType<Container['iommuInfo']> | undefined
  try {
    iommu = container.iommuInfo()
  } catch {
    iommu = undefined
  }
  if (asJson) {
    out.log(
      json({
        device: device.info,
        pci,
        iommu,
        regions: device.regions.map(regionJson),
        irqs: device.irqs.map((i: IrqInfo) => ({ name: irqName(i.index), ...i })),
      }),
    )
    return 0
  }
  const d = device.info
  out.log(`device ${d.name}`)
  if (pci) {
    out.log(`  id        ${hex(pci.vendor, 4)}:${hex(pci.device, 4)} rev ${hex(pci.revision, 2)}  class ${hex(pci.class, 6)}  subsystem ${hex(pci.subsystemVendor, 4)}:${hex(pci.subsystemDevice, 4)}`)
    out.log(`  driver    ${pci.driver ?? '-'}`)
  }
  out.log(`  sysfs     ${d.sysfsPath}`)
  out.log(`  group     ${d.group}`)
  out.log(`  flags     0x${hex(d.flags)}${d.pci ? ' pci' : ''}${d.canReset ? ' reset' : ''}`)
  out.log(`  regions   ${d.numRegions}   irqs ${d.numIrqs}   max interrupts ${d.maxInterrupts}`)
  if (iommu) {
    const ranges = iommu.iovaRanges.map((r) => `0x${hex(r.start)}-0x${hex(r.end)}`).join(' ')
    out.log(`  iommu     page sizes 0x${hex(iommu.iovaPgsizes)}${ranges ? `  iova ${ranges}` : ''}`)
  }
  out.log('')
  const regions = [['REGION', 'NAME', 'PRESENT', 'SIZE', 'FLAGS', 'CAPS']]
  for (const r of device.regions) {
    regions.push([
      String(r.index),
      regionName(r.index),
      r.present ? 'yes' : 'no',
      `0x${hex(r.size)}`,
      regionFlagLetters(r.flags),
      r.caps.map(describeCap).join(' ') || '-',
    ])
  }
  for (const line of table(regions)) out.log(line)
  out.log('')
  const irqs = [['IRQ', 'NAME', 'COUNT', 'FLAGS']]
  for (const i of device.irqs) irqs.push([String(i.index), irqName(i.index), String(i.count), irqFlagNames(i.flags)])
  for (const line of table(irqs)) out.log(line)
  return 0
}

function bind(address: string, out: Output, root: string | undefined): number {
  address = sysfs.parseAddress(address)
  const r = sysfs.bind(address, { root })
  if (r.alreadyBound) out.log(`${address}: already bound to vfio-pci; nothing changed`)
  else out.log(`${address}: bound to vfio-pci (previous driver: ${r.previousDriver ?? 'none'})`)
  return 0
}

function unbind(address: string, restore: string | undefined, out: Output, root: string | undefined): number {
  address = sysfs.parseAddress(address)
  // What the device had, to say what happened (the unbind itself checks everything and
  // refuses a device bound to another driver before writing anything).
  let before: string | undefined | null = null // null: could not be read
  try {
    before = sysfs.getDevice(address, { root }).driver
  } catch {
    // The unbind below reports the problem, with its code.
  }
  const now = sysfs.unbind(address, restore === undefined ? { root } : { root, restore })
  const nowText = now ?? 'no driver'
  if (before === 'vfio-pci') out.log(`${address}: unbound from vfio-pci; now bound to ${nowText}`)
  else if (before === undefined) out.log(`${address}: had no driver; cleared driver_override and reprobed; now bound to ${nowText}`)
  else if (before !== null && before === now) out.log(`${address}: already bound to ${before}; nothing changed`)
  else out.log(`${address}: now bound to ${nowText}`)
  if (restore !== undefined && now !== restore) {
    out.error(`vfio-ioctls: ${address}: --restore ${restore} was asked for, but the device is bound to ${nowText}`)
    return 1
  }
  return 0
}

function version(): string {
  // Relative to dist/ (and to ts/ under tsx): the package root.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../package.json') as { version: string }).version
}

/**
 * Parses a command line (without node and the script). Pure: no I/O, and the only
 * error it throws is {@link UsageError}. Addresses are not checked here (the commands
 * do that, through the native parser).
 */
export function parseArgv(argv: readonly string[]): Command {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean' },
        restore: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    })
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message)
    throw err
  }
  const { values, positionals } = parsed
  if (values.version) return { command: 'version' }
  const [command, ...rest] = positionals
  if (values.help || command === 'help') return { command: 'help' }
  if (command === undefined) throw new UsageError('no command given', { showUsage: true })
  const spec = COMMANDS.get(command)
  if (!spec) throw new UsageError(`unknown command ${JSON.stringify(command)}`)
  if (rest.length !== spec.args) {
    throw new UsageError(spec.args === 0 ? `'${command}' takes no arguments` : `'${command}' needs exactly one <address>`)
  }
  for (const name of Object.keys(values)) {
    if (!spec.options.includes(name)) throw new UsageError(`'${command}' does not take --${name}`)
  }
  const json = values.json === true
  switch (command) {
    case 'list':
      return { command, json }
    case 'info':
      return { command, address: rest[0], json }
    case 'bind':
      return { command, address: rest[0] }
    default:
      return values.restore === undefined
        ? { command: 'unbind', address: rest[0] }
        : { command: 'unbind', address: rest[0], restore: values.restore }
  }
}

/** The canonical command line of `cmd`, which {@link parseArgv} reads back as `cmd`. */
export function formatArgv(cmd: Command): string[] {
  // After `--` everything is positional, so an address starting with '-' goes there.
  const positional = (address: string): string[] => (address.startsWith('-') ? ['--', address] : [address])
  switch (cmd.command) {
    case 'help':
      return ['--help']
    case 'version':
      return ['--version']
    case 'list':
      return cmd.json ? ['list', '--json'] : ['list']
    case 'info':
      return ['info', ...(cmd.json ? ['--json'] : []), ...positional(cmd.address)]
    case 'bind':
      return ['bind', ...positional(cmd.address)]
    case 'unbind':
      // `--restore=X`: a value starting with '-' would otherwise read as an option.
      return ['unbind', ...(cmd.restore === undefined ? [] : [`--restore=${cmd.restore}`]), ...positional(cmd.address)]
  }
}

function run(argv: string[], out: Output, options: CliOptions): number {
  const cmd = parseArgv(argv)
  const root = options.sysfsRoot
  switch (cmd.command) {
    case 'version':
      out.log(version())
      return 0
    case 'help':
      out.log(USAGE)
      return 0
    case 'list':
      return list(cmd.json, out, root)
    case 'info':
      return info(cmd.address, cmd.json, out)
    case 'bind':
      return bind(cmd.address, out, root)
    case 'unbind':
      return unbind(cmd.address, cmd.restore, out, root)
  }
}

/**
 * Runs the CLI on `argv` (without node and the script); resolves to the exit code:
 * 0 on success, 1 when the operation failed (the error's `ERR_VFIO_*` code is printed),
 * 2 for a malformed command line.
 */
export async function main(argv: string[], out: Output = console, options: CliOptions = {}): Promise<number> {
  try {
    return run(argv, out, options)
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.showUsage) {
        out.error(USAGE)
        return 2
      }
      out.error(`vfio-ioctls: ${err.message}`)
      out.error("Run 'vfio-ioctls --help' for usage.")
      return 2
    }
    if (err instanceof VfioError || err instanceof VfioTypeError) {
      out.error(`error: ${err.code}: ${err.message}`)
      return 1
    }
    const e = err as Error & { code?: unknown }
    const code = typeof e?.code === 'string' ? `${e.code}: ` : ''
    out.error(`error: ${code}${e?.message ?? String(err)}`)
    if (process.env.VFIO_IOCTLS_DEBUG) out.error(String(e?.stack))
    return 1
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    },
  )
}
