//! `DmaBuffer`: memory the library owns, mapped into the IOMMU.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::{DmaMemory, VolatileAccess};

use crate::error::{bigint_to_u64, closed, invalid, out_of_range, to_u32, to_u64, IntoJs};
use crate::volatile::volatile_methods;

/// A DMA buffer. Its memory lives as long as this object or a view of it.
#[napi]
pub struct DmaBuffer {
    inner: Option<vfio_ioctls::DmaBuffer>,
    view_made: bool,
}

impl DmaBuffer {
    pub(crate) fn wrap(inner: vfio_ioctls::DmaBuffer) -> Self {
        DmaBuffer {
            inner: Some(inner),
            view_made: false,
        }
    }

    fn get(&self) -> Result<&vfio_ioctls::DmaBuffer> {
        self.inner.as_ref().ok_or_else(|| closed("DMA buffer"))
    }

    fn mem(&self) -> Result<&dyn VolatileAccess> {
        Ok(self.get()?)
    }
}

#[napi]
impl DmaBuffer {
    /// The IOVA devices use.
    #[napi(getter)]
    pub fn iova(&self) -> Result<BigInt> {
        Ok(self.get()?.iova().into())
    }

    /// The size in bytes.
    #[napi(getter)]
    pub fn size(&self) -> Result<f64> {
        Ok(self.get()?.size() as f64)
    }

    /// Whether it is mapped in the IOMMU.
    #[napi(getter)]
    pub fn mapped(&self) -> bool {
        self.inner.as_ref().is_some_and(|b| b.is_mapped())
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// A zero-copy Buffer over the memory (made once; the facade caches it). Where the
    /// runtime forbids external buffers (Electron) Node-API copies instead, so the
    /// facade uses `read`/`write` there.
    #[napi]
    pub fn view(&mut self, env: Env) -> Result<Buffer> {
        if self.view_made {
            return Err(invalid(
                "view",
                "a view of this buffer exists already; reuse it",
            ));
        }
        let memory: Arc<DmaMemory> = self.get()?.memory().clone();
        let (ptr, len) = (memory.as_ptr(), memory.len());
        // SAFETY: `ptr`/`len` describe memory owned by `memory`; the finalizer owns a clone of
        // that Arc, so the memory outlives the JS Buffer. JS writes through the view are plain
        // stores into memory the library owns (a device may see them via DMA, by design).
        let slice = unsafe {
            BufferSlice::from_external(&env, ptr, len, memory, |_, memory| drop(memory))
        }?;
        self.view_made = true;
        slice.into_buffer(&env)
    }

    /// Removes the IOMMU mapping (the memory stays valid).
    #[napi]
    pub fn unmap(&self) -> Result<()> {
        self.get()?.unmap().js()
    }

    /// Unmaps (if mapped) and drops the handle; views keep the memory alive.
    #[napi]
    pub fn close(&mut self) -> Result<()> {
        let Some(buffer) = self.inner.take() else {
            return Ok(());
        };
        if buffer.is_mapped() {
            buffer.unmap().js()?;
        }
        Ok(())
    }
}

volatile_methods!(DmaBuffer);
