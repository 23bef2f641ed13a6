//! What the Type1 IOMMU reports about itself (`VFIO_IOMMU_GET_INFO`).

use vfio_bindings::bindings::vfio::*;

use crate::error::{Result, VfioError};
use crate::region::walk_cap_chain;

/// A range of IOVAs the IOMMU can map, inclusive at both ends.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First valid IOVA.
    pub start: u64,
    /// Last valid IOVA.
    pub end: u64,
}

/// The IOMMU's page sizes and capabilities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuInfo {
    /// `VFIO_IOMMU_INFO_*` flags.
    pub flags: u32,
    /// Bitmap of supported page sizes.
    pub iova_pgsizes: u64,
    /// Usable IOVA ranges (`VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`), empty if not reported.
    pub iova_ranges: Vec<IovaRange>,
    /// How many more DMA mappings are allowed (`VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`).
    pub dma_avail: Option<u32>,
}

/// Checks that `[iova, end)` lies inside one of the usable `ranges` (none: no check).
/// A range that falls in a gap between them names the gap: on x86 the gap at
/// `0xfee00000` is the MSI window, which no device can reach by DMA.
///
/// # Errors
/// `InvalidArgument` naming the reserved gap or the usable ranges.
pub(crate) fn check_iova_ranges(
    op: &'static str,
    iova: u64,
    end: u64,
    ranges: &[IovaRange],
) -> Result<()> {
    // An empty range (`end <= iova`) is refused earlier by the callers; it fits anywhere.
    let Some(last) = end.checked_sub(1).filter(|&last| last >= iova) else {
        return Ok(());
    };
    if ranges.is_empty() || ranges.iter().any(|r| r.start <= iova && last <= r.end) {
        return Ok(());
    }
    let gap = ranges.windows(2).find_map(|w| {
        let (gap_start, gap_end) = (w[0].end.checked_add(1)?, w[1].start.checked_sub(1)?);
        (iova <= gap_end && gap_start <= last).then_some((gap_start, gap_end))
    });
    let usable = ranges
        .iter()
        .map(|r| format!("[{:#x}, {:#x}]", r.start, r.end))
        .collect::<Vec<_>>()
        .join(", ");
    let why = match gap {
        Some((s, e)) if s <= 0xfee0_0000 && 0xfee0_0000 <= e => {
            format!("it overlaps the reserved range [{s:#x}, {e:#x}] (the MSI window)")
        }
        Some((s, e)) => format!("it overlaps the reserved range [{s:#x}, {e:#x}]"),
        None => "it lies outside them".to_string(),
    };
    Err(VfioError::invalid(
        op,
        format!(
            "[{iova:#x}, {end:#x}) is not usable: {why}; the IOMMU's usable IOVA ranges are {usable} (iommuInfo().iovaRanges)"
        ),
    ))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        buf.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        buf.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Parses the full `VFIO_IOMMU_GET_INFO` buffer.
pub(crate) fn parse_iommu_info(buf: &[u8]) -> Result<IommuInfo> {
    const OP: &str = "VFIO_IOMMU_GET_INFO";
    let short = || VfioError::invalid(OP, format!("answer of {} bytes is truncated", buf.len()));
    let flags = u32_at(buf, 4).ok_or_else(short)?;
    let iova_pgsizes = u64_at(buf, 8).ok_or_else(short)?;
    let cap_offset = u32_at(buf, 16).ok_or_else(short)?;
    let mut info = IommuInfo {
        flags,
        iova_pgsizes,
        ..Default::default()
    };
    if flags & VFIO_IOMMU_INFO_CAPS == 0 {
        return Ok(info);
    }
    for cap in walk_cap_chain(
        OP,
        buf,
        cap_offset,
        std::mem::size_of::<vfio_iommu_type1_info>(),
    )? {
        let body = cap.at + 8;
        match u32::from(cap.id) {
            VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                let n = u32_at(buf, body).ok_or_else(short)? as usize;
                if n.checked_mul(16)
                    .and_then(|x| x.checked_add(body + 8))
                    .is_none_or(|end| end > buf.len())
                {
                    return Err(short());
                }
                for i in 0..n {
                    let at = body + 8 + i * 16;
                    let (Some(start), Some(end)) = (u64_at(buf, at), u64_at(buf, at + 8)) else {
                        return Err(short());
                    };
                    info.iova_ranges.push(IovaRange { start, end });
                }
            }
            VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL => {
                info.dma_avail = Some(u32_at(buf, body).ok_or_else(short)?)
            }
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_dma_avail() {
        let mut buf = vec![0u8; 24];
        buf[4..8].copy_from_slice(&(VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS).to_ne_bytes());
        buf[8..16].copy_from_slice(&0x4000_1000u64.to_ne_bytes());
        buf[16..20].copy_from_slice(&24u32.to_ne_bytes());
        // IOVA range cap at 24, next at 64.
        buf.extend_from_slice(&1u16.to_ne_bytes());
        buf.extend_from_slice(&1u16.to_ne_bytes());
        buf.extend_from_slice(&64u32.to_ne_bytes());
        buf.extend_from_slice(&2u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&0u64.to_ne_bytes());
        buf.extend_from_slice(&0xfedf_ffffu64.to_ne_bytes());
        // (only one range fits before 64: shorten to 1)
        buf[32..36].copy_from_slice(&1u32.to_ne_bytes());
        buf.extend_from_slice(&[0u8; 8]);
        assert_eq!(buf.len(), 64);
        buf.extend_from_slice(&3u16.to_ne_bytes());
        buf.extend_from_slice(&1u16.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&65535u32.to_ne_bytes());
        let info = parse_iommu_info(&buf).unwrap();
        assert_eq!(info.iova_pgsizes, 0x4000_1000);
        assert_eq!(
            info.iova_ranges,
            vec![IovaRange {
                start: 0,
                end: 0xfedf_ffff
            }]
        );
        assert_eq!(info.dma_avail, Some(65535));
    }

    #[test]
    fn truncated_range_list_is_an_error() {
        let mut buf = vec![0u8; 24];
        buf[4..8].copy_from_slice(&VFIO_IOMMU_INFO_CAPS.to_ne_bytes());
        buf[16..20].copy_from_slice(&24u32.to_ne_bytes());
        buf.extend_from_slice(&1u16.to_ne_bytes());
        buf.extend_from_slice(&1u16.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&1000u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        assert!(parse_iommu_info(&buf).is_err());
    }

    #[test]
    fn iova_checks_name_the_msi_window() {
        let ranges = [
            IovaRange {
                start: 0,
                end: 0xfedf_ffff,
            },
            IovaRange {
                start: 0xfef0_0000,
                end: 0x7f_ffff_ffff,
            },
        ];
        let ok = |iova: u64, size: u64| check_iova_ranges("m", iova, iova + size, &ranges);
        assert!(ok(0x10_0000, 0x1000).is_ok());
        assert!(ok(0xfedf_f000, 0x1000).is_ok());
        assert!(ok(0xfef0_0000, 0x1000).is_ok());
        let e = ok(0xfee0_0000, 0x1000).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        let msg = e.to_string();
        assert!(
            msg.contains("[0xfee00000, 0xfeefffff]") && msg.contains("MSI window"),
            "{msg}"
        );
        // Straddling the end of a usable range names the gap too.
        assert!(ok(0xfedf_f000, 0x2000)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        let e = ok(0x80_0000_0000, 0x1000).unwrap_err().to_string();
        assert!(e.contains("outside") && e.contains("iovaRanges"), "{e}");
        assert!(check_iova_ranges("m", 0xfee0_0000, 0xfee0_1000, &[]).is_ok());
        assert!(
            check_iova_ranges("m", 0, 0, &ranges).is_ok(),
            "no underflow on an empty range"
        );
    }
}
