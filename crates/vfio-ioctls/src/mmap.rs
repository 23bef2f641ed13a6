//! Regions mapped into this process (mmap of the device fd), honouring sparse areas.

use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::container::page_size;
use crate::device::VfioDevice;
use crate::error::{Result, VfioError};
use crate::region::VfioRegionSparseMmapArea;
use crate::volatile::{check_within, VolatileAccess};

/// A device region mapped into this process. Only its mmap-able areas are
/// accessible; the rest of the span is reserved with no access. Keeps the device
/// open, and is unmapped when dropped.
#[derive(Debug)]
pub struct MappedRegion {
    base: NonNull<u8>,
    /// Bytes reserved (the region's size rounded up to pages).
    span: usize,
    index: u32,
    size: u64,
    areas: Vec<VfioRegionSparseMmapArea>,
    /// Mapped for both reads and writes (else volatile access is refused, see `checked_ptr`).
    read_write: bool,
    /// A PCI BAR: accessible only while the device decodes memory.
    is_bar: bool,
    device: Arc<VfioDevice>,
}

// SAFETY: the mapping is owned by this value and only reached through raw pointers with
// volatile accesses, which any thread may do; the device behind it is `Send + Sync`.
unsafe impl Send for MappedRegion {}
// SAFETY: as above: shared access is only volatile loads and stores of plain integers.
unsafe impl Sync for MappedRegion {}

impl VfioDevice {
    /// Maps region `index` (all of its mmap-able areas) into this process.
    ///
    /// # Errors
    /// `OutOfRange` for an unknown index; `Unsupported` for a region that cannot be
    /// mmapped (use `region_read`/`region_write`); the kernel's errno otherwise.
    pub fn map_region(self: &Arc<Self>, index: u32) -> Result<MappedRegion> {
        const OP: &str = "mmap";
        let region = self.region(index)?.clone();
        let areas = region.mmap_areas();
        if areas.is_empty() {
            return Err(VfioError::unsupported(
                OP,
                format!(
                    "region {index} of {} cannot be mmapped; use region read/write instead",
                    self.name()
                ),
            ));
        }
        let page = page_size();
        let span = usize::try_from(region.size.div_ceil(page) * page).map_err(|_| {
            VfioError::out_of_range(
                OP,
                format!("region {index} is larger than the address space"),
            )
        })?;
        for area in &areas {
            if area.offset % page != 0
                || area
                    .offset
                    .checked_add(area.size)
                    .is_none_or(|end| end > span as u64)
            {
                return Err(VfioError::invalid(
                    OP,
                    format!("region {index}: sparse area {:#x}+{:#x} is unaligned or outside the region", area.offset, area.size),
                ));
            }
        }
        // SAFETY: a fresh anonymous reservation with no access; the kernel picks the address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(VfioError::last_os(
                OP,
                format!("{} region {index} (reserve {span:#x} bytes)", self.name()),
            ));
        }
        let Some(base) = NonNull::new(base.cast::<u8>()) else {
            return Err(VfioError::invalid(OP, "mmap returned a null mapping"));
        };
        // From here on `mapped` owns the reservation and unmaps it on any error.
        let mapped = MappedRegion {
            base,
            span,
            index,
            size: region.size,
            areas,
            read_write: region.readable() && region.writable(),
            is_bar: self.info().is_pci() && index <= crate::device::pci_region::BAR5,
            device: self.clone(),
        };
        let prot = (if region.readable() {
            libc::PROT_READ
        } else {
            0
        }) | (if region.writable() {
            libc::PROT_WRITE
        } else {
            0
        });
        for area in &mapped.areas {
            let len = usize::try_from(area.size.div_ceil(page) * page).unwrap_or(usize::MAX);
            let file_offset = libc::off_t::try_from(region.offset + area.offset).map_err(|_| {
                VfioError::out_of_range(OP, format!("region {index} offset does not fit off_t"))
            })?;
            // SAFETY: the target lies inside our own reservation (checked above), so MAP_FIXED
            // replaces only memory this value owns; the fd is the open device.
            let at = unsafe {
                libc::mmap(
                    mapped.base.as_ptr().add(area.offset as usize).cast(),
                    len,
                    prot,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    self.as_raw_fd(),
                    file_offset,
                )
            };
            if at == libc::MAP_FAILED {
                return Err(VfioError::last_os(
                    OP,
                    format!(
                        "{} region {index} area {:#x}+{:#x}",
                        self.name(),
                        area.offset,
                        area.size
                    ),
                ));
            }
        }
        Ok(mapped)
    }
}

impl MappedRegion {
    /// The region index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The region's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The mapped areas, relative to the region's start.
    pub fn areas(&self) -> &[VfioRegionSparseMmapArea] {
        &self.areas
    }

    /// The start of the mapping. Accessible only within [`MappedRegion::areas`].
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The device this region belongs to.
    pub fn device(&self) -> &Arc<VfioDevice> {
        &self.device
    }
}

impl MappedRegion {
    /// Whether `[offset, end)` lies inside one mmapped area (`end` within the region).
    #[inline]
    fn in_one_area(&self, offset: u64, end: u64) -> bool {
        // No overflow: `map_region` checked `a.offset + a.size` of every area.
        self.areas
            .iter()
            .any(|a| offset >= a.offset && end <= a.offset + a.size)
    }

    /// Why `checked_ptr` refused `[offset, offset + width)`: the first check it fails.
    #[cold]
    #[inline(never)]
    fn refusal(&self, op: &'static str, offset: u64, width: usize) -> VfioError {
        if !self.read_write {
            // The areas are mapped read-only (or write-only): a volatile access of the
            // other kind would fault, so refuse both.
            return VfioError::unsupported(
                op,
                format!(
                    "region {} of {} is not both readable and writable, so its mapping is not \
                     used for volatile access; use region read/write instead",
                    self.index,
                    self.device.name()
                ),
            );
        }
        if let Err(e) = check_within(
            op,
            format_args!("region {}", self.index),
            offset,
            width,
            self.size,
        ) {
            return e;
        }
        let end = offset + width as u64;
        if !self.in_one_area(offset, end) {
            return VfioError::out_of_range(
                op,
                format!("region {}: [{offset:#x}, {end:#x}) is not in an mmapped area (e.g. the MSI-X table); use region read/write", self.index),
            );
        }
        // vfio-pci zaps a BAR's mappings while memory decoding is off and answers any
        // access with SIGBUS, which would kill the process: refuse it here instead.
        VfioError::invalid(
            op,
            format!(
                "region {} of {}: memory decoding is off (bit 1 of the PCI command register \
                 is clear), and the kernel kills a process that touches a BAR then (SIGBUS): \
                 set PciConfig.COMMAND_MEMORY in the command register first",
                self.index,
                self.device.name()
            ),
        )
    }
}

// SAFETY: `checked_ptr` returns a pointer only for a range that lies inside one of `areas`
// and only when the region is readable and writable. `map_region` mapped each area
// (page-aligned, inside the reservation `base .. base + span`) MAP_SHARED from the device
// fd with PROT_READ | PROT_WRITE in that case (the protection follows the region's flags,
// which never change), and the mapping is removed only by `Drop`, so it outlives every
// `&self` borrow. The crate reaches it only through raw pointers, never references.
unsafe impl VolatileAccess for MappedRegion {
    #[inline]
    fn is_mmio(&self) -> bool {
        true
    }

    #[inline]
    fn checked_ptr(&self, op: &'static str, offset: u64, width: usize) -> Result<*mut u8> {
        // The success path is a few compares; every refusal is built out of line.
        let accessible = self.read_write
            && offset
                .checked_add(width as u64)
                .is_some_and(|end| end <= self.size && self.in_one_area(offset, end))
            && (!self.is_bar || self.device.decodes_memory());
        if !accessible {
            return Err(self.refusal(op, offset, width));
        }
        // SAFETY: `offset + width <= size <= span` (checked above), so the result stays
        // inside our reservation.
        Ok(unsafe { self.base.as_ptr().add(offset as usize) })
    }

    fn len(&self) -> u64 {
        self.size
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: `base`/`span` describe exactly the reservation this value made and owns;
        // nothing can use it after drop.
        if unsafe { libc::munmap(self.base.as_ptr().cast(), self.span) } != 0 {
            log::warn!(
                "munmap of region {}: {}",
                self.index,
                std::io::Error::last_os_error()
            );
        }
    }
}
