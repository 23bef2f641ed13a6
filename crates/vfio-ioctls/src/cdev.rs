//! VFIO device cdevs (`/dev/vfio/devices/vfioN`, `CONFIG_VFIO_DEVICE_CDEV`, Linux 6.6+):
//! opening a device without its group, binding it to an iommufd and attaching it to an
//! IOAS or HWPT (`VFIO_DEVICE_BIND_IOMMUFD`, `VFIO_DEVICE_[AT|DE]TACH_IOMMUFD_PT`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use vfio_ioctls::{VfioContainer, VfioDevice};
//!
//! let container = Arc::new(VfioContainer::new_iommufd(None)?);
//! let device = VfioDevice::open("0000:00:03.0", container.clone())?;
//! let dev_id = device.iommufd_dev_id().unwrap_or_default();
//! // Move the device from the IOAS to a HWPT of its own (same mappings), and back.
//! let hwpt = container.alloc_hwpt(dev_id)?;
//! device.attach_hwpt(hwpt)?;
//! device.detach_hwpt()?;
//! container.destroy_iommufd_object(hwpt)?;
//! # Ok::<(), vfio_ioctls::VfioError>(())
//! ```

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{VFIO_DEVICE_ATTACH_PASID, VFIO_DEVICE_DETACH_PASID};

use crate::container::VfioContainer;
use crate::device::VfioDevice;
use crate::error::{Result, VfioError};
use crate::ioctls;
use crate::iommufd::VfioIommufd;

/// Where the kernel creates device cdevs.
const CDEV_DIR: &str = "/dev/vfio/devices";

/// The newest kernel whose uAPI is known to lack `VFIO_DEVICE_ATTACH_PASID` /
/// `VFIO_DEVICE_DETACH_PASID` (checked in its `linux/vfio.h`; the guest runs it).
const LAST_KERNEL_WITHOUT_PASID: (u32, u32) = (6, 12);

/// The name of the one cdev in `<sysfs_path>/vfio-dev/` (`vfioN`).
pub(crate) fn cdev_name(sysfs_path: &Path) -> Result<String> {
    let dir = sysfs_path.join("vfio-dev");
    let invalid = |reason: String| VfioError::NotFound {
        what: format!("the VFIO device cdev ({reason})"),
        path: dir.clone(),
        hint: Some(
            "bind the device to vfio-pci; the kernel needs CONFIG_VFIO_DEVICE_CDEV (Linux 6.6+)"
                .into(),
        ),
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| invalid(format!("cannot read it ({e})")))?;
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("vfio"))
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(invalid("it lists no vfioN".into())),
        many => Err(invalid(format!(
            "it lists {} cdevs ({})",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// The release of the running kernel as (major, minor), when `uname` can tell.
fn kernel_version() -> Option<(u32, u32, String)> {
    // SAFETY: `utsname` is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a live struct we own; uname writes only inside it.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let release = String::from_utf8_lossy(&bytes).into_owned();
    let (major, minor) = parse_release(&release)?;
    Some((major, minor, release))
}

/// `6.12.5-amd64` → (6, 12).
pub(crate) fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The `Unsupported` error for PASID attach on a kernel up to 6.12 (whose uAPI has no
/// PASID attach at all), when the
/// kernel refused with EINVAL (6.12 rejects any flag).
fn pasid_unsupported(op: &'static str, errno: Option<i32>) -> Option<VfioError> {
    let (major, minor, release) = kernel_version()?;
    ((major, minor) <= LAST_KERNEL_WITHOUT_PASID && errno == Some(libc::EINVAL)).then(|| {
        VfioError::unsupported(
            op,
            format!(
                "the kernel ({release}) has no VFIO_DEVICE_ATTACH_PASID / \
                 VFIO_DEVICE_DETACH_PASID: attaching a PASID of a device needs a kernel \
                 newer than {}.{} whose VFIO uAPI has them",
                LAST_KERNEL_WITHOUT_PASID.0, LAST_KERNEL_WITHOUT_PASID.1
            ),
        )
    })
}

impl VfioDevice {
    /// Opens the cdev of the device at `sysfspath` (`/dev/vfio/devices/vfioN`, found
    /// through `<sysfspath>/vfio-dev/`), unbound (upstream's function).
    ///
    /// # Errors
    /// Upstream's variants: `InvalidVfioDev` (`NotFound`) when sysfs lists no single cdev (the
    /// device is not bound to vfio-pci, or the kernel lacks `CONFIG_VFIO_DEVICE_CDEV`);
    /// `OpenDeviceCdev` with the errno (`Busy` when the device is open
    /// through its group).
    pub fn open_cdev(sysfspath: &Path) -> Result<File> {
        Self::open_cdev_file(sysfspath).map_err(VfioError::into_upstream)
    }

    /// [`VfioDevice::open_cdev`] with the structured errors (`NotFound` naming the
    /// `vfio-dev` directory, `Os` of `open` with the cdev's path).
    pub(crate) fn open_cdev_file(sysfspath: &Path) -> Result<File> {
        let path = Path::new(CDEV_DIR).join(cdev_name(sysfspath)?);
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| VfioError::os("open", path.display().to_string(), source))
    }

    /// A device from an open cdev, which is bound to `vfio_iommufd`'s iommufd and, with
    /// `attach_ioas`, attached to its IOAS (upstream's function).
    ///
    /// # Errors
    /// Upstream's `VfioDeviceBindIommufd`, `VfioDeviceAttachIommufdPt`
    /// with the kernel's errno; the errors of reading the device's info.
    pub fn new_from_fd(
        device: File,
        vfio_iommufd: Arc<VfioIommufd>,
        attach_ioas: bool,
    ) -> Result<Self> {
        Self::from_cdev(device, vfio_iommufd.container().clone(), true, attach_ioas)
            .map_err(VfioError::into_upstream)
    }

    /// Like [`VfioDevice::new_from_fd`] for a cdev already bound to `vfio_iommufd`'s
    /// iommufd (the binding lives as long as the open cdev): no bind, so no device id
    /// is known ([`VfioDevice::iommufd_dev_id`] is `None`).
    pub fn new_from_bound_fd(
        device: File,
        vfio_iommufd: Arc<VfioIommufd>,
        attach_ioas: bool,
    ) -> Result<Self> {
        Self::from_cdev(device, vfio_iommufd.container().clone(), false, attach_ioas)
            .map_err(VfioError::into_upstream)
    }

    fn from_cdev(
        device: File,
        container: Arc<VfioContainer>,
        bind: bool,
        attach_ioas: bool,
    ) -> Result<Self> {
        let (name, sysfs_path) = describe_cdev(&device);
        Self::from_cdev_parts(device, name, sysfs_path, container, None, bind, attach_ioas)
    }

    /// A device of a cdev: registered with the hypervisor (before the bind, so the device
    /// sees the VM), bound to the container's iommufd (the kernel answers nothing else
    /// on an unbound cdev), attached to the IOAS, and then read.
    pub(crate) fn from_cdev_parts(
        file: File,
        name: String,
        sysfs_path: PathBuf,
        container: Arc<VfioContainer>,
        held: Option<crate::held::OpenGuard>,
        bind: bool,
        attach_ioas: bool,
    ) -> Result<Self> {
        let ioas = container.ioas().ok_or_else(|| {
            VfioError::unsupported(
                "VFIO_DEVICE_BIND_IOMMUFD",
                "the container is not native iommufd: a cdev binds to an iommufd only",
            )
        })?;
        let hypervisor = container.device_fd().cloned();
        // A second fd of the cdev, to take it out of the hypervisor again if reading the
        // device fails (which consumes `file`).
        let undo = match &hypervisor {
            Some(_) => Some(
                file.try_clone()
                    .map_err(|e| VfioError::os("dup", name.clone(), e))?,
            ),
            None => None,
        };
        if let Some(hv) = &hypervisor {
            hv.add_group(&file)?;
        }
        let joined = (|| {
            let id = match bind {
                true => Some(
                    ioctls::device_bind_iommufd(&file, ioas.iommufd_fd())
                        .map_err(|source| bind_error(&name, &sysfs_path, source))?,
                ),
                false => None,
            };
            if attach_ioas {
                attach_pt(&file, &name, ioas.id())?;
            }
            Ok(id)
        })();
        let id = match joined {
            Ok(id) => id,
            Err(e) => {
                if let Some(hv) = &hypervisor {
                    if let Err(e) = hv.remove_group(&file) {
                        log::warn!("removing VFIO device {name} from the hypervisor: {e}");
                    }
                }
                return Err(e);
            }
        };
        container.ranges_changed();
        let read = VfioDevice::from_file(file, name, sysfs_path, None, container.clone(), held);
        let mut device = match (read, &hypervisor, undo) {
            (Ok(device), _, _) => device,
            (Err(e), Some(hv), Some(undo)) => {
                if let Err(err) = hv.remove_group(&undo) {
                    log::warn!("removing a VFIO device cdev from the hypervisor: {err}");
                }
                return Err(e);
            }
            (Err(e), _, _) => return Err(e),
        };
        device.iommufd_dev_id = id;
        device.hypervisor_registered = hypervisor.is_some();
        Ok(device)
    }

    fn attach_pt(&self, pt_id: u32) -> Result<()> {
        attach_pt(self.file(), self.name(), pt_id)?;
        self.container().ranges_changed();
        Ok(())
    }

    fn require_cdev(&self, op: &'static str) -> Result<()> {
        if self.container().ioas().is_none() {
            return Err(VfioError::unsupported(
                op,
                format!(
                    "{} was opened through its group ({} container): only a device cdev of a \
                     native iommufd container attaches to iommufd page tables",
                    self.name(),
                    self.container().backend().as_str()
                ),
            ));
        }
        Ok(())
    }

    /// Attaches the device to the IOAS or HWPT `pt_id` of its iommufd, replacing the
    /// page table it is attached to (upstream's function).
    ///
    /// # Errors
    /// `Unsupported` for a device opened through a group;
    /// upstream's `VfioDeviceAttachIommufdPt` with the kernel's errno otherwise.
    pub fn attach_hwpt(&self, pt_id: u32) -> Result<()> {
        self.require_cdev("VFIO_DEVICE_ATTACH_IOMMUFD_PT")?;
        self.attach_pt(pt_id).map_err(VfioError::into_upstream)
    }

    /// Detaches the device from its page table: it is then blocked from DMA (upstream's
    /// function).
    ///
    /// # Errors
    /// `Unsupported` for a device opened through a group;
    /// upstream's `VfioDeviceDetachIommufdPt` with the kernel's errno otherwise.
    pub fn detach_hwpt(&self) -> Result<()> {
        self.require_cdev("VFIO_DEVICE_DETACH_IOMMUFD_PT")?;
        ioctls::device_detach_iommufd_pt(self.file(), 0, 0).map_err(|source| {
            VfioError::os(
                "VFIO_DEVICE_DETACH_IOMMUFD_PT",
                self.name().to_string(),
                source,
            )
            .into_upstream()
        })?;
        self.container().ranges_changed();
        Ok(())
    }

    /// Attaches PASID `pasid` of the device to the IOAS or HWPT `pt_id` (upstream's
    /// function; `VFIO_DEVICE_ATTACH_PASID`, kernels after 6.12). The page table the device
    /// itself is attached to must be PASID-compatible.
    ///
    /// # Errors
    /// `Unsupported` for a device opened through a group, and on kernels up to 6.12
    /// (saying so); upstream's `VfioDeviceAttachIommufdPt` with the errno otherwise.
    pub fn attach_iommufd_pt_pasid(&self, pt_id: u32, pasid: u32) -> Result<()> {
        const OP: &str = "VFIO_DEVICE_ATTACH_IOMMUFD_PT";
        self.require_cdev(OP)?;
        ioctls::device_attach_iommufd_pt(self.file(), VFIO_DEVICE_ATTACH_PASID, pt_id, pasid)
            .map(drop)
            .map_err(|source| {
                pasid_unsupported(OP, source.raw_os_error()).unwrap_or_else(|| {
                    VfioError::os(
                        OP,
                        format!("{} pasid {pasid} page table {pt_id}", self.name()),
                        source,
                    )
                    .into_upstream()
                })
            })
    }

    /// Detaches PASID `pasid` of the device from its page table (upstream's function;
    /// kernels after 6.12).
    ///
    /// # Errors
    /// As [`VfioDevice::attach_iommufd_pt_pasid`].
    pub fn detach_iommufd_pt_pasid(&self, pasid: u32) -> Result<()> {
        const OP: &str = "VFIO_DEVICE_DETACH_IOMMUFD_PT";
        self.require_cdev(OP)?;
        ioctls::device_detach_iommufd_pt(self.file(), VFIO_DEVICE_DETACH_PASID, pasid).map_err(
            |source| {
                pasid_unsupported(OP, source.raw_os_error()).unwrap_or_else(|| {
                    VfioError::os(OP, format!("{} pasid {pasid}", self.name()), source)
                        .into_upstream()
                })
            },
        )
    }
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` of `file` to `pt_id`.
fn attach_pt(file: &File, name: &str, pt_id: u32) -> Result<()> {
    ioctls::device_attach_iommufd_pt(file, 0, pt_id, 0)
        .map(drop)
        .map_err(|source| {
            VfioError::os(
                "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
                format!("{name} page table {pt_id}"),
                source,
            )
        })
}

/// The bind's error: EBUSY or EPERM (what 6.12 answers) with devices of the group bound
/// to host drivers is the group's viability, as the group flow reports it.
fn bind_error(name: &str, sysfs_path: &Path, source: std::io::Error) -> VfioError {
    if matches!(source.raw_os_error(), Some(libc::EBUSY | libc::EPERM)) {
        let sysfs = crate::sysfs::Sysfs::new();
        if let Ok(group) = sysfs.iommu_group(sysfs_path) {
            let blockers = sysfs.group_blockers(group).unwrap_or_default();
            if !blockers.is_empty() {
                return VfioError::GroupNotViable { group, blockers };
            }
        }
    }
    VfioError::os("VFIO_DEVICE_BIND_IOMMUFD", name.to_string(), source)
}

/// The name (PCI address when sysfs tells it, else the cdev path) and sysfs directory of
/// an open cdev, found through `/proc/self/fd` and `/sys/class/vfio-dev/vfioN/device`.
fn describe_cdev(device: &File) -> (String, PathBuf) {
    let fd = device.as_raw_fd();
    let node = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    let cdev = node
        .as_ref()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .map(str::to_string);
    let sysfs = cdev
        .as_ref()
        .and_then(|n| std::fs::canonicalize(format!("/sys/class/vfio-dev/{n}/device")).ok());
    let name = sysfs
        .as_ref()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .or_else(|| node.as_ref().map(|p| p.display().to_string()))
        .unwrap_or_else(|| format!("cdev fd {fd}"));
    (name, sysfs.unwrap_or_default())
}

impl iommufd_ioctls::AttachHwpt for VfioDevice {
    fn attach_hwpt(&self, pt_id: u32) -> std::io::Result<()> {
        VfioDevice::attach_hwpt(self, pt_id).map_err(std::io::Error::other)
    }

    fn detach_hwpt(&self) -> std::io::Result<()> {
        VfioDevice::detach_hwpt(self).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn releases_parse_to_major_and_minor() {
        assert_eq!(parse_release("6.12.5-amd64"), Some((6, 12)));
        assert_eq!(parse_release("6.1.0-48-amd64"), Some((6, 1)));
        assert_eq!(parse_release("6.13"), Some((6, 13)));
        assert_eq!(parse_release("x"), None);
        assert!((6, 12) <= LAST_KERNEL_WITHOUT_PASID && (6, 13) > LAST_KERNEL_WITHOUT_PASID);
    }

    #[test]
    fn a_device_without_a_cdev_is_invalid_vfio_dev_with_the_kernel_hint() {
        let dir = vmm_sys_util::tempdir::TempDir::new().unwrap();
        let e = VfioDevice::open_cdev(dir.as_path()).unwrap_err();
        // Upstream's variant from upstream's function, the structured one from ours.
        assert!(matches!(e, VfioError::InvalidVfioDev), "{e}");
        assert_eq!((e.kind(), e.op()), (ErrorKind::NotFound, "open"));
        crate::error::assert_mentions(&e, &["CONFIG_VFIO_DEVICE_CDEV", "vfio-pci"]);
        let e = VfioDevice::open_cdev_file(dir.as_path()).unwrap_err();
        assert_eq!((e.kind(), e.op()), (ErrorKind::NotFound, "open"));
        assert_eq!(
            e.path(),
            Some(dir.as_path().join("vfio-dev").display().to_string())
        );
        crate::error::assert_mentions(&e, &["CONFIG_VFIO_DEVICE_CDEV", "vfio-pci"]);
        std::fs::create_dir_all(dir.as_path().join("vfio-dev/vfio0")).unwrap();
        std::fs::create_dir_all(dir.as_path().join("vfio-dev/vfio1")).unwrap();
        let e = cdev_name(dir.as_path()).unwrap_err();
        crate::error::assert_mentions(&e, &["2 cdevs", "vfio0", "vfio1"]);
        std::fs::remove_dir(dir.as_path().join("vfio-dev/vfio1")).unwrap();
        assert_eq!(cdev_name(dir.as_path()).unwrap(), "vfio0");
    }
}
