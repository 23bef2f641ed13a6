//! `MappedRegion`: a device region mmapped into the process.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::VolatileAccess;

use crate::device::MmapArea;
use crate::error::{bigint_to_u64, closed, out_of_range, to_u32, to_u64, IntoJs};
use crate::volatile::volatile_methods;

/// A region mapped into this process; volatile, bounds- and alignment-checked access.
#[napi]
pub struct MappedRegion {
    inner: Option<vfio_ioctls::MappedRegion>,
}

impl MappedRegion {
    pub(crate) fn wrap(inner: vfio_ioctls::MappedRegion) -> Self {
        MappedRegion { inner: Some(inner) }
    }

    fn get(&self) -> Result<&vfio_ioctls::MappedRegion> {
        self.inner.as_ref().ok_or_else(|| closed("mapped region"))
    }

    fn mem(&self) -> Result<&dyn VolatileAccess> {
        Ok(self.get()?)
    }
}

#[napi]
impl MappedRegion {
    /// The region index.
    #[napi(getter)]
    pub fn index(&self) -> Result<u32> {
        Ok(self.get()?.index())
    }

    /// The region size.
    #[napi(getter)]
    pub fn size(&self) -> Result<f64> {
        Ok(self.get()?.size() as f64)
    }

    /// The mapped (accessible) areas.
    #[napi(getter)]
    pub fn areas(&self) -> Result<Vec<MmapArea>> {
        Ok(self
            .get()?
            .areas()
            .iter()
            .map(|a| MmapArea {
                offset: a.offset as f64,
                size: a.size as f64,
            })
            .collect())
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// Unmaps the region.
    #[napi]
    pub fn close(&mut self) {
        self.inner = None;
    }
}

volatile_methods!(MappedRegion);
