//! Device DMA dirty logging (`VFIO_DEVICE_FEATURE_DMA_LOGGING_START`, `_STOP`,
//! `_REPORT`, 6.2+): the device tracks which pages of some IOVA ranges it wrote, so a
//! VMM can copy only those during a live migration.
//!
//! Only drivers with logging support offer it (mlx5, some mdev samples); vfio-pci
//! devices without a variant driver answer the probe with ENOTTY, which gives
//! `Unsupported` naming the device.

use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
    VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_SET,
};

use crate::abi::{get_u64, put_u32, put_u64};
use crate::device_feature::{feature_buf, get, set, HEADER};
use crate::error::{Result, VfioError};
use crate::ioctls;
use crate::sync::lock;
use crate::VfioDevice;

const OP_START: &str = "VFIO_DEVICE_FEATURE_DMA_LOGGING_START";
const OP_STOP: &str = "VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP";
const OP_REPORT: &str = "VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT";

/// IOVA range tracked or reported by VFIO DMA logging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmaLoggingRange {
    /// Starting IOVA of the range.
    pub iova: u64,
    /// Length of the range in bytes.
    pub length: u64,
}

/// Checks the arguments of a start: ranges non-empty, each non-empty and not wrapping,
/// a page size that is a power of two. Returns the range count for the kernel.
pub(crate) fn check_start(page_size: u64, ranges: &[DmaLoggingRange]) -> Result<u32> {
    if ranges.is_empty() {
        return Err(VfioError::DmaLoggingInvalidArgument(
            "ranges must not be empty",
        ));
    }
    if !page_size.is_power_of_two() {
        return Err(VfioError::DmaLoggingInvalidArgument(
            "page_size must be a power of two",
        ));
    }
    if ranges
        .iter()
        .any(|r| r.length == 0 || r.iova.checked_add(r.length).is_none())
    {
        return Err(VfioError::DmaLoggingInvalidArgument(
            "every range needs a non-zero length that does not wrap past 2^64",
        ));
    }
    u32::try_from(ranges.len()).map_err(|_| VfioError::DmaLoggingInvalidArgument("too many ranges"))
}

/// Checks the arguments of a report and returns the bitmap's length in u64 words (one
/// bit per page of the range).
pub(crate) fn report_words(range: DmaLoggingRange, page_size: u64) -> Result<usize> {
    if page_size == 0 {
        return Err(VfioError::DmaLoggingInvalidArgument(
            "page_size must be non-zero",
        ));
    }
    if range.length == 0 {
        return Err(VfioError::DmaLoggingInvalidArgument(
            "range.length must be non-zero",
        ));
    }
    if range.iova.checked_add(range.length).is_none() {
        return Err(VfioError::DmaLoggingInvalidArgument(
            "range wraps past 2^64",
        ));
    }
    let pages = range.length.div_ceil(page_size);
    usize::try_from(pages.div_ceil(u64::from(u64::BITS))).map_err(|_| {
        VfioError::DmaLoggingInvalidArgument("range too large for a bitmap on this machine")
    })
}

impl VfioDevice {
    /// Whether the device's driver offers DMA logging (`VFIO_DEVICE_FEATURE_PROBE` of
    /// `DMA_LOGGING_START`, asked once).
    ///
    /// # Errors
    /// The kernel's errno other than ENOTTY and EINVAL.
    pub fn dma_logging_supported(&self) -> Result<bool> {
        self.probe_feature(
            OP_START,
            VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
            VFIO_DEVICE_FEATURE_SET,
            &self.features.dma_logging_probe,
        )
    }

    fn require_dma_logging(&self, op: &'static str) -> Result<()> {
        if self.dma_logging_supported()? {
            return Ok(());
        }
        Err(VfioError::unsupported(
            op,
            format!(
                "{} cannot log its DMA: its driver has no DMA logging (the probe of \
                 VFIO_DEVICE_FEATURE_DMA_LOGGING_START answered ENOTTY; vfio-pci offers it \
                 only through variant drivers such as mlx5_vfio_pci)",
                self.name()
            ),
        ))
    }

    /// Starts DMA dirty logging of `ranges` with pages of `page_size` bytes; returns the
    /// page size the device chose (it may round it).
    ///
    /// # Errors
    /// [`VfioError::DmaLoggingInvalidArgument`] for empty or wrapping ranges or a page
    /// size that is not a power of two; [`VfioError::DmaLoggingAlreadyStarted`];
    /// `Unsupported` when the driver has no DMA logging;
    /// [`VfioError::VfioDeviceFeature`] when the kernel refuses.
    pub fn start_dma_logging(&self, page_size: u64, ranges: &[DmaLoggingRange]) -> Result<u64> {
        self.try_start_dma_logging(page_size, ranges)
            .map_err(VfioError::into_upstream)
    }

    /// Stops DMA dirty logging.
    ///
    /// # Errors
    /// [`VfioError::DmaLoggingNotStarted`]; [`VfioError::VfioDeviceFeature`].
    pub fn stop_dma_logging(&self) -> Result<()> {
        self.try_stop_dma_logging()
            .map_err(VfioError::into_upstream)
    }

    /// Reports (and clears) the pages of `range` the device wrote since the last report,
    /// one bit per `page_size` page, bit `i % 64` of word `i / 64` for page `i`.
    ///
    /// # Errors
    /// [`VfioError::DmaLoggingInvalidArgument`] for a zero page size or length;
    /// [`VfioError::DmaLoggingNotStarted`]; [`VfioError::VfioDeviceFeature`] (EINVAL for
    /// a page size other than the one logging started with).
    pub fn report_dma_logging(&self, range: DmaLoggingRange, page_size: u64) -> Result<Vec<u64>> {
        self.try_report_dma_logging(range, page_size)
            .map_err(VfioError::into_upstream)
    }

    /// As [`VfioDevice::start_dma_logging`], with the kernel's refusals as `Os` naming
    /// the feature and the device.
    ///
    /// # Errors
    /// As [`VfioDevice::start_dma_logging`], `Os` for the kernel's.
    pub fn try_start_dma_logging(&self, page_size: u64, ranges: &[DmaLoggingRange]) -> Result<u64> {
        let num_ranges = check_start(page_size, ranges)?;
        let mut started = lock(&self.features.dma_logging);
        if *started {
            return Err(VfioError::DmaLoggingAlreadyStarted);
        }
        self.require_dma_logging(OP_START)?;
        let kernel_ranges: Vec<u64> = ranges.iter().flat_map(|r| [r.iova, r.length]).collect();
        // vfio_device_feature_dma_logging_control: page_size, num_ranges, reserved, ranges.
        let mut buf = feature_buf(set(VFIO_DEVICE_FEATURE_DMA_LOGGING_START), 24);
        put_u64(&mut buf, HEADER, page_size);
        put_u32(&mut buf, HEADER + 8, num_ranges);
        put_u64(&mut buf, HEADER + 16, kernel_ranges.as_ptr() as u64);
        // SAFETY: `ranges` points to `kernel_ranges`, `num_ranges` pairs of u64 (the
        // layout of vfio_device_feature_dma_logging_range) that we own and that live past
        // the call; the kernel only reads them.
        unsafe { ioctls::device_feature_with_pointers(self.file(), &mut buf) }
            .map_err(|e| self.feature_error(OP_START, e))?;
        *started = true;
        Ok(get_u64(&buf, HEADER))
    }

    /// As [`VfioDevice::stop_dma_logging`], with our errors.
    ///
    /// # Errors
    /// [`VfioError::DmaLoggingNotStarted`]; `Os` with the errno.
    pub fn try_stop_dma_logging(&self) -> Result<()> {
        let mut started = lock(&self.features.dma_logging);
        if !*started {
            return Err(VfioError::DmaLoggingNotStarted);
        }
        let mut buf = feature_buf(set(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP), 0);
        self.device_feature(OP_STOP, &mut buf)?;
        *started = false;
        Ok(())
    }

    /// As [`VfioDevice::report_dma_logging`], with our errors.
    ///
    /// # Errors
    /// As [`VfioDevice::report_dma_logging`], `Os` for the kernel's.
    pub fn try_report_dma_logging(
        &self,
        range: DmaLoggingRange,
        page_size: u64,
    ) -> Result<Vec<u64>> {
        let words = report_words(range, page_size)?;
        let started = lock(&self.features.dma_logging);
        if !*started {
            return Err(VfioError::DmaLoggingNotStarted);
        }
        let mut bitmap = crate::alloc::try_zeroed::<u64>(OP_REPORT, words)?;
        // vfio_device_feature_dma_logging_report: iova, length, page_size, bitmap.
        let mut buf = feature_buf(get(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT), 32);
        put_u64(&mut buf, HEADER, range.iova);
        put_u64(&mut buf, HEADER + 8, range.length);
        put_u64(&mut buf, HEADER + 16, page_size);
        put_u64(&mut buf, HEADER + 24, bitmap.as_mut_ptr() as u64);
        // SAFETY: `bitmap` points to `words` u64s we own, one bit per page of the range
        // (the size the kernel writes), alive and not otherwise borrowed for the call.
        unsafe { ioctls::device_feature_with_pointers(self.file(), &mut buf) }
            .map_err(|e| self.feature_error(OP_REPORT, e))?;
        drop(started);
        Ok(bitmap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn r(iova: u64, length: u64) -> DmaLoggingRange {
        DmaLoggingRange { iova, length }
    }

    #[test]
    fn start_arguments_are_checked() {
        assert_eq!(
            check_start(4096, &[r(0, 4096), r(1 << 20, 8192)]).unwrap(),
            2
        );
        for (page, ranges, why) in [
            (4096, vec![], "empty"),
            (3000, vec![r(0, 4096)], "power of two"),
            (0, vec![r(0, 4096)], "power of two"),
            (4096, vec![r(0, 0)], "non-zero length"),
            (4096, vec![r(u64::MAX, 2)], "wrap"),
        ] {
            let e = check_start(page, &ranges).unwrap_err();
            assert!(matches!(e, VfioError::DmaLoggingInvalidArgument(_)), "{e}");
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn report_bitmaps_hold_a_bit_per_page() {
        assert_eq!(report_words(r(0, 4096), 4096).unwrap(), 1);
        assert_eq!(report_words(r(0, 64 * 4096), 4096).unwrap(), 1);
        assert_eq!(report_words(r(0, 64 * 4096 + 1), 4096).unwrap(), 2);
        assert!(report_words(r(0, 4096), 0).is_err());
        assert!(report_words(r(0, 0), 4096).is_err());
        assert!(report_words(r(u64::MAX - 10, 4096), 4096).is_err());
    }

    #[test]
    fn state_errors_have_kinds() {
        assert_eq!(VfioError::DmaLoggingAlreadyStarted.code(), "ERR_VFIO_BUSY");
        let e = VfioError::DmaLoggingNotStarted;
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("start it first"), "{e}");
    }
}
