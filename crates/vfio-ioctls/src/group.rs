//! VFIO groups (`/dev/vfio/<N>`): the unit of isolation the IOMMU can enforce.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::sync::Arc;

use vfio_bindings::bindings::vfio::*;

use crate::container::VfioContainer;
use crate::error::{Result, VfioError};
use crate::ioctls;
use crate::sysfs::Sysfs;

/// A group attached to a container. Shared (`Arc`) by the devices opened through it;
/// when the last one is dropped the group leaves its container.
#[derive(Debug)]
pub struct VfioGroup {
    id: u32,
    file: File,
    container: Arc<VfioContainer>,
}

impl VfioGroup {
    /// Opens `/dev/vfio/<id>`, checks viability and attaches it to `container`, and
    /// registers it with the container's hypervisor device if it has one.
    /// (`VfioContainer::group` calls this under its lock and sets the IOMMU after.)
    pub(crate) fn attach(container: Arc<VfioContainer>, id: u32) -> Result<Arc<Self>> {
        let path = container.group_path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOENT) {
                    VfioError::NotFound {
                        what: format!("IOMMU group {id}"),
                        path: path.clone(),
                        hint: Some(
                            "bind the group's devices to vfio-pci (`vfio-ioctls bind <address>`)"
                                .into(),
                        ),
                    }
                } else {
                    VfioError::os("open", path.display().to_string(), e)
                }
            })?;
        let flags = ioctls::group_get_status(&file)
            .map_err(|e| VfioError::os("VFIO_GROUP_GET_STATUS", path.display().to_string(), e))?;
        // Test the bit: the kernel may set others (CONTAINER_SET) alongside VIABLE.
        if flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            let blockers = Sysfs::new().group_blockers(id).unwrap_or_default();
            return Err(VfioError::GroupNotViable {
                group: id,
                blockers,
            });
        }
        if flags & VFIO_GROUP_FLAGS_CONTAINER_SET != 0 {
            return Err(VfioError::os(
                "VFIO_GROUP_SET_CONTAINER",
                path.display().to_string(),
                std::io::Error::from_raw_os_error(libc::EBUSY),
            ));
        }
        ioctls::group_set_container(&file, container.file()).map_err(|e| {
            VfioError::os("VFIO_GROUP_SET_CONTAINER", path.display().to_string(), e)
        })?;
        Ok(Arc::new(VfioGroup {
            id,
            file,
            container,
        }))
    }

    /// Registers this group with the container's hypervisor device, if it has one.
    pub(crate) fn register_with_hypervisor(&self) -> Result<()> {
        match self.container.device_fd() {
            Some(dev) => dev.add_group(&self.file),
            None => Ok(()),
        }
    }

    /// The group number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The container this group is attached to.
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    /// `VFIO_GROUP_GET_STATUS` flags (`VFIO_GROUP_FLAGS_*`).
    pub fn status(&self) -> Result<u32> {
        ioctls::group_get_status(&self.file).map_err(|e| {
            VfioError::os("VFIO_GROUP_GET_STATUS", format!("/dev/vfio/{}", self.id), e)
        })
    }

    /// A device fd by its name in the group (the PCI address for PCI devices).
    pub(crate) fn device_file(&self, name: &str) -> Result<File> {
        let cname = CString::new(name).map_err(|_| {
            VfioError::invalid(
                "VFIO_GROUP_GET_DEVICE_FD",
                format!("device name {name:?} contains NUL"),
            )
        })?;
        ioctls::group_get_device_fd(&self.file, &cname).map_err(|e| {
            VfioError::os(
                "VFIO_GROUP_GET_DEVICE_FD",
                format!("/dev/vfio/{} device {name}", self.id),
                e,
            )
        })
    }
}

impl std::os::fd::AsRawFd for VfioGroup {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

impl Drop for VfioGroup {
    fn drop(&mut self) {
        if let Some(dev) = self.container.device_fd() {
            if let Err(e) = dev.remove_group(&self.file) {
                log::warn!("removing VFIO group {} from the hypervisor: {e}", self.id);
            }
        }
        if let Err(e) = ioctls::group_unset_container(&self.file) {
            log::warn!("VFIO_GROUP_UNSET_CONTAINER on group {}: {e}", self.id);
        }
        self.container.group_left(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioctls::fake::FakeKernel;
    use crate::ErrorKind;

    #[test]
    fn a_missing_group_node_is_not_found_with_the_bind_hint() {
        let kernel = FakeKernel::new();
        let c = kernel.container();
        let e = c.group(77).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.path(),
            Some(kernel.dir().join("77").display().to_string())
        );
        let msg = e.to_string();
        assert!(
            msg.contains("IOMMU group 77") && msg.contains("vfio-pci"),
            "{msg}"
        );
        assert_eq!(kernel.state().calls.len(), 2, "only the open's checks ran");
    }

    #[test]
    fn a_group_that_is_not_viable_is_refused_and_not_attached() {
        let kernel = FakeKernel::new();
        // A number no real host's sysfs has, so that no blockers are found there.
        kernel.add_group(4_000_000);
        kernel.state().groups.get_mut(&4_000_000).unwrap().viable = false;
        let c = kernel.container();
        let e = c.group(4_000_000).unwrap_err();
        assert!(
            matches!(
                e,
                VfioError::GroupNotViable {
                    group: 4_000_000,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.code(), "ERR_VFIO_GROUP_NOT_VIABLE");
        assert!(e.to_string().contains("bind every device"), "{e}");
        assert_eq!(kernel.calls("VFIO_GROUP_SET_CONTAINER"), 0);
        assert!(c.group_ids().is_empty());
        assert_eq!(c.current_generation(), None);
    }

    #[test]
    fn a_group_in_another_container_is_busy() {
        let kernel = FakeKernel::new();
        kernel.add_group(1);
        let (a, b) = (kernel.container(), kernel.container());
        let g = a.group(1).unwrap();
        let e = b.group(1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert_eq!(
            (e.op(), e.errno()),
            ("VFIO_GROUP_SET_CONTAINER", Some(libc::EBUSY))
        );
        assert_eq!(e.path(), Some(kernel.dir().join("1").display().to_string()));
        assert!(b.group_ids().is_empty());
        assert_eq!(kernel.state().groups[&1].container, Some(0));
        // Once it left the first, the second may take it.
        drop(g);
        let g = b.group(1).unwrap();
        assert_eq!(kernel.state().groups[&1].container, Some(1));
        assert!(Arc::ptr_eq(g.container(), &b));
    }

    #[test]
    fn a_group_reports_its_status_and_leaves_when_dropped() {
        let kernel = FakeKernel::new();
        kernel.add_group(9);
        let c = kernel.container();
        let g = c.group(9).unwrap();
        assert_eq!(g.id(), 9);
        assert_eq!(
            g.status().unwrap(),
            VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET
        );
        drop(g);
        assert_eq!(kernel.calls("VFIO_GROUP_UNSET_CONTAINER"), 1);
        assert_eq!(kernel.state().groups[&9].container, None);
        assert!(kernel.state().containers[0].groups.is_empty());
        assert!(c.group_ids().is_empty());
    }

    #[test]
    fn a_failed_unset_in_drop_is_logged_and_the_group_still_forgotten() {
        let kernel = FakeKernel::new();
        kernel.add_group(1);
        let c = kernel.container();
        let g = c.group(1).unwrap();
        kernel.fail_next("VFIO_GROUP_UNSET_CONTAINER", libc::EIO);
        drop(g); // must not panic
        assert!(c.group_ids().is_empty());
        assert_eq!(c.current_generation(), None);
    }

    #[test]
    fn a_device_name_with_nul_is_refused_before_the_kernel() {
        let kernel = FakeKernel::new();
        kernel.add_group(1);
        let c = kernel.container();
        let g = c.group(1).unwrap();
        let e = g.device_file("0000:00:03.0\0x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.op(), "VFIO_GROUP_GET_DEVICE_FD");
        // The fake has no devices: the name reaches the real ioctl, which refuses a file.
        let e = g.device_file("0000:00:03.0").unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOTTY));
        assert!(e.to_string().contains("device 0000:00:03.0"), "{e}");
    }
}
