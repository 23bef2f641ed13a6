//! `Device`'s migration v2, DMA logging and dma-buf members (the core's `migration.rs`,
//! `dma_logging.rs`, `dma_buf.rs`). State changes and data fd reads and writes can block
//! on the driver, so they run on the libuv pool as Promises.

use std::os::fd::IntoRawFd;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use vfio_ioctls::{DmaLoggingRange, MigrationState, VfioError, VfioRegionDmaRange};

use crate::device::Device;
use crate::error::{invalid, to_u32, to_u64, IntoJs};
use crate::task::{self, CoreTask};

/// What a device's migration driver supports (`VFIO_DEVICE_FEATURE_MIGRATION`).
#[napi(object)]
pub struct MigrationSupport {
    /// `VFIO_MIGRATION_*` bits.
    pub flags: u32,
    /// `STOP_COPY`: stop, stop-copy and resuming exist.
    pub stop_copy: bool,
    /// `P2P`: running-p2p exists.
    #[napi(js_name = "p2p")]
    pub p2p: bool,
    /// `PRE_COPY`: pre-copy exists (pre-copy-p2p with `p2p`).
    pub pre_copy: bool,
    /// The states these flags give, by name.
    pub states: Vec<String>,
}

/// Data left to read in pre-copy (`VFIO_MIG_GET_PRECOPY_INFO`).
#[napi(object)]
pub struct PrecopyInfo {
    /// Bytes of the initial state still to read.
    pub initial_bytes: f64,
    /// Bytes of state dirtied since pre-copy started.
    pub dirty_bytes: f64,
}

/// An IOVA range for DMA logging.
#[napi(object, js_name = "DmaLoggingRange")]
pub struct DmaLoggingRangeJs {
    /// Start IOVA.
    pub iova: f64,
    /// Length in bytes.
    pub length: f64,
}

/// A range of a region for dma-buf export.
#[napi(object, js_name = "RegionRange")]
pub struct RegionRangeJs {
    /// Offset in the region.
    pub offset: f64,
    /// Length in bytes.
    pub length: f64,
}

fn state_of(op: &str, name: &str) -> Result<MigrationState> {
    MigrationState::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = MigrationState::ALL.iter().map(|s| s.name()).collect();
        invalid(
            op,
            &format!(
                "{name:?} is not a migration state; expected one of {}",
                names.join(", ")
            ),
        )
    })
}

fn logging_range(op: &str, r: &DmaLoggingRangeJs) -> Result<DmaLoggingRange> {
    Ok(DmaLoggingRange {
        iova: to_u64(op, "iova", r.iova)?,
        length: to_u64(op, "length", r.length)?,
    })
}

#[napi]
impl Device {
    /// What the device's migration driver supports, or null without one.
    #[napi]
    pub fn migration_support(&self) -> Result<Option<MigrationSupport>> {
        Ok(self
            .get()?
            .migration_support()
            .js()?
            .map(|s| MigrationSupport {
                // The kernel defines three bits.
                flags: (s.flags & u64::from(u32::MAX)) as u32,
                stop_copy: s.stop_copy(),
                p2p: s.p2p(),
                pre_copy: s.pre_copy(),
                states: s.states().iter().map(|s| s.name().to_string()).collect(),
            }))
    }

    /// The current migration state, by name.
    #[napi]
    pub fn migration_state(&self) -> Result<String> {
        Ok(self.get()?.migration_state().js()?.name().to_string())
    }

    /// Sets the migration state (by name) on the libuv pool.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn set_migration_state(&self, state: String) -> Result<AsyncTask<CoreTask<(), ()>>> {
        let state = state_of("setMigrationState", &state)?;
        let device = self.get()?.clone();
        Ok(task::spawn(move || device.set_migration(state), |()| ()))
    }

    /// The driver's estimate of the stop-copy state's size in bytes.
    #[napi]
    pub fn migration_data_size(&self) -> Result<f64> {
        Ok(self.get()?.migration_data_size().js()? as f64)
    }

    /// Data left to read in pre-copy.
    #[napi]
    pub fn precopy_info(&self) -> Result<PrecopyInfo> {
        let info = self.get()?.precopy_info().js()?;
        Ok(PrecopyInfo {
            initial_bytes: info.initial_bytes as f64,
            dirty_bytes: info.dirty_bytes as f64,
        })
    }

    /// Reads up to `length` bytes of the data fd on the libuv pool; empty at the end.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn read_migration_data(&self, length: f64) -> Result<AsyncTask<CoreTask<Vec<u8>, Buffer>>> {
        let n = to_u64("readMigrationData", "length", length)?;
        let n = usize::try_from(n.min(16 << 20)).unwrap_or(16 << 20);
        let device = self.get()?.clone();
        Ok(task::spawn(
            move || {
                let mut buf = Vec::new();
                buf.try_reserve_exact(n).map_err(|_| {
                    VfioError::out_of_range("readMigrationData", "cannot allocate the buffer")
                })?;
                buf.resize(n, 0);
                let got = device.try_read_migration_data(&mut buf)?;
                buf.truncate(got);
                Ok(buf)
            },
            Buffer::from,
        ))
    }

    /// Writes `data` to the data fd on the libuv pool (the bytes are copied first).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn write_migration_data(&self, data: &[u8]) -> Result<AsyncTask<CoreTask<(), ()>>> {
        let data = data.to_vec();
        let device = self.get()?.clone();
        Ok(task::spawn(
            move || device.try_write_migration_data(&data),
            |()| (),
        ))
    }

    /// Saves the device state (stop-copy, read to the end, stop) on the libuv pool.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn save_state(&self) -> Result<AsyncTask<CoreTask<Vec<u8>, Buffer>>> {
        let device = self.get()?.clone();
        Ok(task::spawn(
            move || device.save_device_state(),
            Buffer::from,
        ))
    }

    /// Loads a saved state (resuming, write, stop) on the libuv pool.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn load_state(&self, data: &[u8]) -> Result<AsyncTask<CoreTask<(), ()>>> {
        let data = data.to_vec();
        let device = self.get()?.clone();
        Ok(task::spawn(
            move || device.load_device_state(&data),
            |()| (),
        ))
    }

    /// Starts DMA dirty logging; returns the page size the device chose.
    #[napi]
    pub fn start_dma_logging(&self, page_size: f64, ranges: Vec<DmaLoggingRangeJs>) -> Result<f64> {
        const OP: &str = "startDmaLogging";
        let page_size = to_u64(OP, "pageSize", page_size)?;
        let ranges = ranges
            .iter()
            .map(|r| logging_range(OP, r))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.get()?.try_start_dma_logging(page_size, &ranges).js()? as f64)
    }

    /// Stops DMA dirty logging.
    #[napi]
    pub fn stop_dma_logging(&self) -> Result<()> {
        self.get()?.try_stop_dma_logging().js()
    }

    /// The dirty bitmap of `range` (one bit per page, little-endian u64 words), cleared.
    #[napi]
    pub fn report_dma_logging(&self, range: DmaLoggingRangeJs, page_size: f64) -> Result<Buffer> {
        const OP: &str = "reportDmaLogging";
        let range = logging_range(OP, &range)?;
        let page_size = to_u64(OP, "pageSize", page_size)?;
        let words = self.get()?.try_report_dma_logging(range, page_size).js()?;
        Ok(words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<u8>>()
            .into())
    }

    /// Exports ranges of region `index` as a dma-buf; returns its fd (the caller closes it).
    #[napi]
    pub fn export_dma_buf(&self, index: f64, ranges: Vec<RegionRangeJs>) -> Result<i32> {
        const OP: &str = "exportDmaBuf";
        let index = to_u32(OP, "index", index)?;
        let ranges = ranges
            .iter()
            .map(|r| {
                Ok(VfioRegionDmaRange {
                    offset: to_u64(OP, "offset", r.offset)?,
                    length: to_u64(OP, "length", r.length)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let file = self
            .get()?
            .dma_buf_file(index, &ranges, libc::O_CLOEXEC as u32 | libc::O_RDWR as u32)
            .js()?;
        Ok(file.into_raw_fd())
    }
}
