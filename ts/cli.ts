#!/usr/bin/env node
/**
 * `vfio-ioctls`: a small command-line tool over the public API.
 *
 * ```sh
 * vfio-ioctls list [--json]
 * vfio-ioctls info <address> [--json]
 * vfio-ioctls bind <address> [--json]
 * vfio-ioctls unbind <address> [--restore DRIVER] [--json]
 * vfio-ioctls sandbox [--device edu|nvme[,size=SIZE]]... [--kernel PKG] [--timeout S] [--accel auto|kvm|tcg] -- <command...>
 * ```
 *
 * With `--json` every command prints one JSON document on stdout, errors included
 * (`{"error":{"code","message","errno","syscall","path"}}`, exit 1). Every key is always
 * there (`null` when absent). One number format: identifiers, class codes, revisions,
 * flags, and every size, offset, address and mask are `"0x…"` hex strings (ids and
 * class zero-padded to their sysfs width: `"0x8086"`, `"0x020000"`); counts, indices,
 * IOMMU group and NUMA node numbers are JSON numbers.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Container, ErrorCode, IrqFlags, RegionFlags, sysfs, VfioError, VfioTypeError, type DeviceInfo, type IrqInfo, type PciDevice, type Region, type RegionCap } from './index'

/** Where the CLI writes: `console` by default, a recorder in tests. */
export interface Output {
  log(s: string): void
  error(s: string): void
}

/** Test seams of {@link main}. */
export interface CliOptions {
  /** Replaces `/sys` for every command (a fake tree in tests). */
  sysfsRoot?: string
  /** Replaces `/dev/vfio/vfio` for `info`. */
  containerPath?: string
  /** The pci.ids files to try, first found wins; default {@link PCI_IDS_PATHS}. */
  pciIds?: readonly string[]
  /** Replaces what `sandbox` asks of the host, and how it runs the harness. */
  sandbox?: SandboxHost
}

/** What `sandbox` needs of the host: the real one by default, a fake in tests. */
export interface SandboxHost {
  /** `process.platform` by default. */
  platform?: string
  /** `process.arch` by default. */
  arch?: string
  /** The directories searched for `bash` and `qemu-system-x86_64`; `$PATH` by default. */
  path?: string
  /** Whether the guest's setup may install Debian packages (root with apt-get); found out by default. */
  canInstall?: boolean
  /** The harness `guest/run.sh`; the package's own by default. */
  harness?: string
  /** Runs `bash harness ...args` with the terminal and resolves to its exit status. */
  run?: (harness: string, args: string[]) => Promise<number>
}

/** A device of the sandbox guest: QEMU's `edu`, or an NVMe controller on a scratch drive of `size` bytes. */
export type SandboxDevice = { kind: 'edu' } | { kind: 'nvme'; size: number }

/** How the sandbox runs the guest: KVM when it works (`auto`), KVM or fail, or software emulation. */
export type SandboxAccel = 'auto' | 'kvm' | 'tcg'

/** The sandbox's `sandbox` command: the guest's devices and how to boot it, and the command to run there. */
export interface SandboxCommand {
  command: 'sandbox'
  devices: SandboxDevice[]
  accel: SandboxAccel
  /** `6.12` (the kernel built here) or a Debian kernel package (`linux-image-…`); the cached one when absent. */
  kernel?: string
  /** Seconds; the harness's default (600) when absent. */
  timeout?: number
  verbose: boolean
  argv: string[]
}

/** A parsed command line: what {@link parseArgv} gives and {@link formatArgv} takes. */
export type Command =
  | { command: 'help' }
  | { command: 'version' }
  | { command: 'list'; json: boolean }
  | { command: 'info'; address: string; json: boolean }
  | { command: 'bind'; address: string; json: boolean }
  | { command: 'unbind'; address: string; restore?: string; json: boolean }
  | SandboxCommand

const USAGE = `Usage: vfio-ioctls <command> [options]

Commands:
  list                               PCI devices: id, class, driver, IOMMU group, VFIO-usable, name
  info <address>                     open a device through VFIO; show its regions and IRQs
                                     (without VFIO, or not bound to vfio-pci: what sysfs shows)
  bind <address>                     bind a device to vfio-pci (prints the previous driver)
  unbind <address> [--restore DRV]   unbind from vfio-pci (optionally bind DRV)
  sandbox [options] -- <command...>  run <command> in a QEMU guest (here, the same paths) whose
                                     emulated devices sit behind an IOMMU, bound to vfio-pci;
                                     exits with its status (124: timeout, 125: the guest failed,
                                     3: something missing on the host)

Options:
  --json           one JSON document on stdout, for every command and for errors
  --restore DRV    driver to bind after unbind
  --device SPEC    sandbox: edu (0000:00:03.0) or nvme[,size=SIZE] (0000:00:04.0, scratch drive,
                   64M by default; K, M, G); repeatable or a comma list (edu,nvme,size=1G);
                   default: both
  --kernel K       sandbox: 6.12 (built here once: iommufd, cdevs, mtty) or a Debian
                   kernel package to boot (linux-image-6.1.0-48-amd64)
  --timeout S      sandbox: stop the guest after S seconds (default 600), exit 124
  --accel MODE     sandbox: auto (default: KVM when /dev/kvm works, else TCG), kvm, tcg
  --verbose        sandbox: kernel messages and the guest's progress
  -h, --help       this help
  -v, --version    the package version

<address> is a PCI address: 0000:00:03.0 or 00:03.0.
Bindings do not persist across reboots.`

const REGION_NAMES = ['BAR0', 'BAR1', 'BAR2', 'BAR3', 'BAR4', 'BAR5', 'ROM', 'CONFIG', 'VGA']
const IRQ_NAMES = ['INTX', 'MSI', 'MSIX', 'ERR', 'REQ']

/** Where pci.ids usually is: Debian/Ubuntu (`pci.ids`), then Fedora/Arch/Alpine (`hwdata`). */
export const PCI_IDS_PATHS: readonly string[] = ['/usr/share/misc/pci.ids', '/usr/share/hwdata/pci.ids']

/** The line told after every `bind`. */
const NOT_PERSISTENT =
  'note: bindings do not persist across reboots; after one the device is bound to its usual driver again ' +
  "(to bind it at boot, use vfio-pci's ids= module option or a udev rule that sets driver_override)"

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
  ['sandbox', { args: 0, options: ['device', 'kernel', 'timeout', 'accel', 'verbose'] }],
  ['list', { args: 0, options: ['json'] }],
  ['info', { args: 1, options: ['json'] }],
  ['bind', { args: 1, options: ['json'] }],
  ['unbind', { args: 1, options: ['restore', 'json'] }],
])

const hex = (n: number | bigint, width = 0): string => n.toString(16).padStart(width, '0')
/** The JSON form of a hardware value: `"0x…"`, zero-padded to `width` digits. */
const hx = (n: number | bigint, width = 0): string => `0x${hex(n, width)}`
const regionName = (i: number): string => REGION_NAMES[i] ?? `REGION${i}`
const irqName = (i: number): string => IRQ_NAMES[i] ?? `IRQ${i}`

/**
 * The vendor, device and class names of pci.ids, read lazily: nothing is read until the
 * first lookup, the file once, a vendor's devices and the class list when first asked
 * for. No file (or an unreadable one) gives `null` names, never an error.
 */
export class PciIds {
  readonly #paths: readonly string[]
  #lines: string[] | null | undefined
  #vendors: Map<number, { name: string; start: number; end: number }> | undefined
  readonly #devices = new Map<number, Map<number, string>>()
  #classes: Map<number, string> | undefined

  constructor(paths: readonly string[] = PCI_IDS_PATHS) {
    this.#paths = paths
  }

  /** The lines of the first readable file, or `null`. */
  #load(): string[] | null {
    if (this.#lines === undefined) {
      this.#lines = null
      for (const p of this.#paths) {
        try {
          this.#lines = fs.readFileSync(p, 'utf8').split('\n')
          break
        } catch {
          // Absent or unreadable: try the next; no names at all is fine.
        }
      }
    }
    return this.#lines
  }

  /** Vendor id → its name and the range of its device lines (the top-level lines before the class list). */
  #vendorIndex(): Map<number, { name: string; start: number; end: number }> {
    if (this.#vendors) return this.#vendors
    const vendors = new Map<number, { name: string; start: number; end: number }>()
    const lines = this.#load() ?? []
    let last: { name: string; start: number; end: number } | undefined
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] ?? ''
      if (line === '' || line.startsWith('#') || line.startsWith('\t')) continue
      if (last) last.end = i
      last = undefined
      if (line.startsWith('C ')) break // the class list: no vendors after it
      const m = /^([0-9a-fA-F]{4})\s+(.*?)\s*$/.exec(line)
      if (m?.[1] !== undefined && m[2] !== undefined) {
        last = { name: m[2], start: i + 1, end: lines.length }
        vendors.set(parseInt(m[1], 16), last)
      }
    }
    this.#vendors = vendors
    return vendors
  }

  /** The vendor's name, or `null`. */
  vendorName(vendor: number): string | null {
    return this.#vendorIndex().get(vendor)?.name ?? null
  }

  /** The device's name, or `null`. */
  deviceName(vendor: number, device: number): string | null {
    let devices = this.#devices.get(vendor)
    if (!devices) {
      devices = new Map()
      const v = this.#vendorIndex().get(vendor)
      const lines = this.#lines ?? []
      if (v) {
        for (let i = v.start; i < v.end; i++) {
          const m = /^\t([0-9a-fA-F]{4})\s+(.*?)\s*$/.exec(lines[i] ?? '')
          if (m?.[1] !== undefined && m[2] !== undefined) devices.set(parseInt(m[1], 16), m[2])
        }
      }
      this.#devices.set(vendor, devices)
    }
    return devices.get(device) ?? null
  }

  /** The name of a 24-bit class code: its subclass's (`Ethernet controller`), else its class's; or `null`. */
  className(classCode: number): string | null {
    if (!this.#classes) {
      const classes = new Map<number, string>() // 0xCC00 + subclass, and 0xCC << 8 | 0x100 for the class itself
      let cls: number | undefined
      for (const line of this.#load() ?? []) {
        const c = /^C ([0-9a-fA-F]{2})\s+(.*?)\s*$/.exec(line)
        if (c?.[1] !== undefined && c[2] !== undefined) {
          cls = parseInt(c[1], 16)
          classes.set(classKey(cls), c[2])
          continue
        }
        if (cls === undefined) continue
        const sub = /^\t([0-9a-fA-F]{2})\s+(.*?)\s*$/.exec(line)
        if (sub?.[1] !== undefined && sub[2] !== undefined) classes.set(classKey(cls, parseInt(sub[1], 16)), sub[2])
      }
      this.#classes = classes
    }
    const base = (classCode >> 16) & 0xff
    const sub = (classCode >> 8) & 0xff
    return this.#classes.get(classKey(base, sub)) ?? this.#classes.get(classKey(base)) ?? null
  }
}

/** A key of the class map: a class alone, or a class and subclass. */
const classKey = (cls: number, sub?: number): number => (sub === undefined ? 0x10000 | cls : (cls << 8) | sub)

/** What the CLI needs to run a command. */
interface Context {
  out: Output
  json: boolean
  root: string | undefined
  containerPath: string | undefined
  ids: PciIds
  sandbox: SandboxHost | undefined
}

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
  const widths = (rows[0] ?? []).map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)))
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c] ?? 0))).join('  ').trimEnd())
}

const json = (v: unknown): string => JSON.stringify(v, null, 2)

/** `vendor device` names, as far as pci.ids knows them; `undefined` when it knows neither. */
function deviceLabel(d: PciDevice, ids: PciIds): string | undefined {
  const vendor = ids.vendorName(d.vendor)
  const device = ids.deviceName(d.vendor, d.device)
  if (vendor === null && device === null) return undefined
  return `${vendor ?? `vendor ${hex(d.vendor, 4)}`} ${device ?? `device ${hex(d.device, 4)}`}`
}

/** A PCI device in JSON: every key, hex ids, names from pci.ids (`null` when unknown). */
function pciJson(d: PciDevice, ids: PciIds): object {
  return {
    address: d.address,
    sysfsPath: d.sysfsPath,
    vendor: hx(d.vendor, 4),
    device: hx(d.device, 4),
    class: hx(d.class, 6),
    revision: hx(d.revision, 2),
    subsystemVendor: hx(d.subsystemVendor, 4),
    subsystemDevice: hx(d.subsystemDevice, 4),
    vendorName: ids.vendorName(d.vendor),
    deviceName: ids.deviceName(d.vendor, d.device),
    className: ids.className(d.class),
    driver: d.driver ?? null,
    driverOverride: d.driverOverride ?? null,
    iommuGroup: d.iommuGroup ?? null,
    groupMembers: d.groupMembers,
    numaNode: d.numaNode ?? null,
    vfioUsable: d.vfioUsable,
  }
}

function list(c: Context): number {
  const devices = sysfs.listDevices({ root: c.root })
  if (c.json) {
    c.out.log(json(devices.map((d) => pciJson(d, c.ids))))
    return 0
  }
  const labels = devices.map((d) => deviceLabel(d, c.ids))
  const named = labels.some((l) => l !== undefined)
  const rows = [['ADDRESS', 'ID', 'CLASS', 'DRIVER', 'GROUP', 'VFIO', 'GROUP MEMBERS', ...(named ? ['NAME'] : [])]]
  devices.forEach((d, i) => {
    const others = d.groupMembers.filter((m) => m !== d.address)
    rows.push([
      d.address,
      `${hex(d.vendor, 4)}:${hex(d.device, 4)}`,
      hex(d.class, 6),
      d.driver ?? '-',
      d.iommuGroup === undefined ? '-' : String(d.iommuGroup),
      d.vfioUsable ? 'yes' : 'no',
      others.length ? others.join(',') : '-',
      ...(named ? [labels[i] ?? '-'] : []),
    ])
  })
  for (const line of table(rows)) c.out.log(line)
  return 0
}

function capJson(cap: RegionCap): object {
  return {
    kind: cap.kind,
    areas: cap.kind === 'sparse-mmap' ? cap.areas.map((a) => ({ offset: hx(a.offset), size: hx(a.size) })) : null,
    type: cap.kind === 'type' ? hx(cap.type) : null,
    subtype: cap.kind === 'type' ? hx(cap.subtype) : null,
    tgt: cap.kind === 'nvlink2-ssatgt' ? hx(cap.tgt) : null,
    linkSpeed: cap.kind === 'nvlink2-lnkspd' ? cap.linkSpeed : null,
    id: cap.kind === 'unknown' ? hx(cap.id) : null,
    version: cap.kind === 'unknown' ? cap.version : null,
  }
}

function regionJson(r: Region): object {
  return {
    index: r.index,
    name: regionName(r.index),
    present: r.present,
    size: hx(r.size),
    offset: hx(r.offset),
    flags: hx(r.flags),
    readable: r.readable,
    writable: r.writable,
    mappable: r.mappable,
    caps: r.caps.map(capJson),
  }
}

function irqJson(i: IrqInfo): object {
  return {
    index: i.index,
    name: irqName(i.index),
    flags: hx(i.flags),
    count: i.count,
    eventfd: i.eventfd,
    maskable: i.maskable,
    automasked: i.automasked,
  }
}

/** An error's `{code, message, errno, syscall, path}`, each `null` when it has none. */
export function errorJson(err: unknown): { code: string | null; message: string; errno: number | null; syscall: string | null; path: string | null } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; message?: unknown; errno?: unknown; syscall?: unknown; path?: unknown }
  return {
    code: typeof e.code === 'string' ? e.code : null,
    message: typeof e.message === 'string' ? e.message : String(err),
    // Node's system errors carry a negative errno; the kernel's (and VfioError's) is positive.
    errno: typeof e.errno === 'number' ? Math.abs(e.errno) : null,
    syscall: typeof e.syscall === 'string' ? e.syscall : null,
    path: typeof e.path === 'string' ? e.path : null,
  }
}

/** What VFIO shows of an open device, read while it is open. */
export interface VfioView {
  device: DeviceInfo
  iommu: ReturnType<Container['iommuInfo']> | undefined
  regions: Region[]
  irqs: IrqInfo[]
}

/** Opens the device through VFIO and reads everything `info` shows; throws a VfioError with `stage` set. */
function openView(address: string, containerPath: string | undefined): VfioView {
  let container: Container
  try {
    container = new Container(containerPath === undefined ? undefined : { path: containerPath })
  } catch (err) {
    throw Object.assign(err as object, { stage: 'container' })
  }
  using _container = container
  let device: ReturnType<Container['openDevice']>
  try {
    device = container.openDevice(address)
  } catch (err) {
    throw Object.assign(err as object, { stage: 'device' })
  }
  using _device = device
  let iommu: VfioView['iommu']
  try {
    iommu = container.iommuInfo()
  } catch {
    iommu = undefined
  }
  return { device: device.info, iommu, regions: [...device.regions], irqs: [...device.irqs] }
}

/** `info --json` of a device opened through VFIO (`pci`: its sysfs view, when it is a PCI device). */
export function vfioInfoJson(v: VfioView, pci: PciDevice | undefined, ids: PciIds): object {
  const d = v.device
  return {
    address: d.name,
    view: 'vfio',
    note: null,
    vfioError: null,
    pci: pci ? pciJson(pci, ids) : null,
    device: { name: d.name, sysfsPath: d.sysfsPath, group: d.group, flags: hx(d.flags), numRegions: d.numRegions, numIrqs: d.numIrqs, pci: d.pci, canReset: d.canReset, maxInterrupts: d.maxInterrupts },
    iommu: v.iommu
      ? { flags: hx(v.iommu.flags), iovaPgsizes: hx(v.iommu.iovaPgsizes), iovaRanges: v.iommu.iovaRanges.map((r) => ({ start: hx(r.start), end: hx(r.end) })), dmaAvail: v.iommu.dmaAvail ?? null }
      : null,
    regions: v.regions.map(regionJson),
    irqs: v.irqs.map(irqJson),
  }
}

/** The PCI address at the end of a sysfs path, or `undefined`. */
function addressOfPath(p: string): string | undefined {
  try {
    return sysfs.parseAddress(path.basename(p))
  } catch {
    return undefined
  }
}

/**
 * Why `info` shows the sysfs view: the note printed with it. `err` is what VFIO threw,
 * with `stage` `'container'` (no usable /dev/vfio/vfio) or `'device'` (the device did not open).
 */
export function fallbackNote(err: VfioError & { stage?: string }, pci: PciDevice): string {
  const address = pci.address
  const driver = pci.driver
  const bound = driver !== undefined && /vfio/.test(driver) // vfio-pci, or a variant driver (mlx5_vfio_pci)
  const on = driver === undefined ? 'is not bound to any driver' : `is bound to ${driver}`
  const view = 'This is the sysfs view (ids, driver, IOMMU group)'
  const bindIt = `vfio-ioctls bind ${address}`
  if (err.stage === 'container') {
    return (
      `VFIO is unavailable (${err.code}: ${err.message})${bound ? '' : `, and ${address} ${on}, not vfio-pci`}. ` +
      `${view}; regions and IRQs need VFIO${bound ? '' : ` and the device bound to vfio-pci (${bindIt})`}.`
    )
  }
  if (!bound) return `${address} ${on}, not vfio-pci, so it cannot be opened through VFIO (${err.code}). ${view}; for regions and IRQs bind it first: ${bindIt}`
  return `${address} could not be opened through VFIO (${err.code}: ${err.message}). ${view}; regions and IRQs need VFIO.`
}

function info(address: string, c: Context): number {
  // Reject a malformed address before touching /dev/vfio (a sysfs path passes as it is).
  if (!address.startsWith('/')) address = sysfs.parseAddress(address)
  let view: VfioView | undefined
  let vfioError: (VfioError & { stage?: string }) | undefined
  try {
    view = openView(address, c.containerPath)
  } catch (err) {
    // A bad argument is the caller's mistake, not a reason to fall back.
    if (!(err instanceof VfioError) || err.code === ErrorCode.INVALID_ARGUMENT) throw err
    vfioError = err
  }
  const pciAddress = view ? view.device.name : address.startsWith('/') ? addressOfPath(address) : address
  let pci: PciDevice | undefined
  if (pciAddress !== undefined) {
    try {
      pci = sysfs.getDevice(pciAddress, { root: c.root })
    } catch (err) {
      // No such device: that is the answer. Otherwise the VFIO error says more.
      if (vfioError) throw err instanceof VfioError && err.code === ErrorCode.NOT_FOUND ? err : vfioError
      pci = undefined // not a PCI address (a platform device's sysfs path)
    }
  }
  if (vfioError) {
    if (!pci) throw vfioError
    return sysfsInfo(pci, vfioError, c)
  }
  const v = view as VfioView
  const d = v.device
  if (c.json) {
    c.out.log(json(vfioInfoJson(v, pci, c.ids)))
    return 0
  }
  const out = c.out
  out.log(`device ${d.name}`)
  if (pci) pciLines(pci, c)
  out.log(`  sysfs     ${d.sysfsPath}`)
  out.log(`  group     ${d.group}`)
  out.log(`  flags     0x${hex(d.flags)}${d.pci ? ' pci' : ''}${d.canReset ? ' reset' : ''}`)
  out.log(`  regions   ${d.numRegions}   irqs ${d.numIrqs}   max interrupts ${d.maxInterrupts}`)
  if (v.iommu) {
    const ranges = v.iommu.iovaRanges.map((r) => `0x${hex(r.start)}-0x${hex(r.end)}`).join(' ')
    out.log(`  iommu     page sizes 0x${hex(v.iommu.iovaPgsizes)}${ranges ? `  iova ${ranges}` : ''}`)
  }
  out.log('')
  const regions = [['REGION', 'NAME', 'PRESENT', 'SIZE', 'FLAGS', 'CAPS']]
  for (const r of v.regions) {
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
  for (const i of v.irqs) irqs.push([String(i.index), irqName(i.index), String(i.count), irqFlagNames(i.flags)])
  for (const line of table(irqs)) out.log(line)
  return 0
}

/** The id, name and driver lines of `info`. */
function pciLines(pci: PciDevice, c: Context): void {
  c.out.log(`  id        ${hex(pci.vendor, 4)}:${hex(pci.device, 4)} rev ${hex(pci.revision, 2)}  class ${hex(pci.class, 6)}  subsystem ${hex(pci.subsystemVendor, 4)}:${hex(pci.subsystemDevice, 4)}`)
  const label = deviceLabel(pci, c.ids)
  const className = c.ids.className(pci.class)
  if (label !== undefined || className !== null) c.out.log(`  name      ${[label, className === null ? undefined : `(${className})`].filter((x) => x !== undefined).join(' ')}`)
  c.out.log(`  driver    ${pci.driver ?? '-'}`)
}

/** `info` without VFIO: what sysfs shows, and why. */
function sysfsInfo(pci: PciDevice, err: VfioError & { stage?: string }, c: Context): number {
  const note = fallbackNote(err, pci)
  if (c.json) {
    const e = errorJson(err)
    c.out.log(json({ address: pci.address, view: 'sysfs', note, vfioError: e, pci: pciJson(pci, c.ids), device: null, iommu: null, regions: null, irqs: null }))
    return 0
  }
  const others = pci.groupMembers.filter((m) => m !== pci.address)
  c.out.log(`device ${pci.address} (sysfs view)`)
  pciLines(pci, c)
  c.out.log(`  sysfs     ${pci.sysfsPath}`)
  c.out.log(`  group     ${pci.iommuGroup ?? '-'}${others.length ? `  with ${others.join(', ')}` : ''}`)
  c.out.log(`  vfio      ${pci.vfioUsable ? 'usable' : 'not usable'}`)
  c.out.log('')
  c.out.log(`note: ${note}`)
  return 0
}

function bind(address: string, c: Context): number {
  address = sysfs.parseAddress(address)
  const r = sysfs.bind(address, { root: c.root })
  if (c.json) {
    c.out.log(json({ address, driver: 'vfio-pci', previousDriver: r.previousDriver ?? null, alreadyBound: r.alreadyBound }))
    return 0
  }
  if (r.alreadyBound) c.out.log(`${address}: already bound to vfio-pci; nothing changed`)
  else c.out.log(`${address}: bound to vfio-pci (previous driver: ${r.previousDriver ?? 'none'})`)
  c.out.log(NOT_PERSISTENT)
  return 0
}

function unbind(address: string, restore: string | undefined, c: Context): number {
  address = sysfs.parseAddress(address)
  const root = c.root
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
  const failed = restore !== undefined && now !== restore
  const failure = `${address}: --restore ${restore} was asked for, but the device is bound to ${nowText}`
  if (c.json) {
    if (failed) c.out.log(json({ error: { code: ErrorCode.IO, message: failure, errno: null, syscall: null, path: null } }))
    else c.out.log(json({ address, previousDriver: before ?? null, driver: now ?? null, restore: restore ?? null }))
    return failed ? 1 : 0
  }
  if (before === 'vfio-pci') c.out.log(`${address}: unbound from vfio-pci; now bound to ${nowText}`)
  else if (before === undefined) c.out.log(`${address}: had no driver; cleared driver_override and reprobed; now bound to ${nowText}`)
  else if (before !== null && before === now) c.out.log(`${address}: already bound to ${before}; nothing changed`)
  else c.out.log(`${address}: now bound to ${nowText}`)
  if (failed) {
    c.out.error(`vfio-ioctls: ${failure}`)
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
      tokens: true,
      options: {
        json: { type: 'boolean' },
        restore: { type: 'string' },
        device: { type: 'string', multiple: true },
        kernel: { type: 'string' },
        timeout: { type: 'string' },
        accel: { type: 'string' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    })
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message)
    throw err
  }
  const { values, positionals, tokens } = parsed
  if (values.version) return { command: 'version' }
  const [command, ...rest] = positionals
  if (values.help || command === 'help') return { command: 'help' }
  if (command === undefined) throw new UsageError('no command given', { showUsage: true })
  const spec = COMMANDS.get(command)
  if (!spec) throw new UsageError(`unknown command ${JSON.stringify(command)}`)
  if (command === 'sandbox') {
    // Its command is what follows the first `--`, whatever it looks like.
    const end = tokens.find((t) => t.kind === 'option-terminator')
    const before = end === undefined ? positionals.length : tokens.filter((t) => t.kind === 'positional' && t.index < end.index).length
    if (end === undefined || before !== 1) throw new UsageError(`'sandbox' takes its command after '--': vfio-ioctls sandbox [options] -- <command...>`)
    const commandArgv = positionals.slice(1)
    if (commandArgv.length === 0) throw new UsageError(`'sandbox' needs a command after '--'`)
    for (const name of Object.keys(values)) {
      if (!spec.options.includes(name)) throw new UsageError(`'sandbox' does not take --${name}`)
    }
    return parseSandbox(values, commandArgv)
  }
  if (rest.length !== spec.args) {
    throw new UsageError(spec.args === 0 ? `'${command}' takes no arguments` : `'${command}' needs exactly one <address>`)
  }
  for (const name of Object.keys(values)) {
    if (!spec.options.includes(name)) throw new UsageError(`'${command}' does not take --${name}`)
  }
  const json = values.json === true
  const address = rest[0] ?? ''
  switch (command) {
    case 'sandbox':
      throw new Error('unreachable')
    case 'list':
      return { command, json }
    case 'info':
      return { command, address, json }
    case 'bind':
      return { command, address, json }
    default:
      return values.restore === undefined ? { command: 'unbind', address, json } : { command: 'unbind', address, restore: values.restore, json }
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
      return ['bind', ...(cmd.json ? ['--json'] : []), ...positional(cmd.address)]
    case 'unbind':
      // `--restore=X`: a value starting with '-' would otherwise read as an option.
      return ['unbind', ...(cmd.restore === undefined ? [] : [`--restore=${cmd.restore}`]), ...(cmd.json ? ['--json'] : []), ...positional(cmd.address)]
    case 'sandbox':
      return ['sandbox', ...sandboxOptions(cmd).map(([k, v]) => (v === undefined ? `--${k}` : `--${k}=${v}`)), '--', ...cmd.argv]
  }
}

// ------------------------------------------------------------------ sandbox --

/** An NVMe scratch drive's size when `size=` is not given: the harness's own default. */
export const NVME_DEFAULT_SIZE = 64 * 2 ** 20
const NVME_MIN_SIZE = 2 ** 20
const NVME_MAX_SIZE = 2 ** 40
const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }

/** Bytes as the harness (and `truncate`) reads them: the largest unit that divides them. */
export function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K'] as const) {
    const n = SIZE_UNITS[unit] ?? 1
    if (bytes % n === 0) return `${bytes / n}${unit}`
  }
  return String(bytes)
}

/** `64M`, `1G`, `1536K`, `4194304` → bytes; a multiple of 4 KiB, 1 MiB to 1 TiB. */
function parseSize(text: string): number {
  const m = /^([1-9][0-9]{0,12})([KMGT]?)$/i.exec(text)
  const bytes = m?.[1] === undefined ? NaN : Number(m[1]) * (SIZE_UNITS[(m[2] ?? '').toUpperCase()] ?? NaN)
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`bad NVMe size ${JSON.stringify(text)} (a number with K, M, G or T: 64M, 2G)`)
  if (bytes < NVME_MIN_SIZE || bytes > NVME_MAX_SIZE || bytes % 4096 !== 0) {
    throw new UsageError(`NVMe size ${JSON.stringify(text)}: from 1M to 1T, a multiple of 4K`)
  }
  return bytes
}

/**
 * The `--device` values: each a comma list of devices, where `key=value` belongs to the
 * device before it (`edu,nvme,size=1G` is edu and a 1 GiB NVMe). Each device at most once;
 * none given: edu and a 64 MiB NVMe.
 */
export function parseDevices(specs: readonly string[]): SandboxDevice[] {
  if (specs.length === 0) return [{ kind: 'edu' }, { kind: 'nvme', size: NVME_DEFAULT_SIZE }]
  const devices: SandboxDevice[] = []
  for (const spec of specs) {
    let current: SandboxDevice | undefined // the device this spec's options belong to
    for (const part of spec.split(',')) {
      const eq = part.indexOf('=')
      if (eq === -1) {
        if (part !== 'edu' && part !== 'nvme') throw new UsageError(`unknown device ${JSON.stringify(part)} in --device ${JSON.stringify(spec)} (edu, or nvme[,size=SIZE])`)
        if (devices.some((d) => d.kind === part)) throw new UsageError(`device ${part} given twice (the sandbox has at most one of each)`)
        current = part === 'edu' ? { kind: 'edu' } : { kind: 'nvme', size: NVME_DEFAULT_SIZE }
        devices.push(current)
      } else if (current === undefined) {
        throw new UsageError(`--device ${JSON.stringify(spec)}: ${JSON.stringify(part)} follows no device (nvme,size=SIZE)`)
      } else if (current.kind === 'nvme' && part.slice(0, eq) === 'size') {
        current.size = parseSize(part.slice(eq + 1))
      } else {
        throw new UsageError(`device ${current.kind} has no option ${JSON.stringify(part.slice(0, eq))}${current.kind === 'nvme' ? ' (it takes size=SIZE)' : ' (it takes none)'}`)
      }
    }
  }
  return devices
}

/**
 * The kernel `--kernel` names: `6.12` (the one guest/build-kernel.sh builds, with iommufd,
 * VFIO device cdevs and the mtty mdev sample), or a Debian kernel package:
 * `linux-image-6.1.0-48-amd64`, or the part after `linux-image-`.
 */
function parseKernel(text: string): string {
  if (text === '6.12') return text
  const pkg = text.startsWith('linux-image-') ? text : `linux-image-${text}`
  if (!/^linux-image-[0-9][0-9a-z.+~-]*$/.test(pkg)) throw new UsageError(`bad --kernel ${JSON.stringify(text)} (6.12, or a Debian kernel package: linux-image-6.1.0-48-amd64)`)
  return pkg
}

function parseSandbox(values: { device?: string[]; kernel?: string; timeout?: string; accel?: string; verbose?: boolean }, argv: string[]): SandboxCommand {
  const accel = values.accel ?? 'auto'
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') throw new UsageError(`bad --accel ${JSON.stringify(accel)} (auto, kvm or tcg)`)
  const cmd: SandboxCommand = { command: 'sandbox', devices: parseDevices(values.device ?? []), accel, verbose: values.verbose === true, argv }
  if (values.timeout !== undefined) {
    if (!/^[1-9][0-9]{0,6}$/.test(values.timeout)) throw new UsageError(`bad --timeout ${JSON.stringify(values.timeout)} (whole seconds, 1 to 9999999)`)
    cmd.timeout = Number(values.timeout)
  }
  if (values.kernel !== undefined) cmd.kernel = parseKernel(values.kernel)
  return cmd
}

/** The sandbox's options in canonical form, `[name, value]` (`undefined`: a flag). */
function sandboxOptions(cmd: SandboxCommand): [string, string | undefined][] {
  const spec = (d: SandboxDevice): string => (d.kind === 'edu' ? 'edu' : `nvme,size=${formatSize(d.size)}`)
  return [
    ...cmd.devices.map((d): [string, string] => ['device', spec(d)]),
    ['accel', cmd.accel],
    ...(cmd.timeout === undefined ? [] : [['timeout', String(cmd.timeout)] as [string, string]]),
    ...(cmd.kernel === undefined ? [] : [['kernel', cmd.kernel] as [string, string]]),
    ...(cmd.verbose ? [['verbose', undefined] as [string, undefined]] : []),
  ]
}

/**
 * What the sandbox hands `guest/run.sh`: its options (each device attached and bound to
 * vfio-pci, the accelerator, timeout, kernel), then `--` and the command.
 */
export function harnessArgv(cmd: SandboxCommand): string[] {
  const args: string[] = []
  for (const [name, value] of sandboxOptions(cmd)) args.push(`--${name}`, ...(value === undefined ? [] : [value]))
  args.push('--bind', cmd.devices.map((d) => d.kind).join(','))
  return [...args, '--', ...cmd.argv]
}

/** The Debian/Ubuntu packages the guest's setup needs (guest/setup.sh installs them as root). */
export const SANDBOX_PACKAGES = ['qemu-system-x86', 'busybox-static', 'cpio', 'xz-utils', 'zstd', 'kmod'] as const

/** Something the sandbox needs is not on this host: exit 3, as the harness's own prerequisites. */
export class SandboxError extends Error {
  /** `ERR_SANDBOX_UNSUPPORTED` (not Linux on x86_64) or `ERR_SANDBOX_MISSING` (a program or the harness). */
  readonly code: 'ERR_SANDBOX_UNSUPPORTED' | 'ERR_SANDBOX_MISSING'
  /** Always 3. */
  readonly exitCode = 3

  constructor(code: SandboxError['code'], message: string) {
    super(message)
    this.name = 'SandboxError'
    this.code = code
  }
}

/** The first `name` in `dirs` (a PATH) that is an executable file, or `undefined`. */
function which(name: string, dirs: string): string | undefined {
  for (const dir of dirs.split(':')) {
    if (dir === '') continue
    const file = path.join(dir, name)
    try {
      fs.accessSync(file, fs.constants.X_OK)
      if (fs.statSync(file).isFile()) return file
    } catch {
      // Not here: the next directory.
    }
  }
  return undefined
}

/** Checks what the host must have before the harness can boot anything; throws a {@link SandboxError}. */
export function checkSandboxHost(host: SandboxHost = {}): string {
  const platform = host.platform ?? process.platform
  const arch = host.arch ?? process.arch
  if (platform !== 'linux' || arch !== 'x64') {
    throw new SandboxError(
      'ERR_SANDBOX_UNSUPPORTED',
      `the sandbox needs Linux on x86_64 (this is ${platform} on ${arch}): it boots an x86_64 QEMU guest that runs this host's own programs (node, your project) over a 9p mount of /`,
    )
  }
  const dirs = host.path ?? process.env.PATH ?? ''
  const install = `sudo apt-get install ${SANDBOX_PACKAGES.join(' ')} (Debian/Ubuntu)`
  if (which('bash', dirs) === undefined) throw new SandboxError('ERR_SANDBOX_MISSING', `bash not found on the PATH: install it (${install.replace(SANDBOX_PACKAGES.join(' '), 'bash')})`)
  const canInstall = host.canInstall ?? (process.getuid?.() === 0 && which('apt-get', dirs) !== undefined)
  if (which('qemu-system-x86_64', dirs) === undefined && !canInstall) {
    throw new SandboxError('ERR_SANDBOX_MISSING', `QEMU (qemu-system-x86_64) not found: install what the sandbox needs with: ${install}; or run the sandbox once as root on Debian/Ubuntu, and it installs them itself`)
  }
  const harness = host.harness ?? path.join(__dirname, '..', 'guest', 'run.sh')
  if (!fs.existsSync(harness)) throw new SandboxError('ERR_SANDBOX_MISSING', `the guest harness is not where the package puts it: ${harness} (reinstall vfio-ioctls)`)
  return harness
}

/** Runs `bash harness ...args` on this terminal; resolves to its exit status (128 + N for signal N). */
function runHarness(harness: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [harness, ...args], { stdio: 'inherit' })
    // Ctrl-C reaches the harness too (same process group): it stops the guest and exits
    // 130; this process waits for that instead of dying first. A TERM is passed on.
    const ignore = (): void => {}
    const forward = (): void => {
      child.kill('SIGTERM')
    }
    process.on('SIGINT', ignore)
    process.on('SIGTERM', forward)
    process.on('SIGHUP', forward)
    const done = (): void => {
      process.off('SIGINT', ignore)
      process.off('SIGTERM', forward)
      process.off('SIGHUP', forward)
    }
    child.on('error', (err) => {
      done()
      reject(err)
    })
    child.on('close', (code, signal) => {
      done()
      resolve(code ?? 128 + (signal === null ? 0 : (os.constants.signals[signal] ?? 0)))
    })
  })
}

async function sandbox(cmd: SandboxCommand, host: SandboxHost = {}): Promise<number> {
  const harness = checkSandboxHost(host)
  return (host.run ?? runHarness)(harness, harnessArgv(cmd))
}

function run(cmd: Command, c: Context): number | Promise<number> {
  switch (cmd.command) {
    case 'version':
      c.out.log(version())
      return 0
    case 'help':
      c.out.log(USAGE)
      return 0
    case 'list':
      return list(c)
    case 'info':
      return info(cmd.address, c)
    case 'bind':
      return bind(cmd.address, c)
    case 'unbind':
      return unbind(cmd.address, cmd.restore, c)
    case 'sandbox':
      return sandbox(cmd, c.sandbox)
  }
}

/** Whether `argv` asks for JSON: a `--json` before any `--` (also when the rest is malformed). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--')
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json')
}

/**
 * Runs the CLI on `argv` (without node and the script); resolves to the exit code:
 * 0 on success, 1 when the operation failed (the error's `ERR_VFIO_*` code is printed),
 * 2 for a malformed command line. With `--json`, errors too are one JSON document on
 * stdout: `{"error":{"code","message","errno","syscall","path"}}` (a malformed command
 * line has code `ERR_USAGE`).
 */
export async function main(argv: string[], out: Output = console, options: CliOptions = {}): Promise<number> {
  let asJson = wantsJson(argv)
  try {
    const cmd = parseArgv(argv)
    asJson = 'json' in cmd && cmd.json
    const context: Context = { out, json: asJson, root: options.sysfsRoot, containerPath: options.containerPath, ids: new PciIds(options.pciIds), sandbox: options.sandbox }
    return await run(cmd, context)
  } catch (err) {
    if (err instanceof UsageError) {
      if (asJson) {
        out.log(json({ error: { code: 'ERR_USAGE', message: err.message, errno: null, syscall: null, path: null } }))
        return 2
      }
      if (err.showUsage) {
        out.error(USAGE)
        return 2
      }
      out.error(`vfio-ioctls: ${err.message}`)
      out.error("Run 'vfio-ioctls --help' for usage.")
      return 2
    }
    if (err instanceof SandboxError) {
      out.error(`vfio-ioctls sandbox: error: ${err.code}: ${err.message}`)
      return err.exitCode
    }
    if (asJson) {
      out.log(json({ error: errorJson(err) }))
      return 1
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
