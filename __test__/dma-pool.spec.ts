/**
 * DmaPool on the mock backend: carving, alignment, zeroing, reuse on close and on
 * collection, the refusals, and closing the pool. The guest suite runs it on real VFIO.
 */
import test, { type ExecutionContext } from 'ava'
import { Container, ErrorCode, type DmaPool, type DmaSlice } from '../ts/index'
import { native } from '../ts/native'
import { MockSystem, mockEdu } from '../ts/testing'
import { collectUntil, throwsCode } from './helpers'

const sys = MockSystem.install()
const edu = sys.addDevice(mockEdu())
test.after.always(() => sys.uninstall())

test.serial('pool: 4 KiB slices carved from one 2 MiB mapping, page-aligned, zeroed, inside the chunk', (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  using pool = c.dmaPool()
  t.is(pool.chunkSize, 2 * 2 ** 20)
  const slices: DmaSlice[] = []
  for (let i = 0; i < 512; i++) slices.push(pool.allocate(4096))
  t.is(pool.chunks, 1)
  t.is(c.dmaMappings().length, 1, 'one mapping for 512 buffers')
  const base = slices[0]!.buffer.iova
  t.deepEqual(new Set(slices.map((s) => s.iova)).size, 512)
  for (const s of slices) {
    t.is(s.iova % 4096n, 0n)
    t.true(s.iova >= base && s.iova + 4096n <= base + 2n * 2n ** 20n)
    t.is(s.size, 4096)
  }
  slices[7]!.writeU32(0, 0xdead_beef)
  t.is(slices[7]!.readU32(0), 0xdead_beef)
  t.is(slices[8]!.readU32(0), 0, 'neighbours do not overlap')
  slices.push(pool.allocate(4096))
  t.is(pool.chunks, 2, 'a full chunk makes the pool map another')
  t.is(pool.slices, 513)
  for (const s of slices) s.close()
  t.is(pool.slices, 0)
  d.close()
})

test.serial('pool: a closed slice gives its range back, zeroed when handed out again; small sizes honour align', (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  using pool = c.dmaPool({ chunkSize: 64 * 1024 })
  const a = pool.allocate(100, { align: 64 })
  const b = pool.allocate(100, { align: 64 })
  t.is(a.iova % 64n, 0n)
  t.is(b.iova - a.iova, 128n, '100 bytes at 64-byte alignment: the next one 128 bytes on')
  a.write(0, Buffer.alloc(100, 0xaa))
  const at = a.iova
  a.close()
  const again = pool.allocate(100, { align: 64 })
  t.is(again.iova, at, 'the first free range is used again')
  t.deepEqual([...again.read(0, 100)], new Array(100).fill(0))
  // Freed neighbours merge: the whole chunk is one range again.
  again.close()
  b.close()
  t.is(pool.allocate(64 * 1024).size, 64 * 1024)
  t.is(pool.chunks, 1)
  d.close()
})

test.serial('pool: a slice nobody closed is given back when collected', async (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  using pool = c.dmaPool({ chunkSize: 8192 })
  ;(() => {
    pool.allocate(8192)
  })()
  t.is(pool.slices, 1)
  t.true(await collectUntil(() => pool.slices === 0, 50), 'the forgotten slice was collected and its range given back')
  using again = pool.allocate(8192)
  t.is(pool.chunks, 1, 'the chunk had room again: no second mapping')
  t.is(again.size, 8192)
  d.close()
})

test.serial('pool: refusals, and closing the pool closes its slices', (t) => {
  using c = new Container()
  using d = c.openDevice(edu.address)
  const pool = c.dmaPool({ chunkSize: 8192 })
  throwsCode(t, () => pool.allocate(0), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => pool.allocate(1.5), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => pool.allocate(8193), ErrorCode.OUT_OF_RANGE)
  throwsCode(t, () => pool.allocate(64, { align: 48 }), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => pool.allocate(64, { align: 16384 }), ErrorCode.INVALID_ARGUMENT)
  throwsCode(t, () => c.dmaPool({ chunkSize: 1000 }), ErrorCode.INVALID_ARGUMENT)
  const s = pool.allocate(64)
  pool.close()
  t.true(pool.closed)
  t.true(s.closed)
  throwsCode(t, () => s.readU32(0), ErrorCode.CLOSED)
  throwsCode(t, () => pool.allocate(64), ErrorCode.CLOSED)
  t.deepEqual(c.dmaMappings(), [])
  s.close()
  d.close()
  c.close()
  throwsCode(t, () => c.dmaPool(), ErrorCode.CLOSED)
})

/**
 * A test with an open device and a pool of 8 KiB chunks, counting the native slices made
 * and closed (the binding's methods, patched) while `body` runs.
 */
function poolTest(title: string, body: (t: ExecutionContext, pool: DmaPool, counts: { made: number; closed: number }) => void): void {
  test.serial(title, (t) => {
    using c = new Container()
    using d = c.openDevice(edu.address)
    using pool = c.dmaPool({ chunkSize: 8192 })
    const { DmaBuffer: NativeBuffer, DmaSlice: NativeSlice } = native() as unknown as Record<'DmaBuffer' | 'DmaSlice', { prototype: Record<'slice' | 'close', (...a: unknown[]) => unknown> }>
    const counts = { made: 0, closed: 0 }
    const originals = [NativeBuffer.prototype.slice, NativeSlice.prototype.close] as const
    NativeBuffer.prototype.slice = function (this: unknown, ...a: unknown[]) {
      counts.made++
      return originals[0].apply(this, a)
    }
    NativeSlice.prototype.close = function (this: unknown, ...a: unknown[]) {
      counts.closed++
      return originals[1].apply(this, a)
    }
    try {
      body(t, pool, counts)
    } finally {
      ;[NativeBuffer.prototype.slice, NativeSlice.prototype.close] = originals
    }
    d.close()
  })
}

/** What `fn` gives: its value, or its error's code and message. */
function outcome(fn: () => unknown): unknown {
  try {
    const v = fn()
    return Buffer.isBuffer(v) ? `Buffer ${v.toString('hex')}` : v
  } catch (err) {
    return `${(err as { code?: string }).code}: ${(err as Error).message}`
  }
}

/** Every member's outcome on `s`, for comparing two slices of one range. */
function members(s: DmaSlice): unknown[] {
  return [
    () => s.iova,
    () => s.offset,
    () => s.size,
    () => s.mapped,
    () => s.closed,
    () => s.view,
    () => s.readU32(0),
    () => s.readU32(1),
    () => s.readU32(s.size),
    () => s.readU32Many([0, 4]),
    () => s.read(0, 8),
    () => s.slice(8, 8).iova,
  ].map(outcome)
}

poolTest('pool: a slice answers iova, offset, size, view, the accessors and close in JavaScript, with no native slice', (t, pool, counts) => {
  const s = pool.allocate(100, { align: 64 })
  const b = pool.allocate(100, { align: 64 })
  t.is(b.iova, s.buffer.iova + 128n)
  t.is(b.offset, 128)
  t.is(b.size, 100)
  t.true(b.mapped)
  t.false(b.closed)
  t.is(b.view.length, 100)
  t.is(b.view.buffer, b.buffer.view.buffer, 'a view of the chunk')
  b.writeU32(4, 0x1234_5678)
  t.is(b.readU32(4), 0x1234_5678)
  t.is(b.buffer.readU32(132), 0x1234_5678)
  b.close()
  s[Symbol.dispose]()
  t.deepEqual(counts, { made: 0, closed: 0 })
  t.is(pool.slices, 0)
  const closed = `${ErrorCode.CLOSED}: ${native().closedMessage('DMA slice')}`
  for (const get of [() => b.iova, () => b.offset, () => b.size, () => b.view, () => b.readU32(4), () => b.readU32(1)]) t.is(outcome(get), closed)
  t.false(b.mapped)
  b.close()
  t.deepEqual(counts, { made: 0, closed: 0 }, 'closed errors need no native slice either')
})

poolTest('pool: an access JavaScript cannot serve makes the native slice, and the slice behaves as dmaBuffer.slice() does', (t, pool, counts) => {
  const s = pool.allocate(64, { align: 64 })
  const other = pool.allocate(64, { align: 64 })
  const eager = s.buffer.slice(s.offset, s.size)
  t.is(counts.made, 1, 'dmaBuffer.slice() makes its native slice at once')
  s.writeU32(0, 7)
  t.deepEqual(members(s), members(eager), 'open')
  t.is(counts.made, 2, 'the unaligned and out-of-range reads, readU32Many and slice() made the pool slice its native slice, once')
  other.close()
  t.is(counts.closed, 0, 'a slice that never made a native one closes without one')
  pool.close()
  t.deepEqual(members(s), members(eager), 'the pool (its chunk) closed')
  t.regex(String(outcome(() => s.iova)), new RegExp(`^${ErrorCode.CLOSED}: `))
  s.close()
  eager.close()
  t.is(counts.closed, 2, 'the native slices made are closed')
  t.deepEqual(members(s), members(eager), 'both closed')
  t.is(pool.slices, 0)
})

poolTest('pool: after pool.close() a slice that never made its native slice throws ERR_VFIO_CLOSED as before', (t, pool, counts) => {
  const s = pool.allocate(64)
  const eager = s.buffer.slice(s.offset, s.size)
  pool.close()
  const buffer = `${ErrorCode.CLOSED}: ${native().closedMessage('DMA buffer')}`
  t.is(outcome(() => s.iova), buffer)
  t.is(outcome(() => s.view), buffer)
  t.is(outcome(() => s.readU32(0)), buffer)
  t.true(s.closed)
  t.false(s.mapped)
  t.deepEqual(members(s), members(eager))
  s.close()
  eager.close()
  t.is(counts.closed, 1, 'only the eager slice had a native one')
  t.is(outcome(() => s.offset), `${ErrorCode.CLOSED}: ${native().closedMessage('DMA slice')}`)
})
