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
