//! `Interrupts`: eventfds attached to vectors of one IRQ index.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::VfioDevice;
use vmm_sys_util::eventfd::EventFd;

use crate::error::{closed, js_error, IntoJs};
use crate::poller::{self, IrqCallback, Registration};

struct Enabled {
    device: Arc<VfioDevice>,
    index: u32,
    start: u32,
    fds: Vec<Arc<EventFd>>,
    tokens: Vec<u64>,
    callback: Option<Arc<Mutex<IrqCallback>>>,
    /// Set once `close()` disabled the vectors, so `Drop` does not repeat it.
    disabled: bool,
}

impl Enabled {
    fn stop_listening(&mut self) {
        for token in self.tokens.drain(..) {
            poller::unregister(token);
        }
        self.callback = None;
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        self.stop_listening();
        if self.disabled {
            return;
        }
        if let Err(e) = self.device.disable_irq(self.index) {
            log::warn!(
                "disabling IRQ index {} of {}: {e}",
                self.index,
                self.device.name()
            );
        }
    }
}

/// Vectors `start..start+count` of one IRQ index, each signalling its own eventfd.
#[napi]
pub struct Interrupts {
    inner: Option<Enabled>,
}

impl Interrupts {
    pub(crate) fn enable(
        device: Arc<VfioDevice>,
        index: u32,
        start: u32,
        count: u32,
    ) -> Result<Self> {
        let fds = (0..count)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map(Arc::new))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| {
                js_error(
                    "ERR_VFIO_IO",
                    &format!("eventfd: {e}"),
                    e.raw_os_error(),
                    Some("eventfd"),
                    None,
                )
            })?;
        let refs: Vec<&EventFd> = fds.iter().map(|f| f.as_ref()).collect();
        device.enable_irq_from(index, start, &refs).js()?;
        Ok(Interrupts {
            inner: Some(Enabled {
                device,
                index,
                start,
                fds,
                tokens: Vec::new(),
                callback: None,
                disabled: false,
            }),
        })
    }

    fn get(&self) -> Result<&Enabled> {
        self.inner.as_ref().ok_or_else(|| closed("interrupts"))
    }

    fn get_mut(&mut self) -> Result<&mut Enabled> {
        self.inner.as_mut().ok_or_else(|| closed("interrupts"))
    }
}

#[napi]
impl Interrupts {
    /// The IRQ index.
    #[napi(getter)]
    pub fn index(&self) -> Result<u32> {
        Ok(self.get()?.index)
    }

    /// The first vector.
    #[napi(getter)]
    pub fn start(&self) -> Result<u32> {
        Ok(self.get()?.start)
    }

    /// The number of vectors.
    #[napi(getter)]
    pub fn count(&self) -> Result<u32> {
        Ok(self.get()?.fds.len() as u32)
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// Calls `callback(vector, count)` on each wake-up. The watch does not keep the
    /// process alive until `ref()` is called.
    #[napi(ts_args_type = "callback: (vector: number, count: number) => void")]
    pub fn listen(&mut self, callback: Function<FnArgs<(u32, u32)>, ()>) -> Result<()> {
        let enabled = self.get_mut()?;
        if enabled.callback.is_some() {
            return Err(crate::error::invalid(
                "listen",
                "already listening; call stop() first",
            ));
        }
        let tsfn: IrqCallback = callback
            .build_threadsafe_function()
            .weak::<true>()
            .build()?;
        let tsfn = Arc::new(Mutex::new(tsfn));
        for (i, fd) in enabled.fds.iter().enumerate() {
            let registration = Registration {
                fd: fd.clone(),
                vector: enabled.start + i as u32,
                callback: tsfn.clone(),
            };
            match poller::register(registration) {
                Ok(token) => enabled.tokens.push(token),
                Err(message) => {
                    enabled.stop_listening();
                    return Err(js_error(
                        "ERR_VFIO_IO",
                        &message,
                        None,
                        Some("epoll_ctl"),
                        None,
                    ));
                }
            }
        }
        enabled.callback = Some(tsfn);
        Ok(())
    }

    /// Stops delivering wake-ups (the vectors stay enabled).
    #[napi]
    pub fn stop(&mut self) -> Result<()> {
        self.get_mut()?.stop_listening();
        Ok(())
    }

    /// Keeps the process alive while listening.
    // napi marks refer/unref deprecated in favour of clone-counting, but ref/unref of the
    // underlying Node-API tsfn is exactly what keeps (or not) the event loop alive here.
    #[allow(deprecated)]
    #[napi(js_name = "ref")]
    pub fn refer(&self, env: Env) -> Result<()> {
        if let Some(cb) = &self.get()?.callback {
            cb.lock().unwrap_or_else(|p| p.into_inner()).refer(&env)?;
        }
        Ok(())
    }

    /// Lets the process exit while listening.
    #[allow(deprecated)]
    #[napi]
    pub fn unref(&self, env: Env) -> Result<()> {
        if let Some(cb) = &self.get()?.callback {
            cb.lock().unwrap_or_else(|p| p.into_inner()).unref(&env)?;
        }
        Ok(())
    }

    /// Fires `vector` from user space.
    #[napi]
    pub fn trigger(&self, vector: u32) -> Result<()> {
        let e = self.get()?;
        e.device.trigger_irq(e.index, vector).js()
    }

    /// Masks `vector` (INTx).
    #[napi]
    pub fn mask(&self, vector: u32) -> Result<()> {
        let e = self.get()?;
        e.device.mask_irq_vector(e.index, vector).js()
    }

    /// Unmasks `vector` (INTx: after handling a level interrupt).
    #[napi]
    pub fn unmask(&self, vector: u32) -> Result<()> {
        let e = self.get()?;
        e.device.unmask_irq_vector(e.index, vector).js()
    }

    /// Reads and clears the pending count of `vector` without waiting (0 if none).
    #[napi]
    pub fn take_pending(&self, vector: u32) -> Result<u32> {
        let e = self.get()?;
        let fd = vector
            .checked_sub(e.start)
            .and_then(|i| e.fds.get(i as usize))
            .ok_or_else(|| {
                crate::error::out_of_range(
                    "takePending",
                    &format!("vector {vector} is not one of these interrupts"),
                )
            })?;
        Ok(fd
            .read()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(0))
    }

    /// Stops listening, disables the vectors and closes the eventfds.
    #[napi]
    pub fn close(&mut self) -> Result<()> {
        let Some(mut enabled) = self.inner.take() else {
            return Ok(());
        };
        enabled.stop_listening();
        enabled.disabled = true;
        match enabled.device.disable_irq(enabled.index) {
            // EINVAL: the index is not enabled any more (e.g. `device.disableIrq()` came
            // first); the vectors are off, which is what close asks for.
            Err(e) if e.errno() == Some(libc::EINVAL) => Ok(()),
            other => other.js(),
        }
    }
}
