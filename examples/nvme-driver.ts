/**
 * A user-mode NVMe driver, written only against the public API of vfio-ioctls: it
 * identifies the controller and namespace 1, creates one I/O queue pair with its own
 * MSI-X vector, writes a pattern (4 KiB and 16 KiB transfers), reads it back and
 * compares, then deletes the queues and shuts the controller down.
 *
 *   node --import tsx examples/nvme-driver.ts [--iommu MODE] [address] [serial]
 *
 * MODE is the IOMMU backend: `type1` (the default, /dev/vfio/vfio), `iommufd-compat`,
 * `iommufd` (/dev/iommu and the device's cdev) or `auto`; the driver is the same for all.
 *
 * Needs VFIO and an NVMe controller: `guest/run.sh -- node --import tsx examples/nvme-driver.ts`
 * (the project's QEMU guest has one at 0000:00:04.0, serial "deadbeef", on a scratch
 * 64 MiB drive). It WRITES to the first LBAs of namespace 1, so it refuses to run unless
 * the controller's serial is `serial` (default "deadbeef"). Exits 0 when every check
 * passes, 1 on a failure.
 *
 * NVMe in brief (NVM Express Base Specification 1.4, section 3): BAR0 holds the
 * controller registers; commands are 64-byte entries in submission queues (SQ) in host
 * memory, completions 16-byte entries in completion queues (CQ). The host writes an SQ
 * entry and then the SQ's tail doorbell; the controller writes a CQ entry with a phase
 * tag that flips on every pass through the queue, and signals the CQ's interrupt; the
 * host consumes entries whose phase is the one it expects, then writes the CQ's head
 * doorbell. Queue 0 is the admin queue, set up through AQA/ASQ/ACQ; I/O queues are
 * created by admin commands. Data is described by PRPs: PRP1 is the first (possibly
 * offset) page, PRP2 the second page, or, for a transfer over more than two pages, the
 * address of a list of the remaining page addresses.
 */
import { parseArgs } from 'node:util'
import { barrier, Container, ErrorCode, IrqIndex, pageSize, RegionIndex, sysfs, VfioError, type DmaBuffer, type IommuBackend, type Interrupts, type MappedRegion } from '..'

const NVME_CLASS = 0x010802 // mass storage, non-volatile memory, NVM Express
const REG = { CAP: 0x00, VS: 0x08, CC: 0x14, CSTS: 0x1c, AQA: 0x24, ASQ: 0x28, ACQ: 0x30, DOORBELLS: 0x1000 }
const CC = { EN: 1 << 0, CSS_NVM: 0 << 4, MPS_4K: 0 << 7, AMS_RR: 0 << 11, SHN_NORMAL: 1 << 14, SHN_MASK: 3 << 14, IOSQES: 6 << 16, IOCQES: 4 << 20 }
const CSTS = { RDY: 1 << 0, CFS: 1 << 1, SHST_MASK: 3 << 2, SHST_COMPLETE: 2 << 2 }
const ADMIN = { DELETE_SQ: 0x00, CREATE_SQ: 0x01, DELETE_CQ: 0x04, CREATE_CQ: 0x05, IDENTIFY: 0x06 }
const NVM = { FLUSH: 0x00, WRITE: 0x01, READ: 0x02 }
const CNS = { NAMESPACE: 0x00, CONTROLLER: 0x01 }
const SQE_SIZE = 64 // 2^CC.IOSQES
const CQE_SIZE = 16 // 2^CC.IOCQES
const PAGE = 4096 // CC.MPS = 0: the controller's memory page is 4 KiB
// Small queues, so both wrap and the phase tag flips within the run: the admin queue
// takes 6 commands, the I/O queue 5.
const ADMIN_ENTRIES = 4
const IO_ENTRIES = 4
const IO_QID = 1
const ADMIN_VECTOR = 0 // the admin CQ always signals MSI-X vector 0
const IO_VECTOR = 1
const NSID = 1
const COMMAND_TIMEOUT_MS = 5000

let step = 0
const say = (what: string): void => console.log(`[${++step}] ${what}`)
const detail = (what: string): void => console.log(`    ${what}`)
const hex = (n: number | bigint): string => `0x${n.toString(16)}`

class CheckFailed extends Error {}

function check(ok: boolean, what: string): void {
  if (!ok) throw new CheckFailed(what)
  detail(`ok: ${what}`)
}

/**
 * Waits until `(CSTS & mask) === want` on the library's register watcher (the event loop
 * goes on meanwhile); returns the milliseconds it took. A timeout says whether the
 * controller reported a fatal status (CSTS.CFS).
 */
async function waitCsts(bar: MappedRegion, mask: number, want: number, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now()
  try {
    await bar.waitU32(REG.CSTS, { mask, value: want, timeout: timeoutMs })
  } catch (err) {
    if (!(err instanceof VfioError && err.code === ErrorCode.TIMEOUT)) throw err
    const fatal = (bar.readU32(REG.CSTS) & CSTS.CFS) !== 0 ? ' (the controller reports a fatal status, CSTS.CFS)' : ''
    throw new CheckFailed(`waiting for ${what}: ${err.message}${fatal}`)
  }
  return performance.now() - start
}

/** DMA memory for `size` bytes, in whole pages; the library picks a free IOVA. */
function allocateDma(container: Container, size: number): DmaBuffer {
  const page = pageSize()
  return container.allocateDma(Math.ceil(size / page) * page)
}

/** Byte `i` of the test pattern of transfer `seed`: not constant per page or per LBA. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length)
  for (let i = 0; i < length; i++) b[i] = (i * 31 + (i >>> 9) * 7 + seed * 101) & 0xff
  return b
}

function fill(dma: DmaBuffer, offset: number, data: Buffer): void {
  if (dma.hasView) data.copy(dma.view, offset)
  else dma.write(offset, data)
}

function contents(dma: DmaBuffer, offset: number, length: number): Buffer {
  return dma.hasView ? dma.view.subarray(offset, offset + length) : dma.read(offset, length)
}

/** An ASCII field of an identify structure, trailing spaces (and NULs) removed. */
function ascii(data: Buffer, offset: number, length: number): string {
  return data.toString('latin1', offset, offset + length).replace(/[\s\0]+$/, '')
}

/**
 * PRP1 and PRP2 for `length` bytes at `offset` of `buf` (NVMe PRP rules, 4 KiB pages):
 * one page: PRP2 unused (0); two pages: PRP2 is the second page; more: PRP2 points to a
 * list (in `list`, one page, so at most 512 entries) of the pages after the first.
 */
function prps(buf: DmaBuffer, offset: number, length: number, list: DmaBuffer): { prp1: bigint; prp2: bigint; pages: number } {
  if (offset % 4 !== 0 || length <= 0 || offset + length > buf.size) throw new CheckFailed(`bad transfer ${offset}+${length} in a ${buf.size}-byte buffer`)
  const prp1 = buf.iova + BigInt(offset)
  const firstPageEnd = (Math.floor(offset / PAGE) + 1) * PAGE
  const rest: bigint[] = []
  for (let at = firstPageEnd; at < offset + length; at += PAGE) rest.push(buf.iova + BigInt(at))
  const pages = rest.length + 1
  if (rest.length === 0) return { prp1, prp2: 0n, pages }
  if (rest.length === 1) return { prp1, prp2: rest[0] ?? 0n, pages }
  if (rest.length > PAGE / 8) throw new CheckFailed(`${length} bytes need a chained PRP list; this driver has one list page`)
  rest.forEach((page, i) => list.writeU64(i * 8, page))
  return { prp1, prp2: list.iova, pages }
}

/** The fields of a command this driver sets (everything else is 0). */
interface Command {
  opcode: number
  nsid?: number
  prp1?: bigint
  prp2?: bigint
  cdw10?: number
  cdw11?: number
  cdw12?: number
}

/** A completion queue entry, decoded. */
interface Completion {
  result: number // DW0, command specific
  sqHead: number
  sqid: number
  cid: number
  status: number // DW3 bits 31:17: SC in 7:0, SCT in 10:8, CRD, M, DNR
}

/**
 * One submission queue and its completion queue, in DMA memory, with their doorbells.
 * Commands run one at a time: submit, ring the SQ tail, wait for the CQ's MSI-X vector,
 * check the phase tag, consume the entry, ring the CQ head.
 */
class QueuePair {
  #sqTail = 0
  #cqHead = 0
  #phase = 1 // the controller writes phase 1 on the first pass (the queue memory starts zeroed)
  #cid = 0
  /** Doorbell to interrupt, per command, in ms. */
  readonly latencies: number[] = []
  readonly name: string
  readonly qid: number
  readonly entries: number
  readonly sq: DmaBuffer
  readonly cq: DmaBuffer
  readonly vector: number
  readonly bar: MappedRegion
  readonly irq: Interrupts
  readonly stride: number

  constructor(q: { name: string; qid: number; entries: number; sq: DmaBuffer; cq: DmaBuffer; vector: number; bar: MappedRegion; irq: Interrupts; stride: number }) {
    ;({ name: this.name, qid: this.qid, entries: this.entries, sq: this.sq, cq: this.cq, vector: this.vector, bar: this.bar, irq: this.irq, stride: this.stride } = q)
  }

  get sqDoorbell(): number {
    return REG.DOORBELLS + 2 * this.qid * this.stride
  }

  get cqDoorbell(): number {
    return REG.DOORBELLS + (2 * this.qid + 1) * this.stride
  }

  /** Runs one command; resolves with its completion once its status is success. */
  async run(what: string, cmd: Command): Promise<Completion> {
    const cid = this.#cid
    this.#cid = (this.#cid + 1) & 0xffff
    const sqe = Buffer.alloc(SQE_SIZE)
    sqe.writeUInt32LE(((cid & 0xffff) << 16) | (cmd.opcode & 0xff), 0) // CDW0: CID, PSDT 0 (PRPs), FUSE 0, opcode
    sqe.writeUInt32LE(cmd.nsid ?? 0, 4)
    sqe.writeBigUInt64LE(cmd.prp1 ?? 0n, 24)
    sqe.writeBigUInt64LE(cmd.prp2 ?? 0n, 32)
    sqe.writeUInt32LE((cmd.cdw10 ?? 0) >>> 0, 40)
    sqe.writeUInt32LE((cmd.cdw11 ?? 0) >>> 0, 44)
    sqe.writeUInt32LE((cmd.cdw12 ?? 0) >>> 0, 48)
    this.sq.write(this.#sqTail * SQE_SIZE, sqe)
    this.#sqTail = (this.#sqTail + 1) % this.entries
    const stale = this.irq.takePending(this.vector) // nothing is outstanding: any wake-up now is old
    if (stale > 0) detail(`(dropped ${stale} stale wake-up(s) on vector ${this.vector})`)
    const signal = AbortSignal.timeout(COMMAND_TIMEOUT_MS)
    let wait = this.irq.next({ vector: this.vector, signal })
    const t0 = performance.now()
    // No barrier between the entry and the doorbell: an MMIO write of a MappedRegion comes
    // after every earlier store to memory, as Linux's writel (aarch64: dmb oshst first).
    this.bar.writeU32(this.sqDoorbell, this.#sqTail)
    const entry = this.#cqHead * CQE_SIZE
    let dw3 = 0
    for (let wakeups = 0; ; wakeups++) {
      try {
        await wait
      } catch (err) {
        if (err instanceof VfioError && err.code === ErrorCode.ABORTED) {
          // The completion may be there with no interrupt: the vector was not live when the
          // controller created the queue (MSI-X enabled too late).
          const done = ((this.cq.readU32(entry + 12) >>> 16) & 1) === this.#phase
          const why = done ? '; the completion entry is there: was MSI-X enabled before the queue was created (before CC.EN for the admin queue)?' : ''
          throw new CheckFailed(`${this.name} queue: no interrupt on vector ${this.vector} within ${COMMAND_TIMEOUT_MS} ms for ${what}: ${err.message}${why}`)
        }
        throw err
      }
      dw3 = this.cq.readU32(entry + 12)
      if (((dw3 >>> 16) & 1) === this.#phase) break
      // A wake-up without a new entry (one raised before takePending above): wait on.
      detail(`(wake-up ${wakeups + 1} on vector ${this.vector} without a new completion entry)`)
      wait = this.irq.next({ vector: this.vector, signal })
    }
    const ms = performance.now() - t0
    const phase = this.#phase
    // The rest of the entry is read after its phase tag: dmaRmb keeps those loads from
    // passing it (a compiler barrier on x86-64, dmb oshld on aarch64).
    barrier.dmaRmb()
    const dw2 = this.cq.readU32(entry + 8)
    const c: Completion = { result: this.cq.readU32(entry), sqHead: dw2 & 0xffff, sqid: dw2 >>> 16, cid: dw3 & 0xffff, status: dw3 >>> 17 }
    this.#cqHead = (this.#cqHead + 1) % this.entries
    if (this.#cqHead === 0) this.#phase ^= 1
    this.bar.writeU32(this.cqDoorbell, this.#cqHead) // the entry is ours: hand the slot back
    this.latencies.push(ms)
    if (c.cid !== cid || c.sqid !== this.qid) throw new CheckFailed(`${what}: completion for CID ${c.cid} on SQ ${c.sqid}, expected CID ${cid} on SQ ${this.qid}`)
    if (c.status !== 0) {
      const sc = c.status & 0xff
      const sct = (c.status >>> 8) & 0x7
      throw new CheckFailed(`${what} failed: status code type ${sct}, status code ${hex(sc)}${(c.status >>> 14) & 1 ? ' (do not retry)' : ''}`)
    }
    if (c.sqHead !== this.#sqTail) throw new CheckFailed(`${what}: SQ head ${c.sqHead} in the completion, expected ${this.#sqTail}`)
    detail(`ok: ${what} (CID ${cid}, ${ms.toFixed(2)} ms, CQ entry ${entry / CQE_SIZE}, phase ${phase})`)
    return c
  }
}

function findNvme(): string {
  const nvme = sysfs.listDevices().find((d) => d.class === NVME_CLASS)
  if (!nvme) throw new CheckFailed(`no NVMe controller (class ${hex(NVME_CLASS)}) in sysfs; pass its address, or run in the guest`)
  return nvme.address
}

/** Shutdown notification (CC.SHN), then CC.EN=0: what the driver owes the controller before leaving. */
async function shutdown(bar: MappedRegion, timeoutMs: number): Promise<{ shutdownMs: number; disableMs: number }> {
  const cc = bar.readU32(REG.CC)
  bar.writeU32(REG.CC, (cc & ~CC.SHN_MASK) | CC.SHN_NORMAL)
  const shutdownMs = await waitCsts(bar, CSTS.SHST_MASK, CSTS.SHST_COMPLETE, timeoutMs, 'CSTS.SHST = shutdown complete')
  bar.writeU32(REG.CC, bar.readU32(REG.CC) & ~(CC.EN | CC.SHN_MASK))
  const disableMs = await waitCsts(bar, CSTS.RDY, 0, timeoutMs, 'CSTS.RDY = 0')
  return { shutdownMs, disableMs }
}

async function run(address: string, expectedSerial: string, backend: IommuBackend | 'auto'): Promise<void> {
  say(`bind ${address} to vfio-pci`)
  const pci = sysfs.getDevice(address)
  detail(`${pci.address} ${pci.vendor.toString(16).padStart(4, '0')}:${pci.device.toString(16).padStart(4, '0')} class ${pci.class.toString(16).padStart(6, '0')} IOMMU group ${pci.iommuGroup ?? '-'} driver ${pci.driver ?? 'none'}`)
  const bound = sysfs.bind(address)
  detail(bound.alreadyBound ? 'already bound to vfio-pci' : `bound (previous driver: ${bound.previousDriver ?? 'none'})`)
  try {
    await drive(address, expectedSerial, backend)
  } finally {
    if (!bound.alreadyBound) {
      // Gives the device back as it was; drive() has closed everything (unbind() refuses
      // a device this process holds).
      say('unbind from vfio-pci (this driver bound it)')
      const now = sysfs.unbind(address, bound.previousDriver !== undefined ? { restore: bound.previousDriver } : {})
      detail(`driver now ${now ?? 'none'}`)
    }
  }
}

async function drive(address: string, expectedSerial: string, backend: IommuBackend | 'auto'): Promise<void> {
  say(`open the container (${backend} IOMMU) and the device; find MSI-X`)
  using container = new Container({ iommu: backend })
  using device = container.openDevice(address)
  detail(`IOMMU backend ${container.iommu}`)
  const msix = device.capabilities().find((c) => c.kind === 'msix')
  if (msix?.kind !== 'msix') throw new CheckFailed('the controller has no MSI-X capability')
  detail(`MSI-X: ${msix.tableSize} vectors, table in BAR${msix.tableBir} at ${hex(msix.tableOffset)}, PBA in BAR${msix.pbaBir} at ${hex(msix.pbaOffset)}; VFIO offers ${device.irqs[IrqIndex.MSIX].count}`)
  check(msix.tableSize > IO_VECTOR && device.irqs[IrqIndex.MSIX].count > IO_VECTOR, `at least ${IO_VECTOR + 1} MSI-X vectors (admin and I/O)`)
  const iommu = container.iommuInfo()
  detail(`IOMMU page sizes ${hex(iommu.iovaPgsizes)}; usable IOVA ranges ${iommu.iovaRanges.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(', ')}`)
  check(pageSize() === PAGE, `the host page is ${PAGE} bytes (this driver sets CC.MPS for 4 KiB)`)

  say('map BAR0; read CAP and VS')
  device.setBusMaster(true) // DMA and MSI-X need it; it also turns memory decoding on for the BAR
  using bar = device.regions[RegionIndex.BAR0].map()
  const cap = bar.readU64(REG.CAP)
  const mqes = Number(cap & 0xffffn) + 1 // 0-based in the register
  const timeoutMs = Math.max(Number((cap >> 24n) & 0xffn) * 500, 500) // CAP.TO: 500 ms units
  const stride = 4 << Number((cap >> 32n) & 0xfn) // CAP.DSTRD
  const css = Number((cap >> 37n) & 0xffn)
  const mpsmin = Number((cap >> 48n) & 0xfn)
  const mpsmax = Number((cap >> 52n) & 0xfn)
  const vs = bar.readU32(REG.VS)
  detail(`CAP ${hex(cap)}: MQES ${mqes} entries, CQR ${(cap >> 16n) & 1n}, TO ${timeoutMs} ms, doorbell stride ${stride} bytes, CSS ${hex(css)}, page ${4 << (10 + mpsmin)}..${4 << (10 + mpsmax)} bytes`)
  detail(`VS ${hex(vs)}: NVMe ${vs >>> 16}.${(vs >>> 8) & 0xff}.${vs & 0xff}`)
  check(vs >= 0x10000, 'version 1.0 or later')
  check((css & 1) !== 0, 'the NVM command set is supported (CAP.CSS bit 0)')
  check(mpsmin === 0, 'a 4 KiB memory page is supported (CAP.MPSMIN = 0)')
  check(mqes >= Math.max(ADMIN_ENTRIES, IO_ENTRIES), `queues of ${Math.max(ADMIN_ENTRIES, IO_ENTRIES)} entries fit MQES`)

  say('disable the controller (CC.EN = 0, wait for CSTS.RDY = 0)')
  bar.writeU32(REG.CC, bar.readU32(REG.CC) & ~CC.EN)
  const offMs = await waitCsts(bar, CSTS.RDY, 0, timeoutMs, 'CSTS.RDY = 0')
  check(true, `disabled in ${offMs.toFixed(2)} ms`)

  say('DMA memory: admin and I/O queues, identify data, PRP list, data buffers')
  // Writes come from pages 0 (4 KiB) and 1-4 (16 KiB) of one buffer; reads go to offset
  // 0x200 of another (4 KiB across a page boundary, pages 0-1) and to 0x2200 (16 KiB,
  // pages 2-6), so each transfer shape of the PRP rules is used once.
  using asq = allocateDma(container, ADMIN_ENTRIES * SQE_SIZE)
  using acq = allocateDma(container, ADMIN_ENTRIES * CQE_SIZE)
  using iosq = allocateDma(container, IO_ENTRIES * SQE_SIZE)
  using iocq = allocateDma(container, IO_ENTRIES * CQE_SIZE)
  using identify = allocateDma(container, PAGE)
  using prpList = allocateDma(container, PAGE)
  using wbuf = allocateDma(container, 5 * PAGE)
  using rbuf = allocateDma(container, 7 * PAGE)
  detail(`admin SQ ${hex(asq.iova)} CQ ${hex(acq.iova)}, I/O SQ ${hex(iosq.iova)} CQ ${hex(iocq.iova)}, identify ${hex(identify.iova)}, PRP list ${hex(prpList.iova)}, write ${hex(wbuf.iova)}, read ${hex(rbuf.iova)}; zero-copy views: ${wbuf.hasView ? 'yes' : 'no'}`)

  say(`enable MSI-X (${IO_VECTOR + 1} vectors) before the controller`)
  // QEMU's NVMe (7.2) marks a CQ's vector in use only if MSI-X is on when the CQ is
  // created, the admin CQ included (at CC.EN = 1); Linux's nvme driver also enables
  // MSI-X first. Vectors enabled later would never fire.
  using irq = device.enableMsix(IO_VECTOR + 1)
  check(irq.count === IO_VECTOR + 1, `MSI-X vectors ${irq.start}..${irq.start + irq.count - 1} enabled`)

  say(`admin queues (${ADMIN_ENTRIES} entries) and enable (CC.EN = 1, wait for CSTS.RDY = 1, at most CAP.TO)`)
  bar.writeU32(REG.AQA, ((ADMIN_ENTRIES - 1) << 16) | (ADMIN_ENTRIES - 1)) // ACQS, ASQS: 0-based
  bar.writeU64(REG.ASQ, asq.iova)
  bar.writeU64(REG.ACQ, acq.iova)
  bar.writeU32(REG.CC, CC.IOCQES | CC.IOSQES | CC.AMS_RR | CC.MPS_4K | CC.CSS_NVM | CC.EN)
  let enabled = true
  try {
    const onMs = await waitCsts(bar, CSTS.RDY, CSTS.RDY, timeoutMs, 'CSTS.RDY = 1')
    check(true, `ready in ${onMs.toFixed(2)} ms (CC ${hex(bar.readU32(REG.CC))})`)
    const admin = new QueuePair({ name: 'admin', qid: 0, entries: ADMIN_ENTRIES, sq: asq, cq: acq, vector: ADMIN_VECTOR, bar, irq, stride })

    say('Identify Controller')
    await admin.run('Identify Controller', { opcode: ADMIN.IDENTIFY, prp1: identify.iova, cdw10: CNS.CONTROLLER })
    const ctrl = identify.read(0, PAGE)
    const serial = ascii(ctrl, 4, 20)
    const model = ascii(ctrl, 24, 40)
    const firmware = ascii(ctrl, 64, 8)
    const mdts = ctrl[77] ?? 0 // max transfer: 2^MDTS minimum pages, 0 = no limit
    const sqes = ctrl[512] ?? 0
    const cqes = ctrl[513] ?? 0
    const nn = ctrl.readUInt32LE(516)
    detail(`model "${model}", serial "${serial}", firmware "${firmware}", vendor ${hex(ctrl.readUInt16LE(0))}, namespaces ${nn}, MDTS ${mdts ? `${PAGE << mdts} bytes` : 'unlimited'}`)
    check(serial === expectedSerial, `serial is "${expectedSerial}" (this driver writes to the namespace: it runs only on the expected scratch drive)`)
    check((sqes & 0xf) <= 6 && sqes >>> 4 >= 6 && (cqes & 0xf) <= 4 && cqes >>> 4 >= 4, `64-byte SQ and 16-byte CQ entries are allowed (SQES ${hex(sqes)}, CQES ${hex(cqes)})`)
    check(nn >= NSID, `namespace ${NSID} exists`)
    check(mdts === 0 || PAGE << mdts >= 4 * PAGE, 'a 16 KiB transfer is within MDTS')

    say(`Identify Namespace ${NSID}`)
    identify.write(0, Buffer.alloc(PAGE))
    await admin.run('Identify Namespace', { opcode: ADMIN.IDENTIFY, nsid: NSID, prp1: identify.iova, cdw10: CNS.NAMESPACE })
    const ns = identify.read(0, PAGE)
    const nsze = ns.readBigUInt64LE(0)
    const flbas = ns[26] ?? 0
    const lbaf = ns.readUInt32LE(128 + 4 * (flbas & 0xf))
    const lbaSize = 2 ** ((lbaf >>> 16) & 0xff)
    const metadata = lbaf & 0xffff
    detail(`size ${nsze} LBAs of ${lbaSize} bytes (${Number(nsze) * lbaSize / 2 ** 20} MiB), LBA format ${flbas & 0xf} of ${(ns[25] ?? 0) + 1}, metadata ${metadata} bytes`)
    check(nsze > 0n && lbaSize >= 512 && lbaSize <= PAGE && metadata === 0, 'a namespace of 512..4096-byte LBAs without metadata')
    const lbas = (bytes: number): number => bytes / lbaSize
    check(nsze >= BigInt(lbas(5 * PAGE)), 'the namespace holds the test LBAs')

    say(`create I/O CQ ${IO_QID} (${IO_ENTRIES} entries, MSI-X vector ${IO_VECTOR}) and I/O SQ ${IO_QID}`)
    const qsize = (IO_ENTRIES - 1) << 16 // 0-based
    await admin.run('Create I/O CQ', { opcode: ADMIN.CREATE_CQ, prp1: iocq.iova, cdw10: qsize | IO_QID, cdw11: (IO_VECTOR << 16) | 0b10 | 0b1 }) // IV, IEN, PC
    await admin.run('Create I/O SQ', { opcode: ADMIN.CREATE_SQ, prp1: iosq.iova, cdw10: qsize | IO_QID, cdw11: (IO_QID << 16) | 0b1 }) // CQID, QPRIO 0, PC
    const io = new QueuePair({ name: 'I/O', qid: IO_QID, entries: IO_ENTRIES, sq: iosq, cq: iocq, vector: IO_VECTOR, bar, irq, stride })
    detail(`doorbells: SQ ${IO_QID} tail at ${hex(io.sqDoorbell)}, CQ ${IO_QID} head at ${hex(io.cqDoorbell)}`)

    // Three transfers that cover the PRP rules: one page (PRP2 unused), a page-sized
    // transfer across a page boundary (PRP2 = second page), 16 KiB (PRP2 = a list).
    const small = pattern(PAGE, 1)
    const large = pattern(4 * PAGE, 2)
    const smallLba = 0
    const largeLba = lbas(PAGE)
    const xfer = async (opcode: number, what: string, buf: DmaBuffer, offset: number, length: number, lba: number): Promise<number> => {
      const p = prps(buf, offset, length, prpList)
      const shape = p.pages === 1 ? 'PRP1 only' : p.pages === 2 ? `PRP2 = second page ${hex(p.prp2)}` : `PRP2 = list at ${hex(p.prp2)} of ${p.pages - 1} pages`
      await io.run(`${what} ${length} bytes at LBA ${lba} from buffer offset ${hex(offset)} (${shape})`, {
        opcode,
        nsid: NSID,
        prp1: p.prp1,
        prp2: p.prp2,
        cdw10: lba, // SLBA, low 32 bits
        cdw11: 0, // SLBA, high 32 bits
        cdw12: lbas(length) - 1, // NLB, 0-based
      })
      return p.pages
    }

    say('write: 4 KiB (one page) and 16 KiB (PRP list)')
    fill(wbuf, 0, small)
    fill(wbuf, PAGE, large)
    check((await xfer(NVM.WRITE, 'Write', wbuf, 0, PAGE, smallLba)) === 1, 'the 4 KiB write took PRP1 alone')
    check((await xfer(NVM.WRITE, 'Write', wbuf, PAGE, 4 * PAGE, largeLba)) === 4, 'the 16 KiB write took a PRP list')
    await io.run('Flush', { opcode: NVM.FLUSH, nsid: NSID })

    say('read back into another buffer: 4 KiB across a page boundary, 16 KiB with a PRP list; compare')
    const crossing = 0x200
    check((await xfer(NVM.READ, 'Read', rbuf, crossing, PAGE, smallLba)) === 2, 'the 4 KiB read at offset 0x200 spans two pages')
    check((await xfer(NVM.READ, 'Read', rbuf, 2 * PAGE + crossing, 4 * PAGE, largeLba)) === 5, 'the 16 KiB read, 0x200 into a page, spans five pages (a list of 4)')
    const compare = (what: string, got: Buffer, want: Buffer): void => {
      const i = got.findIndex((b, k) => b !== want[k])
      if (i >= 0) throw new CheckFailed(`${what}: byte ${i} is ${hex(got[i] ?? 0)}, expected ${hex(want[i] ?? 0)}`)
      check(true, `${what}: ${want.length} bytes identical`)
    }
    compare('4 KiB read-back', contents(rbuf, crossing, PAGE), small)
    compare('16 KiB read-back', contents(rbuf, 2 * PAGE + crossing, 4 * PAGE), large)
    const zero = (offset: number, length: number): boolean => contents(rbuf, offset, length).every((b) => b === 0)
    check(zero(0, crossing) && zero(crossing + PAGE, PAGE) && zero(6 * PAGE + crossing, PAGE - crossing), 'nothing written outside the read transfers')
    const ioMs = io.latencies
    detail(`I/O command latency (doorbell to interrupt): ${ioMs.map((ms) => ms.toFixed(2)).join(', ')} ms; admin ${admin.latencies.map((ms) => ms.toFixed(2)).join(', ')} ms`)

    say(`delete I/O SQ ${IO_QID}, then I/O CQ ${IO_QID}`)
    await admin.run('Delete I/O SQ', { opcode: ADMIN.DELETE_SQ, cdw10: IO_QID })
    await admin.run('Delete I/O CQ', { opcode: ADMIN.DELETE_CQ, cdw10: IO_QID })

    say('shut down (CC.SHN, wait for CSTS.SHST) and disable (CC.EN = 0)')
    const { shutdownMs, disableMs } = await shutdown(bar, timeoutMs)
    enabled = false
    check(true, `shutdown complete in ${shutdownMs.toFixed(2)} ms, disabled in ${disableMs.toFixed(2)} ms`)
  } finally {
    // On a failure, stop the controller before its queues and buffers are unmapped (a
    // device must never DMA into memory that is gone).
    if (enabled) {
      try {
        bar.writeU32(REG.CC, bar.readU32(REG.CC) & ~CC.EN)
      } catch (err) {
        console.error(`    (could not disable the controller: ${(err as Error).message})`)
      }
    }
  }

  say('clean up')
  irq.close()
  device.setBusMaster(false)
  for (const dma of [asq, acq, iosq, iocq, identify, prpList, wbuf, rbuf]) dma.close()
  bar.close()
  check(container.dmaMappings().length === 0, 'no DMA mappings left')
  device.close()
  container.close()
}

async function main(): Promise<number> {
  const t0 = performance.now()
  try {
    const { values, positionals } = parseArgs({ options: { iommu: { type: 'string', default: 'type1' } }, allowPositionals: true })
    const backend = values.iommu
    if (backend !== 'type1' && backend !== 'iommufd-compat' && backend !== 'iommufd' && backend !== 'auto') {
      throw new CheckFailed(`--iommu ${backend}: one of type1, iommufd-compat, iommufd, auto`)
    }
    const address = positionals[0] ? sysfs.parseAddress(positionals[0]) : findNvme()
    const serial = positionals[1] ?? 'deadbeef'
    console.log(`NVMe driver for ${address}`)
    await run(address, serial, backend)
    console.log(`PASS: all checks passed in ${((performance.now() - t0) / 1000).toFixed(2)} s`)
    return 0
  } catch (err) {
    if (err instanceof CheckFailed) console.error(`FAIL: ${err.message}`)
    else if (err instanceof VfioError) console.error(`FAIL: ${err.code}: ${err.message}`)
    else console.error('FAIL:', err)
    return 1
  }
}

// A last-resort deadline: the driver never hangs, whatever the device does.
const deadline = setTimeout(() => {
  console.error('FAIL: the driver did not finish within 120 s')
  process.exit(1)
}, 120_000)
deadline.unref()

main().then((code) => {
  process.exitCode = code
})
