//! `VFIO_DEVICE_FEATURE`: the one ioctl behind migration v2, DMA logging and dma-buf
//! export, its buffers, its errors, and the per-device state those features keep.
//!
//! A feature buffer is a `vfio_device_feature` header (`argsz`, `flags`: the feature
//! number with `GET`, `SET` or `PROBE`) followed by the feature's payload. The kernel
//! answers ENOTTY for a feature the device's driver does not implement; that becomes
//! [`VfioError::Unsupported`] with the reason, never a bare errno.

use std::fs::File;
use std::sync::{Mutex, OnceLock};

use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
};

use crate::abi::{put_u32, set_argsz};
use crate::error::{Result, VfioError};
use crate::ioctls;
use crate::VfioDevice;

/// The size of the `vfio_device_feature` header (`argsz`, `flags`).
pub(crate) const HEADER: usize = 8;

/// A zeroed feature buffer: the header with `argsz` and `flags` set, then `payload`
/// bytes (the buffer is 8-aligned and rounded up to whole u64 words).
pub(crate) fn feature_buf(flags: u32, payload: usize) -> Vec<u64> {
    let len = HEADER + payload;
    let mut buf = vec![0u64; len.div_ceil(8)];
    set_argsz(&mut buf, len);
    put_u32(&mut buf, 4, flags);
    buf
}

/// `GET` of `feature`.
pub(crate) fn get(feature: u32) -> u32 {
    VFIO_DEVICE_FEATURE_GET | feature
}

/// `SET` of `feature`.
pub(crate) fn set(feature: u32) -> u32 {
    VFIO_DEVICE_FEATURE_SET | feature
}

/// The kernel release (`/proc/sys/kernel/osrelease`), for messages; `unknown` if unread.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// What the device keeps for its features: the migration data fd of the current data
/// transfer session, whether DMA logging runs, and the cached probes.
#[derive(Debug, Default)]
pub(crate) struct FeatureState {
    /// The data fd the last state change returned, while its session lasts.
    pub(crate) data_fd: Mutex<Option<File>>,
    /// Whether `DMA_LOGGING_START` succeeded and no stop followed.
    pub(crate) dma_logging: Mutex<bool>,
    /// Whether the driver answers the DMA logging probe.
    pub(crate) dma_logging_probe: OnceLock<bool>,
    /// Whether the driver answers the dma-buf export probe.
    #[cfg(feature = "vfio_cdev")]
    pub(crate) dma_buf_probe: OnceLock<bool>,
}

impl VfioDevice {
    /// Issues `VFIO_DEVICE_FEATURE` with `buf` (see [`feature_buf`]). ENOTTY (no such
    /// feature in the kernel or the driver) gives `Unsupported`; any other errno gives
    /// `Os` with `op` (the feature) and the device (the upstream-named methods turn it
    /// into [`VfioError::VfioDeviceFeature`]).
    pub(crate) fn device_feature(&self, op: &'static str, buf: &mut [u64]) -> Result<i32> {
        ioctls::device_feature(self.file(), buf).map_err(|e| self.feature_error(op, e))
    }

    /// The error of a failed feature call (see [`VfioDevice::device_feature`]).
    pub(crate) fn feature_error(&self, op: &'static str, e: std::io::Error) -> VfioError {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        if errno == libc::ENOTTY {
            return VfioError::unsupported(
                op,
                format!(
                    "the kernel ({}) or the driver of {} does not implement {op} \
                     (VFIO_DEVICE_FEATURE answered ENOTTY)",
                    kernel_release(),
                    self.name()
                ),
            );
        }
        VfioError::os(op, self.name().to_string(), e)
    }

    /// Whether the kernel and the driver offer `feature` with `access` (`GET` and/or
    /// `SET`), asked with `VFIO_DEVICE_FEATURE_PROBE`; the answer is cached in `cache`.
    ///
    /// # Errors
    /// The kernel's errno other than ENOTTY (no such feature) and EINVAL (not with this
    /// access), as `Os`.
    pub(crate) fn probe_feature(
        &self,
        op: &'static str,
        feature: u32,
        access: u32,
        cache: &OnceLock<bool>,
    ) -> Result<bool> {
        if let Some(known) = cache.get() {
            return Ok(*known);
        }
        let mut buf = feature_buf(VFIO_DEVICE_FEATURE_PROBE | access | feature, 0);
        let supported = match ioctls::device_feature(self.file(), &mut buf) {
            Ok(_) => true,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => false,
            Err(e) => return Err(self.feature_error(op, e)),
        };
        log::debug!("{op} on {}: probe says {supported}", self.name());
        Ok(*cache.get_or_init(|| supported))
    }
}

/// What to do about a failed feature call, by operation and errno.
pub(crate) fn feature_hint(op: &str, errno: i32) -> &'static str {
    match (op, errno) {
        ("VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE", libc::EINVAL) => {
            "the device cannot reach that state from its current one (ERROR is never a \
             target, and P2P and PRE_COPY states need the matching migration flags): read \
             the current state and the supported flags"
        }
        ("VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE", _) => {
            "the device may be left on the way to the new state: read its state, then set \
             RUNNING or STOP again, or reset it"
        }
        ("VFIO_MIG_GET_PRECOPY_INFO", libc::EINVAL) => {
            "precopy info exists only in PRE_COPY and PRE_COPY_P2P, on their data fd"
        }
        ("VFIO_MIG_GET_PRECOPY_INFO", libc::ENOTTY) => {
            "the data fd is not a precopy stream (STOP_COPY and RESUMING have no precopy info)"
        }
        ("VFIO_DEVICE_FEATURE_DMA_LOGGING_START", libc::EINVAL | libc::E2BIG) => {
            "the page size must be a power of two of at least 4 KiB and the ranges (at most \
             256) must not overlap; the device may also limit what it can track"
        }
        ("VFIO_DEVICE_FEATURE_DMA_LOGGING_START", libc::EBUSY) => {
            "DMA logging already runs on this device (started through another fd?)"
        }
        ("VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT", libc::EINVAL | libc::EOVERFLOW) => {
            "the page size must be the one logging started with and the range inside a \
             logged range"
        }
        ("VFIO_DEVICE_FEATURE_DMA_BUF", _) => {
            "the region must be mappable (a BAR with memory decoding on) and the ranges \
             page-aligned inside it"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::get_u32;
    use crate::ErrorKind;
    use vfio_bindings::bindings::vfio::VFIO_DEVICE_FEATURE_MIGRATION;

    #[test]
    fn buffers_hold_header_and_payload() {
        let buf = feature_buf(get(VFIO_DEVICE_FEATURE_MIGRATION), 8);
        assert_eq!(buf.len(), 2);
        assert_eq!(get_u32(&buf, 0), 16);
        assert_eq!(get_u32(&buf, 4), VFIO_DEVICE_FEATURE_GET | 1);
        // A payload that is not a whole word: argsz is exact, the buffer rounded up.
        let buf = feature_buf(set(2), 12);
        assert_eq!((buf.len(), get_u32(&buf, 0)), (3, 20));
        assert_eq!(get_u32(&buf, 4), VFIO_DEVICE_FEATURE_SET | 2);
    }

    #[test]
    fn pointer_features_never_take_the_safe_path() {
        // A plain file: the safe wrapper refuses before any ioctl (EINVAL, not ENOTTY).
        let file = File::open("/proc/self/stat").unwrap();
        for feature in [6, 8] {
            let mut buf = feature_buf(set(feature), 24);
            let e = ioctls::device_feature(&file, &mut buf).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "feature {feature}");
        }
        // Other features reach the kernel, which answers ENOTTY for a non-VFIO fd.
        let mut buf = feature_buf(get(VFIO_DEVICE_FEATURE_MIGRATION), 8);
        let e = ioctls::device_feature(&file, &mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }

    #[test]
    fn upstream_variants_keep_upstreams_payloads_and_get_kinds_and_hints() {
        let e = VfioError::os(
            "VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE",
            "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001",
            std::io::Error::from_raw_os_error(libc::EINVAL),
        );
        crate::error::assert_mentions(&e, &["on 83b8f4f2", "cannot reach that state"]);
        let up = e.into_upstream();
        assert!(matches!(&up, VfioError::VfioDeviceFeature(s) if s.errno() == libc::EINVAL));
        assert_eq!(up.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            (up.errno(), up.op()),
            (Some(libc::EINVAL), "VFIO_DEVICE_FEATURE")
        );
        let data = VfioError::os(
            "write",
            format!("mdev {}", crate::error::MIGRATION_DATA_FD),
            std::io::Error::from_raw_os_error(libc::EFAULT),
        );
        crate::error::assert_mentions(&data, &["same type"]);
        let up = data.into_upstream();
        assert!(matches!(&up, VfioError::VfioMigrationDataIo(_)), "{up:?}");
        assert_eq!((up.errno(), up.code()), (Some(libc::EFAULT), "ERR_VFIO_IO"));
        assert_eq!(VfioError::DmaLoggingAlreadyStarted.code(), "ERR_VFIO_BUSY");
        crate::error::assert_mentions(&VfioError::NoMigrationDataFd, &["STOP_COPY", "RESUMING"]);
        assert_eq!(
            VfioError::VfioMigGetPrecopyInfo(vmm_sys_util::errno::Error::new(libc::EINVAL)).code(),
            "ERR_VFIO_INVALID_ARGUMENT"
        );
    }
}
