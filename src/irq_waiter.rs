//! Vectors shared with worker threads: `Interrupts.shareVector()` puts a vector's
//! [`IrqWaiter`] in a process-wide registry under a token (a plain number, which
//! `postMessage` carries); a worker opens the token and waits in its own thread.
//! napi objects cannot cross threads; a number can. Tokens are never reused, so a stale
//! one cannot reach another vector.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::{ErrorKind, IrqWaiter, MAX_IRQ_WAIT};

use crate::error::{invalid, js_error, to_js};

struct Shared {
    waiter: Arc<IrqWaiter>,
    /// Whether an `InterruptWaiter` holds it: one consumer per vector.
    opened: bool,
}

static SHARED: Mutex<Option<HashMap<u64, Shared>>> = Mutex::new(None);
/// The next token; 0 is never one. Below 2^53, so that JavaScript holds it exactly.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

fn shared() -> MutexGuard<'static, Option<HashMap<u64, Shared>>> {
    // Every critical section is one map operation: a poisoned lock left it consistent.
    SHARED.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token no vector has had yet.
pub(crate) fn next_token() -> u64 {
    NEXT_TOKEN.fetch_add(1, Ordering::Relaxed)
}

/// Puts `waiter` under `token` (from [`next_token`]).
pub(crate) fn share(token: u64, waiter: Arc<IrqWaiter>) {
    shared().get_or_insert_with(HashMap::new).insert(
        token,
        Shared {
            waiter,
            opened: false,
        },
    );
}

/// Whether `token` still shares its vector (neither its Interrupts nor its waiter closed).
pub(crate) fn is_shared(token: u64) -> bool {
    shared().as_ref().is_some_and(|m| m.contains_key(&token))
}

/// Ends the share: a blocked wait wakes with `ERR_VFIO_CLOSED`, and so does every later call.
pub(crate) fn revoke(token: u64) {
    let entry = shared().as_mut().and_then(|m| m.remove(&token));
    if let Some(entry) = entry {
        entry.waiter.cancel();
    }
}

/// The token `value` names, or why it cannot be one.
fn token(op: &str, value: f64) -> Result<u64> {
    let issued = NEXT_TOKEN.load(Ordering::Relaxed);
    if value.fract() == 0.0 && value >= 1.0 && value < issued as f64 {
        return Ok(value as u64);
    }
    Err(invalid(
        op,
        &format!(
            "{value} is not a token interrupts.shareVector() gave (tokens are positive \
             integers, handed over as they are, e.g. by postMessage)"
        ),
    ))
}

fn not_shared(op: &str, token: u64) -> Error {
    js_error(
        ErrorKind::Closed.code(),
        &format!(
            "{op}: token {token} no longer shares a vector: its Interrupts (or device) closed, or \
             its waiter did; share the vector again for a new token"
        ),
        None,
        Some(op),
        None,
    )
}

/// Takes the vector of `token` for the calling thread's waiter; returns the vector.
#[napi]
pub fn interrupt_waiter_open(token: f64) -> Result<u32> {
    const OP: &str = "InterruptWaiter.open";
    let t = self::token(OP, token)?;
    let mut map = shared();
    let Some(entry) = map.as_mut().and_then(|m| m.get_mut(&t)) else {
        return Err(not_shared(OP, t));
    };
    if entry.opened {
        return Err(to_js(vfio_ioctls::VfioError::busy(
            OP,
            format!(
                "token {t} (vector {}) is open in another InterruptWaiter: one waiter reads a \
                 vector; close that one first, or share another vector",
                entry.waiter.vector()
            ),
        )));
    }
    entry.opened = true;
    Ok(entry.waiter.vector())
}

/// Blocks the calling thread until the vector fires or `timeout_ms` passes (at most
/// 60000); the count since the last wait, 0 on timeout.
/// A hand-written callback (`fastAccessors()`): napi-rs's glue costs more than a wait's syscalls.
pub(crate) fn interrupt_waiter_wait([token, timeout_ms]: [f64; 2]) -> Result<u32> {
    const OP: &str = "InterruptWaiter.wait";
    let cap = MAX_IRQ_WAIT.as_millis() as f64;
    if !(0.0..=cap).contains(&timeout_ms) {
        return Err(invalid(
            OP,
            &format!(
                "timeoutMs {timeout_ms} must be from 0 to {cap} (the cap keeps a thread from \
                 blocking for ever): wait in a loop for longer"
            ),
        ));
    }
    let t = self::token(OP, token)?;
    let waiter = {
        let map = shared();
        match map.as_ref().and_then(|m| m.get(&t)) {
            Some(e) if e.opened => e.waiter.clone(),
            Some(_) => {
                return Err(invalid(
                    OP,
                    &format!("token {t} is not open: InterruptWaiter.open(token) first"),
                ))
            }
            None => return Err(not_shared(OP, t)),
        }
    };
    // Whole microseconds, rounded up: the wait never ends before the timeout.
    let timeout = Duration::from_micros((timeout_ms * 1000.0).ceil() as u64);
    waiter.wait(timeout).map_err(to_js)
}

/// Ends the share of `token` (waking a wait on it); idempotent. The vector stays off
/// the epoll thread until its Interrupts closes: share it again for another waiter.
#[napi]
pub fn interrupt_waiter_close(token: f64) -> Result<()> {
    revoke(self::token("InterruptWaiter.close", token)?);
    Ok(())
}
