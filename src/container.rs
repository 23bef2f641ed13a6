//! `Container`: the JS handle of a `VfioContainer`.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::{VfioContainer, VfioDevice};

use crate::device::Device;
use crate::dma::DmaBuffer;
use crate::error::{
    closed, huge_page_size, number_or_bigint_to_u64, to_fd, to_opt_text, to_text, to_u32, to_u64,
    IntoJs,
};

/// How a container is tied to a hypervisor.
#[napi(object)]
pub struct ContainerOptions {
    /// A KVM VFIO device fd from your VMM (`KVM_CREATE_DEVICE` of type VFIO); it is duplicated.
    pub kvm_device_fd: Option<f64>,
    /// An MSHV VFIO device fd from your VMM on Microsoft Hypervisor; it is duplicated.
    pub mshv_device_fd: Option<f64>,
    /// Create a KVM VM and its VFIO device for this container (for tools and tests).
    pub create_kvm_vm: Option<bool>,
    /// Open this node instead of `/dev/vfio/vfio` (or `/dev/iommu` for the iommufd backends).
    pub path: Option<String>,
    /// The IOMMU backend: `type1` (the default), `iommufd-compat`, `iommufd` or `auto`.
    pub iommu: Option<String>,
}

/// An IOMMU range that can be mapped, inclusive.
#[napi(object)]
pub struct IovaRange {
    /// First IOVA.
    pub start: BigInt,
    /// Last IOVA.
    pub end: BigInt,
}

/// What `VFIO_IOMMU_GET_INFO` reports.
#[napi(object)]
pub struct IommuInfo {
    /// `VFIO_IOMMU_INFO_*` flags.
    pub flags: u32,
    /// Bitmap of page sizes.
    pub iova_pgsizes: BigInt,
    /// Usable IOVA ranges.
    pub iova_ranges: Vec<IovaRange>,
    /// Mappings still allowed, when reported.
    pub dma_avail: Option<u32>,
}

/// One DMA mapping.
#[napi(object)]
pub struct DmaMapping {
    /// Its IOVA.
    pub iova: BigInt,
    /// Its size in bytes.
    pub size: f64,
}

/// Where `allocateDma` maps a buffer and what backs it.
#[napi(object)]
pub struct DmaOptions {
    /// This IOVA instead of the lowest free one (a number when below 2^53).
    pub iova: Option<Either<f64, BigInt>>,
    /// The IOVA's alignment: a power of two, at least the page size.
    pub align: Option<f64>,
    /// The highest address the device reaches; the buffer's last byte is at most this.
    /// A number when below 2^53.
    pub dma_mask: Option<Either<f64, BigInt>>,
    /// `2M` or `1G`: back the buffer with huge pages of that size.
    pub huge_pages: Option<String>,
}

/// A VFIO container (`/dev/vfio/vfio`).
#[napi]
pub struct Container {
    inner: Option<Arc<VfioContainer>>,
    /// The VM made for `createKvmVm`, kept as long as the container.
    _vm: Option<kvm_ioctls::VmFd>,
}

#[napi]
impl Container {
    /// Opens the container.
    #[napi(constructor)]
    pub fn new(options: Option<ContainerOptions>) -> Result<Self> {
        let options = options.unwrap_or(ContainerOptions {
            kvm_device_fd: None,
            mshv_device_fd: None,
            create_kvm_vm: None,
            path: None,
            iommu: None,
        });
        let create_vm = options.create_kvm_vm.unwrap_or(false);
        let choices = [
            options.kvm_device_fd.is_some(),
            options.mshv_device_fd.is_some(),
            create_vm,
        ];
        if choices.iter().filter(|&&chosen| chosen).count() > 1 {
            return Err(crate::error::invalid(
                "new Container",
                "give at most one of kvmDeviceFd, mshvDeviceFd and createKvmVm",
            ));
        }
        let mut vm = None;
        let device_fd = if let Some(fd) = options.kvm_device_fd {
            let fd = to_fd("new Container", "kvmDeviceFd", fd)?;
            Some(vfio_ioctls::kvm::device_fd_from_raw(fd).js()?)
        } else if let Some(fd) = options.mshv_device_fd {
            let fd = to_fd("new Container", "mshvDeviceFd", fd)?;
            Some(vfio_ioctls::mshv::device_fd_from_raw(fd).js()?)
        } else if create_vm {
            let kvm = vfio_ioctls::kvm::create_vm_vfio_device().js()?;
            vm = Some(kvm.vm);
            Some(kvm.device)
        } else {
            None
        };
        let path = to_opt_text("new Container", "path", options.path)?;
        let iommu = to_opt_text("new Container", "iommu", options.iommu)?;
        let inner = open_backend(iommu.as_deref(), path, device_fd.map(Arc::new)).js()?;
        Ok(Container {
            inner: Some(Arc::new(inner)),
            _vm: vm,
        })
    }

    pub(crate) fn get(&self) -> Result<&Arc<VfioContainer>> {
        self.inner.as_ref().ok_or_else(|| closed("container"))
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// The IOMMU backend in use: `type1`, `iommufd-compat` or `iommufd`.
    #[napi(getter)]
    pub fn iommu(&self) -> Result<String> {
        Ok(self.get()?.backend().as_str().to_string())
    }

    /// The IOAS id of a native iommufd container, `null` for the other backends.
    #[napi(getter)]
    pub fn ioas_id(&self) -> Result<Option<u32>> {
        Ok(self.get()?.iommufd_ioas_id())
    }

    /// `IOMMU_HWPT_ALLOC`: a HWPT on the IOAS for the device with iommufd id `devId`.
    #[napi]
    pub fn alloc_hwpt(&self, dev_id: f64) -> Result<u32> {
        let dev_id = to_u32("allocHwpt", "devId", dev_id)?;
        self.get()?.alloc_hwpt(dev_id).js()
    }

    /// `IOMMU_DESTROY` of a HWPT nothing is attached to any more.
    #[napi]
    pub fn destroy_hwpt(&self, hwpt_id: f64) -> Result<()> {
        let hwpt_id = to_u32("destroyHwpt", "hwptId", hwpt_id)?;
        self.get()?.destroy_iommufd_object(hwpt_id).js()
    }

    /// Whether a hypervisor VFIO device is attached.
    #[napi(getter)]
    pub fn has_hypervisor_device(&self) -> Result<bool> {
        Ok(self.get()?.device_fd().is_some())
    }

    /// `VFIO_GET_API_VERSION`.
    #[napi]
    pub fn api_version(&self) -> Result<i32> {
        self.get()?.api_version().js()
    }

    /// `VFIO_CHECK_EXTENSION`.
    #[napi]
    pub fn check_extension(&self, extension: f64) -> Result<bool> {
        let extension = to_u32("checkExtension", "extension", extension)?;
        self.get()?.check_extension(extension).js()
    }

    /// Numbers of the attached groups.
    #[napi]
    pub fn group_ids(&self) -> Result<Vec<u32>> {
        Ok(self.get()?.group_ids())
    }

    /// `VFIO_IOMMU_GET_INFO`.
    #[napi]
    pub fn iommu_info(&self) -> Result<IommuInfo> {
        let info = self.get()?.iommu_info().js()?;
        Ok(IommuInfo {
            flags: info.flags,
            iova_pgsizes: info.iova_pgsizes.into(),
            iova_ranges: info
                .iova_ranges
                .iter()
                .map(|r| IovaRange {
                    start: r.start.into(),
                    end: r.end.into(),
                })
                .collect(),
            dma_avail: info.dma_avail,
        })
    }

    /// Current DMA mappings.
    #[napi]
    pub fn dma_mappings(&self) -> Result<Vec<DmaMapping>> {
        Ok(self
            .get()?
            .dma_mappings()
            .into_iter()
            .map(|(iova, size)| DmaMapping {
                iova: iova.into(),
                size: size as f64,
            })
            .collect())
    }

    /// Opens a device by PCI address or sysfs path.
    #[napi]
    pub fn open_device(&self, address_or_path: String) -> Result<Device> {
        let address_or_path = to_text("openDevice", "addressOrPath", address_or_path)?;
        let container = self.get()?.clone();
        let device = VfioDevice::open(&address_or_path, container).js()?;
        Device::wrap(Arc::new(device))
    }

    /// Allocates zeroed memory and maps it, at `options.iova` or the lowest free IOVA
    /// that fits the IOMMU's ranges, `align` and `dmaMask`.
    #[napi]
    pub fn allocate_dma(&self, size: f64, options: Option<DmaOptions>) -> Result<DmaBuffer> {
        const OP: &str = "allocateDma";
        let size = to_u64(OP, "size", size)?;
        let mut core = vfio_ioctls::DmaOptions::default();
        if let Some(o) = options {
            core.iova = o
                .iova
                .map(|v| number_or_bigint_to_u64(OP, "iova", &v))
                .transpose()?;
            core.align = o.align.map(|v| to_u64(OP, "align", v)).transpose()?;
            core.dma_mask = o
                .dma_mask
                .map(|v| number_or_bigint_to_u64(OP, "dmaMask", &v))
                .transpose()?;
            core.huge_pages = o
                .huge_pages
                .map(|name| huge_page_size(OP, &name))
                .transpose()?;
        }
        let buffer = self.get()?.allocate_dma_with(size, &core).js()?;
        Ok(DmaBuffer::wrap(buffer))
    }

    /// Drops this handle; devices and DMA buffers opened through it keep the container alive.
    #[napi]
    pub fn close(&mut self) {
        self.inner = None;
        self._vm = None;
    }
}

/// Opens the container of the backend `iommu` names (`type1` when `None`).
fn open_backend(
    iommu: Option<&str>,
    path: Option<String>,
    device_fd: Option<Arc<vfio_ioctls::VfioDeviceFd>>,
) -> vfio_ioctls::Result<VfioContainer> {
    use std::path::Path;
    use vfio_ioctls::{IommuBackend, VfioError, IOMMUFD_PATH, VFIO_CONTAINER_PATH};
    let choice = match iommu.unwrap_or("type1") {
        "type1" => IommuBackend::Type1,
        "iommufd-compat" => IommuBackend::IommufdCompat,
        "iommufd" => IommuBackend::Iommufd,
        // As libvfn: iommufd when the kernel has it and device cdevs exist.
        "auto" if Path::new(IOMMUFD_PATH).exists() && Path::new("/dev/vfio/devices").exists() => {
            IommuBackend::Iommufd
        }
        "auto" => IommuBackend::Type1,
        other => {
            return Err(VfioError::invalid(
                "new Container",
                format!("iommu {other:?} is none of 'type1', 'iommufd-compat', 'iommufd', 'auto'"),
            ))
        }
    };
    let default = match choice {
        IommuBackend::Type1 => VFIO_CONTAINER_PATH,
        _ => IOMMUFD_PATH,
    };
    let path = path.unwrap_or_else(|| default.to_string());
    let path = Path::new(&path);
    match choice {
        IommuBackend::Type1 => VfioContainer::open(path, device_fd),
        IommuBackend::IommufdCompat => {
            let c = VfioContainer::open(path, device_fd)?;
            if c.backend() != IommuBackend::IommufdCompat {
                return Err(VfioError::unsupported(
                    "new Container",
                    format!(
                        "{} is a VFIO container, not an iommufd: iommufd-compat needs /dev/iommu \
                         (CONFIG_IOMMUFD, Linux 6.2+)",
                        path.display()
                    ),
                ));
            }
            Ok(c)
        }
        IommuBackend::Iommufd => {
            let c = VfioContainer::open_iommufd(path, device_fd)?;
            if !Path::new("/sys/class/vfio-dev").exists() {
                return Err(VfioError::unsupported(
                    "new Container",
                    "the kernel has iommufd but no VFIO device cdevs (/sys/class/vfio-dev is \
                     missing: CONFIG_VFIO_DEVICE_CDEV, Linux 6.6+): use iommu 'iommufd-compat'",
                ));
            }
            Ok(c)
        }
    }
}
