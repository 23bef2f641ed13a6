/**
 * PCI hot reset against the real kernel: which devices of the guest can be reset by
 * slot or bus, what the kernel lists as affected, and what a secondary bus reset
 * changes on the hot-pluggable edu behind the root port 00:1f.1 (and what it keeps).
 */
import test from 'ava'
import { once } from 'node:events'
import fs from 'node:fs'
import { Container, ErrorCode, PciConfig, RegionIndex, sysfs, type Device, type InterruptEvent, type Interrupts, type MappedRegion } from '../../ts/index'
import { code, EDU, enableBusMaster, heldGroups, NVME, REG, newContainer } from './devices'
import { Qmp } from './qmp'

const HOT = process.env.VFIO_GUEST_HOTPLUG_ADDR ?? ''
const HOT_ID = process.env.VFIO_GUEST_HOTPLUG_ID ?? ''
/** The interrupt status bit of the PCI status register: the device asserts INTx. */
const STATUS_INTERRUPT = 0x08
const PCI_STATUS = 0x06
/** edu's factorial register keeps its last result; 5! = 120. */
const FACTORIAL_OF_5 = 120

test.before(() => {
  if (process.env.VFIO_GUEST !== '1' || !fs.existsSync('/dev/vfio/vfio')) {
    throw new Error('the guest suite needs the QEMU guest: run `npm run test:guest`')
  }
  if (!HOT || !HOT_ID) throw new Error('guest/run.sh exports VFIO_GUEST_HOTPLUG_ADDR and VFIO_GUEST_HOTPLUG_ID')
  sysfs.bind(EDU)
  sysfs.bind(NVME)
  sysfs.bind(HOT)
})

/** edu's factorial of `n`, computed by the device (polling its status register). */
async function factorial(bar: MappedRegion, n: number): Promise<number> {
  bar.writeU32(REG.FACTORIAL, n)
  const until = Date.now() + 5000
  while (bar.readU32(REG.STATUS) & 0x1 && Date.now() < until) await new Promise((r) => setTimeout(r, 5))
  return bar.readU32(REG.FACTORIAL)
}

/** Has the edu raise interrupt `bit`, waits for it on `irq`, and acknowledges it in the device. */
async function raiseAndWait(bar: MappedRegion, irq: Interrupts, bit: number): Promise<InterruptEvent> {
  const next = irq.next({ signal: AbortSignal.timeout(5000) })
  bar.writeU32(REG.IRQ_RAISE, bit)
  const event = await next
  bar.writeU32(REG.IRQ_ACK, bit)
  return event
}

function status(d: Device): number {
  return d.config.readU16(PCI_STATUS)
}

for (const [name, address] of [
  ['edu', EDU],
  ['NVMe', NVME],
] as const) {
  test.serial(`the ${name} on the root bus cannot be hot reset: ERR_VFIO_UNSUPPORTED with ENODEV and what to do`, async (t) => {
    using c = newContainer()
    using d = c.openDevice(address)
    for (const call of [() => d.hotResetInfo(), () => d.hotReset()]) {
      const err = code(t, call, ErrorCode.UNSUPPORTED) as Error & { errno?: number; syscall?: string }
      t.is(err.errno, 19, 'ENODEV')
      t.is(err.syscall, 'VFIO_DEVICE_GET_PCI_HOT_RESET_INFO')
      t.regex(err.message, new RegExp(address.replace(/\./g, '\\.')))
      t.regex(err.message, /root bus/)
      t.regex(err.message, /reset\(\)/)
    }
    const rejected = (await t.throwsAsync(d.hotResetAsync())) as Error & { code?: string }
    t.is(rejected.code, ErrorCode.UNSUPPORTED, 'the pool thread reports the same coded error')
    t.is(d.regionRead(RegionIndex.CONFIG, 0, 2).readUInt16LE(0), address === EDU ? 0x1234 : 0x1b36, 'still usable')
    t.log(`${address}: canReset=${d.info.canReset}`)
  })
}

test.serial('the edu behind the root port: the info lists it alone, with its IOMMU group', (t) => {
  using c = newContainer()
  using d = c.openDevice(HOT)
  const group = sysfs.getDevice(HOT).iommuGroup
  t.is(typeof group, 'number')
  t.deepEqual(d.hotResetInfo(), [{ address: HOT, group }])
  t.deepEqual(c.groupIds(), heldGroups([group ?? -1]), 'the info opens no group')
  t.log(`${HOT}: hotResetInfo() = ${JSON.stringify(d.hotResetInfo())}`)
})

test.serial('a secondary bus reset clears the INTx the edu asserts; edu keeps its own registers; INTx works after it', async (t) => {
  using c = newContainer()
  using d = c.openDevice(HOT)
  using bar = d.regions[RegionIndex.BAR0].map()
  t.is(await factorial(bar, 5), FACTORIAL_OF_5)
  using intx = d.enableIntx()
  const raised = intx.next({ signal: AbortSignal.timeout(5000) })
  bar.writeU32(REG.IRQ_RAISE, 0x1)
  t.deepEqual(await raised, { vector: 0, count: 1 })
  // Not acknowledged: the device keeps INTx asserted (vfio-pci masked it).
  t.is(bar.readU32(REG.IRQ_STATUS), 0x1)
  t.is(status(d) & STATUS_INTERRUPT, STATUS_INTERRUPT, 'INTx asserted before the reset')
  const command = d.config.readU16(PciConfig.COMMAND)
  const started = process.hrtime.bigint()
  const group = sysfs.getDevice(HOT).iommuGroup
  t.deepEqual(d.hotReset(), [{ address: HOT, group }])
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  // The reset deasserted the line; the PCI core wrote the command register back.
  t.is(status(d) & STATUS_INTERRUPT, 0, 'the bus reset deasserted INTx')
  t.is(d.config.readU16(PciConfig.COMMAND), command, 'the command register is restored')
  // QEMU's edu has no reset handler of its own: its registers survive a bus reset.
  t.is(bar.readU32(REG.IRQ_STATUS), 0x1)
  t.is(bar.readU32(REG.FACTORIAL), FACTORIAL_OF_5)
  t.is(bar.readU32(REG.ID), 0x010000ed, 'the mapped BAR still reads')
  bar.writeU32(REG.IRQ_ACK, 0x1)
  intx.unmask()
  // The same Interrupts still owns INTx and receives it.
  t.deepEqual(await raiseAndWait(bar, intx, 0x2), { vector: 0, count: 1 })
  intx.unmask()
  t.log(`hotReset took ${ms.toFixed(0)} ms; command register ${command.toString(16)}`)
})

test.serial('after a hot reset MSI is still enabled and delivered to the same Interrupts (hotResetAsync)', async (t) => {
  using c = newContainer()
  using d = c.openDevice(HOT)
  enableBusMaster(d)
  using bar = d.regions[RegionIndex.BAR0].map()
  using msi = d.enableMsi(1)
  t.is((await raiseAndWait(bar, msi, 0x4)).vector, 0)
  const group = sysfs.getDevice(HOT).iommuGroup
  t.deepEqual(await d.hotResetAsync(), [{ address: HOT, group }])
  t.is(d.config.readU16(PciConfig.COMMAND) & PciConfig.COMMAND_BUS_MASTER, PciConfig.COMMAND_BUS_MASTER, 'bus mastering restored')
  code(t, () => d.enableMsi(1), ErrorCode.BUSY) // the claim is still held
  t.is((await raiseAndWait(bar, msi, 0x8)).vector, 0)
})

test.serial("after a hot reset the kernel's device request still arrives as 'request'", async (t) => {
  using qmp = await Qmp.open()
  const c = newContainer()
  const d = c.openDevice(HOT)
  // Armed (by the listener) before the reset, which must leave the trigger in place.
  const requested = once(d, 'request', { signal: AbortSignal.timeout(30_000) }) as Promise<[{ count: number }]>
  t.true(d.watchesRequests)
  d.hotReset()
  const deleted = qmp.waitEvent('DEVICE_DELETED', (e) => e.data?.device === HOT_ID, 60_000)
  await qmp.qmp('device_del', { id: HOT_ID })
  const [request] = await requested
  t.true(request.count >= 1)
  d.close()
  c.close()
  await deleted
  // Put it back for whoever comes next.
  await qmp.qmp('device_add', { driver: 'edu', id: HOT_ID, bus: 'hotport' })
  // Its sysfs directory appears before its IOMMU group does: vfio-pci's probe fails
  // without one (seen once on 6.12 iommufd: "bound to no driver after probing").
  const back = Date.now() + 10_000
  while (!fs.existsSync(`/sys/bus/pci/devices/${HOT}/iommu_group`) && Date.now() < back) await new Promise((r) => setTimeout(r, 50))
  t.is(sysfs.getDevice(HOT).device, 0x11e8)
  sysfs.bind(HOT)
})
