/** An open VFIO device: info, regions, reset and interrupts. */
import type * as Binding from '../native/binding'
import { IrqIndex } from './constants'
import { call, ErrorCode, VfioError } from './errors'
import { Handle } from './handle'
import { Interrupts } from './interrupts'
import { MappedRegion, Region } from './region'
import { bytes, uint } from './validate'

/** Device-wide info (`VFIO_DEVICE_GET_INFO`) and where it lives. */
export type DeviceInfo = Binding.DeviceInfo
/** One IRQ index (`VFIO_DEVICE_GET_IRQ_INFO`); `count` 0 when not implemented. */
export type IrqInfo = Binding.IrqInfo

/** An open VFIO device. Keeps its container alive; mapped regions and interrupts keep it open. */
export class Device extends Handle<Binding.Device> {
  /** Device-wide info. */
  readonly info: DeviceInfo
  /** Every region, by VFIO index (absent ones included, `present` false). */
  readonly regions: readonly Region[]
  /** Every IRQ index, by index. */
  readonly irqs: readonly IrqInfo[]

  /** @internal */
  constructor(n: Binding.Device) {
    super(n, 'device')
    this.info = Object.freeze(call(() => n.info()))
    this.regions = Object.freeze(call(() => n.regions()).map((r) => new Region(this, r)))
    this.irqs = Object.freeze(call(() => n.irqs()))
  }

  /** The PCI address (name in the group). */
  get name(): string {
    return this.info.name
  }

  /** Region `index`; throws `ERR_VFIO_OUT_OF_RANGE` past the device's regions. */
  region(index: number): Region {
    const i = uint('index', index)
    const r = this.regions[i]
    if (!r) throw new VfioError(ErrorCode.OUT_OF_RANGE, `region index ${i} is past the device's ${this.regions.length} regions`)
    return r
  }

  /** Reads `length` bytes at `offset` of region `index`. */
  regionRead(index: number, offset: number | bigint, length: number): Buffer {
    const i = uint('index', index, 0xffff_ffff)
    const o = uint('offset', offset)
    const n = uint('length', length, 0xffff_ffff)
    return call(() => this.native.regionRead(i, o, n))
  }

  /** Writes `data` at `offset` of region `index`. */
  regionWrite(index: number, offset: number | bigint, data: Uint8Array | ArrayBufferView | ArrayBuffer): void {
    const i = uint('index', index, 0xffff_ffff)
    const o = uint('offset', offset)
    const b = bytes('data', data)
    call(() => this.native.regionWrite(i, o, b))
  }

  /** Maps region `index` (its mmap-able areas). */
  mapRegion(index: number): MappedRegion {
    const i = uint('index', index, 0xffff_ffff)
    return new MappedRegion(call(() => this.native.mapRegion(i)))
  }

  /** Resets the device; `ERR_VFIO_UNSUPPORTED` when it reports no reset method. */
  reset(): void {
    call(() => this.native.reset())
  }

  /** Enables `count` vectors of IRQ `index` from `start`, one eventfd each. */
  enableIrq(index: number, options: { start?: number; count?: number } = {}): Interrupts {
    const i = uint('index', index, 0xffff_ffff)
    const start = uint('start', options.start ?? 0, 0xffff_ffff)
    const count = uint('count', options.count ?? 1, 0xffff_ffff)
    return new Interrupts(call(() => this.native.enableIrq(i, start, count)))
  }

  /** Enables `count` MSI vectors. */
  enableMsi(count = 1): Interrupts {
    return this.enableIrq(IrqIndex.MSI, { count })
  }

  /** Enables `count` MSI-X vectors (from `start`). */
  enableMsix(count = 1, start = 0): Interrupts {
    return this.enableIrq(IrqIndex.MSIX, { count, start })
  }

  /** Enables INTx. It is automasked: call `unmask()` after handling each interrupt. */
  enableIntx(): Interrupts {
    return this.enableIrq(IrqIndex.INTX, { count: 1 })
  }

  /** Disables IRQ `index` entirely (all vectors). */
  disableIrq(index: number): void {
    const i = uint('index', index, 0xffff_ffff)
    call(() => this.native.disableIrq(i))
  }

  /** The largest vector count of INTx, MSI and MSI-X. */
  get maxInterrupts(): number {
    return this.info.maxInterrupts
  }
}
