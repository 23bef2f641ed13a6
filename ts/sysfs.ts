/** PCI discovery and binding to vfio-pci, for device tools. */
import type * as Binding from '../native/binding'
import { call } from './errors'
import { native } from './native'
import { str } from './validate'

/** A PCI device as sysfs shows it. */
export type PciDevice = Binding.PciDevice

/** Options for tests: `root` replaces `/sys`. */
export interface SysfsOptions {
  root?: string
}

/** Every PCI device, sorted by address. */
export function listDevices(options: SysfsOptions = {}): PciDevice[] {
  return call(() => native().listPciDevices(options.root))
}

/** One PCI device by address. */
export function getDevice(address: string, options: SysfsOptions = {}): PciDevice {
  const a = str('address', address)
  return call(() => native().pciDevice(a, options.root))
}

/** Normalizes a PCI address (`00:03.0` → `0000:00:03.0`); throws `ERR_VFIO_INVALID_ARGUMENT`. */
export function parseAddress(address: string): string {
  const a = str('address', address)
  return call(() => native().parsePciAddress(a))
}

/** Binds a device to vfio-pci (unbinding its driver first); returns the driver it had. */
export function bind(address: string, options: SysfsOptions = {}): { previousDriver?: string; alreadyBound: boolean } {
  const a = str('address', address)
  const r = call(() => native().bindVfio(a, options.root))
  return { previousDriver: r.previousDriver ?? undefined, alreadyBound: r.alreadyBound }
}

/** Unbinds a device from vfio-pci; the kernel (or `restore`) picks its driver. Returns the driver it has now. */
export function unbind(address: string, options: SysfsOptions & { restore?: string } = {}): string | undefined {
  const a = str('address', address)
  return call(() => native().unbindVfio(a, options.restore, options.root)) ?? undefined
}
