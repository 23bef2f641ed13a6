//! The VFIO container (`/dev/vfio/vfio`): one IOMMU context shared by its groups.

use std::collections::HashMap;
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
use crate::iova_alloc::{lowest_free, no_space, IovaMappings, IovaRequest};

/// Where a new DMA mapping goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum IovaPlacement {
    /// At this IOVA, which the caller chose.
    At(u64),
    /// At the lowest free IOVA that is a multiple of `align` (a power of two) and puts
    /// the mapping's last byte at most at `limit` (the device's DMA mask).
    Lowest {
        /// The alignment.
        align: u64,
        /// The highest address the device reaches.
        limit: u64,
    },
}

/// The path of the container device node.
pub const VFIO_CONTAINER_PATH: &str = "/dev/vfio/vfio";

/// Where the group nodes (`<dir>/<N>`) are.
const VFIO_GROUP_DIR: &str = "/dev/vfio";

/// Which IOMMU backend a [`VfioContainer`] drives.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum IommuBackend {
    /// VFIO's own container (`/dev/vfio/vfio`) with the Type1v2 IOMMU.
    Type1,
    /// iommufd's VFIO container compatibility: the group/container flow with
    /// `/dev/iommu` as the container fd. Its IOAS outlives the groups: mappings stay
    /// when the last group leaves.
    IommufdCompat,
    /// Native iommufd: an IOAS of `/dev/iommu`, devices opened through their cdev.
    Iommufd,
}

impl IommuBackend {
    /// The name the binding uses: `type1`, `iommufd-compat` or `iommufd`.
    pub fn as_str(self) -> &'static str {
        match self {
            IommuBackend::Type1 => "type1",
            IommuBackend::IommufdCompat => "iommufd-compat",
            IommuBackend::Iommufd => "iommufd",
        }
    }
}

/// DMA operations common to VFIO backends: upstream's trait, with its supertraits and
/// default bodies, so a VMM's own backend implements it as it does upstream's.
///
/// Upstream's default bodies panic (`unimplemented!()`); ours do not: the two DMA
/// methods return `Unsupported`, and `as_any` returns a value no backend downcasts to
/// (so [`VfioDevice`](crate::VfioDevice) refuses the backend instead of crashing).
/// `Debug` is not required of implementors: `dyn VfioOps` has its own `Debug`.
///
/// ```
/// use vfio_ioctls::{ErrorKind, VfioOps};
///
/// struct NoDma;
/// impl VfioOps for NoDma {}
///
/// let ops: &dyn VfioOps = &NoDma;
/// assert_eq!(ops.vfio_dma_unmap(0x1000, 0x1000).unwrap_err().kind(), ErrorKind::Unsupported);
/// assert!(ops.as_any().downcast_ref::<NoDma>().is_none());
/// assert_eq!(format!("{ops:?}"), "VfioOps { .. }");
/// ```
pub trait VfioOps: std::any::Any + Send + Sync {
    /// Maps `[user_addr, user_addr + size)` of this process at `iova`.
    ///
    /// # Safety
    /// Until the range is unmapped from the IOMMU the device may read and write that
    /// memory at any time: it must stay mapped, and no Rust reference to it may exist.
    ///
    /// # Errors
    /// The default body: `Unsupported` (the backend offers no DMA mapping).
    unsafe fn vfio_dma_map(&self, _iova: u64, _size: usize, _user_addr: *mut u8) -> Result<()> {
        Err(VfioError::unsupported(
            "vfio_dma_map",
            "this VfioOps backend does not implement vfio_dma_map",
        ))
    }

    /// Unmaps `[iova, iova + size)`, which must be exactly one earlier mapping.
    ///
    /// # Errors
    /// The default body: `Unsupported` (the backend offers no DMA mapping).
    fn vfio_dma_unmap(&self, _iova: u64, _size: usize) -> Result<()> {
        Err(VfioError::unsupported(
            "vfio_dma_unmap",
            "this VfioOps backend does not implement vfio_dma_unmap",
        ))
    }

    /// For downcasting to the concrete backend. The default body returns a `()`, which
    /// no backend downcasts to.
    fn as_any(&self) -> &dyn std::any::Any {
        &()
    }
}

impl std::fmt::Debug for dyn VfioOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_any().downcast_ref::<VfioContainer>() {
            Some(container) => container.fmt(f),
            None => f.write_str("VfioOps { .. }"),
        }
    }
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
    mappings: IovaMappings,
    /// The IOMMU's usable IOVA ranges, queried on the first map after the set of groups
    /// changed (each group can add reserved ranges); empty when the kernel reports none.
    iova_ranges: Option<Vec<IovaRange>>,
    /// Counts changes of the set of groups, so ranges queried while one happened are
    /// not cached as current.
    groups_epoch: u64,
}

/// A VFIO container: owns `/dev/vfio/vfio` and the IOMMU mappings of its groups.
///
/// Share it as `Arc<VfioContainer>`: groups and devices keep it alive.
#[derive(Debug)]
pub struct VfioContainer {
    file: File,
    path: PathBuf,
    /// [`VFIO_GROUP_DIR`]; a fake kernel's directory in unit tests.
    group_dir: PathBuf,
    device_fd: Option<Arc<VfioDeviceFd>>,
    state: Mutex<ContainerState>,
    /// Whether `file` is an iommufd serving VFIO's container ioctls (its IOAS, and every
    /// mapping in it, outlives the groups).
    compat: bool,
    /// The IOAS of a native iommufd container (then `file` is a dup of its iommufd).
    #[cfg(feature = "vfio_cdev")]
    ioas: Option<crate::iommufd::Ioas>,
}

impl VfioContainer {
    /// Opens `/dev/vfio/vfio`, checks the API version and the Type1v2 IOMMU (upstream's
    /// constructor).
    ///
    /// `device_fd` is the hypervisor's VFIO device, if this container serves a VM.
    ///
    /// # Errors
    /// Upstream's variants: `OpenContainer` (kind `NotFound` without VFIO, with the hint
    /// to load vfio-pci; `Permission`), `VfioApiVersion`, `VfioExtension` (no Type1v2
    /// IOMMU). [`VfioContainer::open`] returns the structured errors instead.
    pub fn new(device_fd: Option<Arc<VfioDeviceFd>>) -> Result<Self> {
        Self::open(Path::new(VFIO_CONTAINER_PATH), device_fd).map_err(VfioError::into_upstream)
    }

    /// Like [`VfioContainer::new`] with another container node path (`/dev/iommu` for
    /// iommufd's container compatibility), and our structured errors.
    ///
    /// # Errors
    /// `Os` of `open` (`NotFound` without VFIO, with the hint to load vfio-pci,
    /// `Permission`), `ApiVersion` (with the version found), `Unsupported` without a
    /// Type1v2 IOMMU.
    pub fn open(path: &Path, device_fd: Option<Arc<VfioDeviceFd>>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| VfioError::os("open", path.display().to_string(), e))?;
        let container = VfioContainer {
            file,
            path: path.to_path_buf(),
            group_dir: PathBuf::from(VFIO_GROUP_DIR),
            device_fd,
            state: Mutex::default(),
            compat: false,
            #[cfg(feature = "vfio_cdev")]
            ioas: None,
        };
        // Only an iommufd answers IOMMU_OPTION (a VFIO container says ENOTTY).
        let container = VfioContainer {
            compat: ioctls::iommufd_rlimit_mode(&container.file).is_ok(),
            ..container
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

    /// A native-iommufd container over `ioas`; `file` is a dup of its iommufd. The IOAS
    /// exists from the start: one IOMMU context (generation 1) for the container's life.
    #[cfg(feature = "vfio_cdev")]
    pub(crate) fn from_ioas(
        file: File,
        path: PathBuf,
        ioas: crate::iommufd::Ioas,
        device_fd: Option<Arc<VfioDeviceFd>>,
    ) -> Self {
        VfioContainer {
            file,
            path,
            group_dir: PathBuf::from(VFIO_GROUP_DIR),
            device_fd,
            state: Mutex::new(ContainerState {
                iommu_set: true,
                generation: 1,
                ..ContainerState::default()
            }),
            compat: false,
            ioas: Some(ioas),
        }
    }

    /// The IOAS of a native iommufd container.
    #[cfg(feature = "vfio_cdev")]
    pub(crate) fn ioas(&self) -> Option<&crate::iommufd::Ioas> {
        self.ioas.as_ref()
    }

    /// Whether this is a native iommufd container.
    fn is_ioas(&self) -> bool {
        #[cfg(feature = "vfio_cdev")]
        return self.ioas.is_some();
        #[cfg(not(feature = "vfio_cdev"))]
        false
    }

    /// Which IOMMU backend this container drives.
    pub fn backend(&self) -> IommuBackend {
        if self.is_ioas() {
            IommuBackend::Iommufd
        } else if self.compat {
            IommuBackend::IommufdCompat
        } else {
            IommuBackend::Type1
        }
    }

    /// The node this container opened (`/dev/vfio/vfio` or `/dev/iommu`).
    pub fn path(&self) -> &Path {
        &self.path
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

    /// Looks for group nodes in `dir` (a fake kernel's) instead of `/dev/vfio`.
    #[cfg(test)]
    pub(crate) fn with_group_dir(mut self, dir: &Path) -> Self {
        self.group_dir = dir.to_path_buf();
        self
    }

    /// The node of group `id`.
    pub(crate) fn group_path(&self, id: u32) -> PathBuf {
        self.group_dir.join(id.to_string())
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
        crate::sync::lock(&self.state)
    }

    /// The group `id` of this container, opening and attaching it if needed.
    ///
    /// # Errors
    /// `NotFound` when `/dev/vfio/<id>` does not exist, `GroupNotViable` (naming the
    /// devices to bind), `Busy` when another container holds it, the kernel's errno otherwise.
    pub fn group(self: &Arc<Self>, id: u32) -> Result<Arc<VfioGroup>> {
        if self.is_ioas() {
            return Err(VfioError::unsupported(
                "VFIO_GROUP_SET_CONTAINER",
                format!(
                    "a native iommufd container ({}) holds no groups: devices join it through \
                     their cdev (VfioDevice::open); use the group flow with a type1 or \
                     iommufd-compat container",
                    self.target()
                ),
            ));
        }
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
        state.groups_epoch += 1;
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
        state.groups_epoch += 1;
        // iommufd's compatibility IOAS stays with its mappings (until the fd is closed).
        if state.groups.is_empty() && !self.compat {
            state.iommu_set = false;
            state.mappings.clear();
        }
    }

    /// A device was attached to or detached from the IOAS (which narrows or widens its
    /// usable IOVA ranges): ask the kernel again on the next map.
    #[cfg_attr(not(feature = "vfio_cdev"), allow(dead_code))]
    pub(crate) fn ranges_changed(&self) {
        let mut state = self.lock();
        state.iova_ranges = None;
        state.groups_epoch += 1;
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

    /// The groups attached now, by number. The lock is released before the caller can
    /// drop them (a last drop leaves the container, which takes the lock).
    pub(crate) fn held_groups(&self) -> Vec<Arc<VfioGroup>> {
        let mut groups: Vec<Arc<VfioGroup>> = {
            let state = self.lock();
            state.groups.values().filter_map(Weak::upgrade).collect()
        };
        groups.sort_unstable_by_key(|g| g.id());
        groups
    }

    /// The IOMMU's page sizes and capabilities (`VFIO_IOMMU_GET_INFO`).
    ///
    /// # Errors
    /// `InvalidArgument` before a group has joined (no IOMMU is set yet).
    pub fn iommu_info(&self) -> Result<IommuInfo> {
        #[cfg(feature = "vfio_cdev")]
        if let Some(ioas) = &self.ioas {
            return self.ioas_info(ioas);
        }
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

    /// What `IOMMU_IOAS_IOVA_RANGES` reports, as an [`IommuInfo`]: the allowed ranges,
    /// and as page sizes every power of two from the IOVA alignment (at least the page size)
    /// up; no mapping limit.
    #[cfg(feature = "vfio_cdev")]
    fn ioas_info(&self, ioas: &crate::iommufd::Ioas) -> Result<IommuInfo> {
        let (ranges, align) = ioctls::ioas_iova_ranges(&self.file, ioas.id()).map_err(|e| {
            VfioError::os(
                "IOMMU_IOAS_IOVA_RANGES",
                format!("IOAS {} of {}", ioas.id(), self.target()),
                e,
            )
        })?;
        let smallest = align.max(page_size()).next_power_of_two();
        Ok(IommuInfo {
            flags: VFIO_IOMMU_INFO_PGSIZES,
            iova_pgsizes: !(smallest - 1),
            iova_ranges: ranges
                .into_iter()
                .map(|(start, end)| IovaRange { start, end })
                .collect(),
            dma_avail: None,
        })
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
    /// `InvalidArgument` for a zero, unaligned or overlapping range (checked before the
    /// kernel is asked); a kernel refusal as upstream's `IommuDmaMap` with its errno (kind
    /// `Memlock` when `RLIMIT_MEMLOCK` is too low, with the hint). The IOVA is logged; our
    /// own [`DmaBuffer`](crate::DmaBuffer) mappings keep it in their error.
    pub unsafe fn vfio_dma_map(&self, iova: u64, size: usize, user_addr: *mut u8) -> Result<()> {
        // SAFETY: the caller upholds the contract of `dma_map_at`.
        unsafe { self.dma_map_at(iova, size as u64, user_addr as u64) }
            .map(drop)
            .map_err(VfioError::into_upstream)
    }

    /// Maps and returns the IOMMU generation the mapping belongs to.
    ///
    /// # Safety
    /// As [`VfioContainer::vfio_dma_map`].
    pub(crate) unsafe fn dma_map_at(&self, iova: u64, size: u64, vaddr: u64) -> Result<u64> {
        // SAFETY: the caller upholds the contract, which is `dma_map`'s.
        unsafe { self.dma_map(IovaPlacement::At(iova), size, vaddr) }.map(|(_, g)| g)
    }

    /// Maps at the IOVA `placement` gives or chooses, and returns that IOVA with the IOMMU
    /// generation the mapping belongs to. The choice and the map happen under one lock,
    /// so two allocations cannot pick the same IOVA.
    ///
    /// # Safety
    /// As [`VfioContainer::vfio_dma_map`].
    pub(crate) unsafe fn dma_map(
        &self,
        placement: IovaPlacement,
        size: u64,
        vaddr: u64,
    ) -> Result<(u64, u64)> {
        const OP: &str = "VFIO_IOMMU_MAP_DMA";
        let page = page_size();
        let given = match placement {
            IovaPlacement::At(iova) => iova,
            IovaPlacement::Lowest { .. } => 0,
        };
        if size == 0
            || !size.is_multiple_of(page)
            || !given.is_multiple_of(page)
            || !vaddr.is_multiple_of(page)
        {
            return Err(VfioError::invalid(
                OP,
                format!("iova {given:#x}, size {size:#x} and address must be non-zero multiples of the page size {page:#x}"),
            ));
        }
        let (mut state, ranges) = self.lock_with_ranges(OP)?;
        let iova = match placement {
            IovaPlacement::At(iova) => iova,
            IovaPlacement::Lowest { align, limit } => {
                let request = IovaRequest { size, align, limit };
                // The first page is never chosen: a device that DMAs to an address it was
                // never given (0) then faults in the IOMMU instead of hitting a buffer.
                let everywhere = [IovaRange {
                    start: 0,
                    end: u64::MAX,
                }];
                let usable = if ranges.is_empty() {
                    &everywhere[..]
                } else {
                    &ranges[..]
                };
                let past_page_0: Vec<IovaRange> = usable
                    .iter()
                    .filter(|r| r.end >= page)
                    .map(|r| IovaRange {
                        start: r.start.max(page),
                        end: r.end,
                    })
                    .collect();
                let found = match past_page_0.is_empty() {
                    true => None,
                    false => lowest_free(&past_page_0, &state.mappings, request),
                };
                found.ok_or_else(|| {
                    no_space("allocate_dma", request, &ranges, state.mappings.len())
                })?
            }
        };
        let end = iova.checked_add(size).ok_or_else(|| {
            VfioError::out_of_range(
                OP,
                format!("iova {iova:#x} + size {size:#x} overflows 64 bits"),
            )
        })?;
        check_iova_ranges(OP, iova, end, &ranges)?;
        if let Some((other, other_size)) = state.mappings.last_below(end) {
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
        // SAFETY: the caller guarantees the memory outlives the mapping.
        unsafe { self.kernel_map(iova, size, vaddr) }?;
        state.mappings.insert(iova, size);
        Ok((iova, state.generation))
    }

    /// Maps in the kernel: `VFIO_IOMMU_MAP_DMA` on a container, `IOMMU_IOAS_MAP` on an IOAS.
    ///
    /// # Safety
    /// As [`VfioContainer::vfio_dma_map`].
    unsafe fn kernel_map(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        let target = || format!("iova {iova:#x} size {size:#x}");
        #[cfg(feature = "vfio_cdev")]
        if let Some(ioas) = &self.ioas {
            // SAFETY: the caller guarantees the memory outlives the mapping.
            return unsafe { ioas.map(iova, size, vaddr) }
                .map_err(|source| VfioError::os("IOMMU_IOAS_MAP", target(), source));
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
            .map_err(|e| VfioError::os("VFIO_IOMMU_MAP_DMA", target(), e))
    }

    /// Unmaps in the kernel; returns how many bytes it unmapped.
    fn kernel_unmap(&self, op: &'static str, iova: u64, size: u64) -> Result<u64> {
        let target = || format!("iova {iova:#x} size {size:#x}");
        #[cfg(feature = "vfio_cdev")]
        if let Some(ioas) = &self.ioas {
            return ioas
                .unmap(iova, size)
                .map_err(|source| VfioError::os("IOMMU_IOAS_UNMAP", target(), source));
        }
        ioctls::iommu_unmap_dma(&self.file, iova, size).map_err(|e| VfioError::os(op, target(), e))
    }

    /// The state lock with the usable IOVA ranges of the current groups (queried, without
    /// the lock, after the set of groups changed; none when the kernel reports none).
    ///
    /// # Errors
    /// `InvalidArgument` while no IOMMU is set.
    fn lock_with_ranges(
        &self,
        op: &'static str,
    ) -> Result<(MutexGuard<'_, ContainerState>, Vec<IovaRange>)> {
        let mut state = self.lock();
        let mut fresh = None;
        if state.iova_ranges.is_none() && state.iommu_set {
            let epoch = state.groups_epoch;
            drop(state);
            let ranges = self.query_iova_ranges();
            state = self.lock();
            if state.groups_epoch == epoch {
                state.iova_ranges = Some(ranges);
            } else {
                // The groups changed while we asked: use what we got for this call only
                // (the next one asks again).
                fresh = Some(ranges);
            }
        }
        if !state.iommu_set {
            return Err(VfioError::invalid(
                op,
                "the container has no IOMMU yet: open a device (or group) in it first",
            ));
        }
        let ranges = fresh.unwrap_or_else(|| state.iova_ranges.clone().unwrap_or_default());
        Ok((state, ranges))
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
    /// Upstream's variants: `InvalidDmaUnmapSize` (kind `InvalidArgument`) when no mapping
    /// has that IOVA and size, or the kernel unmapped another size; `IommuDmaUnmap` with
    /// the kernel's errno. The structured error is logged first.
    pub fn vfio_dma_unmap(&self, iova: u64, size: usize) -> Result<()> {
        self.dma_unmap(iova, size as u64).map_err(|e| match e {
            VfioError::InvalidArgument {
                op: "VFIO_IOMMU_UNMAP_DMA",
                ..
            } => {
                log::warn!("{e}");
                VfioError::InvalidDmaUnmapSize
            }
            e => e.into_upstream(),
        })
    }

    pub(crate) fn dma_unmap(&self, iova: u64, size: u64) -> Result<()> {
        let mut state = self.lock();
        self.unmap_locked(&mut state, iova, size)
    }

    /// Unmaps with the state lock held, so the table and the kernel cannot diverge.
    fn unmap_locked(&self, state: &mut ContainerState, iova: u64, size: u64) -> Result<()> {
        const OP: &str = "VFIO_IOMMU_UNMAP_DMA";
        match state.mappings.get(iova) {
            Some(s) if s == size => {}
            Some(s) => {
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
        let unmapped = self.kernel_unmap(OP, iova, size)?;
        state.mappings.remove(iova);
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
        self.lock().mappings.iter().collect()
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

/// The system page size: DMA sizes, IOVAs and addresses are multiples of it.
///
/// ```
/// let page = vfio_ioctls::page_size();
/// assert!(page.is_power_of_two() && page >= 4096);
/// ```
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
    use crate::ioctls::fake::FakeKernel;
    use crate::ErrorKind;

    const MAP: &str = "VFIO_IOMMU_MAP_DMA";
    const UNMAP: &str = "VFIO_IOMMU_UNMAP_DMA";
    const GET_INFO: &str = "VFIO_IOMMU_GET_INFO";

    /// A fake kernel with groups 1 and 2, and a container of it.
    fn setup() -> (FakeKernel, Arc<VfioContainer>) {
        let kernel = FakeKernel::new();
        kernel.add_group(1);
        kernel.add_group(2);
        let container = kernel.container();
        (kernel, container)
    }

    /// Maps `size` bytes at `iova`, from a made-up (page-aligned) address.
    fn map(c: &VfioContainer, iova: u64, size: u64) -> Result<u64> {
        // SAFETY: the fake kernel never touches the memory it is told about.
        unsafe { c.dma_map_at(iova, size, 0x7f00_0000_0000) }
    }

    /// The fake kernel's mappings of container 0: (iova, size).
    fn kernel_mappings(kernel: &FakeKernel) -> Vec<(u64, u64)> {
        kernel.state().containers[0]
            .mappings
            .iter()
            .map(|(&iova, &(size, _))| (iova, size))
            .collect()
    }

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

    #[test]
    fn open_checks_the_api_version_and_type1v2() {
        let kernel = FakeKernel::new();
        let c = VfioContainer::open(&kernel.container_node(), None).unwrap();
        assert_eq!(c.api_version().unwrap(), 0);
        assert!(c.group_ids().is_empty());
        assert_eq!(c.current_generation(), None);

        kernel.state().api_version = 1;
        let e = VfioContainer::open(&kernel.container_node(), None).unwrap_err();
        assert!(matches!(e, VfioError::ApiVersion { found: 1, .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::Unsupported);

        kernel.state().api_version = 0;
        kernel.state().type1v2 = false;
        let e = VfioContainer::open(&kernel.container_node(), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(e.op(), "VFIO_CHECK_EXTENSION");
        assert!(e.to_string().contains("vfio_iommu_type1"), "{e}");
    }

    #[test]
    fn the_first_group_sets_the_iommu_and_starts_a_generation() {
        let (kernel, c) = setup();
        let g1 = c.group(1).unwrap();
        assert_eq!(kernel.calls("VFIO_SET_IOMMU"), 1);
        assert_eq!(kernel.state().containers[0].iommu, Some(VFIO_TYPE1v2_IOMMU));
        assert_eq!(c.current_generation(), Some(1));
        let g2 = c.group(2).unwrap();
        assert_eq!(kernel.calls("VFIO_SET_IOMMU"), 1, "the IOMMU is set once");
        // An attached group is shared, not opened again.
        let again = c.group(1).unwrap();
        assert!(Arc::ptr_eq(&g1, &again));
        assert_eq!(kernel.calls("VFIO_GROUP_SET_CONTAINER"), 2);
        assert_eq!(c.group_ids(), [1, 2]);
        drop((g1, again));
        assert_eq!(c.group_ids(), [2]);
        assert_eq!(c.current_generation(), Some(1), "group 2 keeps the IOMMU");
        drop(g2);
        assert!(c.group_ids().is_empty());
        assert_eq!(c.current_generation(), None);
        assert_eq!(kernel.state().containers[0].iommu, None);
        // A new IOMMU context is a new generation.
        let _g = c.group(2).unwrap();
        assert_eq!(c.current_generation(), Some(2));
        assert_eq!(kernel.calls("VFIO_SET_IOMMU"), 2);
    }

    #[test]
    fn a_failed_set_iommu_detaches_the_group_again() {
        let (kernel, c) = setup();
        kernel.fail_next("VFIO_SET_IOMMU", libc::ENODEV);
        let e = c.group(1).unwrap_err();
        assert_eq!(e.op(), "VFIO_SET_IOMMU");
        assert_eq!(e.errno(), Some(libc::ENODEV));
        assert_eq!(
            e.path(),
            Some(kernel.dir().join("vfio-0").display().to_string())
        );
        assert_eq!(kernel.calls("VFIO_GROUP_UNSET_CONTAINER"), 1);
        assert_eq!(kernel.state().groups[&1].container, None);
        assert!(c.group_ids().is_empty());
        assert_eq!(c.current_generation(), None);
        // Nothing is left half done: the next try works.
        let _g = c.group(1).unwrap();
        assert_eq!(c.current_generation(), Some(1));
    }

    #[test]
    fn iommu_calls_before_any_group_are_refused_before_the_kernel() {
        let (kernel, c) = setup();
        let page = page_size();
        for e in [
            c.iommu_info().unwrap_err(),
            map(&c, 0, page).unwrap_err(),
            c.dma_unmap(0, page).unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        }
        let e = map(&c, 0, page).unwrap_err().to_string();
        assert!(e.contains("open a device (or group)"), "{e}");
        assert_eq!(
            kernel.calls(MAP) + kernel.calls(UNMAP) + kernel.calls(GET_INFO),
            0
        );
    }

    #[test]
    fn iommu_info_grows_its_buffer_for_the_capabilities() {
        let (kernel, c) = setup();
        kernel.state().iova_ranges = vec![(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];
        kernel.state().dma_entry_limit = 10;
        let _g = c.group(1).unwrap();
        map(&c, 0, page_size()).unwrap();
        let info = c.iommu_info().unwrap();
        assert_eq!(
            info.iova_ranges,
            [
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0x7f_ffff_ffff
                },
            ]
        );
        assert_eq!(info.dma_avail, Some(9));
        assert_ne!(info.iova_pgsizes & page_size(), 0);
        // The map's range query and this call: each asks once for the size, once more for all.
        assert_eq!(kernel.calls(GET_INFO), 4);
    }

    #[test]
    fn mappings_are_recorded_and_overlaps_refused_before_the_kernel() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let p = page_size();
        assert_eq!(
            map(&c, 16 * p, 2 * p).unwrap(),
            1,
            "the generation it belongs to"
        );
        for (iova, size) in [
            (17 * p, p),
            (15 * p, 2 * p),
            (14 * p, 8 * p),
            (16 * p, 2 * p),
        ] {
            let e = map(&c, iova, size).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            let msg = e.to_string();
            assert!(msg.contains("overlaps the existing mapping"), "{msg}");
            assert!(msg.contains(&format!("{:#x}", 16 * p)), "{msg}");
        }
        // Touching is not overlapping.
        map(&c, 18 * p, p).unwrap();
        map(&c, 15 * p, p).unwrap();
        assert_eq!(kernel.calls(MAP), 3, "refused maps never reach the kernel");
        let want = [(15 * p, p), (16 * p, 2 * p), (18 * p, p)];
        assert_eq!(c.dma_mappings(), want);
        assert_eq!(kernel_mappings(&kernel), want);
    }

    #[test]
    fn zero_unaligned_and_overflowing_ranges_are_refused() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let p = page_size();
        for (iova, size, vaddr) in [(0, 0, 0), (1, p, 0), (0, p + 1, 0), (0, p, 12)] {
            // SAFETY: the fake kernel never touches memory, and these are refused anyway.
            let e = unsafe { c.dma_map_at(iova, size, vaddr) }.unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::InvalidArgument,
                "{iova:#x} {size:#x} {vaddr:#x}"
            );
            assert!(e.to_string().contains("multiples of the page size"), "{e}");
        }
        let e = map(&c, u64::MAX - p + 1, 2 * p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert!(e.to_string().contains("overflows 64 bits"), "{e}");
        assert_eq!(kernel.calls(MAP), 0);
    }

    #[test]
    fn unmap_needs_the_exact_iova_and_size() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let p = page_size();
        map(&c, 4 * p, 2 * p).unwrap();
        let e = c.dma_unmap(4 * p, p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.to_string()
                .contains(&format!("has size {:#x}, not {p:#x}", 2 * p)),
            "{e}"
        );
        let e = c.dma_unmap(5 * p, p).unwrap_err();
        assert!(e.to_string().contains("nothing is mapped at iova"), "{e}");
        assert_eq!(
            kernel.calls(UNMAP),
            0,
            "refused unmaps never reach the kernel"
        );
        assert_eq!(c.dma_mappings(), [(4 * p, 2 * p)]);
        c.vfio_dma_unmap(4 * p, 2 * p as usize).unwrap();
        assert!(c.dma_mappings().is_empty());
        assert!(kernel_mappings(&kernel).is_empty());
        assert!(c.dma_unmap(4 * p, 2 * p).is_err(), "twice");
        assert_eq!(kernel.calls(UNMAP), 1);
    }

    #[test]
    fn a_short_unmap_by_the_kernel_is_an_error_and_forgets_the_mapping() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let p = page_size();
        map(&c, 0, p).unwrap();
        // The kernel lost it (the table and the kernel diverged).
        kernel.state().containers[0].mappings.clear();
        let e = c.dma_unmap(0, p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.to_string().contains("the kernel unmapped 0x0 bytes"),
            "{e}"
        );
        assert!(c.dma_mappings().is_empty());
    }

    #[test]
    fn a_failed_unmap_keeps_the_mapping() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let p = page_size();
        map(&c, 0, p).unwrap();
        kernel.fail_next(UNMAP, libc::EIO);
        let e = c.dma_unmap(0, p).unwrap_err();
        assert_eq!((e.op(), e.errno()), (UNMAP, Some(libc::EIO)));
        assert!(
            e.to_string().contains(&format!("iova 0x0 size {p:#x}")),
            "{e}"
        );
        assert_eq!(c.dma_mappings(), [(0, p)]);
        c.dma_unmap(0, p).unwrap();
    }

    #[test]
    fn iova_ranges_are_checked_and_queried_again_when_groups_change() {
        let (kernel, c) = setup();
        kernel.state().iova_ranges = vec![(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];
        let _g1 = c.group(1).unwrap();
        let p = page_size();
        let e = map(&c, 0xfee0_0000, p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let msg = e.to_string();
        assert!(
            msg.contains("MSI window") && msg.contains("iovaRanges"),
            "{msg}"
        );
        let e = map(&c, 0x80_0000_0000, p).unwrap_err().to_string();
        assert!(e.contains("outside"), "{e}");
        map(&c, 0xfef0_0000, p).unwrap();
        assert_eq!(kernel.calls(MAP), 1);
        assert_eq!(kernel.calls(GET_INFO), 2, "queried once, for the first map");
        map(&c, 0, p).unwrap();
        assert_eq!(kernel.calls(GET_INFO), 2);
        // A group joining can reserve more: the next map asks again.
        kernel.state().iova_ranges = vec![(0, 0xfedf_ffff)];
        let _g2 = c.group(2).unwrap();
        let e = map(&c, 0xff00_0000, p).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        assert_eq!(kernel.calls(GET_INFO), 4);
    }

    #[test]
    fn no_reported_ranges_leave_the_check_to_the_kernel() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        map(&c, 0xfee0_0000, page_size()).unwrap();
        // A kernel that does not answer GET_INFO at all is no reason to refuse.
        let (kernel2, c2) = setup();
        let _g2 = c2.group(1).unwrap();
        kernel2.fail_next(GET_INFO, libc::ENOTTY);
        map(&c2, 0xfee0_0000, page_size()).unwrap();
        assert_eq!((kernel.calls(MAP), kernel2.calls(MAP)), (1, 1));
    }

    #[test]
    fn enospc_is_out_of_range_with_the_mapping_limit_hint() {
        let (kernel, c) = setup();
        kernel.state().dma_entry_limit = 1;
        let _g = c.group(1).unwrap();
        let p = page_size();
        map(&c, 0, p).unwrap();
        let e = map(&c, p, p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert_eq!(e.code(), "ERR_VFIO_OUT_OF_RANGE");
        assert_eq!((e.op(), e.errno()), (MAP, Some(libc::ENOSPC)));
        let msg = e.to_string();
        assert!(msg.contains(&format!("iova {p:#x} size {p:#x}")), "{msg}");
        assert!(
            msg.contains("dma_entry_limit") && msg.contains("dmaAvail"),
            "{msg}"
        );
        assert_eq!(c.dma_mappings(), [(0, p)], "a refused map is not recorded");
    }

    #[test]
    fn enomem_is_memlock_with_the_ulimit_hint() {
        let (kernel, c) = setup();
        let p = page_size();
        kernel.state().memlock_limit = 2 * p;
        let _g = c.group(1).unwrap();
        map(&c, 0, p).unwrap();
        let e = map(&c, p, 2 * p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Memlock);
        assert_eq!(e.code(), "ERR_VFIO_MEMLOCK");
        assert_eq!(e.errno(), Some(libc::ENOMEM));
        let msg = e.to_string();
        assert!(
            msg.contains("RLIMIT_MEMLOCK") && msg.contains("ulimit -l"),
            "{msg}"
        );
        assert_eq!(c.dma_mappings(), [(0, p)]);
        map(&c, p, p).unwrap();
    }

    #[test]
    fn the_last_group_leaving_forgets_every_mapping() {
        let (kernel, c) = setup();
        let g1 = c.group(1).unwrap();
        let g2 = c.group(2).unwrap();
        let p = page_size();
        map(&c, 0, p).unwrap();
        map(&c, p, p).unwrap();
        drop(g1);
        assert_eq!(c.dma_mappings().len(), 2, "group 2 still holds the IOMMU");
        drop(g2);
        assert!(c.dma_mappings().is_empty());
        assert!(kernel_mappings(&kernel).is_empty());
        // Nothing is left to unmap, and the next context starts empty.
        assert_eq!(
            c.dma_unmap(0, p).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let _g = c.group(1).unwrap();
        map(&c, 0, p).unwrap();
        assert_eq!(kernel.calls(UNMAP), 0);
    }

    #[test]
    fn vfio_ops_reaches_the_container() {
        let (kernel, c) = setup();
        let _g = c.group(1).unwrap();
        let ops: &dyn VfioOps = c.as_ref();
        let p = page_size();
        // SAFETY: the fake kernel never touches the memory it is told about.
        unsafe { ops.vfio_dma_map(0, p as usize, 0x7f00_0000_0000 as *mut u8) }.unwrap();
        ops.vfio_dma_unmap(0, p as usize).unwrap();
        assert!(ops.as_any().downcast_ref::<VfioContainer>().is_some());
        assert_eq!((kernel.calls(MAP), kernel.calls(UNMAP)), (1, 1));
    }
}
