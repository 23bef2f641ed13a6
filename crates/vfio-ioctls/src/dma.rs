//! DMA buffers: page-aligned memory the library owns, mapped into the IOMMU.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::container::{page_size, IovaPlacement, VfioContainer};
use crate::error::{Result, VfioError};
use crate::huge_pages::{self, HugePageSize};
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
    /// Zeroed private anonymous memory, of huge pages when `huge_pages` is given (then
    /// `len` is a multiple of their size, which the caller checked).
    fn allocate(len: usize, huge_pages: Option<HugePageSize>) -> Result<Self> {
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | huge_pages.map_or(0, HugePageSize::mmap_flags);
        // SAFETY: a fresh private anonymous mapping; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let source = std::io::Error::last_os_error();
            return Err(match huge_pages {
                Some(size) => huge_pages::mmap_error(size, len as u64, source),
                None => VfioError::os("mmap", format!("DMA buffer of {len:#x} bytes"), source),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| VfioError::invalid("mmap", "null mapping"))?;
        Ok(DmaMemory { ptr, len })
    }

    /// The start of the memory.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length in bytes.
    #[inline]
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

/// How [`VfioContainer::allocate_dma_with`] places and backs a buffer; the default is
/// the lowest free page-aligned IOVA the IOMMU can map, in normal pages.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaOptions {
    /// This IOVA (a multiple of the page size) instead of one chosen by the library.
    pub iova: Option<u64>,
    /// The IOVA is a multiple of this power of two, at least the page size. Default: the
    /// page size, or the huge page size with `huge_pages`.
    pub align: Option<u64>,
    /// The highest address the device can reach (its DMA mask, e.g. `0xffff_ffff` for a
    /// 32-bit device): the buffer's last byte is at most this.
    pub dma_mask: Option<u64>,
    /// Back the buffer with huge pages of this size; `size` must be a multiple of it.
    pub huge_pages: Option<HugePageSize>,
}

impl VfioContainer {
    /// Allocates `size` bytes of zeroed, page-aligned memory and maps it at `iova`
    /// for device reads and writes.
    ///
    /// # Errors
    /// `InvalidArgument` for a zero or unaligned size or IOVA, an overlap, or a container
    /// with no group yet; `Memlock` when `RLIMIT_MEMLOCK` is too low; the kernel's errno.
    pub fn allocate_dma(self: &Arc<Self>, size: u64, iova: u64) -> Result<DmaBuffer> {
        self.allocate_dma_with(
            size,
            &DmaOptions {
                iova: Some(iova),
                ..DmaOptions::default()
            },
        )
    }

    /// Allocates `size` bytes of zeroed memory and maps it for device reads and writes,
    /// at `options.iova` or else at the lowest free IOVA inside the IOMMU's usable ranges
    /// (never the reserved MSI window) that is aligned to `options.align` and ends at or
    /// below `options.dma_mask`.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use vfio_ioctls::{DmaOptions, HugePageSize, VfioContainer, VfioDevice};
    ///
    /// let container = Arc::new(VfioContainer::new(None)?);
    /// let _device = VfioDevice::open("0000:00:03.0", container.clone())?;
    /// let queue = container.allocate_dma_with(
    ///     2 << 20,
    ///     &DmaOptions { dma_mask: Some(0xffff_ffff), huge_pages: Some(HugePageSize::Size2M), ..Default::default() },
    /// )?;
    /// assert!(queue.iova() + queue.size() - 1 <= 0xffff_ffff);
    /// # Ok::<(), vfio_ioctls::VfioError>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for a zero size or one that is not a multiple of the (huge) page
    /// size, an alignment that is not a power of two of at least a page, a given IOVA that
    /// is unaligned or overlaps, or a container with no group yet; `OutOfRange` when no
    /// free IOVA meets the request or a given one ends above the mask, and when too few
    /// huge pages are free ([`VfioError::HugePages`], saying how to reserve more);
    /// `Memlock` when `RLIMIT_MEMLOCK` is too low; the kernel's errno otherwise.
    pub fn allocate_dma_with(
        self: &Arc<Self>,
        size: u64,
        options: &DmaOptions,
    ) -> Result<DmaBuffer> {
        const OP: &str = "allocate_dma";
        let page = page_size();
        let unit = options.huge_pages.map_or(page, HugePageSize::bytes);
        if size == 0 || !size.is_multiple_of(unit) {
            let message = match options.huge_pages {
                Some(huge) => format!(
                    "size {size:#x} must be a non-zero multiple of the {huge} huge page size {unit:#x} \
                     (huge pages are never split: ask for {:#x})",
                    size.div_ceil(unit).max(1).saturating_mul(unit)
                ),
                None => format!("size {size:#x} must be a non-zero multiple of the page size {page:#x}"),
            };
            return Err(VfioError::invalid(OP, message));
        }
        let align = options.align.unwrap_or(unit);
        if !align.is_power_of_two() || align < page {
            return Err(VfioError::invalid(
                OP,
                format!(
                    "align {align:#x} must be a power of two of at least the page size {page:#x}"
                ),
            ));
        }
        let limit = options.dma_mask.unwrap_or(u64::MAX);
        let placement = match options.iova {
            Some(iova) => {
                check_given_iova(iova, size, options)?;
                IovaPlacement::At(iova)
            }
            None => IovaPlacement::Lowest { align, limit },
        };
        let len = usize::try_from(size)
            .map_err(|_| VfioError::out_of_range(OP, format!("size {size:#x} is too large")))?;
        let memory = Arc::new(DmaMemory::allocate(len, options.huge_pages)?);
        // SAFETY: `memory` stays allocated while the buffer lives (it holds an Arc) and the
        // buffer unmaps the IOVA before dropping that Arc; it is only touched through raw pointers.
        let (iova, generation) = unsafe { self.dma_map(placement, size, memory.as_ptr() as u64)? };
        Ok(DmaBuffer {
            memory,
            iova,
            container: self.clone(),
            mapping: Mutex::new(Some(generation)),
        })
    }
}

/// Checks an IOVA the caller chose against the page size, and against the alignment and
/// mask when they were given too.
fn check_given_iova(iova: u64, size: u64, options: &DmaOptions) -> Result<()> {
    const OP: &str = "allocate_dma";
    let page = page_size();
    if !iova.is_multiple_of(page) {
        return Err(VfioError::invalid(
            OP,
            format!("iova {iova:#x} must be a multiple of the page size {page:#x}"),
        ));
    }
    if let Some(align) = options.align.filter(|&a| !iova.is_multiple_of(a)) {
        return Err(VfioError::invalid(
            OP,
            format!("iova {iova:#x} is not a multiple of align {align:#x}: choose another or leave iova out"),
        ));
    }
    let last = iova.saturating_add(size - 1);
    if let Some(mask) = options.dma_mask.filter(|&m| last > m) {
        return Err(VfioError::out_of_range(
            OP,
            format!("[{iova:#x}, {last:#x}] ends above the dmaMask {mask:#x}, which the device cannot reach: choose a lower iova or leave it out"),
        ));
    }
    Ok(())
}

impl DmaBuffer {
    /// The IOVA devices use for this buffer.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The size in bytes.
    #[inline]
    pub fn size(&self) -> u64 {
        self.memory.len() as u64
    }

    /// Whether the buffer is still mapped in the IOMMU: not unmapped, and the IOMMU
    /// context it was mapped in still exists (the kernel drops every mapping when the
    /// container's last group leaves).
    pub fn is_mapped(&self) -> bool {
        let mapping = *crate::sync::lock(&self.mapping);
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
        let mut mapping = crate::sync::lock(&self.mapping);
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
    #[inline]
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
    use crate::error::assert_mentions;
    use crate::ioctls::fake::{FakeKernel, X86_IOVA_RANGES};
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

    /// Options that only set what the library chooses the IOVA by.
    fn choose(align: Option<u64>, dma_mask: Option<u64>) -> DmaOptions {
        DmaOptions {
            align,
            dma_mask,
            ..DmaOptions::default()
        }
    }

    #[test]
    fn without_an_iova_the_lowest_free_usable_one_is_chosen() {
        let (kernel, c, _g) = FakeKernel::attached(1, &X86_IOVA_RANGES);
        let p = page_size();
        let any = DmaOptions::default();
        // Page 0 is usable but never chosen (a stray DMA to 0 must fault).
        let a = c.allocate_dma_with(p, &any).unwrap();
        let b = c.allocate_dma_with(2 * p, &any).unwrap();
        let fixed = c.allocate_dma(p, 5 * p).unwrap();
        let d = c.allocate_dma_with(2 * p, &any).unwrap();
        let e = c.allocate_dma_with(p, &any).unwrap();
        let got: Vec<u64> = [&a, &b, &d, &e].iter().map(|x| x.iova()).collect();
        // d does not fit the one page left at 4p, so e takes it.
        assert_eq!(got, [p, 2 * p, 6 * p, 4 * p]);
        assert_eq!(
            c.dma_mappings(),
            [
                (p, p),
                (2 * p, 2 * p),
                (4 * p, p),
                (5 * p, p),
                (6 * p, 2 * p)
            ]
        );
        assert_eq!(kernel.state().containers[0].mappings.len(), 5);
        // A freed IOVA is used again; an explicit IOVA 0 is still allowed.
        drop(b);
        assert_eq!(c.allocate_dma_with(p, &any).unwrap().iova(), 2 * p);
        assert_eq!(c.allocate_dma(p, 0).unwrap().iova(), 0);
        let aligned = c
            .allocate_dma_with(p, &choose(Some(0x10_0000), None))
            .unwrap();
        assert_eq!(aligned.iova(), 0x10_0000);
        drop(fixed);
    }

    #[test]
    fn the_msi_window_and_the_dma_mask_bound_the_choice() {
        let (kernel, c, _g) = FakeKernel::attached(1, &X86_IOVA_RANGES);
        let p = page_size();
        // Fill everything below the MSI window with one (unbacked) mapping.
        // SAFETY: the fake kernel never touches the memory it is told about.
        unsafe { c.dma_map_at(0, 0xfee0_0000, 0x7f00_0000_0000) }.unwrap();
        let next = c
            .allocate_dma_with(p, &choose(None, Some(0xffff_ffff)))
            .unwrap();
        assert_eq!(
            next.iova(),
            0xfef0_0000,
            "past the window, still under 4 GiB"
        );
        let big = 0x200_0000;
        let e = c
            .allocate_dma_with(big, &choose(None, Some(0xffff_ffff)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert_eq!((e.op(), e.errno()), ("allocate_dma", None));
        assert_mentions(
            &e,
            &[
                "size 0x2000000",
                "at most 0xffffffff",
                "[0xfef00000, 0x7fffffffff]",
                "2 current mappings",
            ],
        );
        assert_eq!(
            kernel.calls("VFIO_IOMMU_MAP_DMA"),
            2,
            "refused before the kernel"
        );
        let high = c.allocate_dma_with(big, &DmaOptions::default()).unwrap();
        assert_eq!(
            high.iova(),
            0xfef0_0000 + p,
            "without the mask it may cross 4 GiB"
        );
    }

    #[test]
    fn a_given_iova_is_checked_against_align_and_mask_when_given() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let p = page_size();
        let at = |iova, align, dma_mask| DmaOptions {
            iova: Some(iova),
            align,
            dma_mask,
            ..DmaOptions::default()
        };
        let e = c
            .allocate_dma_with(p, &at(p, Some(2 * p), None))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("not a multiple of align"), "{e}");
        let e = c
            .allocate_dma_with(2 * p, &at(0xffff_f000, None, Some(0xffff_ffff)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert!(
            e.to_string().contains("ends above the dmaMask 0xffffffff"),
            "{e}"
        );
        for align in [0, 3 * p, p / 2] {
            let e = c
                .allocate_dma_with(p, &choose(Some(align), None))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{align:#x}");
            assert!(e.to_string().contains("power of two"), "{e}");
        }
        assert_eq!(kernel.calls("VFIO_IOMMU_MAP_DMA"), 0);
        let ok = c
            .allocate_dma_with(p, &at(0xffff_f000, Some(p), Some(0xffff_ffff)))
            .unwrap();
        assert_eq!(ok.iova(), 0xffff_f000);
    }

    #[test]
    fn huge_page_sizes_must_be_whole_pages() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let huge = DmaOptions {
            huge_pages: Some(HugePageSize::Size2M),
            ..DmaOptions::default()
        };
        for size in [page_size(), (2 << 20) + page_size()] {
            let e = c.allocate_dma_with(size, &huge).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("huge page size 0x200000"), "{e}");
        }
        assert!(c
            .allocate_dma_with(page_size(), &huge)
            .unwrap_err()
            .to_string()
            .contains("ask for 0x200000"));
        assert_eq!(kernel.calls("VFIO_IOMMU_MAP_DMA"), 0);
    }

    #[test]
    fn concurrent_allocations_never_share_an_iova() {
        let (_kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let buffers: Vec<DmaBuffer> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let c = &c;
                    s.spawn(move || {
                        (0..16)
                            .map(|_| {
                                c.allocate_dma_with(page_size(), &DmaOptions::default())
                                    .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let mut iovas: Vec<u64> = buffers.iter().map(DmaBuffer::iova).collect();
        iovas.sort_unstable();
        let expected: Vec<u64> = (1..=64).map(|i| i * page_size()).collect();
        assert_eq!(
            iovas, expected,
            "the lowest 64 pages past page 0, each once"
        );
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
