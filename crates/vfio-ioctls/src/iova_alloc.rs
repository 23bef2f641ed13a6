//! Choosing an IOVA for a new DMA mapping: the lowest aligned address inside the
//! IOMMU's usable ranges, below an optional device limit, clear of every mapping.
//!
//! Pure: the container calls [`lowest_free`] with its table under its lock, so the
//! choice and the `MAP_DMA` that follows cannot race another allocation.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::error::VfioError;
use crate::iommu::IovaRange;

/// What a new mapping needs of its IOVA.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct IovaRequest {
    /// Bytes to map; non-zero.
    pub size: u64,
    /// The IOVA is a multiple of this power of two.
    pub align: u64,
    /// The highest address the device can reach (its DMA mask): the mapping's last byte
    /// is at most this.
    pub limit: u64,
}

/// A container's DMA mappings (IOVA → size, none overlapping), and a span of IOVAs they
/// cover end to end. The allocator jumps over that span instead of walking its mappings
/// one by one: buffers allocated lowest first lie back to back, and without the jump
/// each allocation walked all of them (quadratic over a driver's many buffers).
#[derive(Debug, Default)]
pub(crate) struct IovaMappings {
    map: BTreeMap<u64, u64>,
    /// Every IOVA in it lies inside a mapping (empty when `start == end`). Its ends are
    /// always ends of mappings, so a mapping lies wholly inside it or wholly outside.
    covered: Range<u64>,
}

impl IovaMappings {
    /// The size of the mapping at `iova`.
    pub(crate) fn get(&self, iova: u64) -> Option<u64> {
        self.map.get(&iova).copied()
    }

    /// How many mappings there are.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The mappings as `(iova, size)`, by IOVA.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&iova, &size)| (iova, size))
    }

    /// The mapping that starts highest below `end` (the only one that can overlap a range
    /// ending there and starting above the mappings before it).
    pub(crate) fn last_below(&self, end: u64) -> Option<(u64, u64)> {
        self.map
            .range(..end)
            .next_back()
            .map(|(&iova, &size)| (iova, size))
    }

    /// Records a mapping, which overlaps none (the caller checked).
    pub(crate) fn insert(&mut self, iova: u64, size: u64) {
        self.map.insert(iova, size);
        let end = iova.saturating_add(size);
        if self.covered.is_empty() || (iova < self.covered.start && end != self.covered.start) {
            // A span of its own: the lowest mappings are the ones allocation walks over.
            self.covered = iova..end;
        } else if end == self.covered.start {
            self.covered.start = iova;
        } else if iova != self.covered.end {
            return;
        }
        // The span may now reach mappings that were already there.
        while let Some(&next) = self.map.get(&self.covered.end) {
            self.covered.end = self.covered.end.saturating_add(next);
        }
    }

    /// Forgets the mapping at `iova`; returns its size.
    pub(crate) fn remove(&mut self, iova: u64) -> Option<u64> {
        let size = self.map.remove(&iova)?;
        if self.covered.contains(&iova) {
            // What is left on either side is still covered: keep the lower part, the one
            // allocation reaches first, unless it is empty.
            let end = iova.saturating_add(size);
            self.covered = if iova > self.covered.start {
                self.covered.start..iova
            } else {
                end..self.covered.end
            };
        }
        Some(size)
    }

    /// Forgets every mapping.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.covered = 0..0;
    }
}

/// The whole 64-bit space, for a kernel that reports no usable ranges (before 5.4).
const EVERYWHERE: [IovaRange; 1] = [IovaRange {
    start: 0,
    end: u64::MAX,
}];

/// The lowest IOVA that satisfies `request` within `ranges` (all of the space when empty)
/// and overlaps none of `mappings` (IOVA → size, not overlapping each other); `None`
/// when there is no such IOVA.
pub(crate) fn lowest_free(
    ranges: &[IovaRange],
    mappings: &IovaMappings,
    request: IovaRequest,
) -> Option<u64> {
    let IovaRequest { size, align, limit } = request;
    if size == 0 || !align.is_power_of_two() {
        return None;
    }
    let mut ranges = if ranges.is_empty() {
        EVERYWHERE.to_vec()
    } else {
        ranges.to_vec()
    };
    ranges.sort_by_key(|r| r.start);
    ranges
        .iter()
        .filter_map(|r| lowest_in_range(r.start, r.end.min(limit), mappings, size, align))
        .next()
}

/// The lowest fit in `[start, last]`: one walk up the mappings from the candidate,
/// moving it past each one in the way until a gap fits (a tree descent per mapping in
/// the way, as before, made allocating next to many buffers quadratic in tree lookups),
/// and past the covered span at once when the candidate lands in it.
fn lowest_in_range(
    start: u64,
    last: u64,
    mappings: &IovaMappings,
    size: u64,
    align: u64,
) -> Option<u64> {
    let covered = &mappings.covered;
    let mut candidate = align_up(start, align)?;
    let fits = |candidate: u64| candidate.checked_add(size - 1).filter(|&l| l <= last);
    // At most two walks: the candidate only grows, so it enters the span once.
    'walk: loop {
        if covered.contains(&candidate) {
            candidate = align_up(covered.end, align)?;
        }
        // Mappings do not overlap, so of those starting below the candidate only the
        // highest can reach into it: the walk starts there.
        let from = mappings
            .last_below(candidate)
            .map_or(candidate, |(iova, _)| iova);
        for (&iova, &len) in mappings.map.range(from..) {
            let candidate_last = fits(candidate)?;
            if iova > candidate_last {
                return Some(candidate);
            }
            // In the way (or inside the alignment gap before the candidate): move past it.
            let end = iova.saturating_add(len);
            if end > candidate {
                candidate = align_up(end, align)?;
                if covered.contains(&candidate) {
                    continue 'walk;
                }
            }
        }
        return fits(candidate).map(|_| candidate);
    }
}

/// `value` rounded up to a multiple of the power of two `align`; `None` past 2^64.
fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// The error for a request no free IOVA satisfies: what was asked, where it was looked
/// for, and what to change.
pub(crate) fn no_space(
    op: &'static str,
    request: IovaRequest,
    ranges: &[IovaRange],
    mappings: usize,
) -> VfioError {
    let IovaRequest { size, align, limit } = request;
    let usable = if ranges.is_empty() {
        "the whole 64-bit space (the kernel reports no ranges)".to_string()
    } else {
        ranges
            .iter()
            .map(|r| format!("[{:#x}, {:#x}]", r.start, r.end))
            .collect::<Vec<_>>()
            .join(", ")
    };
    VfioError::out_of_range(
        op,
        format!(
            "no free IOVA for size {size:#x} aligned to {align:#x} with its last byte at most \
             {limit:#x} (dmaMask) in the usable ranges {usable} beside the {mappings} current \
             mappings (dmaMappings()): unmap buffers, allocate less, or relax align or dmaMask"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::assert_mentions;
    use crate::ioctls::fake::X86_IOVA_RANGES;
    use proptest::prelude::*;

    const P: u64 = 0x1000;

    fn r(start: u64, end: u64) -> IovaRange {
        IovaRange { start, end }
    }

    fn req(size: u64, align: u64, limit: u64) -> IovaRequest {
        IovaRequest { size, align, limit }
    }

    /// [`lowest_free`] over these mappings, recorded in IOVA order.
    fn lowest(ranges: &[IovaRange], used: &BTreeMap<u64, u64>, q: IovaRequest) -> Option<u64> {
        let mut mappings = IovaMappings::default();
        for (&iova, &size) in used {
            mappings.insert(iova, size);
        }
        lowest_free(ranges, &mappings, q)
    }

    /// The usual x86 answer.
    fn x86() -> Vec<IovaRange> {
        X86_IOVA_RANGES.iter().map(|&(s, e)| r(s, e)).collect()
    }

    #[test]
    fn the_first_fit_is_the_lowest_aligned_address() {
        let none = BTreeMap::new();
        assert_eq!(lowest(&x86(), &none, req(P, P, u64::MAX)), Some(0));
        assert_eq!(
            lowest(&[r(0x1234, 0xffff_ffff)], &none, req(P, P, u64::MAX)),
            Some(0x2000),
            "a range start is rounded up to the alignment"
        );
        let used = BTreeMap::from([(0, P), (P, 2 * P), (5 * P, P)]);
        assert_eq!(lowest(&x86(), &used, req(P, P, u64::MAX)), Some(3 * P));
        assert_eq!(lowest(&x86(), &used, req(2 * P, P, u64::MAX)), Some(3 * P));
        assert_eq!(
            lowest(&x86(), &used, req(3 * P, P, u64::MAX)),
            Some(6 * P),
            "the gap at 3..5 is too small"
        );
        assert_eq!(
            lowest(&x86(), &used, req(P, 0x20_0000, u64::MAX)),
            Some(0x20_0000)
        );
    }

    #[test]
    fn buffers_allocated_back_to_back_form_one_span_that_allocation_jumps() {
        let mut m = IovaMappings::default();
        for _ in 0..1000 {
            let iova = lowest_free(&x86(), &m, req(P, P, u64::MAX)).unwrap();
            m.insert(iova, P);
        }
        assert_eq!(m.covered, 0..1000 * P);
        // Freeing one in the middle keeps the part below it; the hole is found first.
        assert_eq!(m.remove(500 * P), Some(P));
        assert_eq!(m.covered, 0..500 * P);
        assert_eq!(lowest_free(&x86(), &m, req(P, P, u64::MAX)), Some(500 * P));
        assert_eq!(
            lowest_free(&x86(), &m, req(2 * P, P, u64::MAX)),
            Some(1000 * P)
        );
        m.insert(500 * P, P);
        assert_eq!(
            m.covered,
            0..1000 * P,
            "refilled, the span reaches the rest again"
        );
        m.clear();
        assert!(m.covered.is_empty() && m.len() == 0);
    }

    #[test]
    fn the_msi_window_is_skipped_and_the_mask_is_honoured() {
        let below_window = BTreeMap::from([(0, 0xfee0_0000)]);
        assert_eq!(
            lowest(&x86(), &below_window, req(P, P, u64::MAX)),
            Some(0xfef0_0000)
        );
        // A 32-bit device gets what is left under 4 GiB.
        assert_eq!(
            lowest(&x86(), &below_window, req(P, P, 0xffff_ffff)),
            Some(0xfef0_0000)
        );
        // Nothing under 4 GiB fits 32 MiB there, so a 32-bit device gets none.
        assert_eq!(
            lowest(&x86(), &below_window, req(0x200_0000, P, 0xffff_ffff)),
            None
        );
        assert_eq!(
            lowest(&x86(), &below_window, req(0x200_0000, P, u64::MAX)),
            Some(0xfef0_0000),
            "without the mask it may cross 4 GiB"
        );
        // A mask below the size leaves no room at all.
        assert_eq!(lowest(&x86(), &BTreeMap::new(), req(2 * P, P, P - 1)), None);
        assert_eq!(lowest(&x86(), &BTreeMap::new(), req(P, P, P - 1)), Some(0));
    }

    #[test]
    fn no_ranges_mean_the_whole_space_and_the_top_does_not_overflow() {
        let used = BTreeMap::from([(0, u64::MAX - P + 1)]);
        assert_eq!(
            lowest(&[], &used, req(P, P, u64::MAX)),
            Some(u64::MAX - P + 1)
        );
        let full = BTreeMap::from([(0, u64::MAX - P + 1), (u64::MAX - P + 1, P - 1)]);
        assert_eq!(lowest(&[], &full, req(P, P, u64::MAX)), None);
        assert_eq!(
            lowest(
                &[r(u64::MAX - P + 2, u64::MAX)],
                &BTreeMap::new(),
                req(P, P, u64::MAX)
            ),
            None,
            "aligning past the top is no fit"
        );
        assert_eq!(lowest(&[], &BTreeMap::new(), req(0, P, u64::MAX)), None);
        assert_eq!(lowest(&[], &BTreeMap::new(), req(P, 3, u64::MAX)), None);
    }

    #[test]
    fn ranges_are_tried_lowest_first_whatever_their_order() {
        let ranges = [r(0x10_0000, 0x1f_ffff), r(0, 0xfff)];
        assert_eq!(
            lowest(&ranges, &BTreeMap::new(), req(P, P, u64::MAX)),
            Some(0)
        );
        assert_eq!(
            lowest(&ranges, &BTreeMap::new(), req(2 * P, P, u64::MAX)),
            Some(0x10_0000)
        );
    }

    #[test]
    fn the_error_names_what_was_asked_and_where() {
        let e = no_space(
            "allocate_dma",
            req(0x2000, 0x20_0000, 0xffff_ffff),
            &x86(),
            3,
        );
        assert_eq!(e.code(), "ERR_VFIO_OUT_OF_RANGE");
        assert_mentions(
            &e,
            &[
                "size 0x2000",
                "aligned to 0x200000",
                "at most 0xffffffff",
                "[0x0, 0xfedfffff], [0xfef00000, 0x7fffffffff]",
                "3 current mappings",
                "relax align or dmaMask",
            ],
        );
        assert!(no_space("a", req(P, P, 1), &[], 0)
            .to_string()
            .contains("reports no ranges"));
    }

    /// Disjoint runs `(start, length)` in pages, sorted, from gaps and lengths.
    fn runs(gaps: u64, lengths: u64, most: usize) -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0..gaps, 1..lengths), 0..most).prop_map(|parts| {
            let mut at = 0;
            parts
                .into_iter()
                .map(|(gap, len)| {
                    let start = at + gap;
                    at = start + len;
                    (start * P, len * P)
                })
                .collect()
        })
    }

    /// Usable ranges (inclusive) from runs.
    fn ranges_strategy() -> impl Strategy<Value = Vec<IovaRange>> {
        runs(8, 24, 4).prop_map(|rs| rs.into_iter().map(|(s, n)| r(s, s + n - 1)).collect())
    }

    /// Mappings (IOVA → size) from runs.
    fn mappings_strategy() -> impl Strategy<Value = BTreeMap<u64, u64>> {
        runs(6, 6, 8).prop_map(|rs| rs.into_iter().collect())
    }

    /// Whether `iova` satisfies everything, checked the slow way.
    fn fits(ranges: &[IovaRange], used: &BTreeMap<u64, u64>, q: IovaRequest, iova: u64) -> bool {
        let last = iova + q.size - 1;
        let inside = ranges.is_empty() || ranges.iter().any(|r| r.start <= iova && last <= r.end);
        let clear = used.iter().all(|(&at, &len)| at + len <= iova || last < at);
        inside && clear && iova.is_multiple_of(q.align) && last <= q.limit
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn the_choice_fits_and_nothing_lower_does(
            ranges in ranges_strategy(),
            used in mappings_strategy(),
            pages in 1u64..8,
            align_shift in 0u32..4,
            limit_pages in prop::option::of(1u64..160),
        ) {
            let q = req(pages * P, P << align_shift, limit_pages.map_or(u64::MAX, |l| l * P - 1));
            let got = lowest(&ranges, &used, q);
            // Below 160 pages every answer is checked against all candidates; with no
            // ranges the space is unbounded, so the top of the search is the mappings' end.
            let top = 200 * P;
            let expected = (0..top).step_by(P as usize).find(|&iova| fits(&ranges, &used, q, iova));
            match got {
                Some(iova) => {
                    prop_assert!(fits(&ranges, &used, q, iova), "{:#x} does not fit", iova);
                    // The lowest: the first fit below `top`, or past it when none is below.
                    match expected {
                        Some(e) => prop_assert_eq!(iova, e),
                        None => prop_assert!(iova >= top, "{:#x} was missed by the slow search", iova),
                    }
                }
                None => prop_assert_eq!(expected, None),
            }
        }

        #[test]
        fn the_covered_span_changes_no_choice(
            ranges in ranges_strategy(),
            (shuffled, keep) in runs(3, 4, 16).prop_flat_map(|rs| {
                let n = rs.len();
                (Just(rs).prop_shuffle(), prop::collection::vec(any::<bool>(), n))
            }),
            pages in 1u64..6,
            align_shift in 0u32..3,
        ) {
            // Mappings recorded in any order, some forgotten again in any order.
            let mut mappings = IovaMappings::default();
            for &(iova, size) in &shuffled {
                mappings.insert(iova, size);
            }
            let mut used = BTreeMap::new();
            for (&(iova, size), &kept) in shuffled.iter().zip(&keep) {
                if kept {
                    used.insert(iova, size);
                } else {
                    prop_assert_eq!(mappings.remove(iova), Some(size));
                }
            }
            let covered = mappings.covered.clone();
            for page in (covered.start..covered.end).step_by(P as usize) {
                prop_assert!(
                    used.iter().any(|(&at, &len)| at <= page && page < at + len),
                    "{:#x} in the covered span {:x?} is not mapped", page, covered
                );
            }
            let q = req(pages * P, P << align_shift, u64::MAX);
            prop_assert_eq!(lowest_free(&ranges, &mappings, q), lowest(&ranges, &used, q));
            prop_assert_eq!(mappings.iter().collect::<Vec<_>>(), used.into_iter().collect::<Vec<_>>());
        }
    }
}
