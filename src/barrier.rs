//! Memory barriers for drivers (the core's `vfio_ioctls::barrier`).

use napi_derive::napi;

/// A full barrier: loads and stores before it complete before any after it.
#[napi]
pub fn mb() {
    vfio_ioctls::barrier::mb();
}

/// A read barrier: loads before it complete before loads after it.
#[napi]
pub fn rmb() {
    vfio_ioctls::barrier::rmb();
}

/// A write barrier: stores before it are visible before stores after it.
#[napi]
pub fn wmb() {
    vfio_ioctls::barrier::wmb();
}

/// Orders loads of DMA memory (a completion's phase bit before its payload).
#[napi]
pub fn dma_rmb() {
    vfio_ioctls::barrier::dma_rmb();
}

/// Orders stores to DMA memory (an entry's fields before its valid bit).
#[napi]
pub fn dma_wmb() {
    vfio_ioctls::barrier::dma_wmb();
}
