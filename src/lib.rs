//! Node.js binding of the vfio-ioctls core: conversions, errors and interrupts only.
#![deny(clippy::undocumented_unsafe_blocks)]

mod container;
mod device;
mod dma;
mod error;
mod irq;
mod poller;
mod region;
mod sysfs;
mod volatile;

use napi_derive::napi;

/// Which hypervisor integrations this binary was built with.
#[napi]
pub fn features() -> Vec<String> {
    let mut f = Vec::new();
    if cfg!(feature = "kvm") {
        f.push("kvm".to_string());
    }
    if cfg!(feature = "mshv") {
        f.push("mshv".to_string());
    }
    f
}

/// The system page size.
#[napi]
pub fn page_size() -> f64 {
    vfio_ioctls::page_size() as f64
}

/// The marker that starts a structured error reason (see `ts/errors.ts`).
#[napi]
pub fn error_marker() -> String {
    error::MARKER.to_string()
}
