//! The VFIO container (`/dev/vfio/vfio`): one IOMMU context shared by its groups.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vfio_bindings::bindings::vfio::*;

use crate::abi::{as_bytes, set_argsz};
use crate::error::{Result, VfioError};
use crate::group::VfioGroup;
use crate::hypervisor::VfioDeviceFd;
use crate::ioctls;
use crate::iommu::{check_iova_ranges, parse_iommu_info, IommuInfo, IovaRange};

/// The path of the container device node.
pub const VFIO_CONTAINER_PATH: &str = "/dev/vfio/vfio";

/// DMA operations common to VFIO backends (upstream's trait).
pub trait VfioOps: std::any::Any + Send + Sync + std::fmt::Debug {
    /// Maps `[user_addr, user_addr + size)` of this process at `iova`.
    ///
    /// # Safety
    /// Until the range is unmapped from the IOMMU the device may read and write that
    /// memory at any time: it must stay mapped, and no Rust reference to it may exist.
    unsafe fn vfio_dma_map(&self, iova: u64, size: usize, user_addr: *mut u8) -> Result<()>;

    /// Unmaps `[iova, iova + size)`, which must be exactly one earlier mapping.
    fn vfio_dma_unmap(&self, iova: u64, size: usize) -> Result<()>;

    /// For downcasting to the concrete backend.
    fn as_any(&self) -> &dyn std::any::Any;
}

#[derive(Debug, Default)]
struct ContainerState {
    /// Groups attached to this container, by number. Weak: devices own their group.
    groups: HashMap<u32, Weak<VfioGroup>>,
    /// Whether `VFIO_SET_IOMMU` was done; the kernel undoes it when the last group leaves.
    iommu_set: bool,
    /// Counts IOMMU contexts, so a DMA buffer knows whether its mapping still exists.
    generation: u64,
    /// Current DMA mappings: IOVA → size.
    mappings: BTreeMap<u64, u64>,
    /// The IOMMU's usable IOVA ranges, queried on the first map after the set of groups
    /// changed (each group can add reserved ranges); empty when the kernel reports none.
    iova_ranges: Option<Vec<IovaRange>>,
}

/// A VFIO container: owns `/dev/vfio/vfio` and the IOMMU mappings of its groups.
///
/// Share it as `Arc<VfioContainer>`: groups and devices keep it alive.
#[derive(Debug)]
pub struct VfioContainer {
    file: File,
    path: PathBuf,
    device_fd: Option<Arc<VfioDeviceFd>>,
    state: Mutex<ContainerState>,
}

impl VfioContainer {
    /// Opens `/dev/vfio/vfio`, checks the API version and the Type1v2 IOMMU.
    ///
    /// `device_fd` is the hypervisor's VFIO device, if this container serves a VM.
    ///
    /// # Errors
    /// `NotFound` without VFIO (with the hint to load vfio-pci), `Permission`,
    /// `Unsupported` for another API version or no Type1v2 IOMMU.
    pub fn new(device_fd: Option<Arc<VfioDeviceFd>>) -> Result<Self> {
        Self::open(Path::new(VFIO_CONTAINER_PATH), device_fd)
    }

    /// Like [`VfioContainer::new`] with another container node path.
    pub fn open(path: &Path, device_fd: Option<Arc<VfioDeviceFd>>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| VfioError::os("open", path.display().to_string(), e))?;
        let container = VfioContainer {
            file,
            path: path.to_path_buf(),
            device_fd,
            state: Mutex::default(),
        };
        let version = container.api_version()?;
        if version != VFIO_API_VERSION as i32 {
            return Err(VfioError::ApiVersion {
                found: version,
                expected: VFIO_API_VERSION,
            });
        }
        if !container.check_extension(VFIO_TYPE1v2_IOMMU)? {
            return Err(VfioError::unsupported(
                "VFIO_CHECK_EXTENSION",
                "the kernel offers no VFIO_TYPE1v2_IOMMU: load vfio_iommu_type1",
            ));
        }
        Ok(container)
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    /// `VFIO_GET_API_VERSION`.
    pub fn api_version(&self) -> Result<i32> {
        ioctls::get_api_version(&self.file)
            .map_err(|e| VfioError::os("VFIO_GET_API_VERSION", self.target(), e))
    }

    /// `VFIO_CHECK_EXTENSION`: whether the kernel offers an extension (`VFIO_TYPE1v2_IOMMU`...).
    pub fn check_extension(&self, extension: u32) -> Result<bool> {
        ioctls::check_extension(&self.file, extension)
            .map_err(|e| VfioError::os("VFIO_CHECK_EXTENSION", self.target(), e))
    }

    /// The container fd, for the group's `VFIO_GROUP_SET_CONTAINER`.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The hypervisor VFIO device, if any.
    pub fn device_fd(&self) -> Option<&Arc<VfioDeviceFd>> {
        self.device_fd.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, ContainerState> {
        // A panic while holding the lock cannot leave the table inconsistent (each update is
        // one statement), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group `id` of this container, opening and attaching it if needed.
    ///
    /// # Errors
    /// `NotFound` when `/dev/vfio/<id>` does not exist, `GroupNotViable` (naming the
    /// devices to bind), `Busy` when another container holds it, the kernel's errno otherwise.
    pub fn group(self: &Arc<Self>, id: u32) -> Result<Arc<VfioGroup>> {
        let mut state = self.lock();
        if let Some(group) = state.groups.get(&id).and_then(Weak::upgrade) {
            return Ok(group);
        }
        let group = VfioGroup::attach(self.clone(), id)?;
        if !state.iommu_set {
            if let Err(e) = ioctls::set_iommu(&self.file, VFIO_TYPE1v2_IOMMU) {
                // Dropping `group` unsets the container again; it must not lock `state`.
                drop(state);
                drop(group);
                return Err(VfioError::os("VFIO_SET_IOMMU", self.target(), e));
            }
            state.iommu_set = true;
            state.generation += 1;
        }
        state.groups.insert(id, Arc::downgrade(&group));
        state.iova_ranges = None;
        drop(state);
        // On failure dropping `group` detaches it again (its Drop takes the lock).
        group.register_with_hypervisor()?;
        Ok(group)
    }

    /// Called by a group as it leaves (from its `Drop`): forget it, and when it was the
    /// last, the kernel has released the IOMMU and every mapping with it.
    pub(crate) fn group_left(&self, id: u32) {
        let mut state = self.lock();
        state
            .groups
            .retain(|&gid, g| gid != id && g.strong_count() > 0);
        state.iova_ranges = None;
        if state.groups.is_empty() {
            state.iommu_set = false;
            state.mappings.clear();
        }
    }

    /// Numbers of the groups attached now.
    pub fn group_ids(&self) -> Vec<u32> {
        let state = self.lock();
        let mut ids: Vec<u32> = state
            .groups
            .iter()
            .filter(|(_, g)| g.strong_count() > 0)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The IOMMU's page sizes and capabilities (`VFIO_IOMMU_GET_INFO`).
    ///
    /// # Errors
    /// `InvalidArgument` before a group has joined (no IOMMU is set yet).
    pub fn iommu_info(&self) -> Result<IommuInfo> {
        const OP: &str = "VFIO_IOMMU_GET_INFO";
        self.require_iommu(OP)?;
        let header = std::mem::size_of::<vfio_iommu_type1_info>();
        let mut buf = vec![0u64; header.div_ceil(8)];
        for _ in 0..4 {
            let len = buf.len() * 8;
            set_argsz(&mut buf, len);
            ioctls::iommu_get_info(&self.file, &mut buf)
                .map_err(|e| VfioError::os(OP, self.target(), e))?;
            let wanted = (buf[0] & 0xffff_ffff) as usize;
            if wanted <= len {
                return parse_iommu_info(as_bytes(&buf));
            }
            buf = vec![0u64; wanted.div_ceil(8)];
        }
        Err(VfioError::invalid(
            OP,
            "the kernel kept asking for a larger buffer",
        ))
    }

    fn require_iommu(&self, op: &'static str) -> Result<u64> {
        let state = self.lock();
        if !state.iommu_set {
            return Err(VfioError::invalid(
                op,
                "the container has no IOMMU yet: open a device (or group) in it first",
            ));
        }
        Ok(state.generation)
    }

    /// Maps `[user_addr, user_addr + size)` at `iova` for reading and writing by devices.
    ///
    /// # Safety
    /// Until [`VfioContainer::vfio_dma_unmap`] succeeds for this range, the memory must stay
    /// mapped and be touched only through raw pointers (volatile or atomic): a device may
    /// read and write it at any time.
    ///
    /// # Errors
    /// `InvalidArgument` for a zero, unaligned or overlapping range; `Memlock` when
    /// `RLIMIT_MEMLOCK` is too low; the kernel's errno otherwise.
    pub unsafe fn vfio_dma_map(&self, iova: u64, size: usize, user_addr: *mut u8) -> Result<()> {
        // SAFETY: the caller upholds the contract of `dma_map_at`.
        unsafe { self.dma_map_at(iova, size as u64, user_addr as u64) }.map(drop)
    }

    /// Maps and returns the IOMMU generation the mapping belongs to.
    ///
    /// # Safety
    /// As [`VfioContainer::vfio_dma_map`].
    pub(crate) unsafe fn dma_map_at(&self, iova: u64, size: u64, vaddr: u64) -> Result<u64> {
        const OP: &str = "VFIO_IOMMU_MAP_DMA";
        let page = page_size();
        if size == 0
            || !size.is_multiple_of(page)
            || !iova.is_multiple_of(page)
            || !vaddr.is_multiple_of(page)
        {
            return Err(VfioError::invalid(
                OP,
                format!("iova {iova:#x}, size {size:#x} and address must be non-zero multiples of the page size {page:#x}"),
            ));
        }
        let end = iova.checked_add(size).ok_or_else(|| {
            VfioError::out_of_range(
                OP,
                format!("iova {iova:#x} + size {size:#x} overflows 64 bits"),
            )
        })?;
        let mut state = self.lock();
        if state.iova_ranges.is_none() && state.iommu_set {
            drop(state);
            let ranges = self.query_iova_ranges();
            state = self.lock();
            state.iova_ranges = Some(ranges);
        }
        if !state.iommu_set {
            return Err(VfioError::invalid(
                OP,
                "the container has no IOMMU yet: open a device (or group) in it first",
            ));
        }
        check_iova_ranges(OP, iova, end, state.iova_ranges.as_deref().unwrap_or(&[]))?;
        if let Some((&other, &other_size)) = state.mappings.range(..end).next_back() {
            if other + other_size > iova {
                return Err(VfioError::invalid(
                    OP,
                    format!(
                        "[{iova:#x}, {end:#x}) overlaps the existing mapping [{other:#x}, {:#x}); unmap it first or choose another IOVA",
                        other + other_size
                    ),
                ));
            }
        }
        let map = vfio_iommu_type1_dma_map {
            argsz: ioctls::argsz::<vfio_iommu_type1_dma_map>(),
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr,
            iova,
            size,
        };
        // SAFETY: the caller guarantees the memory outlives the mapping.
        unsafe { ioctls::iommu_map_dma(&self.file, &map) }
            .map_err(|e| VfioError::os(OP, format!("iova {iova:#x} size {size:#x}"), e))?;
        state.mappings.insert(iova, size);
        Ok(state.generation)
    }

    /// The usable IOVA ranges the kernel reports now; none (the check is left to
    /// `MAP_DMA`) when it does not answer `VFIO_IOMMU_GET_INFO` or reports no ranges.
    fn query_iova_ranges(&self) -> Vec<IovaRange> {
        self.iommu_info()
            .map(|info| info.iova_ranges)
            .unwrap_or_default()
    }

    /// Unmaps `[iova, iova + size)`, which must be exactly one current mapping.
    ///
    /// # Errors
    /// `InvalidArgument` when no mapping has that IOVA and size; the kernel's errno otherwise.
    pub fn vfio_dma_unmap(&self, iova: u64, size: usize) -> Result<()> {
        self.dma_unmap(iova, size as u64)
    }

    pub(crate) fn dma_unmap(&self, iova: u64, size: u64) -> Result<()> {
        let mut state = self.lock();
        self.unmap_locked(&mut state, iova, size)
    }

    /// Unmaps with the state lock held, so the table and the kernel cannot diverge.
    fn unmap_locked(&self, state: &mut ContainerState, iova: u64, size: u64) -> Result<()> {
        const OP: &str = "VFIO_IOMMU_UNMAP_DMA";
        match state.mappings.get(&iova) {
            Some(&s) if s == size => {}
            Some(&s) => {
                return Err(VfioError::invalid(
                    OP,
                    format!("the mapping at iova {iova:#x} has size {s:#x}, not {size:#x}"),
                ))
            }
            None => {
                return Err(VfioError::invalid(
                    OP,
                    format!("nothing is mapped at iova {iova:#x}"),
                ))
            }
        }
        let unmapped = ioctls::iommu_unmap_dma(&self.file, iova, size)
            .map_err(|e| VfioError::os(OP, format!("iova {iova:#x} size {size:#x}"), e))?;
        state.mappings.remove(&iova);
        if unmapped != size {
            return Err(VfioError::invalid(
                OP,
                format!("the kernel unmapped {unmapped:#x} bytes of {size:#x} at {iova:#x}"),
            ));
        }
        Ok(())
    }

    /// The current IOMMU context's generation, `None` while no IOMMU is set.
    pub(crate) fn current_generation(&self) -> Option<u64> {
        let s = self.lock();
        s.iommu_set.then_some(s.generation)
    }

    /// Unmaps a mapping made in IOMMU `generation`, if that context still exists. The
    /// check and the unmap share one lock: a context that ends and a new one that maps the
    /// same IOVA in between cannot have its mapping removed by a stale buffer.
    pub(crate) fn dma_unmap_owned(&self, iova: u64, size: u64, generation: u64) -> Result<()> {
        let mut state = self.lock();
        if !state.iommu_set || state.generation != generation {
            return Ok(()); // The IOMMU context (and the mapping with it) is gone already.
        }
        self.unmap_locked(&mut state, iova, size)
    }

    /// Current DMA mappings as `(iova, size)`, sorted by IOVA.
    pub fn dma_mappings(&self) -> Vec<(u64, u64)> {
        self.lock().mappings.iter().map(|(&i, &s)| (i, s)).collect()
    }
}

impl VfioOps for VfioContainer {
    unsafe fn vfio_dma_map(&self, iova: u64, size: usize, user_addr: *mut u8) -> Result<()> {
        // SAFETY: the caller upholds the trait's contract, which is the method's.
        unsafe { VfioContainer::vfio_dma_map(self, iova, size, user_addr) }
    }

    fn vfio_dma_unmap(&self, iova: u64, size: usize) -> Result<()> {
        VfioContainer::vfio_dma_unmap(self, iova, size)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl std::os::fd::AsRawFd for VfioContainer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

/// The system page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn host_without_vfio_gives_not_found_with_hint() {
        let e = VfioContainer::open(Path::new("/nonexistent/vfio"), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert_eq!(e.path().as_deref(), Some("/nonexistent/vfio"));
    }

    #[test]
    fn a_file_that_is_not_a_container_is_unsupported() {
        let e = VfioContainer::open(Path::new("/dev/null"), None).unwrap_err();
        assert_eq!(e.code(), "ERR_VFIO_UNSUPPORTED");
        assert_eq!(e.errno(), Some(libc::ENOTTY));
        assert_eq!(e.op(), "VFIO_GET_API_VERSION");
    }
}
