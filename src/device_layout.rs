//! `DeviceLayout`: what the facade's `Device` is built from, in one crossing.
//!
//! Building the info, region and IRQ objects here would take a Node-API call per
//! property (some 250 for a PCI device); one `Float64Array` of numbers and two strings
//! take a handful, and JavaScript builds the objects from them (`ts/device-layout.ts`,
//! which documents the packing and must follow this file).

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::VfioDevice;

use crate::device::{region_caps_to_js, RegionCap};

/// Numbers before the regions: group, flags, numRegions, numIrqs, info bits,
/// maxInterrupts, how many regions follow, how many IRQ indices follow them.
const HEADER: usize = 8;
/// Numbers per region: index, bits, flags, size, offset.
const REGION: usize = 5;
/// Numbers per IRQ index: index, bits, flags, count.
const IRQ: usize = 4;

/// A device's info, regions and IRQ indices, packed (see `ts/device-layout.ts`).
#[napi(object, object_from_js = false)]
pub struct DeviceLayout {
    /// PCI address / name in the group.
    pub name: String,
    /// Canonical sysfs path.
    pub sysfs_path: String,
    /// The header, then each region, then each IRQ index.
    pub numbers: Float64Array,
    /// The capabilities of the regions that have any.
    pub region_caps: Vec<RegionCaps>,
}

/// The capabilities of one region.
#[napi(object, object_from_js = false)]
pub struct RegionCaps {
    /// VFIO region index.
    pub index: u32,
    /// Its capabilities.
    pub caps: Vec<RegionCap>,
}

fn bits(flags: &[bool]) -> f64 {
    let mut out = 0u32;
    for (i, &on) in flags.iter().enumerate() {
        out |= u32::from(on) << i;
    }
    f64::from(out)
}

/// Packs what `device.info()`, `regions()` and `irqs()` answer.
pub(crate) fn layout(d: &VfioDevice) -> DeviceLayout {
    let info = d.info();
    let (regions, irqs) = (d.regions(), d.irqs());
    let mut n = Vec::with_capacity(HEADER + REGION * regions.len() + IRQ * irqs.len());
    n.extend([
        f64::from(d.iommu_group().unwrap_or(u32::MAX)),
        f64::from(info.flags),
        f64::from(info.num_regions),
        f64::from(info.num_irqs),
        bits(&[info.is_pci(), info.can_reset()]),
        f64::from(d.max_interrupts()),
        regions.len() as f64,
        irqs.len() as f64,
    ]);
    let mut region_caps = Vec::new();
    for r in regions {
        n.extend([
            f64::from(r.index),
            bits(&[r.present, r.readable(), r.writable(), r.mappable()]),
            f64::from(r.flags),
            r.size as f64,
            r.offset as f64,
        ]);
        if !r.caps.is_empty() || !r.other_caps.is_empty() {
            region_caps.push(RegionCaps {
                index: r.index,
                caps: region_caps_to_js(r),
            });
        }
    }
    for i in irqs {
        n.extend([
            f64::from(i.index),
            bits(&[i.eventfd(), i.maskable(), i.automasked()]),
            f64::from(i.flags),
            f64::from(i.count),
        ]);
    }
    DeviceLayout {
        name: d.name().to_string(),
        sysfs_path: d.sysfs_path().display().to_string(),
        numbers: Float64Array::new(n),
        region_caps,
    }
}
