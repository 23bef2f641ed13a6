//! Memory barriers for drivers: the ordering between writes to DMA memory (queue entries,
//! descriptors) and the MMIO write that tells the device to look (a doorbell), and
//! between a device's completion in DMA memory and what the driver reads after it.
//!
//! The names and strengths follow the Linux kernel's:
//!
//! | here | x86-64 | aarch64 | orders |
//! |---|---|---|---|
//! | [`mb`] | `mfence` | `dsb sy` | all earlier loads and stores before all later ones |
//! | [`rmb`] | `lfence` | `dsb ld` | earlier loads before later loads |
//! | [`wmb`] | `sfence` | `dsb st` | earlier stores before later stores |
//! | [`dma_rmb`] | compiler only | `dmb oshld` | loads of DMA memory (e.g. a completion's phase bit before its payload) |
//! | [`dma_wmb`] | compiler only | `dmb oshst` | stores to DMA memory (e.g. an entry before its valid bit) |
//!
//! [`MappedRegion`](crate::MappedRegion)'s accessors order themselves as Linux's
//! `writel`/`readl` do: each MMIO write comes after every earlier store to memory (so a
//! doorbell needs no barrier after the queue entry written before it), and each MMIO
//! read comes before every later load (so data read after a status register was read is
//! not older than it). Other architectures fall back to a sequentially consistent fence.
//!
//! ```
//! use vfio_ioctls::barrier;
//!
//! barrier::dma_wmb(); // the entry's fields, then its valid bit
//! barrier::wmb(); // stores before a store to write-combining memory
//! barrier::rmb();
//! barrier::mb();
//! ```

#[cfg(target_arch = "x86_64")]
use std::sync::atomic::compiler_fence;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
use std::sync::atomic::fence;
#[cfg(not(target_arch = "aarch64"))]
use std::sync::atomic::Ordering;

/// A full barrier: every load and store before it completes before any after it.
#[inline]
pub fn mb() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `mfence` only orders memory accesses; it reads and writes no memory.
    unsafe {
        std::arch::asm!("mfence", options(nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dsb sy` only waits for memory accesses to complete; it touches no memory.
    unsafe {
        std::arch::asm!("dsb sy", options(nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fence(Ordering::SeqCst);
}

/// A read barrier: loads before it complete before loads after it.
#[inline]
pub fn rmb() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `lfence` only orders instructions and loads; it touches no memory.
    unsafe {
        std::arch::asm!("lfence", options(nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dsb ld` only waits for earlier loads to complete; it touches no memory.
    unsafe {
        std::arch::asm!("dsb ld", options(nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fence(Ordering::SeqCst);
}

/// A write barrier: stores before it are visible before stores after it, also to
/// write-combining and device memory.
#[inline]
pub fn wmb() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` only orders stores; it touches no memory.
    unsafe {
        std::arch::asm!("sfence", options(nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dsb st` only waits for earlier stores to complete; it touches no memory.
    unsafe {
        std::arch::asm!("dsb st", options(nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fence(Ordering::SeqCst);
}

/// Orders loads of memory shared with a device (coherent DMA memory): x86's loads are
/// already ordered, so only the compiler is held back there.
#[inline]
pub fn dma_rmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dmb oshld` only orders loads in the outer shareable domain; no memory access.
    unsafe {
        std::arch::asm!("dmb oshld", options(nostack, preserves_flags))
    };
    #[cfg(target_arch = "x86_64")]
    compiler_fence(Ordering::SeqCst);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fence(Ordering::SeqCst);
}

/// Orders stores to memory shared with a device (coherent DMA memory): x86's stores are
/// already ordered, so only the compiler is held back there.
#[inline]
pub fn dma_wmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dmb oshst` only orders stores in the outer shareable domain; no memory access.
    unsafe {
        std::arch::asm!("dmb oshst", options(nostack, preserves_flags))
    };
    #[cfg(target_arch = "x86_64")]
    compiler_fence(Ordering::SeqCst);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::sync::Arc;

    /// Message passing through plain relaxed stores: with `wmb` between the payload and
    /// the flag on the writer and `rmb` between the flag and the payload on the reader,
    /// a reader that sees the flag sees the payload (on x86 and aarch64 hardware).
    #[test]
    fn a_flag_seen_after_rmb_comes_with_the_payload_written_before_wmb() {
        let payload = Arc::new(AtomicU64::new(0));
        let flag = Arc::new(AtomicU32::new(0));
        let rounds = 2_000u64;
        let (p, f) = (payload.clone(), flag.clone());
        let writer = std::thread::spawn(move || {
            for i in 1..=rounds {
                while f.load(Ordering::Relaxed) != 0 {
                    std::thread::yield_now(); // two cores shared with builds: do not spin
                }
                p.store(i, Ordering::Relaxed);
                wmb();
                f.store(1, Ordering::Relaxed);
            }
        });
        for i in 1..=rounds {
            while flag.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            rmb();
            assert_eq!(payload.load(Ordering::Relaxed), i, "round {i}");
            mb();
            dma_rmb();
            dma_wmb();
            flag.store(0, Ordering::Relaxed);
        }
        assert!(writer.join().is_ok());
    }
}
