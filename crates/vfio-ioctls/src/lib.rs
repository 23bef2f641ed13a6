//! Safe wrappers over the Linux VFIO user-space API (`linux/vfio.h`).
//!
//! The same concepts and names as the rust-vmm `vfio-ioctls` crate: a
//! [`VfioContainer`] (an IOMMU context) holds [`VfioGroup`]s, through which
//! [`VfioDevice`]s are opened. Devices expose regions ([`VfioRegion`], with
//! [`VfioRegionInfoCap`] capabilities), which can be read, written or mapped
//! ([`MappedRegion`]), and interrupts ([`VfioIrq`]) delivered to eventfds, which
//! the [`poller`] thread can hand to callbacks.
//! [`DmaBuffer`]s are memory the crate owns, mapped into the IOMMU.
//! [`sysfs`] finds devices and binds them to vfio-pci, and creates mediated devices.
//! Devices whose driver supports it migrate (VFIO migration v2: [`MigrationState`],
//! [`VfioDevice::save_device_state`], [`VfioDevice::load_device_state`], and upstream's
//! `set_migration_state`/`read_migration_data`...), log their DMA
//! ([`VfioDevice::start_dma_logging`]) and, with `vfio_cdev`, export dma-bufs.
//!
//! Upstream `vfio-ioctls` 0.10's public API is here with its names, signatures and
//! [`VfioError`] variants (this crate's version is 0.10.0), so a VMM switches with
//! `[patch.crates-io]`. Where upstream's form drops an error (`reset`, `region_read`,
//! `region_write` return `()`) or its variant drops the errno or the target (the IRQ
//! methods), the failure is logged and a method beside it (`try_reset`,
//! `try_region_read`, `enable_irq_from`, `try_trigger_irq`...) returns the structured error.
//!
//! A container drives one of three IOMMU backends ([`IommuBackend`]): VFIO's type1
//! container (`/dev/vfio/vfio`, [`VfioContainer::new`]), iommufd's container
//! compatibility (the same group flow with `/dev/iommu`: `VfioContainer::open`), or,
//! with the `vfio_cdev` feature, native iommufd (`VfioContainer::new_iommufd`, or
//! upstream's `VfioIommufd`): an IOAS, in which devices are opened through their cdev.
//! Everything above the container (devices, DMA buffers, interrupts) is the same.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vfio_ioctls::{VfioContainer, VfioDevice, VolatileAccess, pci_region};
//!
//! let container = Arc::new(VfioContainer::new(None)?);
//! let device = Arc::new(VfioDevice::open("0000:00:03.0", container.clone())?);
//! let bar0 = device.map_region(pci_region::BAR0)?;
//! println!("id {:#x}", bar0.read_u32(0)?);
//! let dma = container.allocate_dma(4096, 0x10_0000)?;
//! dma.write_u32(0, 42)?;
//! # Ok::<(), vfio_ioctls::VfioError>(())
//! ```
#![deny(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

mod abi;
mod alloc;
pub mod barrier;
#[cfg(feature = "vfio_cdev")]
mod cdev;
mod container;
mod device;
mod device_feature;
mod dma;
#[cfg(feature = "vfio_cdev")]
mod dma_buf;
mod dma_logging;
mod dma_slice;
mod error;
mod group;
mod guest_memory;
pub mod held;
mod hot_reset;
mod huge_pages;
mod hypervisor;
mod ioctls;
mod iommu;
#[cfg(feature = "vfio_cdev")]
mod iommufd;
mod iova_alloc;
mod irq;
mod irq_claim;
mod irq_waiter;
#[cfg(feature = "kvm")]
pub mod kvm;
mod migration;
mod mmap;
#[cfg(feature = "mshv")]
pub mod mshv;
#[cfg(test)]
mod parser_props;
mod pci_config;
pub mod poller;
mod region;
pub mod register_wait;
mod sync;
pub mod sysfs;
mod upstream_error;
mod volatile;

pub use container::{page_size, IommuBackend, VfioContainer, VfioOps, VFIO_CONTAINER_PATH};
pub use device::{pci_region, VfioDevice, VfioDeviceInfo};
pub use dma::{DmaBuffer, DmaMemory, DmaOptions};
#[cfg(feature = "vfio_cdev")]
pub use dma_buf::VfioRegionDmaRange;
pub use dma_logging::DmaLoggingRange;
pub use dma_slice::DmaSlice;
pub use error::{closed_message, ErrorKind, Result, VfioError};
pub use group::VfioGroup;
pub use hot_reset::PciHotResetDevice;
pub use huge_pages::HugePageSize;
pub use hypervisor::{VfioContainerDeviceHandle, VfioDeviceFd};
pub use iommu::{IommuInfo, IovaRange};
#[cfg(feature = "vfio_cdev")]
pub use iommufd::{VfioIommufd, IOMMUFD_PATH};
/// The iommufd-ioctls types upstream's [`VfioIommufd`] takes and gives.
#[cfg(feature = "vfio_cdev")]
pub use iommufd_ioctls::{IommuFd, IommufdIoas};
pub use irq::{pci_irq, VfioIrq};
pub use irq_claim::{irq_index_name, IrqClaim};
pub use irq_waiter::{IrqWaiter, MAX_IRQ_WAIT};
pub use migration::{MigrationState, MigrationSupport, PrecopyInfo};
pub use mmap::MappedRegion;
pub use pci_config::{
    parse_bars, parse_capabilities, PciBar, PciCapabilities, PciCapability, PciExtCapability,
};
pub use region::{
    VfioRegion, VfioRegionInfoCap, VfioRegionInfoCapNvlink2Lnkspd, VfioRegionInfoCapNvlink2Ssatgt,
    VfioRegionInfoCapRaw, VfioRegionInfoCapSparseMmap, VfioRegionInfoCapType,
    VfioRegionSparseMmapArea,
};
pub use vmm_sys_util::eventfd::EventFd;
pub use volatile::VolatileAccess;

/// The cargo features this build of the crate has, of `kvm`, `mshv` and `vfio_cdev`.
///
/// ```
/// let features = vfio_ioctls::features();
/// assert_eq!(features.contains(&"kvm"), cfg!(feature = "kvm"));
/// assert_eq!(features.contains(&"vfio_cdev"), cfg!(feature = "vfio_cdev"));
/// assert!(features.iter().all(|f| ["kvm", "mshv", "vfio_cdev"].contains(f)));
/// ```
pub fn features() -> &'static [&'static str] {
    &[
        #[cfg(feature = "kvm")]
        "kvm",
        #[cfg(feature = "mshv")]
        "mshv",
        #[cfg(feature = "vfio_cdev")]
        "vfio_cdev",
    ]
}
