//! Register waits: until a 32-bit value in device or DMA memory matches
//! (`value & mask == expected`), with a timeout. [`wait_u32`] waits in the calling
//! thread; [`watch_u32`] hands the wait to one thread per process that polls every
//! pending wait, so any number of them cost one thread and block no caller (Node's event
//! loop, its libuv pool).
//!
//! ```
//! use std::cell::UnsafeCell;
//! use std::sync::atomic::AtomicBool;
//! use std::time::Duration;
//! use vfio_ioctls::register_wait::{wait_u32, RegisterWait, WaitOutcome};
//! use vfio_ioctls::{Result, VolatileAccess};
//!
//! // 16 bytes of plain memory standing in for a mapped BAR.
//! struct Regs(UnsafeCell<[u32; 4]>);
//! // SAFETY: pointers only into the 16 bytes this value owns, reached only through them.
//! unsafe impl VolatileAccess for Regs {
//!     fn checked_ptr(&self, op: &'static str, offset: u64, width: usize) -> Result<*mut u8> {
//!         if offset + width as u64 > 16 {
//!             return Err(vfio_ioctls::VfioError::out_of_range(op, "past 16 bytes"));
//!         }
//!         // SAFETY: within the array (checked above).
//!         Ok(unsafe { self.0.get().cast::<u8>().add(offset as usize) })
//!     }
//!     fn len(&self) -> u64 { 16 }
//! }
//!
//! let regs = Regs(UnsafeCell::new([0, 0, 0, 0x8001]));
//! let ready = RegisterWait { offset: 12, mask: 0x1, value: 0x1, timeout: Duration::from_millis(10) };
//! let no = AtomicBool::new(false);
//! assert!(matches!(wait_u32(&regs, &ready, &no), WaitOutcome::Matched(0x8001)));
//! let never = RegisterWait { mask: 0x2, value: 0x2, ..ready };
//! assert!(matches!(wait_u32(&regs, &never, &no), WaitOutcome::TimedOut { last: 0x8001 }));
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Result, VfioError};
// The critical sections only push to or filter the list (callbacks run unlocked, caught).
use crate::sync::lock;
use crate::volatile::VolatileAccess;

/// What to wait for: the 32-bit value at `offset`, masked, equal to `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterWait {
    /// Byte offset of the 32-bit value (naturally aligned).
    pub offset: u64,
    /// The bits compared.
    pub mask: u32,
    /// What the masked bits must equal (bits outside `mask` must be 0).
    pub value: u32,
    /// How long to wait at most; the value is read at least once.
    pub timeout: Duration,
}

/// How a wait ended.
#[derive(Debug)]
pub enum WaitOutcome {
    /// The value matched; it is the whole 32-bit value read.
    Matched(u32),
    /// The timeout passed; `last` is the last value read.
    TimedOut {
        /// The last value read.
        last: u32,
    },
    /// The cancel flag was set.
    Cancelled,
    /// The memory could not be read (out of range, unaligned, memory decoding off...).
    Failed(VfioError),
}

impl RegisterWait {
    /// Checks the request: `value` must lie within `mask` (else it could never match).
    ///
    /// # Errors
    /// `InvalidArgument` naming the stray bits.
    pub fn check(&self, op: &'static str) -> Result<()> {
        if self.value & !self.mask != 0 {
            return Err(VfioError::invalid(
                op,
                format!(
                    "value {:#x} has bits outside mask {:#x} ({:#x}), so it can never match",
                    self.value,
                    self.mask,
                    self.value & !self.mask
                ),
            ));
        }
        Ok(())
    }

    /// The error for a wait that timed out, with what was seen last.
    pub fn timed_out(&self, op: &'static str, last: u32) -> VfioError {
        VfioError::TimedOut {
            op,
            message: format!(
                "the value at {:#x} & {:#x} did not become {:#x} within {} ms (last read {last:#x}); \
                 check that the device was told to get there, or wait longer",
                self.offset,
                self.mask,
                self.value,
                self.timeout.as_millis()
            ),
        }
    }
}

/// One poll: `Some(outcome)` when the wait is over, `None` to poll again.
fn poll(
    mem: &(impl VolatileAccess + ?Sized),
    wait: &RegisterWait,
    deadline: Instant,
    cancel: &AtomicBool,
) -> Option<WaitOutcome> {
    if cancel.load(Ordering::Acquire) {
        return Some(WaitOutcome::Cancelled);
    }
    match mem.read_u32(wait.offset) {
        Ok(v) if v & wait.mask == wait.value => Some(WaitOutcome::Matched(v)),
        Ok(v) if Instant::now() >= deadline => Some(WaitOutcome::TimedOut { last: v }),
        Ok(_) => None,
        Err(e) => Some(WaitOutcome::Failed(e)),
    }
}

/// Polling backs off from the first to the last of these pauses: quick for registers
/// that settle in microseconds, cheap for ones that take milliseconds.
const FIRST_PAUSE: Duration = Duration::from_micros(1);
const LAST_PAUSE: Duration = Duration::from_micros(50);

/// Waits in this thread until the value matches, the timeout passes or `cancel` is set.
pub fn wait_u32(
    mem: &(impl VolatileAccess + ?Sized),
    wait: &RegisterWait,
    cancel: &AtomicBool,
) -> WaitOutcome {
    let deadline = Instant::now() + wait.timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if let Some(outcome) = poll(mem, wait, deadline, cancel) {
            return outcome;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(LAST_PAUSE);
    }
}

/// Called once, on the watcher thread, when a watched wait ends. It should return
/// quickly (hand the outcome over): every pending wait of the process waits for it.
pub type OnDone = Box<dyn FnOnce(WaitOutcome) + Send>;

/// Memory a watched wait reads; it stays mapped until the wait ends.
pub type WatchedMemory = Arc<dyn VolatileAccess + Send + Sync>;

struct Watch {
    mem: WatchedMemory,
    wait: RegisterWait,
    deadline: Instant,
    cancel: Arc<AtomicBool>,
    done: OnDone,
}

struct Watcher {
    watches: Mutex<Vec<Watch>>,
    /// Signalled when a watch is added.
    added: Condvar,
}

static WATCHER: Mutex<Option<Arc<Watcher>>> = Mutex::new(None);

fn watcher() -> Result<Arc<Watcher>> {
    let mut slot = lock(&WATCHER);
    if let Some(w) = slot.as_ref() {
        return Ok(w.clone());
    }
    let w = Arc::new(Watcher {
        watches: Mutex::new(Vec::new()),
        added: Condvar::new(),
    });
    let thread_w = w.clone();
    std::thread::Builder::new()
        .name("vfio-reg-wait".into())
        .spawn(move || run(&thread_w))
        .map_err(|e| VfioError::os("pthread_create", "register watcher", e))?;
    *slot = Some(w.clone());
    Ok(w)
}

/// Hands a wait to the process's watcher thread (started on first use). `done` is
/// called exactly once with the outcome: on the watcher thread, or at once in this
/// thread with [`WaitOutcome::Failed`] when the wait cannot start (a value outside its
/// mask: `InvalidArgument`; the thread cannot be started: the OS error). Setting
/// `cancel` ends the wait within a poll interval (≤ 50 µs) with
/// [`WaitOutcome::Cancelled`].
pub fn watch_u32(mem: WatchedMemory, wait: RegisterWait, cancel: Arc<AtomicBool>, done: OnDone) {
    let w = match wait.check("watch_u32").and_then(|()| watcher()) {
        Ok(w) => w,
        Err(e) => return done(WaitOutcome::Failed(e)),
    };
    let deadline = Instant::now() + wait.timeout;
    lock(&w.watches).push(Watch {
        mem,
        wait,
        deadline,
        cancel,
        done,
    });
    w.added.notify_one();
}

fn run(w: &Watcher) {
    let mut pause = FIRST_PAUSE;
    loop {
        let mut finished = Vec::new();
        {
            let mut watches = lock(&w.watches);
            while watches.is_empty() {
                pause = FIRST_PAUSE;
                watches = w.added.wait(watches).unwrap_or_else(|p| p.into_inner());
            }
            let mut i = 0;
            while i < watches.len() {
                let watch = &watches[i];
                match poll(
                    watch.mem.as_ref(),
                    &watch.wait,
                    watch.deadline,
                    &watch.cancel,
                ) {
                    Some(outcome) => finished.push((watches.swap_remove(i), outcome)),
                    None => i += 1,
                }
            }
        }
        let any_finished = !finished.is_empty();
        for (watch, outcome) in finished {
            // A panicking callback must not end the thread every wait depends on.
            let _ = catch_unwind(AssertUnwindSafe(move || (watch.done)(outcome)));
        }
        if any_finished {
            pause = FIRST_PAUSE;
            continue;
        }
        // A wait added meanwhile is polled after this pause at most.
        std::thread::sleep(pause);
        pause = (pause * 2).min(LAST_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volatile::TestMemory;
    use std::sync::mpsc;

    fn wait(offset: u64, mask: u32, value: u32, ms: u64) -> RegisterWait {
        RegisterWait {
            offset,
            mask,
            value,
            timeout: Duration::from_millis(ms),
        }
    }

    #[test]
    fn a_value_outside_its_mask_is_refused() {
        let e = wait(0, 0x1, 0x3, 1).check("waitU32").err();
        assert!(e.is_some_and(|e| e.to_string().contains("0x2")));
    }

    #[test]
    fn the_watcher_sees_a_value_written_later_and_reports_timeouts_cancels_and_faults() {
        let mem = Arc::new(TestMemory::default());
        let (tx, rx) = mpsc::channel::<(u32, WaitOutcome)>();
        let send = |id: u32| -> OnDone {
            let tx = tx.clone();
            Box::new(move |o| {
                let _ = tx.send((id, o));
            })
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let never = Arc::new(AtomicBool::new(false));
        // A request that can never match fails at once, in this thread.
        watch_u32(mem.clone(), wait(0, 0x1, 0x2, 10), never.clone(), send(6));
        assert!(
            matches!(rx.try_recv(), Ok((6, WaitOutcome::Failed(e))) if e.code() == "ERR_VFIO_INVALID_ARGUMENT")
        );
        watch_u32(
            mem.clone(),
            wait(8, 0xff00, 0x1200, 10_000),
            never.clone(),
            send(1),
        );
        watch_u32(mem.clone(), wait(8, 0x1, 0x1, 30), never.clone(), send(2));
        watch_u32(
            mem.clone(),
            wait(8, 0x8, 0x8, 10_000),
            cancel.clone(),
            send(3),
        );
        watch_u32(
            mem.clone(),
            wait(4096, 1, 1, 10_000),
            never.clone(),
            send(4),
        );
        // A panicking callback is contained; later waits still complete.
        watch_u32(
            mem.clone(),
            wait(0, 0, 0, 10),
            never.clone(),
            Box::new(|_| panic!("contained")),
        );
        let mut seen = Vec::new();
        let got = |rx: &mpsc::Receiver<(u32, WaitOutcome)>| {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("an outcome")
        };
        seen.push(got(&rx)); // 4: out of range at once
        seen.push(got(&rx)); // 2: timed out after 30 ms
        mem.write_u32(8, 0x1234).expect("write");
        seen.push(got(&rx)); // 1: matched
        cancel.store(true, Ordering::Release);
        seen.push(got(&rx)); // 3: cancelled
        seen.sort_by_key(|(id, _)| *id);
        assert!(
            matches!(seen[0], (1, WaitOutcome::Matched(0x1234))),
            "{seen:?}"
        );
        assert!(
            matches!(seen[1], (2, WaitOutcome::TimedOut { last: 0 })),
            "{seen:?}"
        );
        assert!(matches!(seen[2], (3, WaitOutcome::Cancelled)), "{seen:?}");
        assert!(
            matches!(&seen[3], (4, WaitOutcome::Failed(e)) if e.code() == "ERR_VFIO_OUT_OF_RANGE"),
            "{seen:?}"
        );
        let timed_out = wait(8, 0x1, 0x1, 30).timed_out("waitU32", 0x1234);
        assert_eq!(timed_out.code(), "ERR_VFIO_TIMEOUT");
        assert!(
            timed_out.to_string().contains("last read 0x1234"),
            "{timed_out}"
        );
    }
}
