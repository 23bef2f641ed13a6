/**
 * DmaPool on the mock backend: carving, alignment, zeroing, reuse on close and on
 * collection, the refusals, and closing the pool. The guest suite runs it on real VFIO.
 */
import test from 'ava'
import { Container, ErrorCode, type DmaSlice } from '../ts/index'
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
