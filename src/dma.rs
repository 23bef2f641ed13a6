//! `DmaBuffer`: memory the library owns, mapped into the IOMMU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::{DmaMemory, VolatileAccess};

use crate::error::{bigint_to_u64, closed, invalid, out_of_range, to_u32, to_u64, IntoJs};
use crate::volatile::volatile_methods;

/// A DMA buffer. Its memory lives as long as this object or a view of it; its mapping
/// as long as this object or a slice of it, until `close()`.
#[napi]
pub struct DmaBuffer {
    inner: Option<Arc<vfio_ioctls::DmaBuffer>>,
    /// Cleared by `close()`, so that slices refuse access from then on.
    open: Arc<AtomicBool>,
    view_made: bool,
}

impl DmaBuffer {
    pub(crate) fn wrap(inner: vfio_ioctls::DmaBuffer) -> Self {
        DmaBuffer {
            inner: Some(Arc::new(inner)),
            open: Arc::new(AtomicBool::new(true)),
            view_made: false,
        }
    }

    fn get(&self) -> Result<&Arc<vfio_ioctls::DmaBuffer>> {
        self.inner.as_ref().ok_or_else(|| closed("DMA buffer"))
    }

    fn mem(&self) -> Result<&dyn VolatileAccess> {
        Ok(&**self.get()?)
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

    /// The `length` bytes at `offset`, with their own IOVA; the slice keeps the mapping
    /// alive, and refuses access once this buffer is closed.
    #[napi]
    pub fn slice(&self, offset: f64, length: f64) -> Result<DmaSlice> {
        let offset = to_u64("slice", "offset", offset)?;
        let length = to_u64("slice", "length", length)?;
        let slice = vfio_ioctls::DmaSlice::new(self.get()?.clone(), offset, length).js()?;
        Ok(DmaSlice {
            inner: Some(slice),
            parent_open: self.open.clone(),
        })
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
        self.open.store(false, Ordering::Release);
        if buffer.is_mapped() {
            buffer.unmap().js()?;
        }
        Ok(())
    }
}

volatile_methods!(DmaBuffer);

/// A range of a DMA buffer with its own IOVA (`dmaBuffer.slice()`).
#[napi]
pub struct DmaSlice {
    inner: Option<vfio_ioctls::DmaSlice<Arc<vfio_ioctls::DmaBuffer>>>,
    parent_open: Arc<AtomicBool>,
}

impl DmaSlice {
    fn get(&self) -> Result<&vfio_ioctls::DmaSlice<Arc<vfio_ioctls::DmaBuffer>>> {
        // The buffer's close ends its slices too: its mapping is gone then.
        if !self.parent_open.load(Ordering::Acquire) {
            return Err(closed("DMA buffer"));
        }
        self.inner.as_ref().ok_or_else(|| closed("DMA slice"))
    }

    fn mem(&self) -> Result<&dyn VolatileAccess> {
        Ok(self.get()?)
    }
}

#[napi]
impl DmaSlice {
    /// The IOVA of its first byte (the buffer's plus `offset`).
    #[napi(getter)]
    pub fn iova(&self) -> Result<BigInt> {
        Ok(self.get()?.iova().into())
    }

    /// Where it starts in its buffer.
    #[napi(getter)]
    pub fn offset(&self) -> Result<f64> {
        Ok(self.get()?.offset() as f64)
    }

    /// The size in bytes.
    #[napi(getter)]
    pub fn size(&self) -> Result<f64> {
        Ok(self.get()?.size() as f64)
    }

    /// Whether its buffer is mapped in the IOMMU.
    #[napi(getter)]
    pub fn mapped(&self) -> bool {
        self.get().is_ok_and(|s| s.buffer().is_mapped())
    }

    /// Whether this slice or its buffer was closed.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.get().is_err()
    }

    /// The `length` bytes at `offset` of this slice.
    #[napi]
    pub fn slice(&self, offset: f64, length: f64) -> Result<DmaSlice> {
        let offset = to_u64("slice", "offset", offset)?;
        let length = to_u64("slice", "length", length)?;
        Ok(DmaSlice {
            inner: Some(self.get()?.slice(offset, length).js()?),
            parent_open: self.parent_open.clone(),
        })
    }

    /// Lets go of the buffer (its mapping ends when the buffer and every slice let go).
    #[napi]
    pub fn close(&mut self) {
        self.inner = None;
    }
}

volatile_methods!(DmaSlice);
