/** PCI discovery and binding to vfio-pci, for device tools. */
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
