//! Property tests of every parser of untrusted bytes or strings in the crate: the
//! capability chain walker and the region and IOMMU info parsers (kernel answers),
//! PCI addresses and driver names (user input), and the sysfs file parsers.
//!
//! Properties: no input panics (or loops: each walk is bounded); well-formed input
//! round-trips; looping and truncated chains are errors.
//!
//! Each property runs 1,000,000 cases (`PROPTEST_CASES` overrides it, e.g. for a quick
//! run). Failures are not persisted (`failure_persistence: None`), so no run writes into
//! the source tree; a failure prints its minimal input, which belongs in a unit test.

use std::path::{Component, Path};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm};
use vfio_bindings::bindings::vfio::{
    vfio_iommu_type1_info, vfio_region_info, VFIO_IOMMU_INFO_CAPS,
    VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
};

use crate::iommu::{parse_iommu_info, IommuInfo, IovaRange};
use crate::region::{parse_region_caps, walk_cap_chain};
use crate::sysfs::address::parse_address;
use crate::sysfs::parse::{
    link_target_name, parse_driver_override, parse_group_number, parse_hex, parse_numa_node,
    validate_driver_name,
};
use crate::sysfs::PciAddress;
use crate::{
    VfioRegionInfoCap, VfioRegionInfoCapNvlink2Lnkspd, VfioRegionInfoCapNvlink2Ssatgt,
    VfioRegionInfoCapSparseMmap, VfioRegionInfoCapType, VfioRegionSparseMmapArea,
};

/// Cases per property in a full run.
const CASES: u32 = 1_000_000;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    Config {
        cases,
        failure_persistence: None,
        // Several times faster than the default ChaCha; randomness quality is not what
        // these tests need.
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    }
}

const REGION_HEADER: usize = std::mem::size_of::<vfio_region_info>();
const IOMMU_HEADER: usize = std::mem::size_of::<vfio_iommu_type1_info>();
/// The walker's bound on chain length (region.rs `MAX_CAPS`).
const MAX_CAPS: usize = 64;

// ---- Building capability chains -------------------------------------------------

/// Appends one capability (header then body) at the next multiple of `align` after
/// `gap` padding words, and links the previous one to it. Returns its offset.
fn push_cap(
    buf: &mut Vec<u8>,
    prev: Option<usize>,
    id: u16,
    version: u16,
    body: &[u8],
    gap: usize,
    align: usize,
) -> usize {
    buf.resize(buf.len() + 4 * gap, 0xa5);
    while !buf.len().is_multiple_of(align) {
        buf.push(0x5a);
    }
    let at = buf.len();
    buf.extend_from_slice(&id.to_ne_bytes());
    buf.extend_from_slice(&version.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(body);
    if let Some(p) = prev {
        buf[p + 4..p + 8].copy_from_slice(&(at as u32).to_ne_bytes());
    }
    at
}

fn link_of(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]])
}

fn set_link(buf: &mut [u8], at: usize, to: u32) {
    buf[at + 4..at + 8].copy_from_slice(&to.to_ne_bytes());
}

/// A region capability and the bytes that encode its body: `(id, version, body, cap)`.
///
/// One flat tuple (a kind, then numbers the kind takes what it needs from) rather than a
/// `prop_oneof!` of nested strategies: at a million cases per property, generating and
/// moving nested value trees is most of the time.
/// The fourth element is `None` for a capability `VfioRegionInfoCap` does not decode.
fn region_cap() -> impl Strategy<Value = (u16, u16, Vec<u8>, Option<VfioRegionInfoCap>)> {
    (0u8..6, any::<u16>(), any::<[u64; 4]>(), 0usize..=2, 6u16..).prop_map(
        |(kind, version, w, n, unknown_id)| match kind {
            0 => {
                let areas: Vec<_> = (0..n)
                    .map(|i| VfioRegionSparseMmapArea {
                        offset: w[2 * i],
                        size: w[2 * i + 1],
                    })
                    .collect();
                let mut body = (n as u32).to_ne_bytes().to_vec();
                body.extend_from_slice(&0u32.to_ne_bytes());
                for a in &areas {
                    body.extend_from_slice(&a.offset.to_ne_bytes());
                    body.extend_from_slice(&a.size.to_ne_bytes());
                }
                let cap = VfioRegionInfoCap::SparseMmap(VfioRegionInfoCapSparseMmap { areas });
                (1, version, body, Some(cap))
            }
            1 => {
                let (type_, subtype) = (w[0] as u32, (w[0] >> 32) as u32);
                let body = w[0].to_ne_bytes().to_vec();
                let cap = VfioRegionInfoCap::Type(VfioRegionInfoCapType { type_, subtype });
                (2, version, body, Some(cap))
            }
            2 => (3, version, vec![], Some(VfioRegionInfoCap::MsixMappable)),
            3 => {
                let cap =
                    VfioRegionInfoCap::Nvlink2Ssatgt(VfioRegionInfoCapNvlink2Ssatgt { tgt: w[0] });
                (4, version, w[0].to_ne_bytes().to_vec(), Some(cap))
            }
            4 => {
                let link_speed = w[0] as u32;
                let body = [link_speed.to_ne_bytes(), [0; 4]].concat();
                let cap =
                    VfioRegionInfoCap::Nvlink2Lnkspd(VfioRegionInfoCapNvlink2Lnkspd { link_speed });
                (5, version, body, Some(cap))
            }
            _ => {
                let body = w[0].to_ne_bytes()[..n * 4].to_vec();
                (unknown_id, version, body, None)
            }
        },
    )
}

/// A well-formed region-info buffer with `caps`, each after `gaps[i]` padding words.
fn region_chain(
    caps: &[(u16, u16, Vec<u8>, Option<VfioRegionInfoCap>)],
    gaps: &[usize],
    align: usize,
) -> (Vec<u8>, u32, Vec<usize>) {
    let mut buf = vec![0u8; REGION_HEADER];
    let mut offsets: Vec<usize> = Vec::new();
    for (i, (id, version, body, _)) in caps.iter().enumerate() {
        let at = push_cap(
            &mut buf,
            offsets.last().copied(),
            *id,
            *version,
            body,
            gaps.get(i).copied().unwrap_or(0),
            align,
        );
        offsets.push(at);
    }
    let first = offsets.first().map_or(0, |&o| o as u32);
    buf[12..16].copy_from_slice(&first.to_ne_bytes());
    (buf, first, offsets)
}

/// `len` bytes expanded from `seed` (splitmix64): cheap random bytes whose length
/// still shrinks. `density` 0 gives zeros, 1 sparse bits (so that many fields, links
/// among them, are 0 or small), more gives uniform bytes.
fn seeded_bytes(seed: u64, len: usize, density: u8) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let word = match density {
            0 => 0,
            1 => z & (z >> 17) & (z >> 33),
            _ => z,
        };
        out.extend_from_slice(&word.to_ne_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes that look like a chain often enough to reach deep into the walker: up to 256
/// bytes (zero, sparse or random) with up to 8 plausible links written into them
/// (small values, mostly 4-aligned at 4-aligned header positions, some not: inside
/// the header, backwards, misaligned); a `first` that is mostly small; and a
/// `min_offset` of either header size or another.
fn chain_like_bytes() -> impl Strategy<Value = (Vec<u8>, u32, usize)> {
    (
        (any::<u64>(), 0usize..=256, 0u8..3),
        any::<[u32; 8]>(),
        0usize..=8,
        prop_oneof![4 => 0u32..272, 1 => any::<u32>()],
        prop_oneof![Just(REGION_HEADER), Just(IOMMU_HEADER), 0usize..64],
    )
        .prop_map(|((seed, len, density), links, nlinks, first, min_offset)| {
            let mut buf = seeded_bytes(seed, len, density);
            for &l in &links[..nlinks] {
                let l = l as usize;
                let (mut at, mut to) = ((l >> 10) & 0xff, (l & 0x3ff) % 272);
                if l & (1 << 18) == 0 {
                    // The link field of a 4-aligned header, pointing to a 4-aligned offset.
                    (at, to) = ((at & !3) + 4, to & !3);
                }
                if at + 4 <= buf.len() {
                    buf[at..at + 4].copy_from_slice(&(to as u32).to_ne_bytes());
                }
            }
            (buf, first, min_offset)
        })
}

// ---- Building IOMMU info answers -------------------------------------------------

#[derive(Debug, Clone)]
enum IommuCap {
    Ranges(Vec<(u64, u64)>),
    DmaAvail(u32),
    Other(u16, Vec<u8>),
}

fn iommu_cap() -> impl Strategy<Value = IommuCap> {
    // Flat, as `region_cap` (and for the same reason).
    (
        0u8..3,
        any::<[u64; 4]>(),
        0usize..=2,
        prop_oneof![Just(2u16), 4u16..],
    )
        .prop_map(|(kind, w, n, other_id)| match kind {
            0 => IommuCap::Ranges((0..n).map(|i| (w[2 * i], w[2 * i + 1])).collect()),
            1 => IommuCap::DmaAvail(w[0] as u32),
            _ => IommuCap::Other(other_id, w[0].to_ne_bytes()[..n * 4].to_vec()),
        })
}

/// A well-formed `VFIO_IOMMU_GET_INFO` answer and what parsing it must give.
fn iommu_answer(
    flags: u32,
    pgsizes: u64,
    caps: &[IommuCap],
    gaps: &[usize],
) -> (Vec<u8>, IommuInfo) {
    let mut buf = vec![0u8; IOMMU_HEADER];
    buf[4..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..16].copy_from_slice(&pgsizes.to_ne_bytes());
    let mut expected = IommuInfo {
        flags,
        iova_pgsizes: pgsizes,
        ..Default::default()
    };
    let with_caps = flags & VFIO_IOMMU_INFO_CAPS != 0;
    let mut prev = None;
    for (i, cap) in caps.iter().enumerate() {
        let (id, body) = match cap {
            IommuCap::Ranges(ranges) => {
                let mut body = (ranges.len() as u32).to_ne_bytes().to_vec();
                body.extend_from_slice(&0u32.to_ne_bytes());
                for (start, end) in ranges {
                    body.extend_from_slice(&start.to_ne_bytes());
                    body.extend_from_slice(&end.to_ne_bytes());
                    if with_caps {
                        expected.iova_ranges.push(IovaRange {
                            start: *start,
                            end: *end,
                        });
                    }
                }
                (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16, body)
            }
            IommuCap::DmaAvail(n) => {
                if with_caps {
                    expected.dma_avail = Some(*n);
                }
                (
                    VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL as u16,
                    n.to_ne_bytes().to_vec(),
                )
            }
            IommuCap::Other(id, body) => (*id, body.clone()),
        };
        let at = push_cap(
            &mut buf,
            prev,
            id,
            1,
            &body,
            gaps.get(i).copied().unwrap_or(0),
            8,
        );
        if prev.is_none() {
            buf[16..20].copy_from_slice(&(at as u32).to_ne_bytes());
        }
        prev = Some(at);
    }
    (buf, expected)
}

// ---- Strings ----------------------------------------------------------------------

/// A string of length `0..=max_len` over `charset`, from 32 random bytes (byte `i`
/// picks character `i`; past 32 the bytes repeat, shifted).
fn charset_string(charset: &'static [u8], max_len: usize) -> impl Strategy<Value = String> {
    (any::<[u64; 4]>(), 0..=max_len).prop_map(move |(words, len)| {
        (0..len)
            .map(|i| {
                let b = words[(i / 8) % 4].to_le_bytes()[i % 8].wrapping_add((i / 32) as u8 * 7);
                char::from(charset[usize::from(b) % charset.len()])
            })
            .collect()
    })
}

/// Strings over the characters that matter to the string parsers (hex digits, the
/// separators of addresses and paths, whitespace, signs), plus arbitrary Unicode.
fn parser_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => charset_string(b"0123456789abcdefABCDEFxX:. \n\t+-/(", 20),
        1 => charset_string(b"0123456789abcdefghijklmnopqrstuvwxyz_.-/(", 72),
        1 => vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect()),
    ]
}

/// Names made of the characters a driver name may have, 1 to 64 long.
fn driver_name() -> impl Strategy<Value = String> {
    charset_string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-",
        64,
    )
    .prop_filter_map("empty", |s| (!s.is_empty()).then_some(s))
}

fn pci_address() -> impl Strategy<Value = PciAddress> {
    (any::<u32>(), any::<u8>(), 0u8..32, 0u8..8).prop_map(|(domain, bus, device, function)| {
        PciAddress {
            domain,
            bus,
            device,
            function,
        }
    })
}

proptest! {
    #![proptest_config(config())]

    /// The walker never panics, terminates, and whatever it accepts is a chain that
    /// moves strictly forwards through aligned, complete headers past `min_offset`.
    #[test]
    fn walk_cap_chain_accepts_only_forward_complete_chains((buf, first, min_offset) in chain_like_bytes()) {
        if let Ok(caps) = walk_cap_chain("prop", &buf, first, min_offset) {
            prop_assert!(caps.len() <= MAX_CAPS);
            prop_assert_eq!(caps.is_empty(), first == 0);
            let mut expected_at = first as usize;
            for (i, c) in caps.iter().enumerate() {
                prop_assert_eq!(c.at, expected_at);
                prop_assert!(c.at >= min_offset && c.at.is_multiple_of(4));
                prop_assert!(c.at + 8 <= buf.len());
                prop_assert_eq!(c.id, u16::from_ne_bytes([buf[c.at], buf[c.at + 1]]));
                prop_assert_eq!(c.version, u16::from_ne_bytes([buf[c.at + 2], buf[c.at + 3]]));
                let next = link_of(&buf, c.at) as usize;
                if i + 1 < caps.len() {
                    prop_assert!(next > c.at);
                } else {
                    prop_assert_eq!(next, 0);
                }
                expected_at = next;
            }
        }
    }

    /// Well-formed region capability chains parse back to what was encoded, whatever
    /// the padding between capabilities.
    #[test]
    fn region_caps_round_trip(
        caps in vec(region_cap(), 0..6),
        gaps in prop::array::uniform6(0usize..3),
        align in prop_oneof![Just(4usize), Just(8usize)],
    ) {
        let (buf, first, _) = region_chain(&caps, &gaps, align);
        let parsed = parse_region_caps(&buf, first)
            .map(|(known, others)| (known, others.iter().map(|o| (o.id, o.version)).collect()));
        let known: Vec<_> = caps.iter().filter_map(|c| c.3.clone()).collect();
        let others: Vec<_> = caps.iter().filter(|c| c.3.is_none()).map(|c| (c.0, c.1)).collect();
        prop_assert_eq!(parsed.ok(), Some((known, others)));
    }

    /// A chain whose last capability links back to itself or an earlier one is an
    /// error naming the loop (and returns: the walker is bounded).
    #[test]
    fn looping_region_chains_are_errors(
        caps in vec(region_cap(), 1..7),
        gaps in prop::array::uniform8(0usize..3),
        back in any::<prop::sample::Index>(),
    ) {
        let (mut buf, first, offsets) = region_chain(&caps, &gaps, 8);
        let last = offsets[offsets.len() - 1];
        set_link(&mut buf, last, offsets[back.index(offsets.len())] as u32);
        let parsed = parse_region_caps(&buf, first);
        prop_assert!(parsed.is_err(), "a looping chain parsed: {:?}", parsed);
        let e = parsed.unwrap_err();
        prop_assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        prop_assert!(e.to_string().contains("loop"), "{}", e);
    }

    /// Cutting a well-formed chain anywhere inside its last capability is an error
    /// saying it is truncated; cutting nothing, or only trailing padding, is not.
    #[test]
    fn truncated_region_chains_are_errors(
        caps in vec(region_cap(), 1..6),
        gaps in prop::array::uniform6(0usize..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let (buf, first, offsets) = region_chain(&caps, &gaps, 8);
        let last = offsets[offsets.len() - 1];
        // The last capability's encoded size: its header and the bytes it needs.
        // (The parser reads no body of unknown caps, and 4 of the 8 bytes of a link speed.)
        let needed = match &caps[caps.len() - 1].3 {
            None | Some(VfioRegionInfoCap::MsixMappable) => 8,
            Some(VfioRegionInfoCap::Nvlink2Lnkspd(_)) => 12,
            _ => buf.len() - last,
        };
        let len = last + cut.index(needed);
        let parsed = parse_region_caps(&buf[..len], first);
        prop_assert!(parsed.is_err(), "cut at {} of {}, parsed: {:?}", len, buf.len(), parsed);
        let e = parsed.unwrap_err();
        prop_assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        prop_assert!(e.to_string().contains("truncated"), "{}", e);
        prop_assert!(parse_region_caps(&buf[..last + needed], first).is_ok());
    }

    /// The region parser never panics on chain-like garbage, and what it accepts came
    /// from a chain the walker accepts.
    #[test]
    fn parse_region_caps_never_panics((buf, first, _) in chain_like_bytes()) {
        if let Ok((known, others)) = parse_region_caps(&buf, first) {
            let walked = walk_cap_chain("prop", &buf, first, REGION_HEADER);
            prop_assert_eq!(Some(known.len() + others.len()), walked.ok().map(|w| w.len()));
        }
    }

    /// The IOMMU info parser never panics on garbage of any length.
    #[test]
    fn parse_iommu_info_never_panics(
        (mut buf, first, _) in chain_like_bytes(),
        flags in any::<u32>(),
    ) {
        if buf.len() >= 20 {
            buf[4..8].copy_from_slice(&flags.to_ne_bytes());
            buf[16..20].copy_from_slice(&first.to_ne_bytes());
        }
        if let Ok(info) = parse_iommu_info(&buf) {
            prop_assert!(buf.len() >= 20);
            prop_assert_eq!(info.flags, u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]));
        }
    }

    /// Well-formed IOMMU info answers parse back to what was encoded; without
    /// `VFIO_IOMMU_INFO_CAPS` the capabilities are ignored. Truncating the last
    /// capability is an error.
    #[test]
    fn iommu_info_round_trips(
        flags in prop_oneof![Just(VFIO_IOMMU_INFO_CAPS | 1), any::<u32>()],
        pgsizes in any::<u64>(),
        caps in vec(iommu_cap(), 0..5),
        gaps in prop::array::uniform5(0usize..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let (buf, expected) = iommu_answer(flags, pgsizes, &caps, &gaps);
        prop_assert_eq!(parse_iommu_info(&buf).ok(), Some(expected));
        let with_caps = flags & VFIO_IOMMU_INFO_CAPS != 0;
        let known_last = matches!(caps.last(), Some(IommuCap::Ranges(_) | IommuCap::DmaAvail(_)));
        if with_caps && known_last {
            // Somewhere past the header of the answer, inside the last capability.
            let last_at = buf.len() - match caps.last() {
                Some(IommuCap::Ranges(r)) => 16 + 16 * r.len(),
                _ => 12,
            };
            let len = last_at + cut.index(buf.len() - last_at);
            prop_assert!(parse_iommu_info(&buf[..len]).is_err());
        }
        // Any answer shorter than the header is an error.
        prop_assert!(parse_iommu_info(&buf[..cut.index(20)]).is_err());
    }

    /// Address parsing never panics; whatever it accepts is plain ASCII of the
    /// expected length and reads back the same from its canonical form.
    #[test]
    fn pci_address_parse_never_panics(s in parser_string()) {
        match s.parse::<PciAddress>() {
            Ok(a) => {
                prop_assert!(s.is_ascii() && (7..=16).contains(&s.len()), "{:?}", s);
                prop_assert_eq!(a.to_string().parse::<PciAddress>().ok(), Some(a));
                let tail = format!("{:02x}:{:02x}.{:x}", a.bus, a.device, a.function);
                prop_assert!(s.to_ascii_lowercase().ends_with(&tail), "{:?} vs {}", s, tail);
                prop_assert_eq!(parse_address(&s), Some(a));
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
                prop_assert!(parse_address(&s).is_none());
            }
        }
    }

    /// Every address displays as a plain path component (`dddd:bb:dd.f`, lower-case
    /// hex) and parses back, also upper-cased, zero-padded, or in the short form.
    #[test]
    fn pci_address_round_trips(a in pci_address(), pad in 0usize..5) {
        let shown = a.to_string();
        prop_assert!(shown.bytes().all(|b| (b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) || b == b':' || b == b'.'), "{}", shown);
        prop_assert_eq!(Path::new(&shown).components().count(), 1);
        prop_assert_eq!(shown.parse::<PciAddress>().ok(), Some(a));
        prop_assert_eq!(shown.to_ascii_uppercase().parse::<PciAddress>().ok(), Some(a));
        let width = (format!("{:x}", a.domain).len().max(4) + pad).min(8);
        let padded = format!("{:0width$x}:{:02x}:{:02x}.{:x}", a.domain, a.bus, a.device, a.function);
        prop_assert_eq!(padded.parse::<PciAddress>().ok(), Some(a));
        let short = format!("{:02x}:{:02x}.{:x}", a.bus, a.device, a.function);
        let short_parsed = short.parse::<PciAddress>().ok();
        prop_assert_eq!(short_parsed, Some(PciAddress { domain: 0, ..a }));
        prop_assert_eq!(PciAddress::new(a.domain, a.bus, a.device, a.function).ok(), Some(a));
    }

    /// The sysfs id-file parser never panics and accepts only what fits; every value
    /// written the way the kernel does (and some other ways) reads back.
    #[test]
    fn sysfs_hex_files_round_trip(s in parser_string(), v in any::<u32>(), bits in prop_oneof![Just(8u32), Just(16), Just(24), Just(32)], upper in any::<bool>()) {
        if let Some(x) = parse_hex(&s, bits) {
            prop_assert!(bits == 32 || x < 1 << bits);
        }
        let v = if bits == 32 { v } else { v & ((1 << bits) - 1) };
        let width = bits as usize / 4;
        let kernel = format!("0x{v:0width$x}\n");
        prop_assert_eq!(parse_hex(&kernel, bits), Some(v));
        let other = if upper { format!(" 0X{v:X}\t") } else { format!("{v:x}") };
        prop_assert_eq!(parse_hex(&other, bits), Some(v));
        if bits < 32 {
            let too_wide = u64::from(v) | 1 << bits;
            if too_wide <= u64::from(u32::MAX) {
                prop_assert_eq!(parse_hex(&format!("0x{too_wide:x}\n"), bits), None);
            }
        }
    }

    /// `numa_node`, `driver_override` and `iommu_group` contents: no panic; the
    /// kernel's formats read back.
    #[test]
    fn sysfs_small_files_round_trip(s in parser_string(), node in any::<i32>(), group in any::<u32>(), name in driver_name()) {
        let _ = parse_numa_node(&s);
        if let Some(g) = parse_group_number(&s) {
            prop_assert!(s.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(s.trim_start_matches('0').parse::<u32>().unwrap_or(0), g);
        }
        if let Some(o) = parse_driver_override(&s) {
            prop_assert!(!o.is_empty() && o != "(null)" && o.trim() == o);
        }
        prop_assert_eq!(parse_numa_node(&format!("{node}\n")), Some((node >= 0).then_some(node)));
        prop_assert_eq!(parse_group_number(&group.to_string()), Some(group));
        prop_assert_eq!(parse_driver_override(&format!("{name}\n")), Some(name.clone()));
        prop_assert_eq!(parse_driver_override("(null)\n"), None);
        prop_assert_eq!(parse_driver_override("\n"), None);
    }

    /// Driver names: whatever is accepted is exactly one plain path component (never
    /// `..`, never a separator), so it cannot escape `<root>/bus/pci/drivers`; and the
    /// name a driver link ends in reads back.
    #[test]
    fn driver_names_stay_one_path_component(s in parser_string(), name in driver_name()) {
        if validate_driver_name(&s).is_ok() {
            let comps: Vec<_> = Path::new(&s).components().collect();
            prop_assert_eq!(comps.len(), 1, "{:?}", s);
            prop_assert!(matches!(comps[0], Component::Normal(n) if n == s.as_str()), "{:?}", s);
        }
        if name != "." && name != ".." {
            prop_assert!(validate_driver_name(&name).is_ok(), "{:?}", name);
            let target = format!("../../../bus/pci/drivers/{name}");
            prop_assert_eq!(link_target_name(Path::new(&target)), Some(name.as_str()));
        }
        let _ = link_target_name(Path::new(&s));
    }
}

/// Chains longer than the walker's bound are errors; up to it they parse. (Few inputs
/// exist, so every one is tried rather than sampled.)
#[test]
fn overlong_region_chains_are_errors() {
    for n in (MAX_CAPS - 4)..(MAX_CAPS + 4) {
        for gap in 0..2 {
            let caps: Vec<_> = (0..n)
                .map(|_| (3u16, 1u16, vec![], Some(VfioRegionInfoCap::MsixMappable)))
                .collect();
            let (buf, first, _) = region_chain(&caps, &vec![gap; n], 4);
            let parsed = parse_region_caps(&buf, first);
            assert_eq!(parsed.is_ok(), n <= MAX_CAPS, "{n} caps: {parsed:?}");
            if let Err(e) = parsed {
                assert!(e.to_string().contains("more than 64 entries"), "{e}");
            }
        }
    }
}
