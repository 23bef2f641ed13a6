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
}
