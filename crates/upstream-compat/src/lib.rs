//! A VMM's use of upstream rust-vmm `vfio-ioctls` 0.10, written against upstream's API
//! alone (its names, signatures, variants and trait bounds), built against our core
//! through `[patch.crates-io]`. Compile coverage is the point: nothing here needs a
//! device, and the few tests check what is pure.
//!
//! Every public item of upstream's `lib.rs` and `vfio_device.rs` is used: the default
//! API here and in [`container`], [`device`], [`errors`], [`regions`]; the cdev/iommufd
//! API in `cdev` (feature `vfio_cdev`); what the iommufd and migration branches add
//! outside it in `merged` (feature `merged`); MSHV in `hypervisor_mshv` (feature `mshv`).
#![deny(warnings)]
#![deny(missing_docs)]

pub mod container;
pub mod device;
pub mod errors;
pub mod hypervisor;
pub mod regions;

#[cfg(feature = "vfio_cdev")]
pub mod cdev;
#[cfg(feature = "mshv")]
pub mod hypervisor_mshv;
#[cfg(feature = "merged")]
pub mod merged;

/// Upstream's `Result` alias, as a VMM names it.
pub type VfioResult<T> = vfio_ioctls::Result<T>;

/// What a VMM relies on of the types it shares between threads.
pub fn assert_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<vfio_ioctls::VfioContainer>();
    send_sync::<vfio_ioctls::VfioDevice>();
    send_sync::<vfio_ioctls::VfioDeviceFd>();
    send_sync::<vfio_ioctls::VfioError>();
    send_sync::<std::sync::Arc<dyn vfio_ioctls::VfioOps>>();
}
