import test from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sysfs } from '../ts/index'
import { throwsCode } from './helpers'

/** A fake sysfs with edu (bound to vfio-pci, group 1) and a SATA controller (ahci) sharing group 2 with a NIC. */
function fakeSysfs(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-sysfs-'))
  const dev = (addr: string, ids: Record<string, string>, group: number, driver?: string) => {
    const dir = path.join(root, 'devices/pci0000:00', addr)
    fs.mkdirSync(dir, { recursive: true })
    for (const [k, v] of Object.entries(ids)) fs.writeFileSync(path.join(dir, k), `${v}\n`)
    fs.writeFileSync(path.join(dir, 'driver_override'), '(null)\n')
    fs.writeFileSync(path.join(dir, 'numa_node'), '-1\n')
    fs.mkdirSync(path.join(root, 'bus/pci/devices'), { recursive: true })
    fs.symlinkSync(`../../../devices/pci0000:00/${addr}`, path.join(root, 'bus/pci/devices', addr))
    const g = path.join(root, 'kernel/iommu_groups', String(group), 'devices')
    fs.mkdirSync(g, { recursive: true })
    fs.symlinkSync(`../../../../devices/pci0000:00/${addr}`, path.join(g, addr))
    fs.symlinkSync(`../../../kernel/iommu_groups/${group}`, path.join(dir, 'iommu_group'))
    if (driver) {
      fs.mkdirSync(path.join(root, 'bus/pci/drivers', driver), { recursive: true })
      fs.symlinkSync(`../../../bus/pci/drivers/${driver}`, path.join(dir, 'driver'))
    }
  }
  const ids = (vendor: string, device: string, cls: string) => ({
    vendor,
    device,
    class: cls,
    revision: '0x10',
    subsystem_vendor: '0x1af4',
    subsystem_device: '0x1100',
  })
  dev('0000:00:03.0', ids('0x1234', '0x11e8', '0x00ff00'), 1, 'vfio-pci')
  dev('0000:00:1f.2', ids('0x8086', '0x2922', '0x010601'), 2, 'ahci')
  dev('0000:00:1f.3', ids('0x8086', '0x2930', '0x0c0500'), 2, 'vfio-pci')
  fs.writeFileSync(path.join(root, 'bus/pci/drivers_probe'), '')
  return root
}

test('listDevices reads ids, drivers, groups and usability', (t) => {
  const root = fakeSysfs()
  const devices = sysfs.listDevices({ root })
  t.deepEqual(
    devices.map((d) => d.address),
    ['0000:00:03.0', '0000:00:1f.2', '0000:00:1f.3'],
  )
  const edu = devices[0]
  t.is(edu.vendor, 0x1234)
  t.is(edu.device, 0x11e8)
  t.is(edu.class, 0x00ff00)
  t.is(edu.revision, 0x10)
  t.is(edu.subsystemVendor, 0x1af4)
  t.is(edu.driver, 'vfio-pci')
  t.is(edu.iommuGroup, 1)
  t.deepEqual(edu.groupMembers, [])
  t.true(edu.vfioUsable)
  const smbus = devices[2]
  t.deepEqual(smbus.groupMembers, ['0000:00:1f.2'])
  t.false(smbus.vfioUsable, 'its group has a device bound to ahci')
  t.is(sysfs.getDevice('00:1f.2', { root }).driver, 'ahci')
})

test('malformed addresses are refused before touching sysfs', (t) => {
  for (const bad of ['', '0000:00:03', '0000:00:20.0', '0000:00:03.8', '00:03.0/../x', ' 00:03.0', '../../etc', '0000:00:03.0\n']) {
    if (bad === '') throwsCode(t, () => sysfs.parseAddress(bad), 'ERR_VFIO_INVALID_ARGUMENT')
    else throwsCode(t, () => sysfs.bind(bad), 'ERR_VFIO_INVALID_ARGUMENT')
  }
  t.is(sysfs.parseAddress('00:03.0'), '0000:00:03.0')
  t.is(sysfs.parseAddress('0000:0A:1F.7'), '0000:0a:1f.7')
})

test('bind refuses without the vfio-pci driver loaded, before writing anything', (t) => {
  const root = fakeSysfs()
  fs.rmSync(path.join(root, 'bus/pci/drivers/vfio-pci'), { recursive: true })
  throwsCode(t, () => sysfs.bind('0000:00:1f.2', { root }), 'ERR_VFIO_UNSUPPORTED')
  t.is(fs.readFileSync(path.join(root, 'bus/pci/drivers_probe'), 'utf8'), '')
})

test('bind of a device already on vfio-pci is a no-op', (t) => {
  const root = fakeSysfs()
  t.deepEqual(sysfs.bind('0000:00:03.0', { root }), { previousDriver: undefined, alreadyBound: true })
})

test('a device that does not exist is ERR_VFIO_NOT_FOUND', (t) => {
  const root = fakeSysfs()
  throwsCode(t, () => sysfs.getDevice('0000:00:09.0', { root }), 'ERR_VFIO_NOT_FOUND')
})

test('the Promise variants give the same answers off the event loop, and reject with codes', async (t) => {
  const root = fakeSysfs()
  t.deepEqual(await sysfs.listDevicesAsync({ root }), sysfs.listDevices({ root }))
  const bound = await sysfs.bindAsync('00:03.0', { root })
  t.deepEqual(bound, { previousDriver: undefined, alreadyBound: true })
  // Errors are made back on the JS thread, with all their properties.
  const missing = (await t.throwsAsync(sysfs.bindAsync('0000:00:09.0', { root }))) as Error & { code?: string; path?: string }
  t.is(missing.code, 'ERR_VFIO_NOT_FOUND')
  t.truthy(missing.path)
  const other = (await t.throwsAsync(sysfs.unbindAsync('0000:00:1f.2', { root }))) as Error & { code?: string }
  t.is(other.code, 'ERR_VFIO_INVALID_ARGUMENT', 'bound to ahci: nothing is changed')
  // Argument errors reject too (they never throw synchronously from an async API).
  const bad = sysfs.bindAsync(5 as never)
  t.true(bad instanceof Promise)
  t.is(((await t.throwsAsync(bad)) as Error & { code?: string }).code, 'ERR_VFIO_INVALID_ARGUMENT')
  t.is(((await t.throwsAsync(sysfs.listDevicesAsync(null as never))) as Error & { code?: string }).code, 'ERR_VFIO_INVALID_ARGUMENT')
})
