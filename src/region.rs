//! `MappedRegion`: a device region mmapped into the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::register_wait::{self, RegisterWait, WaitOutcome};
use vfio_ioctls::VolatileAccess;

use crate::device::MmapArea;
use crate::error::{bigint_to_u64, closed, out_of_range, to_js, to_u32, to_u64, IntoJs};
use crate::fast_access::{Entry, FastHandle};
use crate::volatile::volatile_methods;

/// A region mapped into this process; volatile, bounds- and alignment-checked access.
#[napi]
pub struct MappedRegion {
    /// Shared with pending register waits, which keep the mapping until they end.
    inner: Option<Arc<vfio_ioctls::MappedRegion>>,
    /// Set by `close()`: a wait it cancels rejects with the closed error.
    closing: Arc<AtomicBool>,
    /// The cancel flags of pending waits, set by `close()`.
    waits: Vec<Weak<AtomicBool>>,
    /// The handle of the free-function accessors (`mmioReadU32`, ...).
    fast: FastHandle,
}

/// Cancels one register wait (the facade's `AbortSignal`).
#[napi]
pub struct WaitCancel {
    flag: Arc<AtomicBool>,
}

#[napi]
impl WaitCancel {
    /// A flag not yet set.
    #[napi(constructor)]
    #[allow(clippy::new_without_default)] // a napi constructor, not a Rust API
    pub fn new() -> Self {
        WaitCancel {
            flag: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Ends the wait (it resolves with `null`) within a poll interval.
    #[napi]
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
    }

    /// Whether `cancel()` was called (or the region closed).
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

impl MappedRegion {
    pub(crate) fn wrap(inner: vfio_ioctls::MappedRegion) -> Result<Self> {
        let inner = Arc::new(inner);
        Ok(MappedRegion {
            fast: FastHandle::register("mapRegion", Entry::Region(inner.clone()))?,
            inner: Some(inner),
            closing: Arc::new(AtomicBool::new(false)),
            waits: Vec::new(),
        })
    }

    fn get_arc(&self) -> Result<&Arc<vfio_ioctls::MappedRegion>> {
        self.inner.as_ref().ok_or_else(|| closed("mapped region"))
    }

    fn get(&self) -> Result<&vfio_ioctls::MappedRegion> {
        Ok(self.get_arc()?)
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

    /// The handle of the free-function accessors (`mmioReadU32(handle, offset)`, ...),
    /// which skip a class method's per-call cost; -1 once closed
    /// (a handle kept from before then gives the closed error).
    #[napi(getter)]
    pub fn fast_handle(&self) -> f64 {
        self.fast.id()
    }

    /// Waits on the register watcher thread until the 32-bit value at `offset`, masked,
    /// equals `value`: resolves with the value read, with `null` when `cancel` is
    /// set, rejects with `ERR_VFIO_TIMEOUT` after `timeoutMs` (the message has the last
    /// value read) and with the closed error when the region closes meanwhile.
    #[napi(ts_return_type = "Promise<number | null>")]
    pub fn wait_u32<'env>(
        &mut self,
        env: &'env Env,
        offset: f64,
        mask: f64,
        value: f64,
        timeout_ms: f64,
        cancel: &WaitCancel,
    ) -> Result<Object<'env>> {
        const OP: &str = "waitU32";
        let wait = RegisterWait {
            offset: to_u64(OP, "offset", offset)?,
            mask: to_u32(OP, "mask", mask)?,
            value: to_u32(OP, "value", value)?,
            timeout: Duration::from_millis(u64::from(to_u32(OP, "timeout", timeout_ms)?)),
        };
        let mem: register_wait::WatchedMemory = self.get_arc()?.clone();
        let (deferred, promise) = env.create_deferred()?;
        let closing = self.closing.clone();
        self.waits.retain(|w| w.strong_count() > 0);
        self.waits.push(Arc::downgrade(&cancel.flag));
        let done: register_wait::OnDone = Box::new(move |outcome| {
            deferred.resolve(move |_env| match outcome {
                WaitOutcome::Matched(v) => Ok(Some(v)),
                WaitOutcome::Cancelled if closing.load(Ordering::Acquire) => {
                    Err(closed("mapped region"))
                }
                WaitOutcome::Cancelled => Ok(None),
                WaitOutcome::TimedOut { last } => Err(to_js(wait.timed_out(OP, last))),
                WaitOutcome::Failed(e) => Err(to_js(e)),
            })
        });
        register_wait::watch_u32(mem, wait, cancel.flag.clone(), done);
        Ok(promise)
    }

    /// Unmaps the region (once pending waits, cancelled now, have ended).
    #[napi]
    pub fn close(&mut self) {
        self.closing.store(true, Ordering::Release);
        for flag in self.waits.drain(..).filter_map(|w| w.upgrade()) {
            flag.store(true, Ordering::Release);
        }
        self.fast.release();
        self.inner = None;
    }
}

volatile_methods!(MappedRegion);
