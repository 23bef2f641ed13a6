//! The crate's one way to take its locks.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`; a poisoned lock is taken as it is. Only for the crate's own locks, each of
/// which guards data that every critical section leaves consistent (one insert, removal
/// or update at a time; callbacks run unlocked or are caught), so a panic while it was
/// held cannot have left the data half-changed, and `Drop` paths must not panic on it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
