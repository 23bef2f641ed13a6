/**
 * The iommufd backends against the real kernel, whatever `VFIO_TEST_IOMMU` says: edu
 * DMA and MSI through a native `iommufd` container (device cdev) and through
 * `iommufd-compat` (the group flow with `/dev/iommu`). On a kernel without iommufd
 * (Debian's 6.1) it asserts the refusals instead: which it expects follows the kernel
 * release. Run in the QEMU guest (`npm run test:guest`); fails outside it.
 */
import test from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import { Container, ErrorCode, sysfs, type IommuBackend } from '../../ts/index'
import { code, DMA, DMA_LEN, EDU, eduDma, openEdu } from './devices'

/** The running kernel's (major, minor). */
function kernel(): [number, number] {
  const [major, minor] = os.release().split(/[^0-9]/).map(Number)
  return [major ?? 0, minor ?? 0]
}
const [major, minor] = kernel()
/** iommufd came with Linux 6.2 (the 6.12 guest kernel has it, Debian's 6.1 not). */
const hasIommufd = major > 6 || (major === 6 && minor >= 2)

test.before(() => {
  if (process.env.VFIO_GUEST !== '1' || !fs.existsSync('/dev/vfio/vfio')) {
    throw new Error('the guest suite needs the QEMU guest: run `npm run test:guest`')
  }
  sysfs.bind(EDU)
  const driver = sysfs.getDevice(EDU).driver
  if (driver !== 'vfio-pci') throw new Error(`edu is bound to ${driver}, not vfio-pci`)
})

for (const iommu of ['iommufd', 'iommufd-compat'] satisfies IommuBackend[]) {
  test.serial(`${iommu}: edu DMA both ways and MSI (kernel ${os.release()})`, async (t) => {
    if (!hasIommufd) {
      // Debian's 6.1 has no /dev/iommu: a clear NOT_FOUND naming it and what is needed.
      const err = code(t, () => new Container({ iommu }), ErrorCode.NOT_FOUND) as Error & { path?: string; syscall?: string }
      t.is(err.path, '/dev/iommu')
      t.is(err.syscall, 'open')
      t.regex(err.message, /CONFIG_IOMMUFD, Linux 6\.2/)
      t.false(fs.existsSync('/dev/iommu'))
      return
    }
    using e = openEdu(new Container({ iommu }))
    t.is(e.c.iommu, iommu)
    if (iommu === 'iommufd') {
      t.is(typeof e.device.iommufdDevId, 'number')
      t.is(typeof e.c.ioasId, 'number')
      t.deepEqual(e.c.groupIds(), [])
    } else {
      t.is(e.device.iommufdDevId, null)
      t.deepEqual(e.c.groupIds(), [1])
    }
    t.true(e.c.iommuInfo().iovaRanges.length > 0)
    using src = e.c.allocateDma(4096)
    using dst = e.c.allocateDma(4096)
    const pattern = Buffer.from(Array.from({ length: DMA_LEN }, (_, i) => (i * 11 + 5) & 0xff))
    src.write(0, pattern)
    await eduDma(e.bar, src.iova, DMA.BUFFER, false, e.irq)
    await eduDma(e.bar, DMA.BUFFER, dst.iova, true, e.irq)
    t.deepEqual(dst.read(0, DMA_LEN), pattern)
    // MSI on its own: raise, wait, ack.
    const raised = e.irq.next({ signal: AbortSignal.timeout(5000) })
    e.bar.writeU32(0x60, 1)
    await raised
    e.bar.writeU32(0x64, 1)
    t.deepEqual(
      e.c.dmaMappings().map((m) => m.iova),
      [src.iova, dst.iova].sort((a, b) => (a < b ? -1 : 1)),
    )
  })
}

test.serial('auto picks iommufd where the kernel has it and cdevs exist, else type1', (t) => {
  using c = new Container({ iommu: 'auto' })
  const want = fs.existsSync('/dev/iommu') && fs.existsSync('/dev/vfio/devices') ? 'iommufd' : 'type1'
  t.is(c.iommu, want)
  t.true(hasIommufd || want === 'type1', 'auto chose iommufd on a kernel without it')
})
