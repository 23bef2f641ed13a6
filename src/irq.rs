//! `Interrupts`: eventfds attached to vectors of one IRQ index.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use vfio_ioctls::poller::{self, Token};
use vfio_ioctls::{IrqClaim, IrqWaiter, VfioDevice, VfioError};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{closed, to_js, to_u32, IntoJs};
use crate::irq_waiter;

/// Called with (vector, count of interrupts since the last call). Weak: it does not keep
/// the process alive unless the facade refs it.
type IrqCallback =
    ThreadsafeFunction<FnArgs<(u32, u32)>, (), FnArgs<(u32, u32)>, Status, false, true>;

struct Enabled {
    /// The one owner of the vectors: no other `Interrupts` can take or disable them.
    claim: IrqClaim,
    fds: Vec<Arc<EventFd>>,
    /// The poller's watches, by vector offset.
    watches: Vec<(usize, Token)>,
    /// The waiter token of each vector shared by `shareVector`, by vector offset.
    shared: Vec<Option<u64>>,
    callback: Option<Arc<Mutex<IrqCallback>>>,
    /// Set once `close()` disabled the vectors, so `Drop` does not repeat it.
    disabled: bool,
}

impl Enabled {
    fn stop_listening(&mut self) {
        for (_, token) in self.watches.drain(..) {
            poller::unregister(token);
        }
        self.callback = None;
    }

    /// Wakes the waiters of shared vectors (with `ERR_VFIO_CLOSED`) and forgets them.
    fn revoke_shared(&mut self) {
        for token in self.shared.iter_mut().filter_map(Option::take) {
            irq_waiter::revoke(token);
        }
    }

    /// The live waiter token of vector offset `i`, if it is shared.
    fn shared_token(&self, i: usize) -> Option<u64> {
        self.shared[i].filter(|&t| irq_waiter::is_shared(t))
    }

    /// The eventfd of `vector`, which must not be shared: its waiter reads it.
    fn fd(&self, op: &'static str, vector: f64) -> Result<&EventFd> {
        let vector = self.vector(op, vector)?;
        let i = (vector - self.claim.start()) as usize;
        if let Some(token) = self.shared_token(i) {
            let message = format!(
                "vector {vector} is shared with an InterruptWaiter (token {token}), which reads \
                 its interrupts: wait in that waiter, or close this Interrupts"
            );
            return Err(to_js(VfioError::busy(op, message)));
        }
        Ok(&self.fds[i])
    }

    fn vector(&self, op: &'static str, vector: f64) -> Result<u32> {
        let vector = to_u32(op, "vector", vector)?;
        self.claim.check_vector(op, vector).js()?;
        Ok(vector)
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        self.stop_listening();
        self.revoke_shared();
        if self.disabled {
            return;
        }
        if let Err(e) = self.claim.disable() {
            log::warn!(
                "disabling IRQ index {} of {}: {e}",
                self.claim.index(),
                self.claim.device().name()
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
    /// Claims the vectors (which checks them against the device before any eventfd is
    /// made), makes one eventfd per vector and enables them.
    pub(crate) fn enable(
        device: &Arc<VfioDevice>,
        index: u32,
        start: u32,
        count: u32,
    ) -> Result<Self> {
        let claim = device.claim_irq(index, start, count).js()?;
        let fds = (0..count)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map(Arc::new))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| to_js(VfioError::os("eventfd", device.name(), e)))?;
        let refs: Vec<&EventFd> = fds.iter().map(|f| f.as_ref()).collect();
        claim.enable(&refs).js()?;
        Ok(Interrupts {
            inner: Some(Enabled {
                claim,
                shared: vec![None; fds.len()],
                fds,
                watches: Vec::new(),
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
        Ok(self.get()?.claim.index())
    }

    /// The first vector.
    #[napi(getter)]
    pub fn start(&self) -> Result<u32> {
        Ok(self.get()?.claim.start())
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
            if enabled.shared_token(i).is_some() {
                continue; // Its waiter reads it.
            }
            let callback = tsfn.clone();
            // Runs on the core's poller thread; NonBlocking queues the call for JS.
            let on_wake: poller::OnWake = Box::new(move |vector, count| {
                callback.lock().unwrap_or_else(|p| p.into_inner()).call(
                    (vector, count).into(),
                    ThreadsafeFunctionCallMode::NonBlocking,
                );
            });
            match poller::register(fd.clone(), enabled.claim.start() + i as u32, on_wake) {
                Ok(token) => enabled.watches.push((i, token)),
                Err(e) => {
                    enabled.stop_listening();
                    return Err(to_js(e));
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
    pub fn trigger(&self, vector: f64) -> Result<()> {
        let e = self.get()?;
        let v = e.vector("trigger", vector)?;
        e.claim.device().try_trigger_irq(e.claim.index(), v).js()
    }

    /// Masks `vector` (INTx).
    #[napi]
    pub fn mask(&self, vector: f64) -> Result<()> {
        let e = self.get()?;
        let v = e.vector("mask", vector)?;
        e.claim.device().mask_irq_vector(e.claim.index(), v).js()
    }

    /// Unmasks `vector` (INTx: after handling a level interrupt).
    #[napi]
    pub fn unmask(&self, vector: f64) -> Result<()> {
        let e = self.get()?;
        let v = e.vector("unmask", vector)?;
        e.claim.device().unmask_irq_vector(e.claim.index(), v).js()
    }

    /// Reads and clears the pending count of `vector` without waiting (0 if none).
    #[napi]
    pub fn take_pending(&self, vector: f64) -> Result<u32> {
        let enabled = self.get()?;
        let fd = enabled.fd("takePending", vector)?;
        match fd.read() {
            Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
            // A non-blocking eventfd with a zero count: nothing is pending.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(to_js(VfioError::os(
                "read(eventfd)",
                enabled.claim.device().name(),
                e,
            ))),
        }
    }

    /// Hands `vector` over to one `InterruptWaiter` (in any thread): returns its token.
    /// The epoll thread stops reading the vector, and `takePending` of it is refused,
    /// until this closes, which wakes the waiter with `ERR_VFIO_CLOSED`.
    #[napi]
    pub fn share_vector(&mut self, env: Env, vector: f64) -> Result<f64> {
        const OP: &str = "shareVector";
        let enabled = self.get_mut()?;
        let v = enabled.vector(OP, vector)?;
        let i = (v - enabled.claim.start()) as usize;
        if let Some(token) = enabled.shared_token(i) {
            let message = format!(
                "vector {v} is shared already (token {token}): one waiter reads a vector; close \
                 that InterruptWaiter first"
            );
            return Err(to_js(VfioError::busy(OP, message)));
        }
        let waiter = Arc::new(IrqWaiter::new(enabled.fds[i].clone(), v).js()?);
        let token = irq_waiter::next_token();
        // Should the env go (process or worker exit) before this closes, the waiter wakes.
        env.add_env_cleanup_hook(token, irq_waiter::revoke)?;
        // Off the epoll thread before the waiter can read it: one reader per eventfd.
        if let Some(at) = enabled.watches.iter().position(|&(w, _)| w == i) {
            poller::unregister(enabled.watches.swap_remove(at).1);
        }
        irq_waiter::share(token, waiter);
        enabled.shared[i] = Some(token);
        Ok(token as f64)
    }

    /// Stops listening, disables the vectors and closes the eventfds.
    #[napi]
    pub fn close(&mut self) -> Result<()> {
        let Some(mut enabled) = self.inner.take() else {
            return Ok(());
        };
        enabled.stop_listening();
        enabled.revoke_shared();
        enabled.disabled = true;
        match enabled.claim.disable() {
            // EINVAL: the index is not enabled any more (e.g. `device.disableIrq()` came
            // first); the vectors are off, which is what close asks for.
            Err(e) if e.errno() == Some(libc::EINVAL) => Ok(()),
            other => other.js(),
        }
    }
}
