//! Sub-buffers of a DMA buffer: a range of it with its own IOVA, for the queues, PRP
//! lists and data areas a driver carves out of one mapping.

use std::borrow::Borrow;

use crate::dma::DmaBuffer;
use crate::error::{Result, VfioError};
use crate::volatile::{check_within, VolatileAccess};

/// `size` bytes at `offset` of a [`DmaBuffer`], reached by devices at `iova() + offset`.
///
/// `B` is how the slice holds its buffer: borrowed (`DmaSlice<&DmaBuffer>`, from
/// [`DmaBuffer::slice`]) or shared (`DmaSlice<Arc<DmaBuffer>>`, from [`DmaSlice::new`]),
/// which keeps the buffer, its memory and its mapping alive as long as the slice.
///
/// ```
/// # use vfio_ioctls::{DmaBuffer, DmaSlice, VolatileAccess};
/// # fn carve(queues: &DmaBuffer) -> vfio_ioctls::Result<()> {
/// let completions = queues.slice(0x1000, 0x1000)?;
/// assert_eq!(completions.iova(), queues.iova() + 0x1000);
/// completions.write_u32(0, 1)?; // offset 0x1000 of the buffer
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DmaSlice<B: Borrow<DmaBuffer>> {
    buffer: B,
    offset: u64,
    size: u64,
}

impl DmaBuffer {
    /// The `size` bytes at `offset`, as a slice that borrows this buffer.
    ///
    /// # Errors
    /// `InvalidArgument` for a size of 0; `OutOfRange` past the buffer's end.
    pub fn slice(&self, offset: u64, size: u64) -> Result<DmaSlice<&DmaBuffer>> {
        DmaSlice::new(self, offset, size)
    }
}

impl<B: Borrow<DmaBuffer>> DmaSlice<B> {
    /// The `size` bytes at `offset` of `buffer`.
    ///
    /// # Errors
    /// `InvalidArgument` for a size of 0; `OutOfRange` past the buffer's end.
    pub fn new(buffer: B, offset: u64, size: u64) -> Result<Self> {
        let whole = buffer.borrow();
        check_range(
            format_args!("DMA buffer at iova {:#x}", whole.iova()),
            offset,
            size,
            whole.size(),
        )?;
        Ok(DmaSlice {
            buffer,
            offset,
            size,
        })
    }

    /// The `size` bytes at `offset` of this slice, holding the buffer the same way.
    ///
    /// # Errors
    /// `InvalidArgument` for a size of 0; `OutOfRange` past this slice's end.
    pub fn slice(&self, offset: u64, size: u64) -> Result<Self>
    where
        B: Clone,
    {
        check_range(
            format_args!("DMA slice at iova {:#x}", self.iova()),
            offset,
            size,
            self.size,
        )?;
        Ok(DmaSlice {
            buffer: self.buffer.clone(),
            // No overflow: `offset + size <= self.size` and `self.offset + self.size` is
            // within the buffer.
            offset: self.offset + offset,
            size,
        })
    }

    /// The IOVA of the slice's first byte: the buffer's IOVA plus [`DmaSlice::offset`].
    pub fn iova(&self) -> u64 {
        // No overflow: the buffer's mapping `[iova, iova + size)` fits 64 bits, and the
        // slice lies inside it.
        self.buffer.borrow().iova() + self.offset
    }

    /// Where the slice starts in its buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The buffer it is part of.
    pub fn buffer(&self) -> &DmaBuffer {
        self.buffer.borrow()
    }
}

/// Checks that `[offset, offset + size)` is a non-empty range within `len` bytes.
fn check_range(what: std::fmt::Arguments<'_>, offset: u64, size: u64, len: u64) -> Result<()> {
    const OP: &str = "slice";
    if size == 0 {
        return Err(VfioError::invalid(
            OP,
            format!("{what}: a slice needs a length of at least 1 byte"),
        ));
    }
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        _ => Err(VfioError::out_of_range(
            OP,
            format!("{what}: [{offset:#x}, +{size:#x}) lies past its size {len:#x}"),
        )),
    }
}

// SAFETY: `checked_ptr` returns only what the buffer's own `checked_ptr` returns (after
// checking the range lies within the slice, which `new`/`slice` placed within the
// buffer), for the `&DmaBuffer` borrowed from `self.buffer` through the same `&self`: that
// reference keeps the buffer, and so the memory its pointer points into, alive for as long
// as the `&self` borrow, which is the trait's requirement; the buffer's impl vouches for
// the rest (accessible bytes, raw-pointer-only access).
unsafe impl<B: Borrow<DmaBuffer>> VolatileAccess for DmaSlice<B> {
    #[inline]
    fn checked_ptr(&self, op: &'static str, offset: u64, width: usize) -> Result<*mut u8> {
        check_within(
            op,
            format_args!("DMA slice at iova {:#x}", self.iova()),
            offset,
            width,
            self.size,
        )?;
        // No overflow: `offset + width <= size` and the slice lies within the buffer.
        self.buffer
            .borrow()
            .checked_ptr(op, self.offset + offset, width)
    }

    fn len(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::container::page_size;
    use crate::ioctls::fake::FakeKernel;
    use crate::ErrorKind;

    #[test]
    fn a_slice_has_its_own_iova_and_reaches_the_buffer_at_its_offset() {
        let (_kernel, c, _g) = FakeKernel::attached(1, &[]);
        let p = page_size();
        let buf = Arc::new(c.allocate_dma(4 * p, 16 * p).unwrap());
        let s = buf.slice(p + 8, 64).unwrap();
        assert_eq!((s.iova(), s.offset(), s.size()), (17 * p + 8, p + 8, 64));
        s.write_u32(4, 0xfeed_f00d).unwrap();
        assert_eq!(buf.read_u32(p + 12).unwrap(), 0xfeed_f00d);
        assert_eq!(s.read_vec(4, 4).unwrap(), 0xfeed_f00du32.to_ne_bytes());
        // Bounds are the slice's, not the buffer's.
        let e = s.read_u32(64).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert!(e.to_string().contains("DMA slice at iova"), "{e}");
        assert_eq!(
            s.write_bytes(60, &[0; 5]).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        // Slices of slices add up, and a shared one keeps the mapping after the owner goes.
        let shared = DmaSlice::new(buf.clone(), p, p).unwrap();
        let inner = shared.slice(8, 8).unwrap();
        assert_eq!((inner.offset(), inner.iova()), (p + 8, 17 * p + 8));
        assert_eq!(inner.read_u64(0).unwrap(), buf.read_u64(p + 8).unwrap());
        assert!(std::ptr::eq(inner.buffer(), &*buf));
        drop(buf);
        assert!(
            inner.buffer().is_mapped(),
            "the slice keeps the buffer mapped"
        );
        assert_eq!(c.dma_mappings(), [(16 * p, 4 * p)]);
        drop((shared, inner));
        assert!(c.dma_mappings().is_empty(), "the last holder unmaps");
    }

    #[test]
    fn slices_past_the_end_or_empty_are_refused() {
        let (_kernel, c, _g) = FakeKernel::attached(1, &[]);
        let p = page_size();
        let buf = c.allocate_dma(p, 0).unwrap();
        assert!(buf.slice(0, p).is_ok());
        for (offset, size, kind) in [
            (0, 0, ErrorKind::InvalidArgument),
            (0, p + 1, ErrorKind::OutOfRange),
            (p, 1, ErrorKind::OutOfRange),
            (u64::MAX, 2, ErrorKind::OutOfRange),
        ] {
            let e = buf.slice(offset, size).unwrap_err();
            assert_eq!(e.kind(), kind, "{offset:#x}+{size:#x}: {e}");
            assert_eq!(e.op(), "slice");
        }
        let s = DmaSlice::new(&buf, 8, 16).unwrap();
        assert_eq!(s.slice(8, 9).unwrap_err().kind(), ErrorKind::OutOfRange);
        assert_eq!(
            s.slice(16, 0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
