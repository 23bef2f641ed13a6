//! The interrupt poller: one thread per process waits with epoll on every registered
//! eventfd and calls its callback with the vector and the count of interrupts since
//! the last call. It starts on the first [`register`].
//!
//! ```
//! use std::sync::{mpsc, Arc};
//! use vfio_ioctls::{poller, EventFd};
//!
//! // Non-blocking, so that a wake-up another reader consumed first cannot stall the thread.
//! let fd = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
//! let (tx, rx) = mpsc::sync_channel(1);
//! let token = poller::register(fd.clone(), 3, Box::new(move |vector, count| {
//!     let _ = tx.try_send((vector, count));
//! }))?;
//! fd.write(2)?; // what the kernel does for two interrupts of vector 3
//! assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).ok(), Some((3, 2)));
//! assert!(poller::unregister(token));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Result, VfioError};
// Every critical section is a single map operation (callbacks run unlocked or are caught).
use crate::sync::lock;

/// Called on the poller thread with (vector, count of interrupts since the last call).
/// It should return quickly (hand the wake-up over, e.g. to a channel): every
/// interrupt of the process waits for it.
pub type OnWake = Box<dyn Fn(u32, u32) + Send + Sync>;

/// A registration, to [`unregister`] with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Token(u64);

struct Watch {
    fd: Arc<EventFd>,
    vector: u32,
    on_wake: Arc<dyn Fn(u32, u32) + Send + Sync>,
}

struct Poller {
    epoll: Epoll,
    watches: Mutex<HashMap<u64, Watch>>,
    /// Held while callbacks run, so that `unregister` can wait for one in flight.
    dispatch: Mutex<()>,
    thread: ThreadId,
}

/// The process's poller, once started; a failed start is retried by the next register.
static POLLER: Mutex<Option<Arc<Poller>>> = Mutex::new(None);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

fn poller() -> Result<Arc<Poller>> {
    let mut slot = lock(&POLLER);
    if let Some(p) = slot.as_ref() {
        return Ok(p.clone());
    }
    let epoll = Epoll::new().map_err(|e| VfioError::os("epoll_create1", "interrupt poller", e))?;
    // The thread needs the poller and the poller the thread's id: hand it over once built.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Poller>>(1);
    let handle = std::thread::Builder::new()
        .name("vfio-irq-poller".into())
        .spawn(move || {
            if let Ok(p) = rx.recv() {
                run(&p);
            }
        })
        .map_err(|e| VfioError::os("spawn", "interrupt poller thread", e))?;
    let p = Arc::new(Poller {
        epoll,
        watches: Mutex::new(HashMap::new()),
        dispatch: Mutex::new(()),
        thread: handle.thread().id(),
    });
    // The receiver is alive: the thread waits for this before anything else.
    let _ = tx.send(p.clone());
    *slot = Some(p.clone());
    Ok(p)
}

fn run(p: &Poller) {
    let mut events = vec![EpollEvent::default(); 32];
    loop {
        let n = match p.epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!(
                    "interrupt poller: epoll_wait: {e}; interrupts are no longer delivered"
                );
                return;
            }
        };
        let _dispatch = lock(&p.dispatch);
        for event in &events[..n] {
            let found = lock(&p.watches)
                .get(&event.data())
                .map(|w| (w.fd.clone(), w.vector, w.on_wake.clone()));
            let Some((fd, vector, on_wake)) = found else {
                continue; // Unregistered since the wake-up.
            };
            // Non-blocking: EAGAIN means another reader took the count first.
            let Ok(count) = fd.read() else { continue };
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            // One panicking callback must not stop every interrupt of the process.
            if catch_unwind(AssertUnwindSafe(|| on_wake(vector, count))).is_err() {
                log::error!("interrupt poller: the callback of vector {vector} panicked");
            }
        }
    }
}

/// Refuses an eventfd without `O_NONBLOCK` (`InvalidArgument` from `op`, ending with
/// `consequence`: what a blocking read would do), or the errno of `fcntl`. Every reader of
/// a vector's eventfd (the poller thread, an `IrqWaiter`) needs a read that cannot block.
pub(crate) fn require_nonblocking(
    op: &'static str,
    fd: &EventFd,
    vector: u32,
    consequence: &str,
) -> Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL takes no argument and only reads the fd's flags; `fd` is open (we
    // hold it), and a bad fd would only make it return -1.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(VfioError::last_os(
            "fcntl",
            format!("eventfd {raw} of vector {vector}"),
        ));
    }
    if flags & libc::O_NONBLOCK == 0 {
        return Err(VfioError::invalid(
            op,
            format!(
                "the eventfd of vector {vector} blocks: create it with EFD_NONBLOCK, {consequence}"
            ),
        ));
    }
    Ok(())
}

/// Starts watching `fd` (an eventfd a device signals for `vector`), calling `on_wake`
/// on the poller thread with `vector` and the count read at each wake-up.
///
/// # Errors
/// `InvalidArgument` for an eventfd without `EFD_NONBLOCK` or one registered already;
/// the errno of starting the poller (`epoll_create1`, `spawn`) or of `epoll_ctl`.
pub fn register(fd: Arc<EventFd>, vector: u32, on_wake: OnWake) -> Result<Token> {
    const OP: &str = "epoll_ctl";
    let raw = fd.as_raw_fd();
    require_nonblocking(
        OP,
        &fd,
        vector,
        "or a read racing another reader would stall every interrupt of the process",
    )?;
    let p = poller()?;
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    // In the table before epoll can report it.
    lock(&p.watches).insert(
        token,
        Watch {
            fd,
            vector,
            on_wake: Arc::from(on_wake),
        },
    );
    let event = EpollEvent::new(EventSet::IN, token);
    if let Err(e) = p.epoll.ctl(ControlOperation::Add, raw, event) {
        lock(&p.watches).remove(&token);
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Err(VfioError::invalid(
                OP,
                format!(
                    "eventfd {raw} (vector {vector}) is registered already; unregister it first"
                ),
            ));
        }
        return Err(VfioError::os(
            OP,
            format!("eventfd {raw} of vector {vector}"),
            e,
        ));
    }
    Ok(Token(token))
}

/// Stops watching; `false` when `token` was not registered (or unregistered already).
///
/// When it returns, the callback is not running and will not be called again, unless
/// this is called from a callback (which the poller thread runs, so it cannot wait).
pub fn unregister(token: Token) -> bool {
    let Some(p) = lock(&POLLER).clone() else {
        return false;
    };
    let Some(watch) = lock(&p.watches).remove(&token.0) else {
        return false;
    };
    // The eventfd is still open (`watch` holds it). A failure leaves a watch epoll
    // drops with the fd's last close, and whose events find no callback.
    if let Err(e) = p.epoll.ctl(
        ControlOperation::Delete,
        watch.fd.as_raw_fd(),
        EpollEvent::default(),
    ) {
        log::warn!(
            "interrupt poller: epoll_ctl(DEL) of vector {}: {e}",
            watch.vector
        );
    }
    if std::thread::current().id() != p.thread {
        // Taken once the batch that may be calling it is done.
        let _done = lock(&p.dispatch);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{sync_channel, Receiver};
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(10);

    fn eventfd() -> Arc<EventFd> {
        Arc::new(EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).unwrap())
    }

    /// Registers `fd` with a callback that sends what it is called with.
    fn watch(fd: &Arc<EventFd>, vector: u32) -> (Token, Receiver<(u32, u32)>) {
        let (tx, rx) = sync_channel(1024);
        let token = register(
            fd.clone(),
            vector,
            Box::new(move |v, n| {
                let _ = tx.try_send((v, n));
            }),
        )
        .unwrap();
        (token, rx)
    }

    #[test]
    fn a_wake_up_calls_back_with_the_vector_and_the_count() {
        let fd = eventfd();
        let (token, rx) = watch(&fd, 7);
        fd.write(3).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok((7, 3)));
        // The poller read the count: nothing is pending, and the next wake-up counts anew.
        assert!(fd.read().is_err(), "the count was consumed");
        fd.write(1).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok((7, 1)));
        assert!(unregister(token));
    }

    #[test]
    fn unregister_stops_delivery() {
        let fd = eventfd();
        let (token, rx) = watch(&fd, 0);
        fd.write(1).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok((0, 1)));
        assert!(unregister(token));
        assert!(!unregister(token), "twice");
        fd.write(5).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(fd.read().unwrap(), 5, "nobody read the count");
        // The fd can be watched again.
        let (token, rx) = watch(&fd, 1);
        fd.write(2).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok((1, 2)));
        assert!(unregister(token));
    }

    #[test]
    fn many_fds_each_report_their_own_vector() {
        let fds: Vec<_> = (0..100).map(|_| eventfd()).collect();
        let (tx, rx) = sync_channel(1024);
        let tokens: Vec<_> = fds
            .iter()
            .enumerate()
            .map(|(i, fd)| {
                let tx = tx.clone();
                let on_wake: OnWake = Box::new(move |v, n| {
                    let _ = tx.try_send((v, n));
                });
                register(fd.clone(), 1000 + i as u32, on_wake).unwrap()
            })
            .collect();
        for (i, fd) in fds.iter().enumerate() {
            fd.write(i as u64 + 1).unwrap();
        }
        let mut got: Vec<(u32, u32)> = (0..fds.len())
            .map(|_| rx.recv_timeout(WAIT).unwrap())
            .collect();
        got.sort_unstable();
        let want: Vec<(u32, u32)> = (0..100).map(|i| (1000 + i, i + 1)).collect();
        assert_eq!(got, want);
        for t in tokens {
            assert!(unregister(t));
        }
    }

    #[test]
    fn blocking_and_duplicate_eventfds_are_refused() {
        let blocking = Arc::new(EventFd::new(0).unwrap());
        let e = register(blocking, 2, Box::new(|_, _| {})).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("EFD_NONBLOCK"), "{e}");
        let fd = eventfd();
        let (token, _rx) = watch(&fd, 4);
        let e = register(fd.clone(), 4, Box::new(|_, _| {})).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("registered already"), "{e}");
        // The refused second registration left the first working.
        assert!(unregister(token));
    }

    #[test]
    fn a_panicking_callback_does_not_stop_the_others() {
        let bad = eventfd();
        let bad_token = register(bad.clone(), 5, Box::new(|_, _| panic!("test callback"))).unwrap();
        bad.write(1).unwrap();
        let good = eventfd();
        let (token, rx) = watch(&good, 6);
        good.write(1).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok((6, 1)));
        assert!(unregister(bad_token) && unregister(token));
    }

    #[test]
    fn unregister_from_a_callback_does_not_deadlock() {
        let fd = eventfd();
        let slot: Arc<Mutex<Option<Token>>> = Arc::default();
        let (tx, rx) = sync_channel(4);
        let own = slot.clone();
        let token = register(
            fd.clone(),
            8,
            Box::new(move |_, _| {
                let token = own.lock().unwrap().take();
                let _ = tx.try_send(token.map(unregister));
            }),
        )
        .unwrap();
        *slot.lock().unwrap() = Some(token);
        fd.write(1).unwrap();
        assert_eq!(rx.recv_timeout(WAIT), Ok(Some(true)));
        assert!(!unregister(token));
    }

    #[test]
    fn unregister_waits_for_a_callback_in_flight() {
        use std::sync::atomic::AtomicBool;
        let fd = eventfd();
        let done = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = sync_channel(1);
        let finished = done.clone();
        let token = register(
            fd.clone(),
            10,
            Box::new(move |_, _| {
                let _ = started_tx.try_send(());
                std::thread::sleep(Duration::from_millis(300));
                finished.store(true, Ordering::SeqCst);
            }),
        )
        .unwrap();
        fd.write(1).unwrap();
        started.recv_timeout(WAIT).unwrap();
        assert!(unregister(token));
        assert!(
            done.load(Ordering::SeqCst),
            "returned while the callback ran"
        );
    }

    #[test]
    fn one_thread_serves_the_whole_process() {
        let fds: Vec<_> = (0..4).map(|_| eventfd()).collect();
        let watches: Vec<_> = fds.iter().map(|fd| watch(fd, 9)).collect();
        let threads = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == "vfio-irq-poller")
            .count();
        assert_eq!(threads, 1);
        for (token, _) in watches {
            assert!(unregister(token));
        }
    }
}
