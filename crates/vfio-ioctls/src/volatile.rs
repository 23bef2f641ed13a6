//! Bounds- and alignment-checked volatile access to memory a device can see
//! (mmapped MMIO, DMA buffers). Nothing here allocates.

use crate::error::{Result, VfioError};

/// Volatile reads and writes at byte offsets, each checked before it happens.
///
/// Implementors say which ranges are accessible; the provided methods check
/// alignment (natural, by width) and never create Rust references to the memory.
pub trait VolatileAccess {
    /// A pointer to `width` accessible bytes at `offset`.
    ///
    /// # Errors
    /// `OutOfRange` when `[offset, offset + width)` is not accessible.
    fn checked_ptr(&self, op: &'static str, offset: u64, width: usize) -> Result<*mut u8>;

    /// The number of bytes spanned by the mapping.
    fn len(&self) -> u64;

    /// Whether the mapping spans nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads an 8-bit value.
    fn read_u8(&self, offset: u64) -> Result<u8> {
        read::<u8>(self, "read_u8", offset)
    }
    /// Reads a naturally aligned 16-bit value.
    fn read_u16(&self, offset: u64) -> Result<u16> {
        read::<u16>(self, "read_u16", offset)
    }
    /// Reads a naturally aligned 32-bit value.
    fn read_u32(&self, offset: u64) -> Result<u32> {
        read::<u32>(self, "read_u32", offset)
    }
    /// Reads a naturally aligned 64-bit value.
    fn read_u64(&self, offset: u64) -> Result<u64> {
        read::<u64>(self, "read_u64", offset)
    }
    /// Writes an 8-bit value.
    fn write_u8(&self, offset: u64, value: u8) -> Result<()> {
        write(self, "write_u8", offset, value)
    }
    /// Writes a naturally aligned 16-bit value.
    fn write_u16(&self, offset: u64, value: u16) -> Result<()> {
        write(self, "write_u16", offset, value)
    }
    /// Writes a naturally aligned 32-bit value.
    fn write_u32(&self, offset: u64, value: u32) -> Result<()> {
        write(self, "write_u32", offset, value)
    }
    /// Writes a naturally aligned 64-bit value.
    fn write_u64(&self, offset: u64, value: u64) -> Result<()> {
        write(self, "write_u64", offset, value)
    }

    /// Copies `buf.len()` bytes at `offset` into `buf` with volatile loads, 32 bits at a
    /// time where aligned (MMIO registers often ignore narrower accesses), else bytes.
    fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let src = self.checked_ptr("read_bytes", offset, buf.len())?;
        let mut i = 0;
        while i < buf.len() {
            // SAFETY: `checked_ptr` vouched for `buf.len()` accessible bytes at `src`; a 4-byte
            // load is used only when it fits in the rest and is 4-aligned.
            unsafe {
                let p = src.add(i);
                if (p as usize).is_multiple_of(4) && buf.len() - i >= 4 {
                    let word = std::ptr::read_volatile(p.cast::<u32>());
                    buf[i..i + 4].copy_from_slice(&word.to_ne_bytes());
                    i += 4;
                } else {
                    buf[i] = std::ptr::read_volatile(p);
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// Copies `buf` to `offset` with volatile stores, 32 bits at a time where aligned.
    fn write_bytes(&self, offset: u64, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let dst = self.checked_ptr("write_bytes", offset, buf.len())?;
        let mut i = 0;
        while i < buf.len() {
            // SAFETY: as in `read_bytes`: in bounds per `checked_ptr`, and aligned for 4-byte stores.
            unsafe {
                let p = dst.add(i);
                if (p as usize).is_multiple_of(4) && buf.len() - i >= 4 {
                    let word = u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
                    std::ptr::write_volatile(p.cast::<u32>(), word);
                    i += 4;
                } else {
                    std::ptr::write_volatile(p, buf[i]);
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

fn aligned_ptr<M: VolatileAccess + ?Sized, T>(
    mem: &M,
    op: &'static str,
    offset: u64,
) -> Result<*mut T> {
    let width = std::mem::size_of::<T>();
    if !offset.is_multiple_of(width as u64) {
        return Err(VfioError::invalid(
            op,
            format!("offset {offset:#x} is not aligned to the access width of {width} bytes"),
        ));
    }
    let ptr = mem.checked_ptr(op, offset, width)?;
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(VfioError::invalid(
            op,
            format!("offset {offset:#x} is not naturally aligned in memory"),
        ));
    }
    Ok(ptr.cast::<T>())
}

fn read<T: Copy>(mem: &(impl VolatileAccess + ?Sized), op: &'static str, offset: u64) -> Result<T> {
    let ptr = aligned_ptr::<_, T>(mem, op, offset)?;
    // SAFETY: `ptr` is in bounds for `size_of::<T>()` bytes (checked_ptr) and aligned for T.
    Ok(unsafe { std::ptr::read_volatile(ptr) })
}

fn write<T: Copy>(
    mem: &(impl VolatileAccess + ?Sized),
    op: &'static str,
    offset: u64,
    value: T,
) -> Result<()> {
    let ptr = aligned_ptr::<_, T>(mem, op, offset)?;
    // SAFETY: `ptr` is in bounds for `size_of::<T>()` bytes (checked_ptr) and aligned for T.
    unsafe { std::ptr::write_volatile(ptr, value) };
    Ok(())
}

/// Checks that `[offset, offset + width)` lies within `len` bytes, without overflow.
pub(crate) fn check_within(
    op: &'static str,
    what: &str,
    offset: u64,
    width: usize,
    len: u64,
) -> Result<()> {
    match offset.checked_add(width as u64) {
        Some(end) if end <= len => Ok(()),
        Some(end) => Err(VfioError::out_of_range(
            op,
            format!("{what}: [{offset:#x}, {end:#x}) lies past its size {len:#x}"),
        )),
        None => Err(VfioError::out_of_range(
            op,
            format!("{what}: offset {offset:#x} + {width} overflows 64 bits"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// Plain heap memory standing in for a mapping.
    struct Heap(std::cell::UnsafeCell<[u64; 4]>);

    impl VolatileAccess for Heap {
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
}
