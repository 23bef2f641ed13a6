//! One native thread per process waits on every interrupt eventfd with epoll and
//! hands each wake-up to JavaScript through a thread-safe function. It never
//! blocks the event loop or the libuv pool. Started on first use.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use napi::bindgen_prelude::FnArgs;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use vmm_sys_util::eventfd::EventFd;

/// Called with (vector, count of interrupts since the last call). Weak: it does not keep
/// the process alive unless the facade refs it.
pub type IrqCallback =
    ThreadsafeFunction<FnArgs<(u32, u32)>, (), FnArgs<(u32, u32)>, Status, false, true>;

/// One watched eventfd.
pub struct Registration {
    pub fd: Arc<EventFd>,
    pub vector: u32,
    pub callback: Arc<Mutex<IrqCallback>>,
}

struct Poller {
    epoll: OwnedFd,
    registrations: Mutex<HashMap<u64, Registration>>,
    next_token: AtomicU64,
}

static POLLER: OnceLock<std::result::Result<Arc<Poller>, String>> = OnceLock::new();

fn poller() -> std::result::Result<Arc<Poller>, String> {
    POLLER.get_or_init(start).clone()
}

fn start() -> std::result::Result<Arc<Poller>, String> {
    // SAFETY: epoll_create1 takes no pointers; it returns a new fd or -1.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is a new epoll fd that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
    let poller = Arc::new(Poller {
        epoll,
        registrations: Mutex::new(HashMap::new()),
        next_token: AtomicU64::new(1),
    });
    let for_thread = poller.clone();
    std::thread::Builder::new()
        .name("vfio-irq-poller".into())
        .spawn(move || run(&for_thread))
        .map_err(|e| format!("spawning the interrupt thread: {e}"))?;
    Ok(poller)
}

fn run(poller: &Poller) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
    loop {
        // SAFETY: `events` is a live array of 32 entries we own; the kernel writes at most 32.
        let n = unsafe { libc::epoll_wait(poller.epoll.as_raw_fd(), events.as_mut_ptr(), 32, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            log::error!(
                "interrupt thread: epoll_wait: {}",
                std::io::Error::last_os_error()
            );
            return;
        }
        for event in &events[..n as usize] {
            let token = event.u64;
            let found = {
                let regs = poller
                    .registrations
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                regs.get(&token)
                    .map(|r| (r.fd.clone(), r.vector, r.callback.clone()))
            };
            let Some((fd, vector, callback)) = found else {
                continue;
            };
            // Non-blocking eventfd: EAGAIN means another reader got there first.
            let Ok(count) = fd.read() else { continue };
            let callback = callback.lock().unwrap_or_else(|p| p.into_inner());
            callback.call(
                (vector, u32::try_from(count).unwrap_or(u32::MAX)).into(),
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        }
    }
}

/// Starts watching `registration.fd`; returns the token to unregister with.
pub fn register(registration: Registration) -> std::result::Result<u64, String> {
    let poller = poller()?;
    let token = poller.next_token.fetch_add(1, Ordering::Relaxed);
    let raw = registration.fd.as_raw_fd();
    poller
        .registrations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(token, registration);
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: both fds are open; `event` is a live struct the kernel copies.
    if unsafe {
        libc::epoll_ctl(
            poller.epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            raw,
            &mut event,
        )
    } < 0
    {
        let err = std::io::Error::last_os_error();
        poller
            .registrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        return Err(format!("epoll_ctl(ADD): {err}"));
    }
    Ok(token)
}

/// Stops watching; returns the registration (so the caller decides when its fd closes).
pub fn unregister(token: u64) -> Option<Registration> {
    let poller = poller().ok()?;
    let registration = poller
        .registrations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&token)?;
    let mut event = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: the epoll fd is open and the eventfd is still open (the registration holds it).
    unsafe {
        libc::epoll_ctl(
            poller.epoll.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            registration.fd.as_raw_fd(),
            &mut event,
        )
    };
    Some(registration)
}
