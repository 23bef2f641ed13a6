//! The one error type of the crate.
//!
//! Every variant carries what a user needs to act: the operation (ioctl or
//! system call name), what it was applied to (a path, a region or IRQ index, an
//! IOVA), the errno when the kernel refused, and a hint of what to do.

use std::io;
use std::path::PathBuf;

use vmm_sys_util::errno::Error as SysError;

use crate::device_feature::feature_hint;
use crate::huge_pages::HugePageSize;

/// Coarse classes of failure; each maps to a stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A device, group, path or sysfs entry does not exist.
    NotFound,
    /// The caller lacks the rights to open or change something.
    Permission,
    /// An IOMMU group has devices not bound to vfio-pci (or pci-stub).
    GroupNotViable,
    /// The device or group is in use elsewhere.
    Busy,
    /// An argument is malformed or inconsistent.
    InvalidArgument,
    /// An offset, length, index or count lies outside what exists.
    OutOfRange,
    /// The object was closed before this call.
    Closed,
    /// Locked memory (`RLIMIT_MEMLOCK`) is too low to pin DMA memory.
    Memlock,
    /// The kernel, device or build does not offer this operation.
    Unsupported,
    /// Any other I/O failure.
    Io,
    /// A wait's timeout passed before what it waited for happened.
    TimedOut,
}

impl ErrorKind {
    /// Every kind, in declaration order (the facade checks its list of codes against it).
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::NotFound,
        ErrorKind::Permission,
        ErrorKind::GroupNotViable,
        ErrorKind::Busy,
        ErrorKind::InvalidArgument,
        ErrorKind::OutOfRange,
        ErrorKind::Closed,
        ErrorKind::Memlock,
        ErrorKind::Unsupported,
        ErrorKind::Io,
        ErrorKind::TimedOut,
    ];

    /// The stable code, part of the public API (`ERR_VFIO_*`).
    ///
    /// ```
    /// use vfio_ioctls::ErrorKind;
    ///
    /// assert_eq!(ErrorKind::Memlock.code(), "ERR_VFIO_MEMLOCK");
    /// assert_eq!(ErrorKind::GroupNotViable.code(), "ERR_VFIO_GROUP_NOT_VIABLE");
    /// ```
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "ERR_VFIO_NOT_FOUND",
            ErrorKind::Permission => "ERR_VFIO_PERMISSION",
            ErrorKind::GroupNotViable => "ERR_VFIO_GROUP_NOT_VIABLE",
            ErrorKind::Busy => "ERR_VFIO_BUSY",
            ErrorKind::InvalidArgument => "ERR_VFIO_INVALID_ARGUMENT",
            ErrorKind::OutOfRange => "ERR_VFIO_OUT_OF_RANGE",
            ErrorKind::Closed => "ERR_VFIO_CLOSED",
            ErrorKind::Memlock => "ERR_VFIO_MEMLOCK",
            ErrorKind::Unsupported => "ERR_VFIO_UNSUPPORTED",
            ErrorKind::Io => "ERR_VFIO_IO",
            ErrorKind::TimedOut => "ERR_VFIO_TIMEOUT",
        }
    }
}

/// Errors of VFIO operations.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// The kernel refused an ioctl or a system call.
    #[error("{op} on {target} failed: {source}{}", hint_suffix(.op, .target, .source))]
    Os {
        /// The ioctl or system call, e.g. `VFIO_GROUP_GET_DEVICE_FD`.
        op: &'static str,
        /// What it was applied to: a path, `region 2`, `iova 0x1000`...
        target: String,
        /// The kernel's error, with its errno.
        #[source]
        source: io::Error,
    },
    /// A path or object does not exist.
    #[error("{what} not found at {}{}", .path.display(), opt_hint(.hint))]
    NotFound {
        /// What was looked for.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The IOMMU group cannot be used: some of its devices are bound to host drivers.
    #[error("IOMMU group {group} is not viable: {}", group_hint(.blockers))]
    GroupNotViable {
        /// The group number.
        group: u32,
        /// Devices of the group bound to a driver other than vfio-pci, as `address (driver)`.
        blockers: Vec<String>,
    },
    /// An argument is malformed or inconsistent.
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation that checked it.
        op: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
    /// An offset, length, index or count lies outside what exists.
    #[error("{op}: {message}")]
    OutOfRange {
        /// The operation that checked it.
        op: &'static str,
        /// What is out of range and the valid range.
        message: String,
    },
    /// The kernel, the device or this build does not offer the operation.
    #[error("{op}: {message}")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// Why it is not available.
        message: String,
    },
    /// The device, IRQ index or group is in use by another owner (in this process or
    /// another), so the operation would take it away or deadlock.
    #[error("{op}: {message}")]
    Busy {
        /// The operation refused.
        op: &'static str,
        /// Who holds it and what to do.
        message: String,
    },
    /// A wait's timeout passed before what it waited for happened.
    #[error("{op}: {message}")]
    TimedOut {
        /// The wait.
        op: &'static str,
        /// What was waited for, for how long, and what was seen last.
        message: String,
    },
    /// The object was closed before the call.
    #[error("{op}: {}", closed_message(.what))]
    Closed {
        /// The operation attempted.
        op: &'static str,
        /// What was closed (container, device, ...).
        what: &'static str,
    },
    /// A PCI hot reset would reset devices whose IOMMU groups the device's container does
    /// not hold, so the kernel would refuse it: vfio-pci allows a hot reset only to whoever
    /// passes the fd of every affected device's group.
    #[error("VFIO_DEVICE_PCI_HOT_RESET of {device}: {}", not_owned_hint(.missing))]
    HotResetNotOwned {
        /// The device whose reset was asked for.
        device: String,
        /// The affected devices whose groups the container does not hold.
        missing: Vec<crate::PciHotResetDevice>,
    },
    /// The kernel has too few free huge pages of the size asked for (mmap `ENOMEM`).
    #[error("mmap of {needed} {size} huge pages failed: {source} ({})", crate::huge_pages::reserve_hint(*.size, *.needed, *.free, .free_path))]
    HugePages {
        /// The huge page size asked for.
        size: HugePageSize,
        /// How many pages of it the buffer needs.
        needed: u64,
        /// How many the kernel reports free, when it could be read.
        free: Option<u64>,
        /// Where that count is (`.../hugepages-<kB>kB/free_hugepages`).
        free_path: PathBuf,
        /// The kernel's error (`ENOMEM`).
        #[source]
        source: io::Error,
    },
    /// The kernel speaks another VFIO API version.
    #[error("VFIO_GET_API_VERSION: kernel reports {found}, this library speaks {expected}")]
    ApiVersion {
        /// What the kernel reported.
        found: i32,
        /// What the library speaks.
        expected: u32,
    },

    // Upstream vfio-ioctls 0.10's variants, with its names, payloads and messages (each
    // followed by a hint): the upstream-named methods return them, see
    // `crate::upstream_error`. Where one loses what our callers need (the IOVA, the
    // path, the errno), our own methods keep the structured variants above.
    /// Opening `/dev/vfio/vfio` failed ([`VfioContainer::new`](crate::VfioContainer::new)).
    #[error("failed to open /dev/vfio/vfio container: {0}{hint}", hint = self.upstream_hint())]
    OpenContainer(#[source] io::Error),
    /// Opening `/dev/vfio/<group>` failed: the error and the group number.
    #[error("failed to open /dev/vfio/{1} group: {0}{hint}", hint = self.upstream_hint())]
    OpenGroup(#[source] io::Error, String),
    /// `VFIO_GROUP_GET_STATUS` failed.
    #[error("failed to get Group Status{}", self.upstream_hint())]
    GetGroupStatus,
    /// The group is not viable: some of its devices are bound to host drivers.
    #[error("group is not viable{}", self.upstream_hint())]
    GroupViable,
    /// The kernel speaks another VFIO API version.
    #[error("vfio API version doesn't match with VFIO_API_VERSION defined in vfio-bindings{}", self.upstream_hint())]
    VfioApiVersion,
    /// The kernel does not offer the IOMMU extension asked for.
    #[error("failed to check VFIO extension{}", self.upstream_hint())]
    VfioExtension,
    /// An IOMMU type other than Type1 or Type1v2 was asked for.
    #[error("invalid VFIO type{}", self.upstream_hint())]
    VfioInvalidType,
    /// The container offers no Type1v2 IOMMU.
    #[error("container doesn't support VfioType1V2 IOMMU driver type{}", self.upstream_hint())]
    VfioType1V2,
    /// `VFIO_GROUP_SET_CONTAINER` failed.
    #[error("failed to add vfio group into vfio container{}", self.upstream_hint())]
    GroupSetContainer,
    /// `VFIO_GROUP_UNSET_CONTAINER` failed.
    #[error("failed to unset vfio container{}", self.upstream_hint())]
    UnsetContainer,
    /// `VFIO_SET_IOMMU` failed.
    #[error("failed to set container's IOMMU driver type as VfioType1V2: {0}{hint}", hint = self.upstream_hint())]
    ContainerSetIOMMU(#[source] SysError),
    /// `VFIO_GROUP_GET_DEVICE_FD` failed.
    #[error("failed to get vfio device fd: {0}{hint}", hint = self.upstream_hint())]
    GroupGetDeviceFD(#[source] SysError),
    /// The hypervisor's VFIO device refused the group or device (`KVM_SET_DEVICE_ATTR`).
    #[error("failed to set vfio device's attribute: {0}{hint}", hint = self.upstream_hint())]
    SetDeviceAttr(#[source] SysError),
    /// `VFIO_DEVICE_GET_INFO` failed.
    #[error("failed to get vfio device's info: {0}{hint}", hint = self.upstream_hint())]
    VfioDeviceGetInfo(#[source] SysError),
    /// A PCI device reports fewer regions or IRQ indices than vfio-pci always has.
    #[error("vfio PCI device info doesn't match{}", self.upstream_hint())]
    VfioDeviceGetInfoPCI,
    /// The device is neither PCI nor platform.
    #[error("unsupported vfio device type{}", self.upstream_hint())]
    VfioDeviceGetInfoOther,
    /// `VFIO_DEVICE_GET_REGION_INFO` failed.
    #[error("failed to get vfio device's region info: {0}{hint}", hint = self.upstream_hint())]
    VfioDeviceGetRegionInfo(#[source] SysError),
    /// The device path has no usable last component (or it is not UTF-8).
    #[error("invalid file path{}", self.upstream_hint())]
    InvalidPath,
    /// `VFIO_IOMMU_MAP_DMA` failed ([`VfioContainer::vfio_dma_map`](crate::VfioContainer::vfio_dma_map)).
    #[error("failed to add guest memory map into iommu table: {0}{hint}", hint = self.upstream_hint())]
    IommuDmaMap(#[source] SysError),
    /// `VFIO_IOMMU_UNMAP_DMA` failed.
    #[error("failed to remove guest memory map from iommu table: {0}{hint}", hint = self.upstream_hint())]
    IommuDmaUnmap(#[source] SysError),
    /// `VFIO_DEVICE_GET_IRQ_INFO` failed.
    #[error("failed to get vfio device irq info{}", self.upstream_hint())]
    VfioDeviceGetIrqInfo,
    /// `VFIO_DEVICE_SET_IRQS` failed.
    #[error("failed to set vfio device irq{}", self.upstream_hint())]
    VfioDeviceSetIrq,
    /// Enabling an IRQ index failed ([`VfioDevice::enable_irq`](crate::VfioDevice::enable_irq)).
    #[error("failed to enable vfio device irq{}", self.upstream_hint())]
    VfioDeviceEnableIrq,
    /// Disabling an IRQ index failed.
    #[error("failed to disable vfio device irq{}", self.upstream_hint())]
    VfioDeviceDisableIrq,
    /// Unmasking an IRQ failed.
    #[error("failed to unmask vfio device irq{}", self.upstream_hint())]
    VfioDeviceUnmaskIrq,
    /// Triggering an IRQ failed.
    #[error("failed to trigger vfio device irq{}", self.upstream_hint())]
    VfioDeviceTriggerIrq,
    /// Setting the INTx resample eventfd failed.
    #[error("failed to set vfio device irq resample fd{}", self.upstream_hint())]
    VfioDeviceSetIrqResampleFd,
    /// `dup` of the hypervisor device fd failed.
    #[error("failed to duplicate fd{}", self.upstream_hint())]
    VfioDeviceDupFd,
    /// The hypervisor device fd is of another hypervisor than asked for.
    #[error("wrong device fd type{}", self.upstream_hint())]
    VfioDeviceFdWrongType,
    /// A guest memory region has no host address.
    #[error("failed to get host address{}", self.upstream_hint())]
    GetHostAddress,
    /// The kernel unmapped another size than asked for (or nothing).
    #[error("invalid dma unmap size{}", self.upstream_hint())]
    InvalidDmaUnmapSize,
    /// The `VfioOps` backend is none this library opens devices through.
    #[error("failed to downcast VfioOps{}", self.upstream_hint())]
    DowncastVfioOps,
    /// A `VFIO_DEVICE_FEATURE` call failed (upstream's variant; our own methods give `Os`
    /// with the feature and the device, and ENOTTY as `Unsupported`).
    #[error("failed to execute VFIO device feature ioctl: {0}{hint}", hint = self.upstream_hint())]
    VfioDeviceFeature(#[source] SysError),
    /// dma-buf export was asked for no range.
    #[error("no range to export as a dma-buf{}", self.upstream_hint())]
    VfioDmaBufNoRange,
    /// `VFIO_MIG_GET_PRECOPY_INFO` failed on the data fd.
    #[error("failed to get migration precopy info: {0}{hint}", hint = self.upstream_hint())]
    VfioMigGetPrecopyInfo(#[source] SysError),
    /// The device has no data transfer session (no migration data fd).
    #[error("VFIO migration data fd is not present{}", self.upstream_hint())]
    NoMigrationDataFd,
    /// Reading or writing the migration data fd failed.
    #[error("VFIO migration data I/O failed: {0}{hint}", hint = self.upstream_hint())]
    VfioMigrationDataIo(#[source] io::Error),
    /// DMA logging was not started on this device.
    #[error("VFIO DMA logging is not currently started{}", self.upstream_hint())]
    DmaLoggingNotStarted,
    /// DMA logging already runs on this device.
    #[error("VFIO DMA logging is already started{}", self.upstream_hint())]
    DmaLoggingAlreadyStarted,
    /// A DMA logging argument is invalid; says which and why.
    #[error("invalid argument for VFIO DMA logging: {0}{hint}", hint = self.upstream_hint())]
    DmaLoggingInvalidArgument(&'static str),
    /// `VFIO_DEVICE_BIND_IOMMUFD` of a device cdev failed (upstream's variant; our own
    /// methods give `Os` with the device).
    #[cfg(feature = "vfio_cdev")]
    #[error("failed to bind the vfio device to the specified iommufd: {0}{hint}", hint = self.upstream_hint())]
    VfioDeviceBindIommufd(#[source] SysError),
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` failed.
    #[cfg(feature = "vfio_cdev")]
    #[error("failed to associate the vfio device with an IOAS within the bound iommufd: {0}{hint}", hint = self.upstream_hint())]
    VfioDeviceAttachIommufdPt(#[source] SysError),
    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT` failed.
    #[cfg(feature = "vfio_cdev")]
    #[error("failed to remove the association of the vfio device and its current associated IOAS: {0}{hint}", hint = self.upstream_hint())]
    VfioDeviceDetachIommufdPt(#[source] SysError),
    /// Opening `/dev/iommu` or allocating its IOAS failed.
    #[cfg(feature = "vfio_cdev")]
    #[error("failed to new VfioIommufd: {0}{hint}", hint = self.upstream_hint())]
    NewVfioIommufd(#[source] iommufd_ioctls::IommufdError),
    /// The device has no single cdev in `<sysfs>/vfio-dev/`.
    #[cfg(feature = "vfio_cdev")]
    #[error("invalid 'vfio_dev' folder{}", self.upstream_hint())]
    InvalidVfioDev,
    /// Opening `/dev/vfio/devices/vfioN` failed.
    #[cfg(feature = "vfio_cdev")]
    #[error("failed to open device cdev: {0}{hint}", hint = self.upstream_hint())]
    OpenDeviceCdev(#[source] io::Error),
    /// An iommufd ioctl (`IOMMU_IOAS_MAP`, `IOMMU_HWPT_ALLOC`...) failed.
    #[cfg(feature = "vfio_cdev")]
    #[error("failed iommufd ioctl: {0}{hint}", hint = self.upstream_hint())]
    IommufdIoctlError(#[source] iommufd_ioctls::IommufdError),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, VfioError>;

/// What a call on a closed `what` (container, device, ...) says: the one wording every
/// layer uses (`VfioError::Closed`, the binding's handles, the TypeScript facade).
pub fn closed_message(what: &str) -> String {
    format!("the {what} is closed; open it again")
}

impl VfioError {
    /// An `Os` error from the last errno.
    pub fn last_os(op: &'static str, target: impl Into<String>) -> Self {
        Self::os(op, target, io::Error::last_os_error())
    }

    /// An `Os` error from a given `io::Error`.
    pub fn os(op: &'static str, target: impl Into<String>, source: io::Error) -> Self {
        VfioError::Os {
            op,
            target: target.into(),
            source,
        }
    }

    /// An `InvalidArgument` error.
    pub fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        VfioError::InvalidArgument {
            op,
            message: message.into(),
        }
    }

    /// An `OutOfRange` error.
    pub fn out_of_range(op: &'static str, message: impl Into<String>) -> Self {
        VfioError::OutOfRange {
            op,
            message: message.into(),
        }
    }

    /// An `Unsupported` error.
    pub fn unsupported(op: &'static str, message: impl Into<String>) -> Self {
        VfioError::Unsupported {
            op,
            message: message.into(),
        }
    }

    /// A `Busy` error.
    pub fn busy(op: &'static str, message: impl Into<String>) -> Self {
        VfioError::Busy {
            op,
            message: message.into(),
        }
    }

    /// The class of the failure, which gives the stable code. For a kernel error it
    /// follows the errno, and for some the operation too:
    ///
    /// ```
    /// use std::io;
    /// use vfio_ioctls::{ErrorKind, VfioError};
    ///
    /// let enomem = || io::Error::from_raw_os_error(libc::ENOMEM);
    /// // Pinning DMA memory past RLIMIT_MEMLOCK: its own kind, with what to do.
    /// let e = VfioError::os("VFIO_IOMMU_MAP_DMA", "iova 0x100000 size 0x1000", enomem());
    /// assert_eq!(e.kind(), ErrorKind::Memlock);
    /// assert_eq!(e.code(), "ERR_VFIO_MEMLOCK");
    /// assert_eq!(e.errno(), Some(libc::ENOMEM));
    /// assert!(e.to_string().contains("ulimit -l"));
    /// // The same errno elsewhere is an I/O error.
    /// assert_eq!(VfioError::os("read", "region 0", enomem()).code(), "ERR_VFIO_IO");
    /// // The library's own checks have their kinds too.
    /// let e = VfioError::invalid("allocate_dma", "size 0x0 must be a non-zero multiple");
    /// assert_eq!(e.code(), "ERR_VFIO_INVALID_ARGUMENT");
    /// assert_eq!((e.op(), e.errno()), ("allocate_dma", None));
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            VfioError::Os { op, source, .. } => kind_of_errno(op, source.raw_os_error()),
            VfioError::NotFound { .. } => ErrorKind::NotFound,
            VfioError::GroupNotViable { .. } => ErrorKind::GroupNotViable,
            VfioError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            VfioError::OutOfRange { .. } => ErrorKind::OutOfRange,
            VfioError::Unsupported { .. } | VfioError::ApiVersion { .. } => ErrorKind::Unsupported,
            VfioError::Closed { .. } => ErrorKind::Closed,
            VfioError::Busy { .. } => ErrorKind::Busy,
            VfioError::TimedOut { .. } => ErrorKind::TimedOut,
            VfioError::HotResetNotOwned { .. } => ErrorKind::Permission,
            // Like ENOSPC of MAP_DMA: a count (of free pages) is below what is asked.
            VfioError::HugePages { .. } => ErrorKind::OutOfRange,
            upstream => crate::upstream_error::kind(upstream),
        }
    }

    /// The stable `ERR_VFIO_*` code.
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    /// The errno, when the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            VfioError::Os { source, .. } | VfioError::HugePages { source, .. } => {
                source.raw_os_error()
            }
            upstream => crate::upstream_error::errno(upstream),
        }
    }

    /// The ioctl or system call (or the library operation) that failed.
    pub fn op(&self) -> &'static str {
        match self {
            VfioError::Os { op, .. }
            | VfioError::InvalidArgument { op, .. }
            | VfioError::OutOfRange { op, .. }
            | VfioError::Unsupported { op, .. }
            | VfioError::Busy { op, .. }
            | VfioError::TimedOut { op, .. }
            | VfioError::Closed { op, .. } => op,
            VfioError::NotFound { .. } => "open",
            VfioError::HugePages { .. } => "mmap",
            VfioError::GroupNotViable { .. } => "VFIO_GROUP_GET_STATUS",
            VfioError::ApiVersion { .. } => "VFIO_GET_API_VERSION",
            VfioError::HotResetNotOwned { .. } => "VFIO_DEVICE_PCI_HOT_RESET",
            upstream => crate::upstream_error::op(upstream),
        }
    }

    /// The path involved, when there is one.
    pub fn path(&self) -> Option<String> {
        match self {
            VfioError::Os { target, .. } if target.starts_with('/') => Some(target.clone()),
            VfioError::NotFound { path, .. } => Some(path.display().to_string()),
            VfioError::GroupNotViable { group, .. } => Some(format!("/dev/vfio/{group}")),
            VfioError::HotResetNotOwned { missing, .. } => {
                missing.first().map(|d| format!("/dev/vfio/{}", d.group_id))
            }
            VfioError::HugePages { free_path, .. } => Some(free_path.display().to_string()),
            upstream => crate::upstream_error::path(upstream),
        }
    }
}

pub(crate) fn kind_of_errno(op: &str, errno: Option<i32>) -> ErrorKind {
    let hot_reset = op == "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO" || op == "VFIO_DEVICE_PCI_HOT_RESET";
    match errno {
        // vfio-pci's answer for a device that can be reset neither by slot nor by bus.
        Some(libc::ENODEV) if hot_reset => ErrorKind::Unsupported,
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => ErrorKind::NotFound,
        Some(libc::EACCES) | Some(libc::EPERM) => ErrorKind::Permission,
        Some(libc::EBUSY) => ErrorKind::Busy,
        // A cdev bound already, or its device open through another cdev open.
        Some(libc::EINVAL) if op == "VFIO_DEVICE_BIND_IOMMUFD" => ErrorKind::Busy,
        Some(libc::EINVAL) | Some(libc::EEXIST) => ErrorKind::InvalidArgument,
        Some(libc::ENOMEM) if op == "VFIO_IOMMU_MAP_DMA" || op == "IOMMU_IOAS_MAP" => {
            ErrorKind::Memlock
        }
        Some(libc::ENOSPC) if op == "VFIO_IOMMU_MAP_DMA" => ErrorKind::OutOfRange,
        Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) => ErrorKind::Unsupported,
        _ => ErrorKind::Io,
    }
}

/// How a migration data fd is named in errors: `<device> migration data fd`.
pub(crate) const MIGRATION_DATA_FD: &str = "migration data fd";

/// What to do about a kernel error, by operation and errno.
pub(crate) fn hint_suffix(op: &str, target: &str, source: &io::Error) -> String {
    let hint = match (op, source.raw_os_error()) {
        ("open", Some(libc::ENOENT)) if target == "/dev/vfio/vfio" => {
            "VFIO is not available: load the module (`modprobe vfio-pci`)"
        }
        ("open", Some(libc::ENOENT)) if target.starts_with("/dev/vfio/") => {
            "the group has no device node: bind its devices to vfio-pci first"
        }
        ("open", Some(libc::EACCES | libc::EPERM)) => {
            "run as root or grant your user access to /dev/vfio (a udev rule or chown)"
        }
        ("open", Some(libc::EBUSY)) => "the group is open in another process or container",
        ("VFIO_GROUP_GET_DEVICE_FD", Some(libc::EBUSY)) => {
            "the device is already open (here or in another process); close it first"
        }
        ("VFIO_IOMMU_MAP_DMA", Some(libc::ENOMEM)) => {
            "RLIMIT_MEMLOCK is too low to pin this memory: raise it (`ulimit -l`, LimitMEMLOCK=) or map less"
        }
        ("VFIO_IOMMU_MAP_DMA", Some(libc::ENOSPC)) => {
            "the IOMMU's limit of DMA mappings is reached (vfio_iommu_type1's dma_entry_limit; \
             iommuInfo().dmaAvail says how many are left): use fewer, larger buffers, unmap \
             some, or raise the module parameter"
        }
        ("IOMMU_IOAS_MAP", Some(libc::ENOMEM)) => {
            "RLIMIT_MEMLOCK is too low to pin this memory (iommufd counts it per user): raise it \
             (`ulimit -l`, LimitMEMLOCK=) or map less"
        }
        ("IOMMU_IOAS_MAP", Some(libc::EEXIST)) => "the IOVA range overlaps an existing mapping",
        ("open", Some(libc::ENOENT)) if target == "/dev/iommu" => {
            "the kernel has no iommufd (CONFIG_IOMMUFD, Linux 6.2+): use the type1 container \
             (/dev/vfio/vfio)"
        }
        ("open cdev", Some(libc::ENOENT)) => {
            "no /dev/vfio/devices node: the kernel lacks CONFIG_VFIO_DEVICE_CDEV (Linux 6.6+) \
             or devtmpfs/udev did not create it"
        }
        ("VFIO_DEVICE_BIND_IOMMUFD", Some(libc::EBUSY)) => {
            "the device is open elsewhere (through its group or another cdev open); close it first"
        }
        ("VFIO_DEVICE_BIND_IOMMUFD", Some(libc::EINVAL)) => {
            "the device is open already through another open of its cdev (a cdev is opened \
             once at a time), or this cdev is bound already; close the other first"
        }
        ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", Some(libc::ENOENT | libc::EINVAL)) => {
            "the page table id is no IOAS or HWPT of the iommufd the device is bound to"
        }
        ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", Some(libc::EPERM)) => {
            "the platform cannot isolate MSIs (no interrupt remapping): set \
             iommufd.allow_unsafe_interrupts=1 if you accept that"
        }
        ("VFIO_IOMMU_MAP_DMA", Some(libc::EEXIST)) => "the IOVA range overlaps an existing mapping",
        ("VFIO_IOMMU_MAP_DMA", Some(libc::EINVAL)) => {
            "the kernel refused the IOVA range or the memory (see iommuInfo().iovaRanges)"
        }
        ("VFIO_DEVICE_RESET", _) => "the device may not support reset in its current state",
        ("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO" | "VFIO_DEVICE_PCI_HOT_RESET", Some(libc::ENODEV)) => {
            "the device can be reset neither by slot nor by bus: it sits on a root bus, with \
             no bridge above it whose secondary bus could be reset, or its bridge forbids bus \
             resets; use reset() when the device has a reset method (info.canReset), or put \
             the device behind a bridge or root port"
        }
        ("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO" | "VFIO_DEVICE_PCI_HOT_RESET", Some(libc::EPERM)) => {
            "a device on the same bus has no IOMMU group, so the reset cannot be isolated"
        }
        ("VFIO_DEVICE_PCI_HOT_RESET", Some(libc::EINVAL)) => {
            "the kernel found an affected device whose group was not passed (the bus changed \
             since the check?): see hotResetInfo() and open a device of each group listed \
             through this device's container"
        }
        ("VFIO_DEVICE_PCI_HOT_RESET", Some(libc::EBUSY)) => {
            "an affected device is busy (another thread is faulting in its mapped BAR, or it \
             is being reset): try again"
        }
        ("write", _) if target.ends_with(MIGRATION_DATA_FD) => {
            "the device refused the stream: give it the bytes a device of the same type and \
             version saved, in order, and nothing more"
        }
        ("read", _) if target.ends_with(MIGRATION_DATA_FD) => {
            "the session may have ended (the state changed, or the device failed): read the \
             migration state"
        }
        (op, Some(errno)) if !feature_hint(op, errno).is_empty() => feature_hint(op, errno),
        (_, Some(libc::EACCES | libc::EPERM)) => "run as root or with CAP_SYS_RAWIO",
        _ => return String::new(),
    };
    format!(" ({hint})")
}

fn not_owned_hint(missing: &[crate::PciHotResetDevice]) -> String {
    let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
    format!(
        "the reset would also reset {}, whose IOMMU groups this device's container does not \
         hold: open a device of each of those groups through the same container \
         (container.openDevice(address); bind it to vfio-pci first) so the container holds \
         the group; a group that another container or process holds must be closed there",
        names.join(", ")
    )
}

fn opt_hint(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

fn group_hint(blockers: &[String]) -> String {
    if blockers.is_empty() {
        "some of its devices are bound to host drivers; bind every device of the group to vfio-pci"
            .into()
    } else {
        format!(
            "these devices of the group are bound to other drivers: {}; bind them to vfio-pci (or unbind them)",
            blockers.join(", ")
        )
    }
}

/// Asserts that `message` mentions every one of `parts` (tests of error wording).
#[cfg(test)]
pub(crate) fn assert_mentions(message: &impl std::fmt::Display, parts: &[&str]) {
    let message = message.to_string();
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_its_own_kind_only_for_dma_map() {
        let e = VfioError::os(
            "VFIO_IOMMU_MAP_DMA",
            "iova 0x1000",
            io::Error::from_raw_os_error(libc::ENOMEM),
        );
        assert_eq!(e.kind(), ErrorKind::Memlock);
        assert_eq!(e.code(), "ERR_VFIO_MEMLOCK");
        assert!(e.to_string().contains("RLIMIT_MEMLOCK"), "{e}");
        let e = VfioError::os(
            "read",
            "region 0",
            io::Error::from_raw_os_error(libc::ENOMEM),
        );
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn errno_maps_to_codes() {
        let cases = [
            (libc::ENOENT, "ERR_VFIO_NOT_FOUND"),
            (libc::EACCES, "ERR_VFIO_PERMISSION"),
            (libc::EPERM, "ERR_VFIO_PERMISSION"),
            (libc::EBUSY, "ERR_VFIO_BUSY"),
            (libc::EINVAL, "ERR_VFIO_INVALID_ARGUMENT"),
            (libc::ENOTTY, "ERR_VFIO_UNSUPPORTED"),
            (libc::EIO, "ERR_VFIO_IO"),
        ];
        for (errno, code) in cases {
            let e = VfioError::os("open", "/dev/vfio/7", io::Error::from_raw_os_error(errno));
            assert_eq!(e.code(), code, "errno {errno}");
            assert_eq!(e.errno(), Some(errno));
            assert_eq!(e.path().as_deref(), Some("/dev/vfio/7"));
        }
    }

    #[test]
    fn missing_container_says_to_load_the_module() {
        let e = VfioError::os(
            "open",
            "/dev/vfio/vfio",
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
    }

    #[test]
    fn group_not_viable_names_the_blockers() {
        let e = VfioError::GroupNotViable {
            group: 5,
            blockers: vec!["0000:00:1f.2 (ahci)".into()],
        };
        assert_eq!(e.code(), "ERR_VFIO_GROUP_NOT_VIABLE");
        assert!(e.to_string().contains("0000:00:1f.2 (ahci)"));
        assert_eq!(e.path().as_deref(), Some("/dev/vfio/5"));
    }

    #[test]
    fn closed_says_what_and_to_reopen() {
        let e = VfioError::Closed {
            op: "VFIO_DEVICE_RESET",
            what: "device",
        };
        assert_eq!(e.code(), "ERR_VFIO_CLOSED");
        assert_eq!(
            e.to_string(),
            "VFIO_DEVICE_RESET: the device is closed; open it again"
        );
        assert_eq!(
            closed_message("device"),
            "the device is closed; open it again"
        );
    }
}
