//! DMA buffers: page-aligned memory the library owns, mapped into the IOMMU.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::container::{page_size, VfioContainer};
use crate::error::{Result, VfioError};
use crate::volatile::{check_within, VolatileAccess};

/// Page-aligned anonymous memory. Freed (munmap) when the last `Arc` to it goes,
/// which is never before its IOMMU mapping is removed: the [`DmaBuffer`] holds one.
#[derive(Debug)]
pub struct DmaMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the memory is owned by this value and reached only through raw pointers; moving
// or sharing the owner between threads does not change who may free it (only Drop does).
unsafe impl Send for DmaMemory {}
// SAFETY: as above; concurrent access goes through volatile raw-pointer operations.
unsafe impl Sync for DmaMemory {}

impl DmaMemory {
    fn allocate(len: usize) -> Result<Self> {
        // SAFETY: a fresh private anonymous mapping; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(VfioError::last_os(
                "mmap",
                format!("DMA buffer of {len:#x} bytes"),
            ));
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| VfioError::invalid("mmap", "null mapping"))?;
        Ok(DmaMemory { ptr, len })
    }

    /// The start of the memory.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never, for an allocated buffer).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for DmaMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping `allocate` made and this value owns.
        if unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) } != 0 {
            log::warn!("munmap of DMA memory: {}", std::io::Error::last_os_error());
        }
    }
}

/// Memory the library allocated and mapped at an IOVA in a container's IOMMU.
#[derive(Debug)]
pub struct DmaBuffer {
    memory: Arc<DmaMemory>,
    iova: u64,
    container: Arc<VfioContainer>,
    /// The IOMMU generation of the mapping, `None` once unmapped.
    mapping: Mutex<Option<u64>>,
}

impl VfioContainer {
    /// Allocates `size` bytes of zeroed, page-aligned memory and maps it at `iova`
    /// for device reads and writes.
    ///
    /// # Errors
    /// `InvalidArgument` for a zero or unaligned size or IOVA, an overlap, or a container
    /// with no group yet; `Memlock` when `RLIMIT_MEMLOCK` is too low; the kernel's errno.
    pub fn allocate_dma(self: &Arc<Self>, size: u64, iova: u64) -> Result<DmaBuffer> {
        let page = page_size();
        if size == 0 || !size.is_multiple_of(page) {
            return Err(VfioError::invalid(
                "allocate_dma",
                format!("size {size:#x} must be a non-zero multiple of the page size {page:#x}"),
            ));
        }
        if !iova.is_multiple_of(page) {
            return Err(VfioError::invalid(
                "allocate_dma",
                format!("iova {iova:#x} must be a multiple of the page size {page:#x}"),
            ));
        }
        let len = usize::try_from(size).map_err(|_| {
            VfioError::out_of_range("allocate_dma", format!("size {size:#x} is too large"))
        })?;
        let memory = Arc::new(DmaMemory::allocate(len)?);
        // SAFETY: `memory` stays allocated while the buffer lives (it holds an Arc) and the
        // buffer unmaps the IOVA before dropping that Arc; it is only touched through raw pointers.
        let generation = unsafe { self.dma_map_at(iova, size, memory.as_ptr() as u64)? };
        Ok(DmaBuffer {
            memory,
            iova,
            container: self.clone(),
            mapping: Mutex::new(Some(generation)),
        })
    }
}

impl DmaBuffer {
    /// The IOVA devices use for this buffer.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.memory.len() as u64
    }

    /// Whether the buffer is still mapped in the IOMMU: not unmapped, and the IOMMU
    /// context it was mapped in still exists (the kernel drops every mapping when the
    /// container's last group leaves).
    pub fn is_mapped(&self) -> bool {
        let mapping = *self.mapping.lock().unwrap_or_else(|p| p.into_inner());
        mapping.is_some() && mapping == self.container.current_generation()
    }

    /// The memory, shareable beyond the buffer (e.g. by a zero-copy view); it is freed
    /// when the last holder drops it.
    pub fn memory(&self) -> &Arc<DmaMemory> {
        &self.memory
    }

    /// Removes the IOMMU mapping; the memory stays valid for its holders. When the
    /// container's IOMMU context ended (its last group left), the mapping went with it
    /// and this returns `Ok` once.
    ///
    /// # Errors
    /// `InvalidArgument` when already unmapped; the kernel's errno otherwise.
    pub fn unmap(&self) -> Result<()> {
        let mut mapping = self.mapping.lock().unwrap_or_else(|p| p.into_inner());
        let Some(generation) = *mapping else {
            return Err(VfioError::invalid(
                "VFIO_IOMMU_UNMAP_DMA",
                format!("the buffer at iova {:#x} is not mapped", self.iova),
            ));
        };
        self.container
            .dma_unmap_owned(self.iova, self.size(), generation)?;
        *mapping = None;
        Ok(())
    }
}

// SAFETY: `checked_ptr` returns a pointer only for ranges that `check_within` placed inside
// `self.memory`: a private read-write anonymous mapping of `size()` bytes, made by
// `DmaMemory::allocate` and unmapped only when the last `Arc<DmaMemory>` goes, and the
// buffer holds one for its whole life, so the memory outlives every `&self` borrow. The
// crate reaches it only through raw pointers (the device and JS views access it outside
// Rust), never through Rust references.
unsafe impl VolatileAccess for DmaBuffer {
    fn checked_ptr(&self, op: &'static str, offset: u64, width: usize) -> Result<*mut u8> {
        check_within(
            op,
            format_args!("DMA buffer at iova {:#x}", self.iova),
            offset,
            width,
            self.size(),
        )?;
        // SAFETY: `offset + width <= size()` was checked, so the result stays within the
        // allocation (and `offset` fits usize, being at most its length).
        Ok(unsafe { self.memory.as_ptr().add(offset as usize) })
    }

    fn len(&self) -> u64 {
        self.size()
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        if self.is_mapped() {
            if let Err(e) = self.unmap() {
                log::warn!("unmapping DMA buffer at iova {:#x}: {e}", self.iova);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioctls::fake::FakeKernel;
    use crate::ErrorKind;

    const UNMAP: &str = "VFIO_IOMMU_UNMAP_DMA";

    fn setup() -> (FakeKernel, Arc<VfioContainer>) {
        let kernel = FakeKernel::new();
        kernel.add_group(1);
        let container = kernel.container();
        (kernel, container)
    }

    #[test]
    fn allocate_dma_maps_zeroed_memory_at_the_iova() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let p = page_size();
        let buf = c.allocate_dma(2 * p, 8 * p).unwrap();
        assert_eq!((buf.iova(), buf.size()), (8 * p, 2 * p));
        assert!(buf.is_mapped());
        let vaddr = buf.memory().as_ptr() as u64;
        assert_eq!(
            kernel.state().containers[0].mappings.get(&(8 * p)),
            Some(&(2 * p, vaddr)),
            "the kernel maps the buffer's own memory"
        );
        assert_eq!(buf.read_u64(2 * p - 8).unwrap(), 0);
        buf.write_u32(4, 0xdead_beef).unwrap();
        assert_eq!(buf.read_u32(4).unwrap(), 0xdead_beef);
        assert_eq!(
            buf.read_u32(2 * p).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
    }

    #[test]
    fn allocate_dma_checks_size_and_iova_before_the_kernel() {
        let (kernel, c) = setup();
        let p = page_size();
        // No group yet: no IOMMU to map into.
        let e = c.allocate_dma(p, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("no IOMMU yet"), "{e}");
        let _g = c.group(1).unwrap();
        for (size, iova) in [(0, 0), (p + 1, 0), (p, 1)] {
            let e = c.allocate_dma(size, iova).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::InvalidArgument,
                "{size:#x} at {iova:#x}"
            );
            assert_eq!(e.op(), "allocate_dma");
        }
        assert_eq!(kernel.calls("VFIO_IOMMU_MAP_DMA"), 0);
    }

    #[test]
    fn a_refused_map_leaves_no_buffer_and_no_mapping() {
        let (kernel, c) = setup();
        kernel.state().memlock_limit = 0;
        let _g = c.group(1).unwrap();
        let e = c.allocate_dma(page_size(), 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Memlock);
        assert!(c.dma_mappings().is_empty());
    }

    #[test]
    fn dropping_a_buffer_unmaps_it_once() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let p = page_size();
        let buf = c.allocate_dma(p, 0).unwrap();
        let memory = buf.memory().clone();
        drop(buf);
        assert_eq!(kernel.calls(UNMAP), 1);
        assert!(c.dma_mappings().is_empty());
        assert!(kernel.state().containers[0].mappings.is_empty());
        // The memory outlives the buffer for its other holders.
        assert_eq!(memory.len() as u64, p);
        // The IOVA is free again.
        let _again = c.allocate_dma(p, 0).unwrap();
    }

    #[test]
    fn unmap_then_drop_unmaps_once() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let buf = c.allocate_dma(page_size(), 0).unwrap();
        buf.unmap().unwrap();
        assert!(!buf.is_mapped());
        let e = buf.unmap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("is not mapped"), "{e}");
        drop(buf);
        assert_eq!(kernel.calls(UNMAP), 1);
    }

    #[test]
    fn a_stale_buffer_never_unmaps_the_next_iommu_context() {
        let (kernel, c) = setup();
        let p = page_size();
        let g = c.group(1).unwrap();
        let stale = c.allocate_dma(p, 0).unwrap();
        // The last group leaves: the kernel drops the IOMMU and the mapping with it.
        drop(g);
        assert!(!stale.is_mapped());
        // A new context maps the same IOVA.
        let _g = c.group(1).unwrap();
        assert!(!stale.is_mapped(), "a new generation is not the buffer's");
        let fresh = c.allocate_dma(p, 0).unwrap();
        // The stale unmap is a no-op that succeeds once; it must not touch `fresh`.
        stale.unmap().unwrap();
        assert!(stale.unmap().is_err(), "once");
        drop(stale);
        assert_eq!(kernel.calls(UNMAP), 0);
        assert!(fresh.is_mapped());
        assert_eq!(c.dma_mappings(), [(0, p)]);
        assert_eq!(kernel.state().containers[0].mappings.len(), 1);
        fresh.unmap().unwrap();
        assert_eq!(kernel.calls(UNMAP), 1);
    }

    #[test]
    fn a_stale_buffer_dropped_while_no_group_is_attached_is_quiet() {
        let (kernel, c) = setup();
        let g = c.group(1).unwrap();
        let stale = c.allocate_dma(page_size(), 0).unwrap();
        drop(g);
        stale.unmap().unwrap();
        drop(stale);
        assert_eq!(kernel.calls(UNMAP), 0);
    }
}
