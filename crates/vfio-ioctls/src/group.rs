//! VFIO groups (`/dev/vfio/<N>`): the unit of isolation the IOMMU can enforce.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
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
        let path = PathBuf::from(format!("/dev/vfio/{id}"));
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
