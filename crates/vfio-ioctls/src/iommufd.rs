//! The native iommufd backend (`/dev/iommu`, Linux 6.2+): one IOAS (I/O address space)
//! in which devices opened through their cdev (`/dev/vfio/devices/vfioN`) are attached.
//!
//! [`VfioIommufd`] is upstream 0.10's type for it. It wraps a [`VfioContainer`] whose
//! IOMMU is that IOAS, so that everything our container offers (DMA buffers, IOVA
//! allocation, the IOVA ranges, opening devices by PCI address) works the same on
//! iommufd: [`VfioIommufd::container`] gives it, and [`VfioContainer::new_iommufd`]
//! makes one directly.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vfio_ioctls::{IommuBackend, VfioContainer, VfioDevice};
//!
//! let container = Arc::new(VfioContainer::new_iommufd(None)?);
//! assert_eq!(container.backend(), IommuBackend::Iommufd);
//! let device = VfioDevice::open("0000:00:03.0", container.clone())?;
//! println!("iommufd device id {:?}", device.iommufd_dev_id());
//! let dma = container.allocate_dma(4096, 0x10_0000)?;
//! # Ok::<(), vfio_ioctls::VfioError>(())
//! ```

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iommufd_bindings::iommufd::*;
use iommufd_ioctls::{IommuFd, IommufdError, IommufdIoas};

use crate::container::{VfioContainer, VfioOps};
use crate::error::{Result, VfioError};
use crate::hypervisor::VfioContainerDeviceHandle;

/// The iommufd node.
pub const IOMMUFD_PATH: &str = "/dev/iommu";

/// The errno inside an iommufd-ioctls error (EIO for the few that carry none).
pub(crate) fn iommufd_errno(e: &IommufdError) -> io::Error {
    use IommufdError::*;
    match e {
        OpenIommufd(e) => io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
        AttachHwpt(e) => io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
        IommuDestroy(e)
        | IommuIoasAlloc(e)
        | IommuIoasMap(e)
        | IommuIoasMapFile(e)
        | IommuIoasUnmap(e)
        | IommuHwptAlloc(e)
        | IommuViommuAlloc(e)
        | IommuVdeviceAlloc(e)
        | IommuGetHwInfo(e)
        | IommuHwptInvalidate(e)
        | IommuVeventqAlloc(e)
        | VeventqNonBlocking(e)
        | IommuHwQueueAlloc(e) => io::Error::from_raw_os_error(e.errno()),
        _ => io::Error::other(e.to_string()),
    }
}

/// The ioctl an iommufd-ioctls error stands for.
pub(crate) fn iommufd_op(e: &IommufdError) -> &'static str {
    use IommufdError::*;
    match e {
        OpenIommufd(_) => "open",
        IommuDestroy(_) => "IOMMU_DESTROY",
        IommuIoasAlloc(_) => "IOMMU_IOAS_ALLOC",
        IommuIoasMap(_) | IommuIoasMapFile(_) => "IOMMU_IOAS_MAP",
        IommuIoasUnmap(_) => "IOMMU_IOAS_UNMAP",
        IommuHwptAlloc(_) => "IOMMU_HWPT_ALLOC",
        _ => "iommufd",
    }
}

/// An IOAS of an iommufd, as a container's IOMMU: the kernel calls of the native backend.
pub(crate) struct Ioas {
    iommufd: Arc<IommuFd>,
    ioas: Arc<IommufdIoas>,
}

impl std::fmt::Debug for Ioas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ioas")
            .field("iommufd", &self.iommufd.as_raw_fd())
            .field("ioas_id", &self.ioas.id())
            .finish()
    }
}

impl Ioas {
    /// The IOAS id.
    pub(crate) fn id(&self) -> u32 {
        self.ioas.id()
    }

    /// The iommufd's raw fd, for `VFIO_DEVICE_BIND_IOMMUFD`.
    pub(crate) fn iommufd_fd(&self) -> std::os::fd::RawFd {
        self.iommufd.as_raw_fd()
    }

    /// `IOMMU_IOAS_MAP` at a fixed IOVA, readable and writable.
    ///
    /// # Safety
    /// As [`VfioContainer::vfio_dma_map`]: the memory outlives the mapping.
    pub(crate) unsafe fn map(&self, iova: u64, size: u64, vaddr: u64) -> io::Result<()> {
        let map = iommu_ioas_map {
            size: std::mem::size_of::<iommu_ioas_map>() as u32,
            flags: iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE
                | iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE
                | iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA,
            ioas_id: self.ioas.id(),
            __reserved: 0,
            user_va: vaddr,
            length: size,
            iova,
        };
        // The caller guarantees the memory outlives the mapping (the crate's call is safe).
        self.iommufd
            .map_iommu_ioas(&map)
            .map_err(|e| iommufd_errno(&e))
    }

    /// `IOMMU_IOAS_UNMAP`; returns how many bytes the kernel unmapped.
    pub(crate) fn unmap(&self, iova: u64, size: u64) -> io::Result<u64> {
        let mut unmap = iommu_ioas_unmap {
            size: std::mem::size_of::<iommu_ioas_unmap>() as u32,
            ioas_id: self.ioas.id(),
            iova,
            length: size,
        };
        self.iommufd
            .unmap_iommu_ioas(&mut unmap)
            .map_err(|e| iommufd_errno(&e))?;
        Ok(unmap.length)
    }

    /// `IOMMU_HWPT_ALLOC` of a kernel-managed HWPT on this IOAS for device `dev_id`.
    fn alloc_hwpt(&self, dev_id: u32, flags: u32) -> io::Result<u32> {
        let mut alloc = iommu_hwpt_alloc {
            size: std::mem::size_of::<iommu_hwpt_alloc>() as u32,
            flags,
            dev_id,
            pt_id: self.ioas.id(),
            data_type: iommu_hwpt_data_type_IOMMU_HWPT_DATA_NONE,
            ..Default::default()
        };
        self.iommufd
            .alloc_iommu_hwpt(&mut alloc)
            .map_err(|e| iommufd_errno(&e))?;
        Ok(alloc.out_hwpt_id)
    }
}

/// Duplicates the iommufd's fd, for the container's own `File` (close-on-exec).
fn dup_iommufd(iommufd: &IommuFd) -> Result<File> {
    // SAFETY: `iommufd` owns this fd and is borrowed for the whole call, so the fd stays open.
    let fd = unsafe { BorrowedFd::borrow_raw(iommufd.as_raw_fd()) };
    fd.try_clone_to_owned()
        .map(File::from)
        .map_err(|e| VfioError::os("dup", IOMMUFD_PATH, e))
}

impl VfioContainer {
    /// Opens `/dev/iommu` and allocates an IOAS: a container of the native iommufd
    /// backend. Devices opened through it ([`crate::VfioDevice::open`]) use their cdev,
    /// bound to this iommufd and attached to the IOAS.
    ///
    /// # Errors
    /// `Os` of `open` (`NotFound` on kernels without iommufd: before 6.2, or built without
    /// `CONFIG_IOMMUFD`; `Permission`) or of `IOMMU_IOAS_ALLOC`, with the kernel's errno.
    pub fn new_iommufd(device_fd: Option<VfioContainerDeviceHandle>) -> Result<Self> {
        Self::open_iommufd(Path::new(IOMMUFD_PATH), device_fd)
    }

    /// Like [`VfioContainer::new_iommufd`] with another iommufd node path.
    pub fn open_iommufd(path: &Path, device_fd: Option<VfioContainerDeviceHandle>) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| VfioError::os("open", path.display().to_string(), source))?;
        let iommufd = Arc::new(IommuFd::new_from_fd(file));
        Self::with_iommufd(iommufd, None, device_fd, path.to_path_buf())
    }

    fn with_iommufd(
        iommufd: Arc<IommuFd>,
        ioas: Option<Arc<IommufdIoas>>,
        device_fd: Option<VfioContainerDeviceHandle>,
        path: PathBuf,
    ) -> Result<Self> {
        let ioas = match ioas {
            Some(ioas) => ioas,
            None => Arc::new(IommufdIoas::new(iommufd.clone()).map_err(|e| {
                VfioError::os(
                    "IOMMU_IOAS_ALLOC",
                    path.display().to_string(),
                    iommufd_errno(&e),
                )
            })?),
        };
        let file = dup_iommufd(&iommufd)?;
        Ok(VfioContainer::from_ioas(
            file,
            path,
            Ioas { iommufd, ioas },
            device_fd,
        ))
    }

    /// Allocates a kernel-managed HWPT (hardware page table) on this container's IOAS
    /// for the device with iommufd id `dev_id` (`IOMMU_HWPT_ALLOC`, no driver data); it
    /// holds the IOAS's mappings. Attach it with [`crate::VfioDevice::attach_hwpt`];
    /// free it with [`VfioContainer::destroy_iommufd_object`] once nothing is attached.
    ///
    /// # Errors
    /// `Unsupported` for a container that is not native iommufd;
    /// `Os` of `IOMMU_HWPT_ALLOC` with the kernel's errno otherwise.
    pub fn alloc_hwpt(&self, dev_id: u32) -> Result<u32> {
        const OP: &str = "IOMMU_HWPT_ALLOC";
        let ioas = self.require_ioas(OP)?;
        ioas.alloc_hwpt(dev_id, 0).map_err(|source| {
            VfioError::os(
                OP,
                format!("device id {dev_id} on IOAS {}", ioas.id()),
                source,
            )
        })
    }

    /// Destroys an iommufd object (a HWPT) by id (`IOMMU_DESTROY`).
    ///
    /// # Errors
    /// `Unsupported` for a container that is not native iommufd; `Busy` (EBUSY) while a
    /// device is attached to it; the kernel's errno otherwise.
    pub fn destroy_iommufd_object(&self, id: u32) -> Result<()> {
        const OP: &str = "IOMMU_DESTROY";
        let ioas = self.require_ioas(OP)?;
        if id == ioas.id() {
            return Err(VfioError::invalid(
                OP,
                format!(
                    "object {id} is the container's own IOAS, which lives as long as the container"
                ),
            ));
        }
        ioas.iommufd
            .destroy_iommu_object(id)
            .map_err(|e| VfioError::os(OP, format!("object {id}"), iommufd_errno(&e)))
    }

    /// The id of a native iommufd container's IOAS (`None` for the other backends).
    pub fn iommufd_ioas_id(&self) -> Option<u32> {
        self.ioas().map(Ioas::id)
    }

    fn require_ioas(&self, op: &'static str) -> Result<&Ioas> {
        self.ioas().ok_or_else(|| {
            VfioError::unsupported(
                op,
                format!(
                    "the container is {} ({}), not native iommufd: open it with VfioContainer::new_iommufd",
                    self.backend().as_str(),
                    self.path().display()
                ),
            )
        })
    }
}

/// A VFIO backend of devices opened through their cdev and bound to an iommufd
/// (upstream's type). Wraps a native-iommufd [`VfioContainer`].
pub struct VfioIommufd {
    container: Arc<VfioContainer>,
    iommufd: Arc<IommuFd>,
    ioas: Arc<IommufdIoas>,
}

impl std::fmt::Debug for VfioIommufd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioIommufd")
            .field("iommufd", &self.iommufd.as_raw_fd())
            .field("ioas_id", &self.ioas.id())
            .finish()
    }
}

impl VfioIommufd {
    /// Wraps `iommufd` and `ioas` (allocated on `iommufd` when `None`); devices bound to
    /// it are registered with the hypervisor device `device_fd`, if any.
    ///
    /// # Errors
    /// Upstream's `NewVfioIommufd` when the IOAS cannot be allocated.
    pub fn new(
        iommufd: Arc<IommuFd>,
        ioas: Option<Arc<IommufdIoas>>,
        device_fd: Option<VfioContainerDeviceHandle>,
    ) -> Result<Self> {
        let container = VfioContainer::with_iommufd(
            iommufd.clone(),
            ioas,
            device_fd,
            PathBuf::from(IOMMUFD_PATH),
        )
        .map_err(VfioError::into_upstream)?;
        let ioas = match container.ioas() {
            Some(i) => i.ioas.clone(),
            None => unreachable_ioas()?,
        };
        Ok(VfioIommufd {
            container: Arc::new(container),
            iommufd,
            ioas,
        })
    }

    /// The iommufd devices are bound to.
    pub fn iommufd(&self) -> &Arc<IommuFd> {
        &self.iommufd
    }

    /// The IOAS devices are attached to.
    pub fn ioas(&self) -> &Arc<IommufdIoas> {
        &self.ioas
    }

    /// The container over this IOAS, for the crate's own API (DMA buffers, IOVA
    /// allocation, [`VfioContainer::iommu_info`], [`crate::VfioDevice::open`]).
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    /// Maps `[user_addr, user_addr + size)` at `iova` in the IOAS (`IOMMU_IOAS_MAP`).
    ///
    /// # Safety
    /// As [`VfioContainer::vfio_dma_map`].
    ///
    /// # Errors
    /// As [`VfioContainer::vfio_dma_map`].
    pub unsafe fn vfio_dma_map(&self, iova: u64, size: usize, user_addr: *mut u8) -> Result<()> {
        // SAFETY: the caller upholds the contract, which is the container's.
        unsafe { self.container.vfio_dma_map(iova, size, user_addr) }
    }

    /// Unmaps `[iova, iova + size)` from the IOAS (`IOMMU_IOAS_UNMAP`): exactly one
    /// earlier mapping.
    ///
    /// # Errors
    /// As [`VfioContainer::vfio_dma_unmap`].
    pub fn vfio_dma_unmap(&self, iova: u64, size: usize) -> Result<()> {
        self.container.vfio_dma_unmap(iova, size)
    }
}

/// A native-iommufd container always has its IOAS; this is the error if one had not.
fn unreachable_ioas<T>() -> Result<T> {
    Err(VfioError::invalid(
        "VfioIommufd::new",
        "the iommufd container has no IOAS",
    ))
}

impl VfioOps for VfioIommufd {
    unsafe fn vfio_dma_map(&self, iova: u64, size: usize, user_addr: *mut u8) -> Result<()> {
        // SAFETY: the caller upholds the trait's contract, which is the method's.
        unsafe { VfioIommufd::vfio_dma_map(self, iova, size, user_addr) }
    }

    fn vfio_dma_unmap(&self, iova: u64, size: usize) -> Result<()> {
        VfioIommufd::vfio_dma_unmap(self, iova, size)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
