//! Node.js binding of the vfio-ioctls core: conversions, errors and interrupts only.
#![deny(clippy::undocumented_unsafe_blocks)]

mod barrier;
mod container;
mod device;
mod device_layout;
mod dma;
mod error;
mod fast_access;
mod irq;
mod irq_waiter;
mod mdev;
mod migration;
mod raw_callback;
mod region;
mod sysfs;
mod task;
mod volatile;

use napi_derive::napi;

/// Which hypervisor integrations this binary was built with.
#[napi]
pub fn features() -> Vec<String> {
    vfio_ioctls::features()
        .iter()
        .map(|f| f.to_string())
        .collect()
}

/// Every error code the native layer can report (the facade adds `ERR_VFIO_ABORTED`).
#[napi]
pub fn error_codes() -> Vec<String> {
    vfio_ioctls::ErrorKind::ALL
        .iter()
        .map(|k| k.code().to_string())
        .collect()
}

/// What a call on a closed `what` says (the core's wording, so the facade's own
/// closed handles read the same as the binding's).
#[napi]
pub fn closed_message(what: String) -> String {
    vfio_ioctls::closed_message(&what)
}

/// The system page size.
#[napi]
pub fn page_size() -> f64 {
    vfio_ioctls::page_size() as f64
}

/// Runs when a thread loads the addon: errors need that thread's env (see `error.rs`).
#[napi(module_exports)]
pub fn init(_exports: napi::bindgen_prelude::Object<'_>, env: napi::Env) {
    error::remember_env(&env);
}
