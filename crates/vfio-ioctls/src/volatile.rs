//! Bounds- and alignment-checked volatile access to memory a device can see
//! (mmapped MMIO, DMA buffers). Nothing here allocates, except [`VolatileAccess::read_vec`],
//! which checks the range first and allocates fallibly.

use std::fmt;

use crate::barrier;
use crate::error::{Result, VfioError};

/// Volatile reads and writes at byte offsets, each checked before it happens.
///
/// Implementors say which ranges are accessible; the provided methods check
/// alignment (natural, by width) and never create Rust references to the memory.
///
/// # Safety
///
/// The provided methods dereference the pointers that
/// [`checked_ptr`](VolatileAccess::checked_ptr) returns, so an implementation must
/// guarantee that whenever `checked_ptr(op, offset, width)` returns `Ok(ptr)`:
///
/// * `ptr .. ptr + width` lies inside one allocation or mapping (so `ptr.add(i)` is in
///   bounds for every `i <= width`), and each of its bytes is valid for volatile reads
///   *and* volatile writes, by accesses of 1, 2, 4 or 8 bytes at any naturally aligned
///   address within the range: none of it is unmapped, read-only, `PROT_NONE`, or a
///   hole of a sparse mapping.
/// * It stays valid for as long as the `&self` borrow that `checked_ptr` was called
///   through lives: the memory is not unmapped, freed or remapped before that borrow
///   ends, also when other threads use `self` at the same time (if `Self: Sync`).
/// * No Rust reference (`&`/`&mut`) to those bytes exists while that borrow lives: the
///   memory is only reached through raw pointers (it is device or DMA memory that the
///   device, or another thread, may change at any time), so volatile writes through
///   `ptr` invalidate nothing.
///
/// `ptr` need not be aligned: the provided methods check the alignment of the address
/// themselves before any access wider than a byte. Returning an error is always sound,
/// for any range; [`len`](VolatileAccess::len) and
/// [`is_empty`](VolatileAccess::is_empty) are informative and no method relies on them
/// for memory safety.
pub unsafe trait VolatileAccess {
    /// A pointer to `width` accessible bytes at `offset` (see the trait's `# Safety`
    /// for what an `Ok` promises). Calling it is safe; dereferencing the pointer is not.
    ///
    /// # Errors
    /// `OutOfRange` when `[offset, offset + width)` is not accessible (an implementation
    /// may use another kind for memory that cannot be accessed at all).
    fn checked_ptr(&self, op: &'static str, offset: u64, width: usize) -> Result<*mut u8>;

    /// The number of bytes spanned by the mapping.
    fn len(&self) -> u64;

    /// Whether the mapping spans nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is device memory (MMIO). Its accessors then order themselves as
    /// Linux's `writel`/`readl`: a write comes after every earlier store to memory (a
    /// doorbell after the queue entry), a read before every later load; see
    /// [`barrier`](crate::barrier).
    fn is_mmio(&self) -> bool {
        false
    }

    /// Reads an 8-bit value.
    #[inline]
    fn read_u8(&self, offset: u64) -> Result<u8> {
        read::<u8>(self, "read_u8", offset)
    }
    /// Reads a naturally aligned 16-bit value.
    #[inline]
    fn read_u16(&self, offset: u64) -> Result<u16> {
        read::<u16>(self, "read_u16", offset)
    }
    /// Reads a naturally aligned 32-bit value.
    #[inline]
    fn read_u32(&self, offset: u64) -> Result<u32> {
        read::<u32>(self, "read_u32", offset)
    }
    /// Reads a naturally aligned 64-bit value.
    #[inline]
    fn read_u64(&self, offset: u64) -> Result<u64> {
        read::<u64>(self, "read_u64", offset)
    }
    /// Writes an 8-bit value.
    #[inline]
    fn write_u8(&self, offset: u64, value: u8) -> Result<()> {
        write(self, "write_u8", offset, value)
    }
    /// Writes a naturally aligned 16-bit value.
    #[inline]
    fn write_u16(&self, offset: u64, value: u16) -> Result<()> {
        write(self, "write_u16", offset, value)
    }
    /// Writes a naturally aligned 32-bit value.
    #[inline]
    fn write_u32(&self, offset: u64, value: u32) -> Result<()> {
        write(self, "write_u32", offset, value)
    }
    /// Writes a naturally aligned 64-bit value.
    #[inline]
    fn write_u64(&self, offset: u64, value: u64) -> Result<()> {
        write(self, "write_u64", offset, value)
    }

    /// Replaces each offset in `values` with the naturally aligned 32-bit value read
    /// there, in order, one volatile load each (for MMIO ordered as
    /// [`read_u32`](Self::read_u32) is, with one barrier after the last): a batch of
    /// registers in one call, in place, so a binding can pass one caller-owned array.
    /// Every offset is checked before the first load, so on an error nothing was read
    /// (MMIO reads can have side effects) and `values` is unchanged.
    ///
    /// # Errors
    /// `InvalidArgument` when an offset is unaligned, `OutOfRange` when one lies outside
    /// the memory; the message names its index.
    fn read_u32_many(&self, values: &mut [u32]) -> Result<()> {
        const OP: &str = "read_u32_many";
        for (i, &offset) in values.iter().enumerate() {
            aligned_ptr::<_, u32>(self, OP, u64::from(offset)).map_err(|e| {
                let message = format!("offsets[{i}]: {e}");
                if e.kind() == crate::ErrorKind::OutOfRange {
                    VfioError::out_of_range(OP, message)
                } else {
                    VfioError::invalid(OP, message)
                }
            })?;
        }
        for slot in values.iter_mut() {
            let ptr = aligned_ptr::<_, u32>(self, OP, u64::from(*slot))?;
            // SAFETY: as in `read`: `checked_ptr` vouched for 4 readable bytes at `ptr` while
            // `self` is borrowed, `aligned_ptr` checked the alignment, any bits are a u32.
            *slot = unsafe { std::ptr::read_volatile(ptr) };
        }
        if self.is_mmio() {
            barrier::dma_rmb();
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` into `buf` with volatile loads, 32 bits at a
    /// time where aligned (MMIO registers often ignore narrower accesses), else bytes.
    fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let src = self.checked_ptr("read_bytes", offset, buf.len())?;
        // SAFETY: `checked_ptr` vouched (trait contract) for `buf.len()` bytes at `src`
        // valid for volatile reads while `self` is borrowed, which it is for this call.
        unsafe { copy_from_volatile(src, buf) };
        if self.is_mmio() {
            barrier::dma_rmb();
        }
        Ok(())
    }

    /// Copies `len` bytes at `offset` into a new vector, as [`read_bytes`](Self::read_bytes)
    /// does. The range is checked before anything is allocated, and the allocation is
    /// fallible, so no `len` can abort the process. A `len` of 0 gives an empty vector.
    ///
    /// # Errors
    /// `OutOfRange` when the range is not accessible (as `read_bytes`), or when `len`
    /// bytes cannot be allocated (read in smaller pieces then).
    fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        const OP: &str = "read_vec";
        if len == 0 {
            return Ok(Vec::new());
        }
        let width = usize::try_from(len).map_err(|_| {
            VfioError::out_of_range(
                OP,
                format!("length {len:#x} does not fit this machine's address space; read in smaller pieces"),
            )
        })?;
        let src = self.checked_ptr(OP, offset, width)?;
        let mut buf = crate::alloc::try_zeroed(OP, width)?;
        // SAFETY: as in `read_bytes`: `checked_ptr` vouched for `width` == `buf.len()`
        // readable bytes at `src`, valid while `self` is borrowed (through this call).
        unsafe { copy_from_volatile(src, &mut buf) };
        if self.is_mmio() {
            barrier::dma_rmb();
        }
        Ok(buf)
    }

    /// Copies `buf` to `offset` with volatile stores, 32 bits at a time where aligned.
    fn write_bytes(&self, offset: u64, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let dst = self.checked_ptr("write_bytes", offset, buf.len())?;
        if self.is_mmio() {
            barrier::dma_wmb();
        }
        // SAFETY: `checked_ptr` vouched (trait contract) for `buf.len()` bytes at `dst`
        // valid for volatile writes while `self` is borrowed, which it is for this call.
        unsafe { copy_to_volatile(dst, buf) };
        Ok(())
    }
}

/// Copies `buf.len()` bytes from `src` with volatile loads, 32 bits at a time where the
/// address is 4-aligned and 4 bytes remain, else one byte at a time.
///
/// # Safety
/// `src .. src + buf.len()` must be valid for volatile reads (one allocation or mapping).
unsafe fn copy_from_volatile(src: *const u8, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        // SAFETY: `i < buf.len()`, so `src + i` is in the range the caller vouched for.
        let p = unsafe { src.add(i) };
        if (p as usize).is_multiple_of(4) && buf.len() - i >= 4 {
            // SAFETY: the 4 bytes at `p` are in the range (4 remain) and `p` is 4-aligned.
            let word = unsafe { std::ptr::read_volatile(p.cast::<u32>()) };
            buf[i..i + 4].copy_from_slice(&word.to_ne_bytes());
            i += 4;
        } else {
            // SAFETY: `p` is in the range; bytes need no alignment.
            buf[i] = unsafe { std::ptr::read_volatile(p) };
            i += 1;
        }
    }
}

/// Copies `buf` to `dst` with volatile stores, 32 bits at a time where aligned.
///
/// # Safety
/// `dst .. dst + buf.len()` must be valid for volatile writes (one allocation or mapping).
unsafe fn copy_to_volatile(dst: *mut u8, buf: &[u8]) {
    let mut i = 0;
    while i < buf.len() {
        // SAFETY: `i < buf.len()`, so `dst + i` is in the range the caller vouched for.
        let p = unsafe { dst.add(i) };
        if (p as usize).is_multiple_of(4) && buf.len() - i >= 4 {
            let word = u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
            // SAFETY: the 4 bytes at `p` are in the range (4 remain) and `p` is 4-aligned.
            unsafe { std::ptr::write_volatile(p.cast::<u32>(), word) };
            i += 4;
        } else {
            // SAFETY: `p` is in the range; bytes need no alignment.
            unsafe { std::ptr::write_volatile(p, buf[i]) };
            i += 1;
        }
    }
}

#[inline]
fn aligned_ptr<M: VolatileAccess + ?Sized, T>(
    mem: &M,
    op: &'static str,
    offset: u64,
) -> Result<*mut T> {
    let width = std::mem::size_of::<T>();
    if !offset.is_multiple_of(width as u64) {
        return Err(misaligned(op, offset, Some(width)));
    }
    let ptr = mem.checked_ptr(op, offset, width)?;
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(misaligned(op, offset, None));
    }
    Ok(ptr.cast::<T>())
}

#[cold]
#[inline(never)]
fn misaligned(op: &'static str, offset: u64, width: Option<usize>) -> VfioError {
    let message = match width {
        Some(width) => {
            format!("offset {offset:#x} is not aligned to the access width of {width} bytes")
        }
        None => format!("offset {offset:#x} is not naturally aligned in memory"),
    };
    VfioError::invalid(op, message)
}

/// Integers every bit pattern of which is a valid value, so reading any memory gives one.
trait Plain: Copy {}
impl Plain for u8 {}
impl Plain for u16 {}
impl Plain for u32 {}
impl Plain for u64 {}

#[inline]
fn read<T: Plain>(
    mem: &(impl VolatileAccess + ?Sized),
    op: &'static str,
    offset: u64,
) -> Result<T> {
    let ptr = aligned_ptr::<_, T>(mem, op, offset)?;
    // SAFETY: `checked_ptr` vouched (trait contract) for `size_of::<T>()` readable bytes at
    // `ptr` while `mem` is borrowed, `aligned_ptr` checked the alignment for T, and any
    // bit pattern is a valid T (`Plain`).
    let value = unsafe { std::ptr::read_volatile(ptr) };
    if mem.is_mmio() {
        barrier::dma_rmb(); // later loads (of DMA memory) are not older than this read
    }
    Ok(value)
}

#[inline]
fn write<T: Plain>(
    mem: &(impl VolatileAccess + ?Sized),
    op: &'static str,
    offset: u64,
    value: T,
) -> Result<()> {
    let ptr = aligned_ptr::<_, T>(mem, op, offset)?;
    if mem.is_mmio() {
        barrier::dma_wmb(); // earlier stores (queue entries) reach memory first
    }
    // SAFETY: `checked_ptr` vouched (trait contract) for `size_of::<T>()` writable bytes at
    // `ptr` while `mem` is borrowed, and `aligned_ptr` checked the alignment for T.
    unsafe { std::ptr::write_volatile(ptr, value) };
    Ok(())
}

/// Checks that `[offset, offset + width)` lies within `len` bytes, without overflow.
///
/// `what` names the memory in the error message; it is only formatted on failure (in a
/// cold function kept out of line, so the success path is a compare and a branch),
/// so callers pass `format_args!(..)` and build no string.
#[inline]
pub(crate) fn check_within(
    op: &'static str,
    what: impl fmt::Display,
    offset: u64,
    width: usize,
    len: u64,
) -> Result<()> {
    match offset.checked_add(width as u64) {
        Some(end) if end <= len => Ok(()),
        _ => Err(outside(op, &what, offset, width, len)),
    }
}

#[cold]
#[inline(never)]
fn outside(
    op: &'static str,
    what: &dyn fmt::Display,
    offset: u64,
    width: usize,
    len: u64,
) -> VfioError {
    match offset.checked_add(width as u64) {
        Some(end) => VfioError::out_of_range(
            op,
            format!("{what}: [{offset:#x}, {end:#x}) lies past its size {len:#x}"),
        ),
        None => VfioError::out_of_range(
            op,
            format!("{what}: offset {offset:#x} + {width} overflows 64 bits"),
        ),
    }
}

/// 4 KiB of zeroed heap memory standing in for a mapping, shareable between threads.
#[cfg(test)]
pub(crate) struct TestMemory(Box<std::cell::UnsafeCell<[u64; 512]>>);

#[cfg(test)]
impl Default for TestMemory {
    fn default() -> Self {
        TestMemory(Box::new(std::cell::UnsafeCell::new([0; 512])))
    }
}

// SAFETY: the array is only reached through raw pointers by volatile accesses (as device
// memory is), never through references, so sharing it between threads invalidates nothing.
#[cfg(test)]
unsafe impl Sync for TestMemory {}

// SAFETY: `checked_ptr` returns pointers only into the 4 KiB array this value owns (range
// checked by `check_within`); it lives as long as `&self` and no reference to it is made.
#[cfg(test)]
unsafe impl VolatileAccess for TestMemory {
    fn checked_ptr(&self, op: &'static str, offset: u64, width: usize) -> Result<*mut u8> {
        check_within(op, "test memory", offset, width, 4096)?;
        // SAFETY: the offset was checked to lie within the 4 KiB array.
        Ok(unsafe { self.0.get().cast::<u8>().add(offset as usize) })
    }
    fn len(&self) -> u64 {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::cell::Cell;

    /// Plain heap memory standing in for a mapping.
    struct Heap(std::cell::UnsafeCell<[u64; 4]>);

    // SAFETY: `checked_ptr` returns pointers only into the 32-byte array this value owns
    // (range checked by `check_within`); the array lives as long as `&self`, is read and
    // written only through the `UnsafeCell`'s raw pointer, and no reference to it is made.
    unsafe impl VolatileAccess for Heap {
        fn checked_ptr(&self, op: &'static str, offset: u64, width: usize) -> Result<*mut u8> {
            check_within(op, "heap", offset, width, 32)?;
            // SAFETY: the offset was checked to lie within the 32-byte array.
            Ok(unsafe { self.0.get().cast::<u8>().add(offset as usize) })
        }
        fn len(&self) -> u64 {
            32
        }
    }

    #[test]
    fn widths_round_trip() {
        let m = Heap(Default::default());
        m.write_u64(8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u32(8).unwrap(), 0x5566_7788);
        m.write_u16(2, 0xbeef).unwrap();
        assert_eq!(m.read_u16(2).unwrap(), 0xbeef);
        m.write_u8(31, 7).unwrap();
        assert_eq!(m.read_u8(31).unwrap(), 7);
        m.write_bytes(16, b"hello").unwrap();
        let mut out = [0u8; 5];
        m.read_bytes(16, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        // Unaligned start and odd lengths mix byte and word accesses.
        m.write_bytes(1, b"abcdefghij").unwrap();
        let mut out = [0u8; 10];
        m.read_bytes(1, &mut out).unwrap();
        assert_eq!(&out, b"abcdefghij");
    }

    #[test]
    fn unaligned_and_out_of_range_are_refused() {
        let m = Heap(Default::default());
        assert_eq!(
            m.read_u32(2).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            m.write_u64(4, 0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(m.read_u32(32).unwrap_err().kind(), ErrorKind::OutOfRange);
        assert_eq!(
            m.read_u64(u64::MAX - 7).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            m.write_bytes(30, b"abc").unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
    }

    #[test]
    fn read_vec_copies_the_range() {
        let m = Heap(Default::default());
        let data: Vec<u8> = (1..=32).collect();
        m.write_bytes(0, &data).unwrap();
        assert_eq!(m.read_vec(0, 32).unwrap(), data);
        // Unaligned start, odd length: byte and word loads mixed.
        assert_eq!(m.read_vec(3, 9).unwrap(), data[3..12].to_vec());
        assert_eq!(m.read_vec(31, 1).unwrap(), vec![32]);
        assert!(m.read_vec(0, 0).unwrap().is_empty());
        assert!(
            m.read_vec(u64::MAX, 0).unwrap().is_empty(),
            "empty, as read_bytes"
        );
    }

    #[test]
    fn read_vec_checks_the_range_before_allocating() {
        let m = Heap(Default::default());
        // JS `read(0, 2 ** 31)` once aborted the process allocating this first.
        for (offset, len) in [(0, 1u64 << 31), (0, 1 << 62), (0, u64::MAX), (8, 25)] {
            let e = m.read_vec(offset, len).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfRange, "{offset} {len}: {e}");
            let msg = e.to_string();
            // The range check answered, not the allocator.
            assert!(
                msg.starts_with("read_vec: heap:") && !msg.contains("allocate"),
                "{msg}"
            );
        }
        assert!(m
            .read_vec(u64::MAX, 2)
            .unwrap_err()
            .to_string()
            .contains("overflows"));
    }

    #[test]
    fn read_u32_many_reads_in_order_and_checks_every_offset_first() {
        let m = Heap(Default::default());
        for i in 0..8u32 {
            m.write_u32(u64::from(i) * 4, i * 10).unwrap();
        }
        let mut values = [28, 0, 4, 28];
        m.read_u32_many(&mut values).unwrap();
        assert_eq!(values, [70, 0, 10, 70]);
        m.read_u32_many(&mut []).unwrap();
        let mut values = [0, 4, 30];
        let e = m.read_u32_many(&mut values).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("offsets[2]"), "{e}");
        assert_eq!(
            values,
            [0, 4, 30],
            "nothing read before the bad offset was found"
        );
        let e = m.read_u32_many(&mut [0, 32]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");
    }

    /// A name that counts how often it is formatted.
    struct Counted<'a>(&'a Cell<u32>);

    impl fmt::Display for Counted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.set(self.0.get() + 1);
            f.write_str("counted")
        }
    }

    #[test]
    fn check_within_formats_its_message_only_on_failure() {
        let n = Cell::new(0);
        check_within("t", Counted(&n), 0, 32, 32).unwrap();
        check_within("t", Counted(&n), 32, 0, 32).unwrap();
        assert_eq!(n.get(), 0, "the success path formatted the name");
        let e = check_within("t", Counted(&n), 1, 32, 32).unwrap_err();
        assert_eq!(n.get(), 1);
        assert_eq!(
            e.to_string(),
            "t: counted: [0x1, 0x21) lies past its size 0x20"
        );
        let e = check_within("t", Counted(&n), u64::MAX, 1, 32).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert_eq!(n.get(), 2);
    }
}
