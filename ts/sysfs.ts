/** PCI discovery and binding to vfio-pci, for device tools. */
import { randomUUID } from 'node:crypto'
import type * as Binding from '../native/binding'
import { native } from './native'
import { optStr, options, str } from './validate'

/**
 * A PCI device as sysfs shows it.
 * @interface
 */
export type PciDevice = Binding.PciDevice

/** Options for tests: `root` replaces `/sys`. */
export interface SysfsOptions {
  /** Replaces `/sys` (a fake tree, in tests). */
  root?: string
}

/** Every PCI device, sorted by address. */
export function listDevices(sysfsOptions?: SysfsOptions): PciDevice[] {
  const root = optStr('root', options<SysfsOptions>('options', sysfsOptions).root)
  return native().listPciDevices(root)
}

/** One PCI device by address. */
export function getDevice(address: string, sysfsOptions?: SysfsOptions): PciDevice {
  const a = str('address', address)
  const root = optStr('root', options<SysfsOptions>('options', sysfsOptions).root)
  return native().pciDevice(a, root)
}

/** Normalizes a PCI address (`00:03.0` → `0000:00:03.0`); throws `ERR_VFIO_INVALID_ARGUMENT`. */
export function parseAddress(address: string): string {
  const a = str('address', address)
  return native().parsePciAddress(a)
}

/** Binds a device to vfio-pci (unbinding its driver first); returns the driver it had. */
export function bind(
  address: string,
  sysfsOptions?: SysfsOptions,
): {
  /** The driver the device had (`undefined`: none). */
  previousDriver?: string
  /** It was bound to vfio-pci already; nothing changed. */
  alreadyBound: boolean
} {
  const a = str('address', address)
  const root = optStr('root', options<SysfsOptions>('options', sysfsOptions).root)
  const r = native().bindVfio(a, root)
  return { previousDriver: r.previousDriver ?? undefined, alreadyBound: r.alreadyBound }
}

/** Unbinds a device from vfio-pci; the kernel (or `restore`) picks its driver. Returns the driver it has now. */
export function unbind(address: string, unbindOptions?: SysfsOptions & { restore?: string }): string | undefined {
  const a = str('address', address)
  const o = options<SysfsOptions & { restore: string }>('options', unbindOptions)
  const restore = optStr('restore', o.restore)
  const root = optStr('root', o.root)
  return native().unbindVfio(a, restore, root) ?? undefined
}

/** {@link listDevices} on the libuv pool: never blocks the event loop (an Electron main thread). */
export async function listDevicesAsync(sysfsOptions?: SysfsOptions): Promise<PciDevice[]> {
  const root = optStr('root', options<SysfsOptions>('options', sysfsOptions).root)
  return native().listPciDevicesAsync(root)
}

/** {@link bind} on the libuv pool: the sysfs writes (and the driver's probe) never block the event loop. */
export async function bindAsync(
  address: string,
  sysfsOptions?: SysfsOptions,
): Promise<{
  /** The driver the device had (`undefined`: none). */
  previousDriver?: string
  /** It was bound to vfio-pci already; nothing changed. */
  alreadyBound: boolean
}> {
  const a = str('address', address)
  const root = optStr('root', options<SysfsOptions>('options', sysfsOptions).root)
  const r = await native().bindVfioAsync(a, root)
  return { previousDriver: r.previousDriver ?? undefined, alreadyBound: r.alreadyBound }
}

/** {@link unbind} on the libuv pool. */
export async function unbindAsync(address: string, unbindOptions?: SysfsOptions & { restore?: string }): Promise<string | undefined> {
  const a = str('address', address)
  const o = options<SysfsOptions & { restore: string }>('options', unbindOptions)
  const restore = optStr('restore', o.restore)
  const root = optStr('root', o.root)
  return (await native().unbindVfioAsync(a, restore, root)) ?? undefined
}

/**
 * One type of mediated device (mdev) a parent can create.
 * @interface
 */
export type MdevType = Binding.MdevType

/** Every mdev type of every parent (`/sys/class/mdev_bus/PARENT/mdev_supported_types/TYPE`); none without mdev parents. */
export function mdevTypes(sysfsOptions?: SysfsOptions): MdevType[] {
  const root = optStr('root', options<SysfsOptions>('options', sysfsOptions).root)
  return native().mdevTypes(root)
}

/** The UUIDs of the mdevs that exist (`/sys/bus/mdev/devices`). */
export function mdevDevices(sysfsOptions?: SysfsOptions): string[] {
  const root = optStr('root', options<SysfsOptions>('options', sysfsOptions).root)
  return native().mdevDevices(root)
}

/**
 * Creates an mdev of type `type` (e.g. `'mtty-1'`) under `parent` (e.g. `'mtty'`),
 * named `uuid` (a new random UUID by default); resolves with the UUID, which
 * `container.openDevice()` takes. `ERR_VFIO_NOT_FOUND` (naming the types there are) for
 * an unknown parent or type; the kernel's errno otherwise (`ENOSPC`: none available).
 */
export async function createMdev(parent: string, type: string, createOptions?: SysfsOptions & { uuid?: string }): Promise<string> {
  const p = str('parent', parent)
  const t = str('type', type)
  const o = options<SysfsOptions & { uuid: string }>('options', createOptions)
  const uuid = optStr('uuid', o.uuid) ?? randomUUID()
  await native().createMdev(p, t, uuid, optStr('root', o.root))
  return uuid
}

/** Removes the mdev `uuid`; close every device opened on it first. */
export async function removeMdev(uuid: string, sysfsOptions?: SysfsOptions): Promise<void> {
  const u = str('uuid', uuid)
  const root = optStr('root', options<SysfsOptions>('options', sysfsOptions).root)
  await native().removeMdev(u, root)
}
