//! VFIO devices: info, regions, reset (`VFIO_DEVICE_*`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vfio_bindings::bindings::vfio::*;

use crate::abi::{as_bytes, get_u32, get_u64, put_u32, set_argsz};
use crate::container::{VfioContainer, VfioOps};
use crate::error::{Result, VfioError};
use crate::group::VfioGroup;
use crate::ioctls;
use crate::irq::VfioIrq;
use crate::irq_claim::IrqClaims;
use crate::region::{parse_region_caps, VfioRegion};
use crate::sysfs::Sysfs;

/// PCI region indices (`VFIO_PCI_*_REGION_INDEX`).
pub mod pci_region {
    /// BAR 0; BARs 1 to 5 follow.
    pub const BAR0: u32 = 0;
    /// The last BAR.
    pub const BAR5: u32 = 5;
    /// The expansion ROM.
    pub const ROM: u32 = 6;
    /// PCI configuration space.
    pub const CONFIG: u32 = 7;
    /// Legacy VGA ranges.
    pub const VGA: u32 = 8;
    /// How many regions every vfio-pci device reports, at least.
    pub const NUM_REGIONS: u32 = 9;
}

/// The PCI command register's offset in config space, and its memory-space bit.
const PCI_COMMAND: u64 = 4;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;

/// Device-wide info (`VFIO_DEVICE_GET_INFO`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VfioDeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*` bits.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indices.
    pub num_irqs: u32,
}

impl VfioDeviceInfo {
    /// Whether this is a PCI device.
    pub fn is_pci(&self) -> bool {
        self.flags & VFIO_DEVICE_FLAGS_PCI != 0
    }

    /// Whether the device supports `VFIO_DEVICE_RESET`.
    pub fn can_reset(&self) -> bool {
        self.flags & VFIO_DEVICE_FLAGS_RESET != 0
    }

    /// Upstream's check of the device type in `VfioDevice::new`: a platform device, or a
    /// PCI device with vfio-pci's regions (through config space) and IRQ indices
    /// (through MSI-X).
    ///
    /// # Errors
    /// `VfioDeviceGetInfoPCI` for a PCI device with fewer, `VfioDeviceGetInfoOther` for
    /// any other type.
    pub(crate) fn check_upstream_type(&self) -> Result<()> {
        let types = VFIO_DEVICE_FLAGS_PCI
            | VFIO_DEVICE_FLAGS_PLATFORM
            | VFIO_DEVICE_FLAGS_AMBA
            | VFIO_DEVICE_FLAGS_CCW
            | VFIO_DEVICE_FLAGS_AP;
        match self.flags & types {
            VFIO_DEVICE_FLAGS_PLATFORM => Ok(()),
            VFIO_DEVICE_FLAGS_PCI
                if self.num_regions > VFIO_PCI_CONFIG_REGION_INDEX
                    && self.num_irqs > VFIO_PCI_MSIX_IRQ_INDEX =>
            {
                Ok(())
            }
            VFIO_DEVICE_FLAGS_PCI => Err(VfioError::VfioDeviceGetInfoPCI),
            _ => Err(VfioError::VfioDeviceGetInfoOther),
        }
    }
}

/// An open VFIO device. Dropping it closes the device and, if it was the group's
/// last device, detaches the group from the container. A device of a native iommufd
/// container is opened through its cdev, bound to the iommufd and (usually) attached to
/// the container's IOAS; closing the cdev undoes both.
#[derive(Debug)]
pub struct VfioDevice {
    // Declared first so it is closed before the group is released (the kernel refuses
    // to unset a group's container while one of its devices is open).
    file: File,
    name: String,
    sysfs_path: PathBuf,
    info: VfioDeviceInfo,
    regions: Vec<VfioRegion>,
    pub(crate) irqs: Vec<VfioIrq>,
    /// Which IRQ indices an [`IrqClaim`](crate::IrqClaim) owns.
    pub(crate) irq_claims: IrqClaims,
    /// Whether the PCI command register's memory-space bit was set when last seen (at
    /// open, and after each config write through this device or reset).
    memory_decoding: AtomicBool,
    /// Migration data fd, DMA logging and feature probes (see `device_feature.rs`).
    pub(crate) features: crate::device_feature::FeatureState,
    /// The group it was opened through (none for a cdev).
    group: Option<Arc<VfioGroup>>,
    /// The container whose IOMMU maps its DMA.
    container: Arc<VfioContainer>,
    /// Its id in the iommufd it is bound to (cdev only).
    pub(crate) iommufd_dev_id: Option<u32>,
    /// Whether the cdev was registered with the container's hypervisor device (a group
    /// is registered by the group instead).
    pub(crate) hypervisor_registered: bool,
    // Declared last so the address is unregistered only after the fd is closed: while
    // it is registered, `Sysfs::bind_vfio`/`unbind_vfio` refuse instead of deadlocking.
    _held: Option<crate::held::OpenGuard>,
}

impl VfioDevice {
    /// Opens the device at `sysfs_path` (e.g. `/sys/bus/pci/devices/0000:00:03.0`)
    /// through `container`, finding its group through the `iommu_group` link.
    ///
    /// # Errors
    /// `NotFound` for a missing device or group, `InvalidArgument` for a path outside
    /// sysfs, `GroupNotViable`, `Busy` when its group is held by another container or
    /// process, the kernel's errno otherwise. (Within one container the kernel lets a
    /// device be opened more than once; each handle is independent.)
    ///
    /// Upstream's signature: `vfio_ops` is a [`VfioContainer`] (the group flow, or the
    /// cdev flow for a native iommufd container) or a `VfioIommufd` (the cdev flow).
    /// `attach_ioas` says whether a cdev is attached to the IOAS (else it stays blocked
    /// from DMA until [`VfioDevice::attach_hwpt`]); the group flow ignores it.
    ///
    /// Also `InvalidArgument` for any other `VfioOps`.
    pub fn new(sysfs_path: &Path, vfio_ops: Arc<dyn VfioOps>, attach_ioas: bool) -> Result<Self> {
        let path = sysfs_path
            .to_str()
            .ok_or_else(|| {
                VfioError::invalid(
                    "open device",
                    format!("path {} is not UTF-8", sysfs_path.display()),
                )
            })
            .map_err(VfioError::into_upstream)?;
        let container = container_of(vfio_ops)?;
        let device = Self::open_with(&Sysfs::new(), path, container, attach_ioas)
            .map_err(VfioError::into_upstream)?;
        device.info.check_upstream_type()?;
        Ok(device)
    }

    /// Opens a device by PCI address (`0000:00:03.0`, `00:03.0`) or sysfs path.
    pub fn open(address_or_path: &str, container: Arc<VfioContainer>) -> Result<Self> {
        Self::open_in(&Sysfs::new(), address_or_path, container)
    }

    /// Like [`VfioDevice::open`] with another sysfs root.
    pub fn open_in(
        sysfs: &Sysfs,
        address_or_path: &str,
        container: Arc<VfioContainer>,
    ) -> Result<Self> {
        Self::open_with(sysfs, address_or_path, container, true)
    }

    fn open_with(
        sysfs: &Sysfs,
        address_or_path: &str,
        container: Arc<VfioContainer>,
        attach_ioas: bool,
    ) -> Result<Self> {
        let location = sysfs.resolve_device(address_or_path)?;
        // Registered before the fd exists (and unregistered if opening fails).
        let held = location
            .address
            .map(crate::held::register_open)
            .transpose()?;
        #[cfg(not(feature = "vfio_cdev"))]
        let _ = attach_ioas; // Only a cdev attaches (needs the feature).
        if container.backend() == crate::IommuBackend::Iommufd {
            #[cfg(feature = "vfio_cdev")]
            {
                let file = Self::open_cdev_file(&location.sysfs_path)?;
                return VfioDevice::from_cdev_parts(
                    file,
                    location.name,
                    location.sysfs_path,
                    container,
                    held,
                    true,
                    attach_ioas,
                );
            }
        }
        let group = container.group(location.group)?;
        let file = group.device_file(&location.name)?;
        VfioDevice::from_file(
            file,
            location.name,
            location.sysfs_path,
            Some(group),
            container,
            held,
        )
    }

    /// Reads the device's info, regions and IRQs from its fd.
    pub(crate) fn from_file(
        file: File,
        name: String,
        sysfs_path: PathBuf,
        group: Option<Arc<VfioGroup>>,
        container: Arc<VfioContainer>,
        held: Option<crate::held::OpenGuard>,
    ) -> Result<Self> {
        let info = get_device_info(&file, &name)?;
        let regions = (0..info.num_regions)
            .map(|index| get_region(&file, &name, index))
            .collect::<Result<Vec<_>>>()?;
        let irqs = (0..info.num_irqs)
            .map(|index| crate::irq::get_irq(&file, &name, index))
            .collect::<Result<Vec<_>>>()?;
        let device = VfioDevice {
            file,
            name,
            sysfs_path,
            info,
            regions,
            irqs,
            irq_claims: IrqClaims::default(),
            memory_decoding: AtomicBool::new(true),
            features: Default::default(),
            group,
            container,
            iommufd_dev_id: None,
            hypervisor_registered: false,
            _held: held,
        };
        device.refresh_memory_decoding();
        Ok(device)
    }

    /// Whether the device decodes memory (its BARs can be touched), as last seen.
    #[inline]
    pub fn decodes_memory(&self) -> bool {
        self.memory_decoding.load(Ordering::Relaxed)
    }

    /// Reads the PCI command register again to learn whether memory decoding is on. A
    /// device whose config space cannot be read is taken to decode memory.
    pub fn refresh_memory_decoding(&self) {
        if !self.info.is_pci() {
            return;
        }
        let mut command = [0u8; 2];
        if self.region(pci_region::CONFIG).is_ok_and(|config| {
            self.file
                .read_exact_at(&mut command, config.offset + PCI_COMMAND)
                .is_ok()
        }) {
            let on = u16::from_le_bytes(command) & PCI_COMMAND_MEMORY != 0;
            self.memory_decoding.store(on, Ordering::Relaxed);
        }
    }

    /// The device's name in its group (its PCI address).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The canonical sysfs directory of the device.
    pub fn sysfs_path(&self) -> &Path {
        &self.sysfs_path
    }

    /// Device-wide info.
    pub fn info(&self) -> VfioDeviceInfo {
        self.info
    }

    /// The group the device was opened through; `None` for a cdev (native iommufd).
    pub fn group(&self) -> Option<&Arc<VfioGroup>> {
        self.group.as_ref()
    }

    /// The device's IOMMU group number: its group's, or for a cdev what sysfs says.
    pub fn iommu_group(&self) -> Option<u32> {
        self.group
            .as_ref()
            .map(|g| g.id())
            .or_else(|| Sysfs::new().iommu_group(&self.sysfs_path).ok())
    }

    /// The container whose IOMMU maps the device's DMA.
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    /// The device's id in the iommufd its cdev is bound to (upstream's accessor); `None`
    /// for a device opened through a group.
    pub fn iommufd_dev_id(&self) -> Option<u32> {
        self.iommufd_dev_id
    }

    /// Every region, indexed by VFIO region index (absent ones included).
    pub fn regions(&self) -> &[VfioRegion] {
        &self.regions
    }

    /// One region by VFIO index.
    ///
    /// # Errors
    /// `OutOfRange` past the device's number of regions.
    pub fn region(&self, index: u32) -> Result<&VfioRegion> {
        self.regions.get(index as usize).ok_or_else(|| {
            VfioError::out_of_range(
                "region",
                format!(
                    "region index {index} is past the device's {} regions",
                    self.regions.len()
                ),
            )
        })
    }

    /// Region flags, 0 for an unknown index (upstream's accessor).
    pub fn get_region_flags(&self, index: u32) -> u32 {
        self.region(index).map(|r| r.flags).unwrap_or(0)
    }

    /// Region offset in the device fd, 0 for an unknown index (upstream's accessor).
    pub fn get_region_offset(&self, index: u32) -> u64 {
        self.region(index).map(|r| r.offset).unwrap_or(0)
    }

    /// Region size, 0 for an unknown index (upstream's accessor).
    pub fn get_region_size(&self, index: u32) -> u64 {
        self.region(index).map(|r| r.size).unwrap_or(0)
    }

    /// Region capabilities, empty for an unknown index (upstream's accessor).
    pub fn get_region_caps(&self, index: u32) -> Vec<crate::VfioRegionInfoCap> {
        self.region(index)
            .map(|r| r.caps.clone())
            .unwrap_or_default()
    }

    /// The region's capabilities that [`VfioRegionInfoCap`](crate::VfioRegionInfoCap)
    /// does not decode, raw; empty for an unknown index.
    pub fn get_region_other_caps(&self, index: u32) -> Vec<crate::VfioRegionInfoCapRaw> {
        self.region(index)
            .map(|r| r.other_caps.clone())
            .unwrap_or_default()
    }

    /// Reads `buf.len()` bytes at `addr` of region `index` (upstream's signature): a
    /// failure is logged (`log::warn!`) and leaves `buf` as it was, or partly read.
    /// [`VfioDevice::try_region_read`] returns the error instead.
    pub fn region_read(&self, index: u32, buf: &mut [u8], addr: u64) {
        if let Err(e) = self.try_region_read(index, buf, addr) {
            log::warn!("region_read: {e}");
        }
    }

    /// Writes `buf` at `addr` of region `index` (upstream's signature): a failure is
    /// logged (`log::warn!`). [`VfioDevice::try_region_write`] returns the error instead.
    pub fn region_write(&self, index: u32, buf: &[u8], addr: u64) {
        if let Err(e) = self.try_region_write(index, buf, addr) {
            log::warn!("region_write: {e}");
        }
    }

    /// Resets the device if it has a reset method (upstream's signature): a failure is
    /// logged (`log::warn!`); a device without one is left alone, as upstream does.
    /// [`VfioDevice::try_reset`] returns the error instead.
    pub fn reset(&self) {
        if !self.info.can_reset() {
            log::debug!("reset: {} reports no reset method; not reset", self.name);
            return;
        }
        if let Err(e) = self.try_reset() {
            log::warn!("reset: {e}");
        }
    }

    /// Reads `buf.len()` bytes at `offset` of region `index` (pread on the device fd).
    ///
    /// # Errors
    /// `OutOfRange` for a range past the region (or overflowing), `InvalidArgument`
    /// for a region that cannot be read, the kernel's errno otherwise.
    pub fn try_region_read(&self, index: u32, buf: &mut [u8], offset: u64) -> Result<()> {
        let region = self.region(index)?;
        region.check_range("region_read", offset, buf.len())?;
        if !region.readable() {
            return Err(VfioError::invalid(
                "region_read",
                format!("region {index} of {} is not readable", self.name),
            ));
        }
        self.file
            .read_exact_at(buf, region.offset + offset)
            .map_err(|e| {
                VfioError::os(
                    "pread",
                    format!("{} region {index} offset {offset:#x}", self.name),
                    e,
                )
            })
    }

    /// Reads `len` bytes at `offset` of region `index` into a new vector. The range is
    /// checked before anything is allocated, and the allocation itself is fallible, so
    /// no length can abort the process.
    ///
    /// # Errors
    /// As [`VfioDevice::try_region_read`]; `OutOfRange` when `len` bytes cannot be allocated.
    pub fn region_read_vec(&self, index: u32, offset: u64, len: u64) -> Result<Vec<u8>> {
        const OP: &str = "region_read";
        let region = self.region(index)?;
        let n = usize::try_from(len).map_err(|_| {
            VfioError::out_of_range(OP, format!("length {len:#x} does not fit this machine"))
        })?;
        region.check_range(OP, offset, n)?;
        let mut buf = crate::alloc::try_zeroed(OP, n)?;
        self.try_region_read(index, &mut buf, offset)?;
        Ok(buf)
    }

    /// Writes `buf` at `offset` of region `index` (pwrite on the device fd).
    ///
    /// # Errors
    /// As [`VfioDevice::try_region_read`]; `InvalidArgument` for a read-only region.
    pub fn try_region_write(&self, index: u32, buf: &[u8], offset: u64) -> Result<()> {
        let region = self.region(index)?;
        region.check_range("region_write", offset, buf.len())?;
        if !region.writable() {
            return Err(VfioError::invalid(
                "region_write",
                format!("region {index} of {} is read-only", self.name),
            ));
        }
        let written = self
            .file
            .write_all_at(buf, region.offset + offset)
            .map_err(|e| {
                VfioError::os(
                    "pwrite",
                    format!("{} region {index} offset {offset:#x}", self.name),
                    e,
                )
            });
        let end = offset.saturating_add(buf.len() as u64);
        if index == pci_region::CONFIG && offset < PCI_COMMAND + 2 && end > PCI_COMMAND {
            self.refresh_memory_decoding();
        }
        written
    }

    /// Resets the device (`VFIO_DEVICE_RESET`).
    ///
    /// # Errors
    /// `Unsupported` when the device reports no reset method; the kernel's errno otherwise.
    pub fn try_reset(&self) -> Result<()> {
        if !self.info.can_reset() {
            return Err(VfioError::unsupported(
                "VFIO_DEVICE_RESET",
                format!(
                    "{} reports no reset method (VFIO_DEVICE_FLAGS_RESET is clear)",
                    self.name
                ),
            ));
        }
        let reset = ioctls::device_reset(&self.file)
            .map_err(|e| VfioError::os("VFIO_DEVICE_RESET", self.name.clone(), e));
        // A reset clears the command register on most devices.
        self.refresh_memory_decoding();
        reset
    }

    /// The devices a PCI hot reset of this device would reset (itself included), each
    /// with its IOMMU group (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`). The kernel's count is
    /// capped and the list allocated fallibly.
    ///
    /// # Errors
    /// `Unsupported` (errno ENODEV) when the device can be reset neither by slot nor by
    /// bus (e.g. on a root bus), or when the kernel lists iommufd device ids instead of
    /// groups; `OutOfRange` for a count no PCI segment can hold.
    pub fn pci_hot_reset_info(&self) -> Result<Vec<crate::PciHotResetDevice>> {
        crate::hot_reset::hot_reset_info(&self.file, &self.name)
    }

    /// A PCI hot reset (slot or secondary bus reset, `VFIO_DEVICE_PCI_HOT_RESET`) of this
    /// device and of every device [`VfioDevice::pci_hot_reset_info`] lists, passing the
    /// fds of their groups, which this device's container must hold. Interrupts stay
    /// enabled (the PCI core restores MSI and MSI-X); memory decoding is read again.
    /// Returns the devices that were reset.
    ///
    /// # Errors
    /// `Permission` ([`VfioError::HotResetNotOwned`]) naming the affected devices whose
    /// groups the container does not hold, before the kernel is asked; as
    /// [`VfioError::Os`] with the kernel's errno and a hint otherwise.
    pub fn pci_hot_reset(&self) -> Result<Vec<crate::PciHotResetDevice>> {
        let reset = crate::hot_reset::pci_hot_reset(&self.file, &self.name, &self.container);
        // The bus reset clears the command register; the PCI core writes back what it saved.
        self.refresh_memory_decoding();
        reset
    }

    /// The device fd.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

/// The container behind a `VfioOps`: a [`VfioContainer`] itself, or a `VfioIommufd`'s.
fn container_of(vfio_ops: Arc<dyn VfioOps>) -> Result<Arc<VfioContainer>> {
    let any: Arc<dyn std::any::Any + Send + Sync> = vfio_ops.clone();
    if let Ok(container) = any.downcast::<VfioContainer>() {
        return Ok(container);
    }
    #[cfg(feature = "vfio_cdev")]
    if let Some(iommufd) = vfio_ops.as_any().downcast_ref::<crate::VfioIommufd>() {
        return Ok(iommufd.container().clone());
    }
    log::warn!("VfioDevice::new: {vfio_ops:?} is neither a VfioContainer nor a VfioIommufd");
    Err(VfioError::DowncastVfioOps)
}

impl Drop for VfioDevice {
    fn drop(&mut self) {
        if self.hypervisor_registered {
            if let Some(dev) = self.container.device_fd() {
                if let Err(e) = dev.remove_group(&self.file) {
                    log::warn!(
                        "removing VFIO device {} from the hypervisor: {e}",
                        self.name
                    );
                }
            }
        }
        if self.iommufd_dev_id.is_some() {
            // Closing the cdev (just after this) detaches it from its page table.
            self.container.ranges_changed();
        }
    }
}

impl std::os::fd::AsRawFd for VfioDevice {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

fn get_device_info(file: &File, name: &str) -> Result<VfioDeviceInfo> {
    let info = ioctls::device_get_info(file)
        .map_err(|e| VfioError::os("VFIO_DEVICE_GET_INFO", name.to_string(), e))?;
    Ok(VfioDeviceInfo {
        flags: info.flags,
        num_regions: info.num_regions,
        num_irqs: info.num_irqs,
    })
}

/// Queries one region, growing the buffer once if the capability chain does not fit.
fn get_region(file: &File, name: &str, index: u32) -> Result<VfioRegion> {
    const OP: &str = "VFIO_DEVICE_GET_REGION_INFO";
    let header = std::mem::size_of::<vfio_region_info>();
    let mut buf = vec![0u64; header / 8];
    for _ in 0..4 {
        let len = buf.len() * 8;
        set_argsz(&mut buf, len);
        put_u32(&mut buf, 8, index);
        match ioctls::device_get_region_info(file, &mut buf) {
            // The kernel answers EINVAL for indices a device does not implement (e.g. VGA).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Ok(VfioRegion::absent(index))
            }
            Err(e) => return Err(VfioError::os(OP, format!("{name} region {index}"), e)),
            Ok(()) => {}
        }
        let wanted = get_u32(&buf, 0) as usize;
        let flags = get_u32(&buf, 4);
        if flags & VFIO_REGION_INFO_FLAG_CAPS != 0 && wanted > len {
            buf = vec![0u64; wanted.div_ceil(8)];
            continue;
        }
        let (caps, other_caps) = if flags & VFIO_REGION_INFO_FLAG_CAPS != 0 {
            parse_region_caps(as_bytes(&buf), get_u32(&buf, 12))?
        } else {
            (Vec::new(), Vec::new())
        };
        let size = get_u64(&buf, 16);
        // vfio-pci answers for BARs a device lacks with size 0 and no flags: absent too.
        let present = size > 0 || flags != 0;
        return Ok(VfioRegion {
            index,
            present,
            flags,
            size,
            offset: get_u64(&buf, 24),
            caps,
            other_caps,
        });
    }
    Err(VfioError::invalid(
        OP,
        format!("{name} region {index}: the kernel kept asking for a larger buffer"),
    ))
}

/// PCI config space, parsed (see [`crate::parse_capabilities`] and [`crate::parse_bars`]).
impl VfioDevice {
    /// Reads the config region (up to 4 KiB: PCI Express devices expose the extended
    /// space) through [`VfioDevice::region_read_vec`].
    fn read_config_space(&self) -> Result<Vec<u8>> {
        let size = self.region(pci_region::CONFIG)?.size.min(0x1000);
        self.region_read_vec(pci_region::CONFIG, 0, size)
    }

    /// The device's capability lists, read from its config region and parsed: the
    /// standard list, and the extended one when the config region is 4 KiB.
    ///
    /// # Errors
    /// As [`VfioDevice::region_read`] (e.g. `OutOfRange` for a device without a config
    /// region); as [`crate::parse_capabilities`] for a malformed or looping list.
    pub fn pci_config_caps(&self) -> Result<crate::PciCapabilities> {
        crate::parse_capabilities(&self.read_config_space()?)
    }

    /// The device's BARs, decoded from its config region, for the BARs whose VFIO
    /// region is present (the region's size is the BAR's size). A 64-bit BAR is one
    /// entry (its upper half is not listed).
    ///
    /// # Errors
    /// As [`VfioDevice::region_read`]; as [`crate::parse_bars`] for a malformed BAR.
    pub fn pci_bars(&self) -> Result<Vec<crate::PciBar>> {
        let config = self.region_read_vec(pci_region::CONFIG, 0, 0x28)?;
        let bars = crate::parse_bars(&config)?;
        Ok(bars
            .into_iter()
            .filter(|b| {
                self.region(u32::from(b.index))
                    .map(|r| r.present && r.size > 0)
                    .unwrap_or(false)
            })
            .collect())
    }
}

#[cfg(test)]
mod upstream_type_tests {
    use super::*;

    #[test]
    fn upstream_device_type_check() {
        let info = |flags, num_regions, num_irqs| VfioDeviceInfo {
            flags,
            num_regions,
            num_irqs,
        };
        assert!(info(VFIO_DEVICE_FLAGS_PCI, 9, 5)
            .check_upstream_type()
            .is_ok());
        assert!(info(VFIO_DEVICE_FLAGS_PLATFORM, 1, 0)
            .check_upstream_type()
            .is_ok());
        assert!(matches!(
            info(VFIO_DEVICE_FLAGS_PCI, 7, 5).check_upstream_type(),
            Err(VfioError::VfioDeviceGetInfoPCI)
        ));
        assert!(matches!(
            info(VFIO_DEVICE_FLAGS_PCI, 9, 2).check_upstream_type(),
            Err(VfioError::VfioDeviceGetInfoPCI)
        ));
        assert!(matches!(
            info(VFIO_DEVICE_FLAGS_CCW, 9, 5).check_upstream_type(),
            Err(VfioError::VfioDeviceGetInfoOther)
        ));
    }
}
