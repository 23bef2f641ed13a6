//! Region capabilities: an exhaustive match over upstream's `VfioRegionInfoCap`, which
//! fails to build if our enum has a variant more or less.

use vfio_ioctls::{
    VfioRegionInfoCap, VfioRegionInfoCapNvlink2Lnkspd, VfioRegionInfoCapNvlink2Ssatgt,
    VfioRegionInfoCapSparseMmap, VfioRegionInfoCapType, VfioRegionSparseMmapArea,
};

/// The mmap-able areas a VMM derives from a region's capabilities (no wildcard arm).
pub fn mmap_areas(caps: &[VfioRegionInfoCap], size: u64) -> Vec<(u64, u64)> {
    let mut areas = vec![(0, size)];
    for cap in caps {
        match cap {
            VfioRegionInfoCap::SparseMmap(VfioRegionInfoCapSparseMmap { areas: sparse }) => {
                areas = sparse
                    .iter()
                    .map(|&VfioRegionSparseMmapArea { offset, size }| (offset, size))
                    .collect();
            }
            VfioRegionInfoCap::Type(VfioRegionInfoCapType { type_, subtype }) => {
                let _: (u32, u32) = (*type_, *subtype);
            }
            VfioRegionInfoCap::MsixMappable => {}
            VfioRegionInfoCap::Nvlink2Ssatgt(VfioRegionInfoCapNvlink2Ssatgt { tgt }) => {
                let _: u64 = *tgt;
            }
            VfioRegionInfoCap::Nvlink2Lnkspd(VfioRegionInfoCapNvlink2Lnkspd { link_speed }) => {
                let _: u32 = *link_speed;
            }
        }
    }
    areas
}

/// Every capability, built as a VMM's tests build them (the structs' fields are public,
/// and they are `Copy`/`Clone`, `Debug`, `PartialEq`, `Eq` as upstream's).
pub fn every_cap() -> Vec<VfioRegionInfoCap> {
    let area = VfioRegionSparseMmapArea {
        offset: 0x1000,
        size: 0x2000,
    };
    let area_copy: VfioRegionSparseMmapArea = area;
    vec![
        VfioRegionInfoCap::SparseMmap(VfioRegionInfoCapSparseMmap {
            areas: vec![area, area_copy],
        }),
        VfioRegionInfoCap::Type(VfioRegionInfoCapType {
            type_: 0x8086_0000,
            subtype: 3,
        }),
        VfioRegionInfoCap::MsixMappable,
        VfioRegionInfoCap::Nvlink2Ssatgt(VfioRegionInfoCapNvlink2Ssatgt { tgt: 7 }),
        VfioRegionInfoCap::Nvlink2Lnkspd(VfioRegionInfoCapNvlink2Lnkspd { link_speed: 25 }),
    ]
}

/// `VfioRegion` and `VfioIrq` are nameable, `Clone` and `Debug`, as upstream's.
pub fn describe(region: &vfio_ioctls::VfioRegion, irq: vfio_ioctls::VfioIrq) -> String {
    format!("{:?} {:?}", region.clone(), irq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_areas_replace_the_whole_region() {
        let caps = every_cap();
        assert_eq!(
            mmap_areas(&caps, 0x4000),
            vec![(0x1000, 0x2000), (0x1000, 0x2000)]
        );
        assert_eq!(mmap_areas(&caps[1..], 0x4000), vec![(0, 0x4000)]);
        assert_eq!(caps.clone(), caps);
    }
}
