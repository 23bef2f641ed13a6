//! dma-buf export of device memory (`VFIO_DEVICE_FEATURE_DMA_BUF`): ranges of a BAR
//! as a dma-buf fd another driver (a GPU, an RDMA NIC) can import for peer-to-peer DMA.
//!
//! The feature came after Linux 6.12: on 6.12 and older the probe answers ENOTTY, and
//! export gives `Unsupported` saying so (upstream's [`VfioDevice::export_dma_buf`]
//! gives `Ok(None)`). Like upstream, this is part of the `vfio_cdev` feature.

use std::fs::File;
use std::os::fd::FromRawFd;

use vfio_bindings::bindings::vfio::{VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET};

use crate::abi::{put_u32, put_u64};
use crate::device_feature::{feature_buf, get, kernel_release, HEADER};
use crate::error::{Result, VfioError};
use crate::VfioDevice;

const OP: &str = "VFIO_DEVICE_FEATURE_DMA_BUF";

/// Range of a VFIO device region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VfioRegionDmaRange {
    /// Offset from the start of the region.
    pub offset: u64,
    /// Length of the range in bytes.
    pub length: u64,
}

/// The feature buffer of an export: `vfio_device_feature_dma_buf` (region index, open
/// flags, flags 0, range count) and the ranges, after the header.
pub(crate) fn export_buf(
    region_index: u32,
    ranges: &[VfioRegionDmaRange],
    open_flags: u32,
) -> Result<Vec<u64>> {
    if ranges.is_empty() {
        return Err(VfioError::VfioDmaBufNoRange);
    }
    if let Some(r) = ranges
        .iter()
        .find(|r| r.length == 0 || r.offset.checked_add(r.length).is_none())
    {
        return Err(VfioError::invalid(
            OP,
            format!(
                "range offset {:#x} length {:#x} is empty or wraps past 2^64",
                r.offset, r.length
            ),
        ));
    }
    let count = u32::try_from(ranges.len())
        .map_err(|_| VfioError::out_of_range(OP, "more than 2^32 ranges"))?;
    let mut buf = feature_buf(get(VFIO_DEVICE_FEATURE_DMA_BUF), 16 + 16 * ranges.len());
    put_u32(&mut buf, HEADER, region_index);
    put_u32(&mut buf, HEADER + 4, open_flags);
    put_u32(&mut buf, HEADER + 12, count);
    for (i, r) in ranges.iter().enumerate() {
        put_u64(&mut buf, HEADER + 16 + 16 * i, r.offset);
        put_u64(&mut buf, HEADER + 24 + 16 * i, r.length);
    }
    Ok(buf)
}

impl VfioDevice {
    /// Whether the kernel and the device's driver can export dma-bufs (the probe of
    /// `VFIO_DEVICE_FEATURE_DMA_BUF`, asked once).
    ///
    /// # Errors
    /// The kernel's errno other than ENOTTY and EINVAL.
    pub fn dma_buf_supported(&self) -> Result<bool> {
        self.probe_feature(
            OP,
            VFIO_DEVICE_FEATURE_DMA_BUF,
            VFIO_DEVICE_FEATURE_GET,
            &self.features.dma_buf_probe,
        )
    }

    /// Exports `ranges` of region `region_index` as a dma-buf, opened with `open_flags`
    /// (`O_CLOEXEC`, `O_RDWR`...); the fd is the caller's.
    ///
    /// # Errors
    /// `Unsupported` when the kernel (6.12 and older) or the driver has no dma-buf export;
    /// [`VfioError::VfioDmaBufNoRange`] for no range; `InvalidArgument` for an empty or
    /// wrapping range; `OutOfRange` for a region the device lacks; the kernel's errno
    /// otherwise.
    pub fn dma_buf_file(
        &self,
        region_index: u32,
        ranges: &[VfioRegionDmaRange],
        open_flags: u32,
    ) -> Result<File> {
        let mut buf = export_buf(region_index, ranges, open_flags)?;
        self.region(region_index)?;
        if !self.dma_buf_supported()? {
            return Err(VfioError::unsupported(
                OP,
                format!(
                    "the kernel ({}) has no VFIO_DEVICE_FEATURE_DMA_BUF (it came after 6.12), \
                     or the driver of {} cannot export dma-bufs (the probe answered ENOTTY)",
                    kernel_release(),
                    self.name()
                ),
            ));
        }
        let fd = self.device_feature(OP, &mut buf)?;
        // SAFETY: on success this feature returns a new dma-buf fd that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Export device memory ranges into a dma-buf file descriptor (upstream's form):
    /// `Ok(None)` when dma-buf export is not supported.
    ///
    /// # Errors
    /// As [`VfioDevice::dma_buf_file`], but for `Unsupported`, and with the kernel's
    /// refusals as [`VfioError::VfioDeviceFeature`].
    pub fn export_dma_buf(
        &self,
        region_index: u32,
        ranges: &[VfioRegionDmaRange],
        open_flags: u32,
    ) -> Result<Option<File>> {
        if !self.dma_buf_supported()? {
            return Ok(None);
        }
        self.dma_buf_file(region_index, ranges, open_flags)
            .map(Some)
            .map_err(VfioError::into_upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::get_u32;

    #[test]
    fn the_buffer_holds_the_ranges_inline() {
        let ranges = [
            VfioRegionDmaRange {
                offset: 0,
                length: 0x1000,
            },
            VfioRegionDmaRange {
                offset: 0x4000,
                length: 0x2000,
            },
        ];
        let buf = export_buf(2, &ranges, libc::O_CLOEXEC as u32).unwrap();
        assert_eq!(get_u32(&buf, 0), 8 + 16 + 32, "argsz");
        assert_eq!(get_u32(&buf, 4), VFIO_DEVICE_FEATURE_GET | 11);
        assert_eq!(get_u32(&buf, HEADER), 2);
        assert_eq!(get_u32(&buf, HEADER + 12), 2, "nr_ranges");
        assert_eq!(crate::abi::get_u64(&buf, HEADER + 32), 0x4000);
        assert_eq!(crate::abi::get_u64(&buf, HEADER + 40), 0x2000);
    }

    #[test]
    fn ranges_are_checked() {
        assert!(matches!(
            export_buf(0, &[], 0),
            Err(VfioError::VfioDmaBufNoRange)
        ));
        let e = export_buf(
            0,
            &[VfioRegionDmaRange {
                offset: 1,
                length: 0,
            }],
            0,
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_VFIO_INVALID_ARGUMENT");
    }
}
