//! Device regions: their info and capability chains (`VFIO_DEVICE_GET_REGION_INFO`).

use vfio_bindings::bindings::vfio::*;

use crate::error::{Result, VfioError};

/// One mmap-able area of a sparse region, relative to the region's start.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VfioRegionSparseMmapArea {
    /// Offset of the area within the region.
    pub offset: u64,
    /// Size of the area.
    pub size: u64,
}

/// The areas of a region that may be mmapped (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioRegionInfoCapSparseMmap {
    /// The areas, in the kernel's order.
    pub areas: Vec<VfioRegionSparseMmapArea>,
}

/// A device-specific region type (`VFIO_REGION_INFO_CAP_TYPE`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VfioRegionInfoCapType {
    /// Type (vendor-specific types carry the PCI vendor id in the low 16 bits).
    pub type_: u32,
    /// Subtype.
    pub subtype: u32,
}

/// NVLink2 SSA target (`VFIO_REGION_INFO_CAP_NVLINK2_SSATGT`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VfioRegionInfoCapNvlink2Ssatgt {
    /// The target address.
    pub tgt: u64,
}

/// NVLink2 link speed (`VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VfioRegionInfoCapNvlink2Lnkspd {
    /// The link speed.
    pub link_speed: u32,
}

/// One capability of a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VfioRegionInfoCap {
    /// Only these areas may be mmapped.
    SparseMmap(VfioRegionInfoCapSparseMmap),
    /// A device-specific region type.
    Type(VfioRegionInfoCapType),
    /// The MSI-X table in this BAR may be mmapped too.
    MsixMappable,
    /// NVLink2 SSA target.
    Nvlink2Ssatgt(VfioRegionInfoCapNvlink2Ssatgt),
    /// NVLink2 link speed.
    Nvlink2Lnkspd(VfioRegionInfoCapNvlink2Lnkspd),
}

/// A region capability [`VfioRegionInfoCap`] does not decode (its variants are exactly
/// upstream's), kept raw so nothing is hidden: see [`VfioRegion::other_caps`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioRegionInfoCapRaw {
    /// The capability id (`struct vfio_info_cap_header`'s `id`).
    pub id: u16,
    /// Its version.
    pub version: u16,
    /// The bytes after its header, up to the next capability of the chain in memory
    /// (or the end of the kernel's buffer), so they may include padding.
    pub data: Vec<u8>,
}

/// One region of a device. Its position in `VfioDevice::regions()` is its VFIO index,
/// also when the device does not implement it (then `present` is false and all else zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioRegion {
    /// The VFIO region index.
    pub index: u32,
    /// Whether the device implements this region.
    pub present: bool,
    /// `VFIO_REGION_INFO_FLAG_*` bits.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region within the device fd (for pread/pwrite/mmap).
    pub offset: u64,
    /// The capabilities upstream knows, in chain order.
    pub caps: Vec<VfioRegionInfoCap>,
    /// The other capabilities, raw, in chain order.
    pub other_caps: Vec<VfioRegionInfoCapRaw>,
}

impl VfioRegion {
    /// A region the device does not implement.
    pub(crate) fn absent(index: u32) -> Self {
        VfioRegion {
            index,
            present: false,
            flags: 0,
            size: 0,
            offset: 0,
            caps: Vec::new(),
            other_caps: Vec::new(),
        }
    }

    /// Whether the region can be read.
    pub fn readable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_READ != 0
    }

    /// Whether the region can be written.
    pub fn writable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_WRITE != 0
    }

    /// Whether (some of) the region can be mmapped.
    pub fn mappable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_MMAP != 0
    }

    /// The areas that may be mmapped: the sparse areas if the region has that
    /// capability, else the whole region when it is mappable, else none.
    pub fn mmap_areas(&self) -> Vec<VfioRegionSparseMmapArea> {
        if !self.mappable() || self.size == 0 {
            return Vec::new();
        }
        for cap in &self.caps {
            if let VfioRegionInfoCap::SparseMmap(sparse) = cap {
                return sparse
                    .areas
                    .iter()
                    .copied()
                    .filter(|a| a.size > 0)
                    .collect();
            }
        }
        vec![VfioRegionSparseMmapArea {
            offset: 0,
            size: self.size,
        }]
    }

    /// Checks that `[offset, offset + len)` lies in the region, without overflow.
    pub(crate) fn check_range(&self, op: &'static str, offset: u64, len: usize) -> Result<()> {
        let end = offset.checked_add(len as u64).ok_or_else(|| {
            VfioError::out_of_range(
                op,
                format!(
                    "region {}: offset {offset:#x} + length {len} overflows",
                    self.index
                ),
            )
        })?;
        if !self.present {
            return Err(VfioError::out_of_range(
                op,
                format!("region {} is not implemented by this device", self.index),
            ));
        }
        if end > self.size {
            return Err(VfioError::out_of_range(
                op,
                format!(
                    "region {}: [{offset:#x}, {end:#x}) lies past its size {:#x}",
                    self.index, self.size
                ),
            ));
        }
        Ok(())
    }
}

const CAP_HEADER_LEN: usize = 8;
/// More capabilities than this in one chain means the chain loops or is garbage.
const MAX_CAPS: usize = 64;

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    buf.get(at..at.checked_add(2)?)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at.checked_add(4)?)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_ne_bytes(bytes))
}

/// A capability header found in a chain: its id, version and where its body starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapHeader {
    pub id: u16,
    pub version: u16,
    pub at: usize,
}

/// Walks a VFIO capability chain (`struct vfio_info_cap_header`) in `buf`, starting
/// at `first` (0 = empty chain). Offsets are from the start of `buf`, as the kernel
/// gives them. Truncated, misaligned, backwards or looping chains are errors.
pub(crate) fn walk_cap_chain(
    op: &'static str,
    buf: &[u8],
    first: u32,
    min_offset: usize,
) -> Result<Vec<CapHeader>> {
    let mut caps = Vec::new();
    let mut next = first as usize;
    while next != 0 {
        if caps.len() >= MAX_CAPS {
            return Err(VfioError::invalid(
                op,
                format!("capability chain has more than {MAX_CAPS} entries (a loop?)"),
            ));
        }
        if next < min_offset || !next.is_multiple_of(4) {
            return Err(VfioError::invalid(
                op,
                format!("capability at offset {next} points inside the header or is misaligned"),
            ));
        }
        if let Some(prev) = caps.last().map(|c: &CapHeader| c.at) {
            if next <= prev {
                return Err(VfioError::invalid(
                    op,
                    format!("capability chain goes backwards to offset {next} (a loop)"),
                ));
            }
        }
        let header_end = next.saturating_add(CAP_HEADER_LEN);
        let (Some(id), Some(version), Some(link)) = (
            read_u16(buf, next),
            read_u16(buf, next + 2),
            read_u32(buf, next + 4),
        ) else {
            return Err(VfioError::invalid(
                op,
                format!("capability header at offset {next} is truncated (buffer is {} bytes, needs {header_end})", buf.len()),
            ));
        };
        caps.push(CapHeader {
            id,
            version,
            at: next,
        });
        next = link as usize;
    }
    Ok(caps)
}

/// A region's capabilities: the ones [`VfioRegionInfoCap`] decodes, and the others raw.
pub(crate) type RegionCaps = (Vec<VfioRegionInfoCap>, Vec<VfioRegionInfoCapRaw>);

/// Parses a region's capability chain from the full `VFIO_DEVICE_GET_REGION_INFO` buffer.
pub(crate) fn parse_region_caps(buf: &[u8], cap_offset: u32) -> Result<RegionCaps> {
    const OP: &str = "VFIO_DEVICE_GET_REGION_INFO";
    let headers = walk_cap_chain(OP, buf, cap_offset, std::mem::size_of::<vfio_region_info>())?;
    let truncated = |h: &CapHeader| {
        VfioError::invalid(
            OP,
            format!("capability {} at offset {} is truncated", h.id, h.at),
        )
    };
    let mut caps = Vec::with_capacity(headers.len());
    let mut others = Vec::new();
    for h in &headers {
        let h = *h;
        let body = h.at + CAP_HEADER_LEN;
        let cap = match u32::from(h.id) {
            VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
                let nr = read_u32(buf, body).ok_or_else(|| truncated(&h))? as usize;
                let areas_at = body + 8;
                let need = nr.checked_mul(16).and_then(|n| n.checked_add(areas_at));
                if need.is_none_or(|n| n > buf.len()) {
                    return Err(truncated(&h));
                }
                let areas = (0..nr)
                    .map(|i| {
                        let at = areas_at + i * 16;
                        Some(VfioRegionSparseMmapArea {
                            offset: read_u64(buf, at)?,
                            size: read_u64(buf, at + 8)?,
                        })
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| truncated(&h))?;
                VfioRegionInfoCap::SparseMmap(VfioRegionInfoCapSparseMmap { areas })
            }
            VFIO_REGION_INFO_CAP_TYPE => VfioRegionInfoCap::Type(VfioRegionInfoCapType {
                type_: read_u32(buf, body).ok_or_else(|| truncated(&h))?,
                subtype: read_u32(buf, body + 4).ok_or_else(|| truncated(&h))?,
            }),
            VFIO_REGION_INFO_CAP_MSIX_MAPPABLE => VfioRegionInfoCap::MsixMappable,
            VFIO_REGION_INFO_CAP_NVLINK2_SSATGT => {
                VfioRegionInfoCap::Nvlink2Ssatgt(VfioRegionInfoCapNvlink2Ssatgt {
                    tgt: read_u64(buf, body).ok_or_else(|| truncated(&h))?,
                })
            }
            VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD => {
                VfioRegionInfoCap::Nvlink2Lnkspd(VfioRegionInfoCapNvlink2Lnkspd {
                    link_speed: read_u32(buf, body).ok_or_else(|| truncated(&h))?,
                })
            }
            _ => {
                // The body ends where the next capability in memory starts, or with the buffer.
                let end = headers
                    .iter()
                    .map(|o| o.at)
                    .filter(|&at| at > h.at)
                    .min()
                    .unwrap_or(buf.len())
                    .min(buf.len());
                others.push(VfioRegionInfoCapRaw {
                    id: h.id,
                    version: h.version,
                    data: buf.get(body..end).map(<[u8]>::to_vec).unwrap_or_default(),
                });
                continue;
            }
        };
        caps.push(cap);
    }
    Ok((caps, others))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ErrorKind;

    /// Builds a region-info buffer: a 32-byte header, then the given caps at 8-aligned offsets.
    pub(crate) fn chain(caps: &[(u16, Vec<u8>)]) -> (Vec<u8>, u32) {
        let mut buf = vec![0u8; 32];
        let mut offsets = Vec::new();
        for (id, body) in caps {
            while !buf.len().is_multiple_of(8) {
                buf.push(0);
            }
            offsets.push(buf.len());
            buf.extend_from_slice(&id.to_ne_bytes());
            buf.extend_from_slice(&1u16.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(body);
        }
        for w in offsets.windows(2) {
            buf[w[0] + 4..w[0] + 8].copy_from_slice(&(w[1] as u32).to_ne_bytes());
        }
        (buf, offsets.first().map(|&o| o as u32).unwrap_or(0))
    }

    fn sparse(areas: &[(u64, u64)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(areas.len() as u32).to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for (o, s) in areas {
            b.extend_from_slice(&o.to_ne_bytes());
            b.extend_from_slice(&s.to_ne_bytes());
        }
        b
    }

    #[test]
    fn parses_every_known_capability() {
        let mut ty = 0x8086_0000u32.to_ne_bytes().to_vec();
        ty.extend_from_slice(&3u32.to_ne_bytes());
        let (buf, first) = chain(&[
            (1, sparse(&[(0, 0x1000), (0x3000, 0x1000)])),
            (2, ty),
            (3, vec![]),
            (4, 0xdead_beef_0000u64.to_ne_bytes().to_vec()),
            (5, [25u32.to_ne_bytes(), [0; 4]].concat()),
            (42, vec![0; 4]),
        ]);
        let (caps, others) = parse_region_caps(&buf, first).unwrap();
        assert_eq!(
            others,
            vec![VfioRegionInfoCapRaw {
                id: 42,
                version: 1,
                data: vec![0; 4]
            }]
        );
        assert_eq!(
            caps,
            vec![
                VfioRegionInfoCap::SparseMmap(VfioRegionInfoCapSparseMmap {
                    areas: vec![
                        VfioRegionSparseMmapArea {
                            offset: 0,
                            size: 0x1000
                        },
                        VfioRegionSparseMmapArea {
                            offset: 0x3000,
                            size: 0x1000
                        }
                    ]
                }),
                VfioRegionInfoCap::Type(VfioRegionInfoCapType {
                    type_: 0x8086_0000,
                    subtype: 3
                }),
                VfioRegionInfoCap::MsixMappable,
                VfioRegionInfoCap::Nvlink2Ssatgt(VfioRegionInfoCapNvlink2Ssatgt {
                    tgt: 0xdead_beef_0000
                }),
                VfioRegionInfoCap::Nvlink2Lnkspd(VfioRegionInfoCapNvlink2Lnkspd { link_speed: 25 }),
            ]
        );
    }

    #[test]
    fn empty_chain_is_empty() {
        assert_eq!(parse_region_caps(&[0u8; 32], 0).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn looping_chain_is_an_error() {
        let (mut buf, first) = chain(&[(3, vec![]), (3, vec![])]);
        // Point the second cap back at the first.
        let second = u32::from_ne_bytes(
            buf[first as usize + 4..first as usize + 8]
                .try_into()
                .unwrap(),
        ) as usize;
        buf[second + 4..second + 8].copy_from_slice(&first.to_ne_bytes());
        let e = parse_region_caps(&buf, first).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("loop"), "{e}");
    }

    #[test]
    fn self_loop_is_an_error() {
        let (mut buf, first) = chain(&[(3, vec![])]);
        buf[first as usize + 4..first as usize + 8].copy_from_slice(&first.to_ne_bytes());
        assert!(parse_region_caps(&buf, first).is_err());
    }

    #[test]
    fn truncated_header_and_body_are_errors() {
        let (buf, first) = chain(&[(1, sparse(&[(0, 0x1000)]))]);
        // Cut into the area list.
        let e = parse_region_caps(&buf[..buf.len() - 4], first).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // Offset past the end.
        let e = parse_region_caps(&buf, buf.len() as u32 + 8).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn huge_area_count_does_not_overflow_or_allocate() {
        let mut body = sparse(&[]);
        body[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        let (buf, first) = chain(&[(1, body)]);
        assert_eq!(
            parse_region_caps(&buf, first).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn offsets_inside_the_header_or_misaligned_are_errors() {
        let (buf, _) = chain(&[(3, vec![])]);
        assert!(parse_region_caps(&buf, 8).is_err());
        assert!(parse_region_caps(&buf, 33).is_err());
    }

    #[test]
    fn mmap_areas_follow_sparse_caps_and_flags() {
        let mut r = VfioRegion {
            index: 0,
            present: true,
            flags: VFIO_REGION_INFO_FLAG_READ,
            size: 0x4000,
            offset: 0,
            caps: vec![],
            other_caps: vec![],
        };
        assert!(r.mmap_areas().is_empty());
        r.flags |= VFIO_REGION_INFO_FLAG_MMAP;
        assert_eq!(
            r.mmap_areas(),
            vec![VfioRegionSparseMmapArea {
                offset: 0,
                size: 0x4000
            }]
        );
        r.caps
            .push(VfioRegionInfoCap::SparseMmap(VfioRegionInfoCapSparseMmap {
                areas: vec![
                    VfioRegionSparseMmapArea {
                        offset: 0x2000,
                        size: 0x2000,
                    },
                    VfioRegionSparseMmapArea { offset: 0, size: 0 },
                ],
            }));
        assert_eq!(
            r.mmap_areas(),
            vec![VfioRegionSparseMmapArea {
                offset: 0x2000,
                size: 0x2000
            }]
        );
    }

    #[test]
    fn range_checks_catch_overflow_and_absent_regions() {
        let r = VfioRegion {
            index: 2,
            present: true,
            flags: 3,
            size: 0x100,
            offset: 0,
            caps: vec![],
            other_caps: vec![],
        };
        assert!(r.check_range("read", 0xfc, 4).is_ok());
        assert_eq!(
            r.check_range("read", 0xfd, 4).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            r.check_range("read", u64::MAX, 2).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            VfioRegion::absent(8)
                .check_range("read", 0, 1)
                .unwrap_err()
                .kind(),
            ErrorKind::OutOfRange
        );
    }
}
