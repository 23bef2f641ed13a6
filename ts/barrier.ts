/**
 * Memory barriers for drivers, as Linux names them. What needs one:
 *
 * - A queue entry written through `dma.view` (or `dma.write*`) and then a doorbell
 *   written with `bar.writeU32`: **no barrier needed**. Every MMIO write of a
 *   `MappedRegion` comes after all earlier stores to memory, as Linux's `writel` does
 *   (x86-64: stores are ordered; aarch64: `dmb oshst` before the write).
 * - A status register read with `bar.readU32` and then DMA memory read: **none needed**;
 *   every MMIO read comes before later loads (aarch64: `dmb oshld` after the read).
 * - A completion entry in DMA memory whose phase or valid bit is read before the rest of
 *   it: call {@link dmaRmb} between the two reads (x86-64: a compiler barrier only,
 *   which the native call already is; aarch64: `dmb oshld`).
 * - An entry's fields, then its valid bit, both in DMA memory the device polls: call
 *   {@link dmaWmb} between the two writes.
 * - Write-combining or non-temporal stores, or anything else: {@link wmb}, {@link rmb},
 *   {@link mb} (x86-64 `sfence`/`lfence`/`mfence`; aarch64 `dsb st`/`dsb ld`/`dsb sy`).
 *
 * JavaScript does not reorder the memory accesses of one thread across a call into the
 * addon, so a barrier is where the native call is.
 * @module
 */
import { native } from './native'

/** A full barrier: every load and store before it completes before any after it. */
export function mb(): void {
  native().mb()
}

/** A read barrier: loads before it complete before loads after it. */
export function rmb(): void {
  native().rmb()
}

/** A write barrier: stores before it are visible before stores after it, also to device memory. */
export function wmb(): void {
  native().wmb()
}

/** Orders loads of DMA memory: a completion's phase bit before its payload. */
export function dmaRmb(): void {
  native().dmaRmb()
}

/** Orders stores to DMA memory: an entry's fields before its valid bit. */
export function dmaWmb(): void {
  native().dmaWmb()
}
