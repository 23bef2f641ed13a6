//! Which PCI devices this process holds open through VFIO.
//!
//! Writing a device's `driver/unbind` blocks in the kernel until every VFIO file of the
//! device is released. When the writer is the process that holds the device open, that
//! is never: the process deadlocks itself. So each [`VfioDevice`](crate::VfioDevice)
//! registers its PCI address here while it is open (a count, since one process may open
//! the same device twice), and [`Sysfs::bind_vfio`](crate::sysfs::Sysfs::bind_vfio) and
//! [`Sysfs::unbind_vfio`](crate::sysfs::Sysfs::unbind_vfio) refuse with
//! [`ErrorKind::Busy`](crate::ErrorKind::Busy) before writing anything.
//!
//! A bind or unbind in progress is registered too, for its duration: opening the device
//! meanwhile (from another thread) is refused with `Busy`, so the check and the writes
//! cannot be interleaved with an open.
//!
//! The registry is process-wide and keyed by address alone, whatever sysfs root a
//! [`Sysfs`](crate::sysfs::Sysfs) uses. It tolerates a poisoned lock (its updates cannot
//! be left half done), and unregistering never panics.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Result, VfioError};
use crate::sysfs::PciAddress;

/// The state of one address.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Open `VfioDevice` handles of the address.
    opens: usize,
    /// A bind or unbind of the address is writing sysfs.
    rebinding: bool,
}

/// Addresses with open handles or a rebind in progress; others have no entry.
static REGISTRY: Mutex<BTreeMap<PciAddress, Entry>> = Mutex::new(BTreeMap::new());

fn registry() -> MutexGuard<'static, BTreeMap<PciAddress, Entry>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether this process holds the device at `addr` open through VFIO: a `VfioDevice`
/// of it exists (directly, or kept alive by a `MappedRegion`, an interrupt or another
/// `Arc` holder).
pub fn is_held(addr: &PciAddress) -> bool {
    open_count(addr) > 0
}

/// How many `VfioDevice` handles of `addr` this process has open.
pub fn open_count(addr: &PciAddress) -> usize {
    registry().get(addr).map_or(0, |e| e.opens)
}

/// One open handle of a device, registered until dropped.
#[derive(Debug)]
pub(crate) struct OpenGuard {
    addr: PciAddress,
}

/// Registers an open handle of `addr`, before the device fd is obtained.
///
/// # Errors
/// `Busy` while a bind or unbind of `addr` is in progress in this process.
pub(crate) fn register_open(addr: PciAddress) -> Result<OpenGuard> {
    let mut map = registry();
    let entry = map.entry(addr).or_default();
    if entry.rebinding {
        return Err(VfioError::busy(
            "open device",
            format!(
                "{addr} is being bound or unbound by this process right now; \
                 open it after that finishes"
            ),
        ));
    }
    entry.opens = entry.opens.saturating_add(1);
    Ok(OpenGuard { addr })
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut map = registry();
        if let Some(entry) = map.get_mut(&self.addr) {
            entry.opens = entry.opens.saturating_sub(1);
            if *entry == Entry::default() {
                map.remove(&self.addr);
            }
        }
    }
}

/// A bind or unbind of a device in progress, registered until dropped.
#[derive(Debug)]
pub(crate) struct RebindGuard {
    addr: PciAddress,
}

/// Registers a bind or unbind (`op`) of `addr` that is about to write sysfs.
///
/// # Errors
/// `Busy`, with nothing registered, when this process holds `addr` open through VFIO
/// (the write would deadlock it) or another thread is binding or unbinding it.
pub(crate) fn begin_rebind(op: &'static str, addr: PciAddress) -> Result<RebindGuard> {
    let mut map = registry();
    let entry = map.entry(addr).or_default();
    if entry.opens > 0 {
        let opens = entry.opens;
        return Err(VfioError::busy(
            op,
            format!(
                "this process holds {addr} open through VFIO ({opens} device handle{}), and \
                 the kernel would block the {op} until it is released, deadlocking this process; \
                 close the Device and its MappedRegions and Interrupts first (nothing was changed)",
                if opens == 1 { "" } else { "s" }
            ),
        ));
    }
    if entry.rebinding {
        return Err(VfioError::busy(
            op,
            format!(
                "another thread of this process is binding or unbinding {addr}; \
                 retry when it has finished (nothing was changed)"
            ),
        ));
    }
    entry.rebinding = true;
    Ok(RebindGuard { addr })
}

impl Drop for RebindGuard {
    fn drop(&mut self) {
        let mut map = registry();
        if let Some(entry) = map.get_mut(&self.addr) {
            entry.rebinding = false;
            if *entry == Entry::default() {
                map.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    // Every test uses its own addresses (domain 0x4e1d): the registry is process-wide
    // and tests run in parallel.
    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn entry(a: &PciAddress) -> Option<Entry> {
        registry().get(a).copied()
    }

    #[test]
    fn opens_are_counted_per_address() {
        let a = addr("4e1d:00:01.0");
        let b = addr("4e1d:00:01.1");
        assert!(!is_held(&a));
        let first = register_open(a).unwrap();
        let second = register_open(a).unwrap();
        assert_eq!(open_count(&a), 2);
        assert!(is_held(&a) && !is_held(&b));
        drop(first);
        assert!(is_held(&a), "the second handle still holds it");
        drop(second);
        assert!(!is_held(&a));
        assert_eq!(entry(&a), None, "no entry is left behind");
    }

    #[test]
    fn rebind_is_refused_while_held_and_names_what_to_close() {
        let a = addr("4e1d:00:02.0");
        let open = register_open(a).unwrap();
        let e = begin_rebind("unbind", a).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert_eq!(e.code(), "ERR_VFIO_BUSY");
        let msg = e.to_string();
        for part in [
            "unbind",
            "4e1d:00:02.0",
            "holds",
            "close the Device",
            "MappedRegions",
            "Interrupts",
            "nothing was changed",
        ] {
            assert!(msg.contains(part), "{part:?} missing from {msg}");
        }
        assert_eq!(
            entry(&a),
            Some(Entry {
                opens: 1,
                rebinding: false
            })
        );
        drop(open);
        let rebind = begin_rebind("unbind", a).unwrap();
        drop(rebind);
        assert_eq!(entry(&a), None);
    }

    #[test]
    fn open_and_second_rebind_are_refused_during_a_rebind() {
        let a = addr("4e1d:00:03.0");
        let rebind = begin_rebind("bind", a).unwrap();
        assert_eq!(register_open(a).unwrap_err().kind(), ErrorKind::Busy);
        let e = begin_rebind("unbind", a).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert!(e.to_string().contains("another thread"), "{e}");
        assert!(!is_held(&a), "a refused open registers nothing");
        drop(rebind);
        let open = register_open(a).unwrap();
        assert!(is_held(&a));
        drop(open);
        assert_eq!(entry(&a), None);
    }

    #[test]
    fn a_poisoned_registry_still_works() {
        let a = addr("4e1d:00:04.0");
        let open = register_open(a).unwrap();
        // Poison the lock: a thread panics while holding it.
        let _ = std::thread::spawn(|| {
            let _map = REGISTRY.lock();
            panic!("poisoning the registry on purpose");
        })
        .join();
        assert!(REGISTRY.is_poisoned());
        assert!(is_held(&a));
        assert_eq!(
            begin_rebind("unbind", a).unwrap_err().kind(),
            ErrorKind::Busy
        );
        drop(open); // must not panic
        assert!(!is_held(&a));
        drop(begin_rebind("unbind", a).unwrap());
    }
}
