//! `Device`: the JS handle of a `VfioDevice`.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::{VfioDevice, VfioError, VfioRegionInfoCap, VfioRegionInfoCapRaw};

use crate::error::{closed, to_u32, to_u64, IntoJs};
use crate::fast_access::{Entry, FastHandle};
use crate::irq::Interrupts;
use crate::region::MappedRegion;
use crate::task::{self, CoreTask};

/// One capability of a region.
#[napi(object)]
pub struct RegionCap {
    /// `sparse-mmap`, `type`, `msix-mappable`, `nvlink2-ssatgt`, `nvlink2-lnkspd` or `unknown`.
    pub kind: String,
    /// Sparse areas (`sparse-mmap`).
    pub areas: Option<Vec<MmapArea>>,
    /// Region type (`type`).
    pub r#type: Option<u32>,
    /// Region subtype (`type`).
    pub subtype: Option<u32>,
    /// NVLink2 target (`nvlink2-ssatgt`).
    pub tgt: Option<BigInt>,
    /// NVLink2 link speed (`nvlink2-lnkspd`).
    pub link_speed: Option<u32>,
    /// Capability id (`unknown`).
    pub id: Option<u32>,
    /// Capability version (`unknown`).
    pub version: Option<u32>,
}

/// A mmap-able area of a region.
#[napi(object)]
pub struct MmapArea {
    /// Offset within the region.
    pub offset: f64,
    /// Size.
    pub size: f64,
}

/// One region's info.
#[napi(object)]
pub struct RegionInfo {
    /// VFIO region index.
    pub index: u32,
    /// Whether the device implements it.
    pub present: bool,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes.
    pub size: f64,
    /// Offset in the device fd.
    pub offset: f64,
    /// Readable.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// mmap-able.
    pub mappable: bool,
    /// Capabilities.
    pub caps: Vec<RegionCap>,
}

/// One IRQ index's info.
#[napi(object)]
pub struct IrqInfo {
    /// IRQ index.
    pub index: u32,
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Vectors.
    pub count: u32,
    /// Can take eventfds.
    pub eventfd: bool,
    /// Maskable.
    pub maskable: bool,
    /// Masked by the kernel when it fires.
    pub automasked: bool,
}

/// One device a PCI hot reset affects.
#[napi(object)]
pub struct HotResetDevice {
    /// PCI address, `ssss:bb:dd.f`.
    pub address: String,
    /// Its IOMMU group.
    pub group: u32,
}

fn hot_reset_devices_to_js(devices: Vec<vfio_ioctls::PciHotResetDevice>) -> Vec<HotResetDevice> {
    devices
        .iter()
        .map(|d| HotResetDevice {
            address: d.address(),
            group: d.group_id,
        })
        .collect()
}

/// Device-wide info.
#[napi(object)]
pub struct DeviceInfo {
    /// PCI address / name in the group.
    pub name: String,
    /// Canonical sysfs path.
    pub sysfs_path: String,
    /// IOMMU group.
    pub group: u32,
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indices.
    pub num_irqs: u32,
    /// Is PCI.
    pub pci: bool,
    /// Supports reset.
    pub can_reset: bool,
    /// Largest vector count of INTx/MSI/MSI-X.
    pub max_interrupts: u32,
}

/// A region's capabilities, the known ones first.
pub(crate) fn region_caps_to_js(r: &vfio_ioctls::VfioRegion) -> Vec<RegionCap> {
    r.caps
        .iter()
        .map(cap_to_js)
        .chain(r.other_caps.iter().map(other_cap_to_js))
        .collect()
}

fn cap_to_js(cap: &VfioRegionInfoCap) -> RegionCap {
    let mut out = RegionCap {
        kind: String::new(),
        areas: None,
        r#type: None,
        subtype: None,
        tgt: None,
        link_speed: None,
        id: None,
        version: None,
    };
    match cap {
        VfioRegionInfoCap::SparseMmap(s) => {
            out.kind = "sparse-mmap".into();
            out.areas = Some(
                s.areas
                    .iter()
                    .map(|a| MmapArea {
                        offset: a.offset as f64,
                        size: a.size as f64,
                    })
                    .collect(),
            );
        }
        VfioRegionInfoCap::Type(t) => {
            out.kind = "type".into();
            out.r#type = Some(t.type_);
            out.subtype = Some(t.subtype);
        }
        VfioRegionInfoCap::MsixMappable => out.kind = "msix-mappable".into(),
        VfioRegionInfoCap::Nvlink2Ssatgt(n) => {
            out.kind = "nvlink2-ssatgt".into();
            out.tgt = Some(n.tgt.into());
        }
        VfioRegionInfoCap::Nvlink2Lnkspd(n) => {
            out.kind = "nvlink2-lnkspd".into();
            out.link_speed = Some(n.link_speed);
        }
    }
    out
}

/// A capability the core does not decode (`VfioRegion::other_caps`): JS sees it as
/// `kind: "unknown"` with its id and version.
fn other_cap_to_js(cap: &VfioRegionInfoCapRaw) -> RegionCap {
    RegionCap {
        kind: "unknown".into(),
        areas: None,
        r#type: None,
        subtype: None,
        tgt: None,
        link_speed: None,
        id: Some(u32::from(cap.id)),
        version: Some(u32::from(cap.version)),
    }
}

/// An open VFIO device.
#[napi]
pub struct Device {
    inner: Option<Arc<VfioDevice>>,
    /// The handle of the free-function region accessors (`regionReadU32`, ...).
    fast: FastHandle,
}

#[napi]
impl Device {
    pub(crate) fn wrap(inner: Arc<VfioDevice>) -> Result<Self> {
        Ok(Device {
            fast: FastHandle::register("openDevice", Entry::Device(inner.clone()))?,
            inner: Some(inner),
        })
    }

    pub(crate) fn get(&self) -> Result<&Arc<VfioDevice>> {
        self.inner.as_ref().ok_or_else(|| closed("device"))
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// The handle of the free-function region accessors (`regionReadU32(handle, index,
    /// offset)`, ...), which skip a class method's per-call cost; -1 once closed
    /// (a handle kept from before then gives the closed error).
    #[napi(getter)]
    pub fn fast_handle(&self) -> f64 {
        self.fast.id()
    }

    /// The device's id in the iommufd its cdev is bound to; `null` for a device opened
    /// through a group.
    #[napi(getter)]
    pub fn iommufd_dev_id(&self) -> Result<Option<u32>> {
        Ok(self.get()?.iommufd_dev_id())
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: attaches the device (a cdev of an iommufd
    /// container) to the IOAS or HWPT `ptId`.
    #[napi]
    pub fn attach_hwpt(&self, pt_id: f64) -> Result<()> {
        let pt_id = to_u32("attachHwpt", "ptId", pt_id)?;
        self.get()?.attach_hwpt(pt_id).js()
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`: detaches the device from its page table (it is
    /// then blocked from DMA).
    #[napi]
    pub fn detach_hwpt(&self) -> Result<()> {
        self.get()?.detach_hwpt().js()
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` with `VFIO_DEVICE_ATTACH_PASID`: attaches PASID
    /// `pasid` of the device (a cdev of an iommufd container) to the IOAS or HWPT `ptId`.
    /// `Unsupported` on a kernel whose uAPI has no PASID attach (6.12 and older) and for
    /// a device opened through its group.
    #[napi]
    pub fn attach_pasid(&self, pasid: f64, pt_id: f64) -> Result<()> {
        let pasid = to_u32("attachPasid", "pasid", pasid)?;
        let pt_id = to_u32("attachPasid", "ptId", pt_id)?;
        self.get()?.attach_iommufd_pt_pasid(pt_id, pasid).js()
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT` with `VFIO_DEVICE_DETACH_PASID`: detaches PASID
    /// `pasid` from its page table. Refused as `attachPasid` is.
    #[napi]
    pub fn detach_pasid(&self, pasid: f64) -> Result<()> {
        let pasid = to_u32("detachPasid", "pasid", pasid)?;
        self.get()?.detach_iommufd_pt_pasid(pasid).js()
    }

    /// The info, regions and IRQ indices at once, packed: what the facade builds its
    /// `Device` from in one crossing.
    #[napi]
    pub fn layout(&self) -> Result<crate::device_layout::DeviceLayout> {
        Ok(crate::device_layout::layout(self.get()?))
    }

    /// Device-wide info.
    #[napi]
    pub fn info(&self) -> Result<DeviceInfo> {
        let d = self.get()?;
        let info = d.info();
        Ok(DeviceInfo {
            name: d.name().to_string(),
            sysfs_path: d.sysfs_path().display().to_string(),
            group: d.iommu_group().unwrap_or(u32::MAX),
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
            pci: info.is_pci(),
            can_reset: info.can_reset(),
            max_interrupts: d.max_interrupts(),
        })
    }

    /// Every region, by VFIO index.
    #[napi]
    pub fn regions(&self) -> Result<Vec<RegionInfo>> {
        Ok(self
            .get()?
            .regions()
            .iter()
            .map(|r| RegionInfo {
                index: r.index,
                present: r.present,
                flags: r.flags,
                size: r.size as f64,
                offset: r.offset as f64,
                readable: r.readable(),
                writable: r.writable(),
                mappable: r.mappable(),
                caps: region_caps_to_js(r),
            })
            .collect())
    }

    /// Every IRQ index.
    #[napi]
    pub fn irqs(&self) -> Result<Vec<IrqInfo>> {
        Ok(self
            .get()?
            .irqs()
            .iter()
            .map(|i| IrqInfo {
                index: i.index,
                flags: i.flags,
                count: i.count,
                eventfd: i.eventfd(),
                maskable: i.maskable(),
                automasked: i.automasked(),
            })
            .collect())
    }

    /// Reads `length` bytes at `offset` of region `index` (the range is checked before
    /// anything is allocated).
    #[napi]
    pub fn region_read(&self, index: f64, offset: f64, length: f64) -> Result<Buffer> {
        let index = to_u32("regionRead", "index", index)?;
        let offset = to_u64("regionRead", "offset", offset)?;
        let length = to_u64("regionRead", "length", length)?;
        Ok(self
            .get()?
            .region_read_vec(index, offset, length)
            .js()?
            .into())
    }

    /// Writes `data` at `offset` of region `index`.
    #[napi]
    pub fn region_write(&self, index: f64, offset: f64, data: &[u8]) -> Result<()> {
        let index = to_u32("regionWrite", "index", index)?;
        let offset = to_u64("regionWrite", "offset", offset)?;
        self.get()?.try_region_write(index, data, offset).js()
    }

    /// Maps region `index` into the process.
    #[napi]
    pub fn map_region(&self, index: f64) -> Result<MappedRegion> {
        let index = to_u32("mapRegion", "index", index)?;
        MappedRegion::wrap(self.get()?.map_region(index).js()?)
    }

    /// `VFIO_DEVICE_RESET`.
    #[napi]
    pub fn reset(&self) -> Result<()> {
        self.get()?.try_reset().js()
    }

    /// `VFIO_DEVICE_RESET` on the libuv pool (a Promise): a reset can take a second.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn reset_async(&self) -> Result<AsyncTask<CoreTask<(), ()>>> {
        let device = self.get()?.clone();
        Ok(task::spawn(move || device.try_reset(), |()| ()))
    }

    /// The devices a PCI hot reset would reset (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`).
    #[napi]
    pub fn hot_reset_info(&self) -> Result<Vec<HotResetDevice>> {
        Ok(hot_reset_devices_to_js(
            self.get()?.pci_hot_reset_info().js()?,
        ))
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET` with the groups of this device's container; returns
    /// the devices reset.
    #[napi]
    pub fn hot_reset(&self) -> Result<Vec<HotResetDevice>> {
        Ok(hot_reset_devices_to_js(self.get()?.pci_hot_reset().js()?))
    }

    /// `hotReset` on the libuv pool (a Promise): a bus reset waits for the link, ~0.1–1 s.
    #[napi(ts_return_type = "Promise<HotResetDevice[]>")]
    pub fn hot_reset_async(
        &self,
    ) -> Result<AsyncTask<CoreTask<Vec<vfio_ioctls::PciHotResetDevice>, Vec<HotResetDevice>>>> {
        let device = self.get()?.clone();
        Ok(task::spawn(
            move || device.pci_hot_reset(),
            hot_reset_devices_to_js,
        ))
    }

    /// Enables `count` vectors from `start` of IRQ `index`, each with a new eventfd.
    /// Refused with `ERR_VFIO_BUSY` while a live `Interrupts` holds the index (or, on
    /// PCI, another of INTx, MSI and MSI-X).
    #[napi]
    pub fn enable_irq(&self, index: f64, start: f64, count: f64) -> Result<Interrupts> {
        const OP: &str = "enableIrq";
        let index = to_u32(OP, "index", index)?;
        let start = to_u32(OP, "start", start)?;
        let count = to_u32(OP, "count", count)?;
        Interrupts::enable(self.get()?, index, start, count)
    }

    /// Disables IRQ `index` (all its vectors). Refused with `ERR_VFIO_BUSY` while a live
    /// `Interrupts` holds it: close that instead, so its vectors are not pulled from under it.
    #[napi]
    pub fn disable_irq(&self, index: f64) -> Result<()> {
        let index = to_u32("disableIrq", "index", index)?;
        let device = self.get()?;
        if let Some((start, count)) = device.claimed_irq(index) {
            return Err(crate::error::to_js(VfioError::busy(
                "disableIrq",
                format!(
                    "{} of {} is held by a live Interrupts (vectors [{start}, {})): close that Interrupts instead",
                    vfio_ioctls::irq_index_name(index),
                    device.name(),
                    start + count
                ),
            )));
        }
        device.try_disable_irq(index).js()
    }

    /// Closes the handle; mapped regions and interrupts keep the device open until they close too.
    #[napi]
    pub fn close(&mut self) {
        self.fast.release();
        self.inner = None;
    }
}

/// One PCI capability of config space, flattened (the facade turns it into a union by `kind`).
#[napi(object)]
pub struct PciCapabilityInfo {
    /// `msi`, `msix`, `pcie`, `pm`, `vendor`, `unknown`, or `extended` (the extended list).
    pub kind: String,
    /// Capability id (8 bits; 16 for `extended`).
    pub id: u32,
    /// Offset in config space.
    pub offset: u32,
    /// Version (`pcie`, `pm`, `extended`).
    pub version: Option<u32>,
    /// Multiple Message Capable, log2 of the vectors (`msi`).
    pub multiple_message_capable: Option<u32>,
    /// 64-bit message address (`msi`).
    pub bits64: Option<bool>,
    /// Per-vector masking (`msi`).
    pub per_vector_masking: Option<bool>,
    /// Table entries (`msix`).
    pub table_size: Option<u32>,
    /// The table's BAR (`msix`).
    pub table_bir: Option<u32>,
    /// The table's offset in its BAR (`msix`).
    pub table_offset: Option<u32>,
    /// The pending-bit array's BAR (`msix`).
    pub pba_bir: Option<u32>,
    /// The pending-bit array's offset in its BAR (`msix`).
    pub pba_offset: Option<u32>,
    /// Device/port type (`pcie`).
    pub device_type: Option<u32>,
    /// The length byte (`vendor`).
    pub length: Option<u32>,
}

/// One decoded BAR.
#[napi(object)]
pub struct PciBarInfo {
    /// BAR index (0 to 5).
    pub index: u32,
    /// Memory space (else I/O space).
    pub memory: bool,
    /// A 64-bit memory BAR (it takes the next slot too).
    pub bits64: bool,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// The base address in the BAR register.
    pub address: BigInt,
    /// The size, from the VFIO region.
    pub size: f64,
}

fn pci_cap_to_js(cap: &vfio_ioctls::PciCapability) -> PciCapabilityInfo {
    use vfio_ioctls::PciCapability as C;
    let mut out = PciCapabilityInfo {
        kind: String::new(),
        id: u32::from(cap.id()),
        offset: u32::from(cap.offset()),
        version: None,
        multiple_message_capable: None,
        bits64: None,
        per_vector_masking: None,
        table_size: None,
        table_bir: None,
        table_offset: None,
        pba_bir: None,
        pba_offset: None,
        device_type: None,
        length: None,
    };
    match cap {
        C::Msi {
            multiple_message_capable,
            is_64bit,
            per_vector_masking,
            ..
        } => {
            out.kind = "msi".into();
            out.multiple_message_capable = Some(u32::from(*multiple_message_capable));
            out.bits64 = Some(*is_64bit);
            out.per_vector_masking = Some(*per_vector_masking);
        }
        C::Msix {
            table_size,
            table_bir,
            table_offset,
            pba_bir,
            pba_offset,
            ..
        } => {
            out.kind = "msix".into();
            out.table_size = Some(u32::from(*table_size));
            out.table_bir = Some(u32::from(*table_bir));
            out.table_offset = Some(*table_offset);
            out.pba_bir = Some(u32::from(*pba_bir));
            out.pba_offset = Some(*pba_offset);
        }
        C::PciExpress {
            version,
            device_type,
            ..
        } => {
            out.kind = "pcie".into();
            out.version = Some(u32::from(*version));
            out.device_type = Some(u32::from(*device_type));
        }
        C::PowerManagement { version, .. } => {
            out.kind = "pm".into();
            out.version = Some(u32::from(*version));
        }
        C::Vendor { length, .. } => {
            out.kind = "vendor".into();
            out.length = Some(u32::from(*length));
        }
        C::Unknown { .. } => out.kind = "unknown".into(),
    }
    out
}

/// PCI config space, parsed by the core.
#[napi]
impl Device {
    /// The capabilities of config space: the standard list, then the extended one
    /// (kind `extended`), in chain order.
    #[napi]
    pub fn capabilities(&self) -> Result<Vec<PciCapabilityInfo>> {
        let caps = self.get()?.pci_config_caps().js()?;
        let mut out: Vec<PciCapabilityInfo> = caps.standard.iter().map(pci_cap_to_js).collect();
        out.extend(caps.extended.iter().map(|e| PciCapabilityInfo {
            kind: "extended".into(),
            id: u32::from(e.id),
            offset: u32::from(e.offset),
            version: Some(u32::from(e.version)),
            multiple_message_capable: None,
            bits64: None,
            per_vector_masking: None,
            table_size: None,
            table_bir: None,
            table_offset: None,
            pba_bir: None,
            pba_offset: None,
            device_type: None,
            length: None,
        }));
        Ok(out)
    }

    /// The BARs the device implements, decoded from config space, with the sizes of
    /// their VFIO regions.
    #[napi]
    pub fn bars(&self) -> Result<Vec<PciBarInfo>> {
        let d = self.get()?;
        let bars = d.pci_bars().js()?;
        Ok(bars
            .iter()
            .map(|b| PciBarInfo {
                index: u32::from(b.index),
                memory: b.memory,
                bits64: b.is_64bit,
                prefetchable: b.prefetchable,
                address: b.address.into(),
                size: d.get_region_size(u32::from(b.index)) as f64,
            })
            .collect())
    }
}
