//! Hot accessors as free functions over a numeric handle.
//!
//! A napi-rs class method costs about ten napi free-function calls (per-call borrow
//! bookkeeping, `napi_unwrap`, the type-tag check), which a register access cannot
//! afford. So a mapped region and a device also register here, in a table of this JS
//! thread, and the facade calls `mmioReadU32(handle, offset)` and friends. A handle is
//! an index and a generation: once its owner closes (or is collected), the slot is
//! emptied and the handle gives the closed error; a reused slot has a new generation,
//! so an old handle never reaches another object.
//!
//! The table is thread-local because napi objects are: a handle made on one JS thread
//! means nothing on another (there it is simply unknown).
//!
//! Nor are these functions `#[napi]`: napi-rs's glue for a function with arguments (a
//! native borrow scope per call) costs about three times the call itself, so they are
//! hand-written callbacks (`raw_callback.rs`) that `fastAccessors()` hands out. Only the
//! 64-bit region accessors, which take or return a BigInt, keep the generated glue.

use std::cell::RefCell;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::{VfioDevice, VolatileAccess};

use crate::error::{bigint_to_u64, closed, invalid, out_of_range, to_u32, to_u64, IntoJs};
use crate::raw_callback::{Hot, HotArray, HotFunction};

/// What a handle stands for.
#[derive(Clone)]
pub(crate) enum Entry {
    /// A mapped region: volatile MMIO accesses.
    Region(Arc<vfio_ioctls::MappedRegion>),
    /// A device: region reads and writes through its fd (pread/pwrite).
    Device(Arc<VfioDevice>),
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// Index bits of a handle; the generation takes the 32 bits above them (2^52 in all,
/// exact as a JS number).
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// A registration; dropping it (or `release()`) empties the slot.
#[derive(Debug)]
pub(crate) struct FastHandle {
    handle: Option<u64>,
}

impl FastHandle {
    /// Registers `entry`.
    ///
    /// # Errors
    /// `ERR_VFIO_OUT_OF_RANGE` past 2^20 live handles on one thread, and the closed
    /// error while the thread is being torn down.
    pub(crate) fn register(op: &'static str, entry: Entry) -> Result<Self> {
        let handle = TABLE
            .try_with(|t| {
                let mut t = t
                    .try_borrow_mut()
                    .map_err(|_| invalid(op, "called from inside another access"))?;
                let index = match t.free.pop() {
                    Some(i) => i,
                    None if (t.slots.len() as u64) < INDEX_MASK => {
                        t.slots.push(Slot {
                            generation: 0,
                            entry: None,
                        });
                        (t.slots.len() - 1) as u32
                    }
                    None => {
                        return Err(out_of_range(
                            op,
                            "over 2^20 mapped regions and devices are open on this thread; \
                             close some first",
                        ))
                    }
                };
                let slot = t
                    .slots
                    .get_mut(index as usize)
                    .ok_or_else(|| invalid(op, "the handle table lost a slot"))?;
                slot.entry = Some(entry);
                Ok(u64::from(slot.generation) << INDEX_BITS | u64::from(index))
            })
            .unwrap_or_else(|_| Err(closed("thread")))?;
        Ok(FastHandle {
            handle: Some(handle),
        })
    }

    /// The handle as JS sees it; -1 once released.
    pub(crate) fn id(&self) -> f64 {
        self.handle.map_or(-1.0, |h| h as f64)
    }

    /// Empties the slot now (closing twice is harmless).
    pub(crate) fn release(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        // During thread teardown the table may be gone already: then so is the entry.
        let _ = TABLE.try_with(|t| {
            // Releasing only runs from close()/Drop, never while an accessor borrows
            // the table (accessors call no JS); if it ever did, the slot stays filled
            // until the thread ends, which leaks nothing past it.
            let Ok(mut t) = t.try_borrow_mut() else {
                return;
            };
            let index = (handle & INDEX_MASK) as u32;
            if let Some(slot) = t.slots.get_mut(index as usize) {
                slot.entry = None;
                slot.generation = slot.generation.wrapping_add(1);
                t.free.push(index);
            }
        });
    }
}

impl Drop for FastHandle {
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs `f` on the live entry behind `handle`, or fails with the closed error.
fn with_entry<T>(
    op: &'static str,
    what: &str,
    handle: f64,
    f: impl FnOnce(&Entry) -> Result<T>,
) -> Result<T> {
    let h = to_u64(op, "handle", handle)?;
    let index = (h & INDEX_MASK) as usize;
    let generation = h >> INDEX_BITS;
    TABLE
        .try_with(|t| {
            let t = t
                .try_borrow()
                .map_err(|_| invalid(op, "called from inside another access"))?;
            match t.slots.get(index) {
                Some(Slot {
                    generation: g,
                    entry: Some(entry),
                }) if u64::from(*g) == generation => f(entry),
                _ => Err(closed(what)),
            }
        })
        .unwrap_or_else(|_| Err(closed(what)))
}

fn region<'a>(op: &'static str, e: &'a Entry) -> Result<&'a vfio_ioctls::MappedRegion> {
    match e {
        Entry::Region(r) => Ok(r),
        Entry::Device(_) => Err(invalid(
            op,
            "the handle is a device's, not a mapped region's",
        )),
    }
}

fn device<'a>(op: &'static str, e: &'a Entry) -> Result<&'a VfioDevice> {
    match e {
        Entry::Device(d) => Ok(d),
        Entry::Region(_) => Err(invalid(
            op,
            "the handle is a mapped region's, not a device's",
        )),
    }
}

fn narrow<T: TryFrom<u32>>(op: &'static str, value: u32, bits: u32) -> Result<T> {
    T::try_from(value)
        .map_err(|_| out_of_range(op, &format!("value {value} does not fit {bits} bits")))
}

/// Reads 8 bits at `offset` of the mapped region behind `handle`.
fn mmio_read_u8([handle, offset]: [f64; 2]) -> Result<u32> {
    const OP: &str = "readU8";
    let off = to_u64(OP, "offset", offset)?;
    with_entry(OP, "mapped region", handle, |e| {
        region(OP, e)?.read_u8(off).map(u32::from).js()
    })
}

/// Reads an aligned 16-bit value at `offset` of the mapped region behind `handle`.
fn mmio_read_u16([handle, offset]: [f64; 2]) -> Result<u32> {
    const OP: &str = "readU16";
    let off = to_u64(OP, "offset", offset)?;
    with_entry(OP, "mapped region", handle, |e| {
        region(OP, e)?.read_u16(off).map(u32::from).js()
    })
}

/// Reads an aligned 32-bit value at `offset` of the mapped region behind `handle`.
fn mmio_read_u32([handle, offset]: [f64; 2]) -> Result<u32> {
    const OP: &str = "readU32";
    let off = to_u64(OP, "offset", offset)?;
    with_entry(OP, "mapped region", handle, |e| {
        region(OP, e)?.read_u32(off).js()
    })
}

/// Writes 8 bits at `offset` of the mapped region behind `handle`.
fn mmio_write_u8([handle, offset, value]: [f64; 3]) -> Result<()> {
    const OP: &str = "writeU8";
    let off = to_u64(OP, "offset", offset)?;
    let v: u8 = narrow(OP, to_u32(OP, "value", value)?, 8)?;
    with_entry(OP, "mapped region", handle, |e| {
        region(OP, e)?.write_u8(off, v).js()
    })
}

/// Writes an aligned 16-bit value at `offset` of the mapped region behind `handle`.
fn mmio_write_u16([handle, offset, value]: [f64; 3]) -> Result<()> {
    const OP: &str = "writeU16";
    let off = to_u64(OP, "offset", offset)?;
    let v: u16 = narrow(OP, to_u32(OP, "value", value)?, 16)?;
    with_entry(OP, "mapped region", handle, |e| {
        region(OP, e)?.write_u16(off, v).js()
    })
}

/// Writes an aligned 32-bit value at `offset` of the mapped region behind `handle`.
fn mmio_write_u32([handle, offset, value]: [f64; 3]) -> Result<()> {
    const OP: &str = "writeU32";
    let off = to_u64(OP, "offset", offset)?;
    let v = to_u32(OP, "value", value)?;
    with_entry(OP, "mapped region", handle, |e| {
        region(OP, e)?.write_u32(off, v).js()
    })
}

/// Replaces each offset in `values` with the aligned 32-bit value read there, in order, in
/// one call; every offset is checked before the first read.
fn mmio_read_u32_many([handle]: [f64; 1], values: &mut [u32]) -> Result<()> {
    const OP: &str = "readU32Many";
    with_entry(OP, "mapped region", handle, |e| {
        region(OP, e)?.read_u32_many(values).js()
    })
}

/// Reads `N` bytes at `offset` of region `index` through the device fd (one pread).
fn pread<const N: usize>(
    op: &'static str,
    handle: f64,
    index: f64,
    offset: f64,
) -> Result<[u8; N]> {
    let index = to_u32(op, "index", index)?;
    let off = to_u64(op, "offset", offset)?;
    let mut buf = [0u8; N];
    with_entry(op, "device", handle, |e| {
        device(op, e)?.try_region_read(index, &mut buf, off).js()
    })?;
    Ok(buf)
}

/// Writes `bytes` at `offset` of region `index` through the device fd (one pwrite).
fn pwrite(op: &'static str, handle: f64, index: f64, offset: f64, bytes: &[u8]) -> Result<()> {
    let index = to_u32(op, "index", index)?;
    let off = to_u64(op, "offset", offset)?;
    with_entry(op, "device", handle, |e| {
        device(op, e)?.try_region_write(index, bytes, off).js()
    })
}

/// Reads 8 bits at `offset` of region `index` of the device behind `handle` (pread).
fn region_read_u8([handle, index, offset]: [f64; 3]) -> Result<u32> {
    pread::<1>("region.readU8", handle, index, offset).map(|b| u32::from(b[0]))
}

/// Reads 16 bits (little-endian) at `offset` of region `index` (one 2-byte pread).
fn region_read_u16([handle, index, offset]: [f64; 3]) -> Result<u32> {
    pread::<2>("region.readU16", handle, index, offset).map(|b| u32::from(u16::from_le_bytes(b)))
}

/// Reads 32 bits (little-endian) at `offset` of region `index` (one 4-byte pread).
fn region_read_u32([handle, index, offset]: [f64; 3]) -> Result<u32> {
    pread::<4>("region.readU32", handle, index, offset).map(u32::from_le_bytes)
}

/// Reads 64 bits (little-endian) at `offset` of region `index` (one 8-byte pread).
#[napi]
pub fn region_read_u64(handle: f64, index: f64, offset: f64) -> Result<BigInt> {
    pread::<8>("region.readU64", handle, index, offset).map(|b| BigInt::from(u64::from_le_bytes(b)))
}

/// Writes 8 bits at `offset` of region `index` (pwrite).
fn region_write_u8([handle, index, offset, value]: [f64; 4]) -> Result<()> {
    const OP: &str = "region.writeU8";
    let v: u8 = narrow(OP, to_u32(OP, "value", value)?, 8)?;
    pwrite(OP, handle, index, offset, &[v])
}

/// Writes 16 bits (little-endian) at `offset` of region `index` (one 2-byte pwrite).
fn region_write_u16([handle, index, offset, value]: [f64; 4]) -> Result<()> {
    const OP: &str = "region.writeU16";
    let v: u16 = narrow(OP, to_u32(OP, "value", value)?, 16)?;
    pwrite(OP, handle, index, offset, &v.to_le_bytes())
}

/// Writes 32 bits (little-endian) at `offset` of region `index` (one 4-byte pwrite).
fn region_write_u32([handle, index, offset, value]: [f64; 4]) -> Result<()> {
    const OP: &str = "region.writeU32";
    let v = to_u32(OP, "value", value)?;
    pwrite(OP, handle, index, offset, &v.to_le_bytes())
}

/// Writes 64 bits (little-endian) at `offset` of region `index` (one 8-byte pwrite).
#[napi]
pub fn region_write_u64(handle: f64, index: f64, offset: f64, value: BigInt) -> Result<()> {
    const OP: &str = "region.writeU64";
    let v = bigint_to_u64(OP, "value", &value)?;
    pwrite(OP, handle, index, offset, &v.to_le_bytes())
}

/// Reads `target.length` bytes at `offset` of region `index` into `target` (one pread,
/// no allocation).
fn region_read_into([handle, index, offset]: [f64; 3], buf: &mut [u8]) -> Result<()> {
    const OP: &str = "region.readInto";
    let index = to_u32(OP, "index", index)?;
    let off = to_u64(OP, "offset", offset)?;
    // `buf` is the caller's memory, or a private copy of a SharedArrayBuffer's
    // (raw_callback::with_elements).
    with_entry(OP, "device", handle, |e| {
        device(OP, e)?.try_region_read(index, buf, off).js()
    })
}

/// The hot accessors (`mmioReadU32(handle, offset)` and the rest of `FastAccessors` in
/// ts/native.ts) as one object of hand-written napi callbacks: napi-rs's generated glue
/// would cost more than the access (src/raw_callback.rs). The facade merges it into the
/// binding once per thread; a host test checks it has every name `FastAccessors` has.
#[napi(ts_return_type = "object")]
pub fn fast_accessors(env: &Env) -> Result<Object<'_>> {
    let target = Object::new(env)?;
    let (env, obj) = (env.raw(), target.raw());
    // A struct literal of constants is promoted to a `static` when borrowed, as
    // `install`'s `&'static self` needs.
    macro_rules! install {
        ($kind:ident, $name:literal, $call:path) => {
            // SAFETY: `env` is this call's env and `obj` an object of it.
            unsafe {
                $kind {
                    name: $name,
                    call: $call,
                }
                .install(env, obj)
            }?
        };
    }
    install!(Hot, "mmioReadU8", mmio_read_u8);
    install!(Hot, "mmioReadU16", mmio_read_u16);
    install!(Hot, "mmioReadU32", mmio_read_u32);
    install!(Hot, "mmioWriteU8", mmio_write_u8);
    install!(Hot, "mmioWriteU16", mmio_write_u16);
    install!(Hot, "mmioWriteU32", mmio_write_u32);
    install!(HotArray, "mmioReadU32Many", mmio_read_u32_many);
    install!(Hot, "regionReadU8", region_read_u8);
    install!(Hot, "regionReadU16", region_read_u16);
    install!(Hot, "regionReadU32", region_read_u32);
    install!(Hot, "regionWriteU8", region_write_u8);
    install!(Hot, "regionWriteU16", region_write_u16);
    install!(Hot, "regionWriteU32", region_write_u32);
    install!(HotArray, "regionReadInto", region_read_into);
    install!(
        Hot,
        "interruptWaiterWait",
        crate::irq_waiter::interrupt_waiter_wait
    );
    Ok(target)
}
