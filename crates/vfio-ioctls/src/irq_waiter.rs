//! A blocking wait for one vector's interrupts in the calling thread: `poll` on the
//! vector's eventfd and a cancel eventfd, then `read` the count. No poller thread and
//! no hand-over, for a driver that waits in a thread of its own.
//!
//! Only one consumer may read a vector's eventfd: while an [`IrqWaiter`] waits on it, do
//! not [`register`](crate::poller::register) it with the poller (the two would split
//! the counts between them).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use vfio_ioctls::{EventFd, IrqWaiter};
//!
//! let fd = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
//! let waiter = IrqWaiter::new(fd.clone(), 0)?;
//! assert_eq!(waiter.wait(Duration::from_millis(1))?, 0, "nothing yet: the timeout");
//! fd.write(2)?; // what the kernel does for two interrupts
//! assert_eq!(waiter.wait(Duration::from_secs(10))?, 2);
//! waiter.cancel();
//! assert_eq!(waiter.wait(Duration::from_secs(10)).unwrap_err().code(), "ERR_VFIO_CLOSED");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::EventFd;

use crate::error::{Result, VfioError};

/// The longest wait one call may ask for, so that no caller can block a thread (or a
/// process waiting for it to join) for ever.
pub const MAX_IRQ_WAIT: Duration = Duration::from_secs(60);

const OP: &str = "irq_wait";

/// Waits for the interrupts of one vector in the calling thread; any thread may
/// [`cancel`](IrqWaiter::cancel) it.
#[derive(Debug)]
pub struct IrqWaiter {
    fd: Arc<EventFd>,
    /// Written once by `cancel` and never read, so it stays readable: every wait, now
    /// and later, sees it.
    cancel: EventFd,
    cancelled: AtomicBool,
    vector: u32,
}

impl IrqWaiter {
    /// A waiter over `fd`, the eventfd a device signals for `vector`.
    ///
    /// # Errors
    /// `InvalidArgument` for an eventfd without `EFD_NONBLOCK` (a read that lost a race
    /// would block past the timeout); the errno of `fcntl` or `eventfd`.
    pub fn new(fd: Arc<EventFd>, vector: u32) -> Result<Self> {
        crate::poller::require_nonblocking(
            OP,
            &fd,
            vector,
            "so that a wait never outlasts its timeout",
        )?;
        let cancel = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
            .map_err(|e| VfioError::os("eventfd", format!("cancel of vector {vector}"), e))?;
        Ok(IrqWaiter {
            fd,
            cancel,
            cancelled: AtomicBool::new(false),
            vector,
        })
    }

    /// The vector.
    pub fn vector(&self) -> u32 {
        self.vector
    }

    /// Blocks the calling thread until `vector` fires or `timeout` passes; returns the
    /// count of interrupts since the last wait (saturated to `u32::MAX`), 0 on timeout.
    /// A zero `timeout` only takes what is pending.
    ///
    /// # Errors
    /// `InvalidArgument` for a timeout above [`MAX_IRQ_WAIT`]; `Closed` once
    /// [`cancel`](IrqWaiter::cancel) was called (also during the wait); the errno of
    /// `poll` or `read`.
    pub fn wait(&self, timeout: Duration) -> Result<u32> {
        if timeout > MAX_IRQ_WAIT {
            return Err(VfioError::invalid(
                OP,
                format!(
                    "timeout {} ms of vector {} is above the {} ms cap: wait in a loop",
                    timeout.as_millis(),
                    self.vector,
                    MAX_IRQ_WAIT.as_millis()
                ),
            ));
        }
        if self.cancelled.load(Ordering::Acquire) {
            return Err(self.closed());
        }
        // An interrupt that came before the wait (a driver raises, then waits) costs one
        // syscall, not a poll and a read: syscalls are most of a wait's cost.
        if let Some(count) = self.take()? {
            return Ok(count);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.cancelled.load(Ordering::Acquire) {
                return Err(self.closed());
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.cancel.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let left = deadline.saturating_duration_since(Instant::now());
            // Rounded up, so that a wait never ends (with 0) before its timeout.
            let ms = left.as_micros().div_ceil(1000);
            let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
            // SAFETY: `fds` is an array of two initialised pollfds that outlives the call;
            // both fds are open while `self` lives.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(VfioError::os("poll", self.target(), e));
            }
            if fds[1].revents != 0 {
                return Err(self.closed());
            }
            if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(VfioError::os(
                    "poll",
                    self.target(),
                    io::Error::from_raw_os_error(libc::EBADF),
                ));
            }
            if fds[0].revents & libc::POLLIN != 0 {
                // None: another reader took the count first; wait on for what is left.
                if let Some(count) = self.take()? {
                    return Ok(count);
                }
            }
            if n == 0 || Instant::now() >= deadline {
                return Ok(0);
            }
        }
    }

    /// Ends every wait, now and later, with `Closed`. Never blocks; idempotent.
    pub fn cancel(&self) {
        if self.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        // A write of 1 to a fresh eventfd cannot overflow it; should it fail anyway, the
        // flag still ends the next wait, and a wait in progress at its timeout.
        if let Err(e) = self.cancel.write(1) {
            log::warn!("cancelling the waiter of vector {}: {e}", self.vector);
        }
    }

    /// Whether [`cancel`](IrqWaiter::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Reads and clears the count; `None` when there is none.
    fn take(&self) -> Result<Option<u32>> {
        match self.fd.read() {
            Ok(count) => Ok(Some(u32::try_from(count).unwrap_or(u32::MAX))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(VfioError::os("read(eventfd)", self.target(), e)),
        }
    }

    fn closed(&self) -> VfioError {
        VfioError::Closed {
            op: OP,
            what: "interrupts",
        }
    }

    fn target(&self) -> String {
        format!("eventfd of vector {}", self.vector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    fn waiter(vector: u32) -> (Arc<EventFd>, Arc<IrqWaiter>) {
        let fd = Arc::new(EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).unwrap());
        let w = Arc::new(IrqWaiter::new(fd.clone(), vector).unwrap());
        (fd, w)
    }

    #[test]
    fn returns_the_count_and_consumes_it() {
        let (fd, w) = waiter(3);
        fd.write(5).unwrap();
        assert_eq!(w.wait(LONG).unwrap(), 5);
        assert!(fd.read().is_err(), "the count was consumed");
        assert_eq!(w.wait(Duration::ZERO).unwrap(), 0);
    }

    #[test]
    fn a_timeout_returns_zero_after_the_timeout() {
        let (_fd, w) = waiter(0);
        let t = Instant::now();
        assert_eq!(w.wait(Duration::from_millis(50)).unwrap(), 0);
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn wakes_on_a_write_from_another_thread() {
        let (fd, w) = waiter(1);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            fd.write(1).unwrap();
        });
        let t = Instant::now();
        assert_eq!(w.wait(LONG).unwrap(), 1);
        assert!(t.elapsed() < LONG);
        writer.join().unwrap();
    }

    #[test]
    fn cancel_wakes_a_blocked_wait_and_every_later_one() {
        let (fd, w) = waiter(2);
        let blocked = w.clone();
        let t = Instant::now();
        let wait = std::thread::spawn(move || blocked.wait(LONG));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!w.is_cancelled());
        w.cancel();
        let e = wait.join().unwrap().unwrap_err();
        assert!(t.elapsed() < LONG, "woken, not timed out");
        assert_eq!(e.code(), "ERR_VFIO_CLOSED");
        assert!(e.to_string().contains("interrupts is closed"), "{e}");
        // Later waits too, even with a count pending; cancel is idempotent.
        fd.write(1).unwrap();
        w.cancel();
        assert_eq!(w.wait(LONG).unwrap_err().code(), "ERR_VFIO_CLOSED");
        assert!(w.is_cancelled());
    }

    #[test]
    fn a_timeout_above_the_cap_is_refused() {
        let (_fd, w) = waiter(4);
        let e = w.wait(MAX_IRQ_WAIT + Duration::from_millis(1)).unwrap_err();
        assert_eq!(e.code(), "ERR_VFIO_INVALID_ARGUMENT");
        assert!(e.to_string().contains("60000 ms cap"), "{e}");
        assert_eq!(w.wait(Duration::ZERO).unwrap(), 0, "the cap itself is fine");
    }

    #[test]
    fn a_blocking_eventfd_is_refused() {
        let fd = Arc::new(EventFd::new(0).unwrap());
        let e = IrqWaiter::new(fd, 7).unwrap_err();
        assert_eq!(e.code(), "ERR_VFIO_INVALID_ARGUMENT");
        assert!(e.to_string().contains("EFD_NONBLOCK"), "{e}");
    }
}
