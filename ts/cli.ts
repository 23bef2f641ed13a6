#!/usr/bin/env node
/**
 * `vfio-ioctls`: a small command-line tool over the public API.
 *
 * ```sh
 * vfio-ioctls list [--json]
 * vfio-ioctls info <address> [--json]
 * vfio-ioctls bind <address> [--json]
 * vfio-ioctls unbind <address> [--restore DRIVER] [--json]
 * ```
 *
 * With `--json` every command prints one JSON document on stdout, errors included
 * (`{"error":{"code","message","errno","syscall","path"}}`, exit 1). Every key is always
 * there (`null` when absent). One number format: identifiers, class codes, revisions,
 * flags, and every size, offset, address and mask are `"0x…"` hex strings (ids and
 * class zero-padded to their sysfs width: `"0x8086"`, `"0x020000"`); counts, indices,
 * IOMMU group and NUMA node numbers are JSON numbers.
 */
import fs from 'node:fs'
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
}

/** A parsed command line: what {@link parseArgv} gives and {@link formatArgv} takes. */
export type Command =
  | { command: 'help' }
  | { command: 'version' }
  | { command: 'list'; json: boolean }
  | { command: 'info'; address: string; json: boolean }
  | { command: 'bind'; address: string; json: boolean }
  | { command: 'unbind'; address: string; restore?: string; json: boolean }

const USAGE = `Usage: vfio-ioctls <command> [options]

Commands:
  list                               PCI devices: id, class, driver, IOMMU group, VFIO-usable, name
  info <address>                     open a device through VFIO; show its regions and IRQs
                                     (without VFIO, or not bound to vfio-pci: what sysfs shows)
  bind <address>                     bind a device to vfio-pci (prints the previous driver)
  unbind <address> [--restore DRV]   unbind from vfio-pci (optionally bind DRV)

Options:
  --json           one JSON document on stdout, for every command and for errors
  --restore DRV    driver to bind after unbind
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
  const address = rest[0] ?? ''
  switch (command) {
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
  }
}

function run(cmd: Command, c: Context): number {
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
    const context: Context = { out, json: asJson, root: options.sysfsRoot, containerPath: options.containerPath, ids: new PciIds(options.pciIds) }
    return run(cmd, context)
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
