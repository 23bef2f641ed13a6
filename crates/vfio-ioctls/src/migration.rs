//! VFIO migration v2 (`VFIO_DEVICE_FEATURE_MIGRATION`, `MIG_DEVICE_STATE`,
//! `MIG_DATA_SIZE`, `VFIO_MIG_GET_PRECOPY_INFO`): the device's state machine and the
//! data fd through which its state is saved and loaded.
//!
//! A device that supports migration is driven through the states of
//! [`MigrationState`]; the kernel takes the shortest path of arcs between two states.
//! Some arcs open a data transfer session: `STOP_COPY` and `PRE_COPY` (read the state
//! from the data fd) and `RESUMING` (write it). The device keeps the session's fd until
//! a state without one; [`VfioDevice::read_migration_data`] and
//! [`VfioDevice::write_migration_data`] use it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vfio_ioctls::{MigrationState, VfioContainer, VfioDevice};
//!
//! let container = Arc::new(VfioContainer::new(None)?);
//! let source = VfioDevice::open("/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001", container.clone())?;
//! let target = VfioDevice::open("83b8f4f2-509f-382f-3c1e-e6bfe0fa1002", container)?;
//! let state = source.save_device_state()?; // RUNNING -> STOP_COPY, read, STOP
//! target.load_device_state(&state)?;       // -> RESUMING, write, STOP
//! target.set_migration(MigrationState::Running)?;
//! # Ok::<(), vfio_ioctls::VfioError>(())
//! ```

use std::fs::File;
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::os::fd::FromRawFd;

use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
    VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY,
    VFIO_MIGRATION_STOP_COPY,
};

use crate::abi::{get_u32, get_u64, put_u32};
use crate::device_feature::{feature_buf, get, set, HEADER};
use crate::error::{Result, VfioError};
use crate::ioctls;
use crate::sync::lock;
use crate::VfioDevice;

const OP_MIGRATION: &str = "VFIO_DEVICE_FEATURE_MIGRATION";
const OP_STATE: &str = "VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE";
const OP_DATA_SIZE: &str = "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE";
const OP_PRECOPY: &str = "VFIO_MIG_GET_PRECOPY_INFO";

/// How much a read of the data fd asks for at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A migration state (`enum vfio_device_mig_state`), with the kernel's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MigrationState {
    /// The device failed a transition; only a reset leaves it.
    Error = 0,
    /// Stopped: no DMA, no interrupts, its state frozen.
    Stop = 1,
    /// Running normally.
    Running = 2,
    /// Stopped, its state readable from the data fd.
    StopCopy = 3,
    /// Stopped, taking a state written to the data fd.
    Resuming = 4,
    /// Running without initiating peer-to-peer DMA (`VFIO_MIGRATION_P2P`).
    RunningP2p = 5,
    /// Running, its state readable ahead of the stop (`VFIO_MIGRATION_PRE_COPY`).
    PreCopy = 6,
    /// `PRE_COPY` without peer-to-peer DMA (`P2P` and `PRE_COPY`).
    PreCopyP2p = 7,
}

impl MigrationState {
    /// Every state, by kernel number.
    pub const ALL: [MigrationState; 8] = [
        MigrationState::Error,
        MigrationState::Stop,
        MigrationState::Running,
        MigrationState::StopCopy,
        MigrationState::Resuming,
        MigrationState::RunningP2p,
        MigrationState::PreCopy,
        MigrationState::PreCopyP2p,
    ];

    /// The state with the kernel's number `raw`, if there is one.
    ///
    /// ```
    /// use vfio_ioctls::MigrationState;
    ///
    /// assert_eq!(MigrationState::from_raw(3), Some(MigrationState::StopCopy));
    /// assert_eq!(MigrationState::from_raw(8), None);
    /// assert_eq!(MigrationState::StopCopy as u32, 3);
    /// ```
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }

    /// The state's name in the JavaScript API: `running`, `stop-copy`, `pre-copy-p2p`...
    pub fn name(self) -> &'static str {
        match self {
            MigrationState::Error => "error",
            MigrationState::Stop => "stop",
            MigrationState::Running => "running",
            MigrationState::StopCopy => "stop-copy",
            MigrationState::Resuming => "resuming",
            MigrationState::RunningP2p => "running-p2p",
            MigrationState::PreCopy => "pre-copy",
            MigrationState::PreCopyP2p => "pre-copy-p2p",
        }
    }

    /// The state named `name` (see [`MigrationState::name`]).
    ///
    /// ```
    /// use vfio_ioctls::MigrationState;
    ///
    /// assert_eq!(MigrationState::from_name("pre-copy-p2p"), Some(MigrationState::PreCopyP2p));
    /// assert_eq!(MigrationState::from_name("paused"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the state has a data transfer session (a data fd): `STOP_COPY`,
    /// `RESUMING`, `PRE_COPY` and `PRE_COPY_P2P`.
    pub fn has_data(self) -> bool {
        matches!(
            self,
            MigrationState::StopCopy
                | MigrationState::Resuming
                | MigrationState::PreCopy
                | MigrationState::PreCopyP2p
        )
    }

    /// The `VFIO_MIGRATION_*` flags a device must report for this state to exist.
    pub fn required_flags(self) -> u64 {
        let (stop_copy, p2p, pre_copy) = (
            u64::from(VFIO_MIGRATION_STOP_COPY),
            u64::from(VFIO_MIGRATION_P2P),
            u64::from(VFIO_MIGRATION_PRE_COPY),
        );
        match self {
            MigrationState::Error | MigrationState::Running => 0,
            MigrationState::Stop | MigrationState::StopCopy | MigrationState::Resuming => stop_copy,
            MigrationState::RunningP2p => stop_copy | p2p,
            MigrationState::PreCopy => stop_copy | pre_copy,
            MigrationState::PreCopyP2p => stop_copy | p2p | pre_copy,
        }
    }
}

impl std::fmt::Display for MigrationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a device's migration driver supports (`VFIO_DEVICE_FEATURE_MIGRATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationSupport {
    /// `VFIO_MIGRATION_*` bits.
    pub flags: u64,
}

impl MigrationSupport {
    /// `STOP_COPY`: `STOP`, `STOP_COPY` and `RESUMING` exist (every migratable device).
    pub fn stop_copy(&self) -> bool {
        self.flags & u64::from(VFIO_MIGRATION_STOP_COPY) != 0
    }

    /// `P2P`: `RUNNING_P2P` exists.
    pub fn p2p(&self) -> bool {
        self.flags & u64::from(VFIO_MIGRATION_P2P) != 0
    }

    /// `PRE_COPY`: `PRE_COPY` exists (and `PRE_COPY_P2P` with `P2P`).
    pub fn pre_copy(&self) -> bool {
        self.flags & u64::from(VFIO_MIGRATION_PRE_COPY) != 0
    }

    /// The states these flags give, by kernel number.
    ///
    /// ```
    /// use vfio_ioctls::{MigrationState, MigrationSupport};
    ///
    /// let support = MigrationSupport { flags: 1 }; // STOP_COPY only
    /// assert_eq!(support.states(), [
    ///     MigrationState::Error, MigrationState::Stop, MigrationState::Running,
    ///     MigrationState::StopCopy, MigrationState::Resuming,
    /// ]);
    /// ```
    pub fn states(&self) -> Vec<MigrationState> {
        MigrationState::ALL
            .into_iter()
            .filter(|s| s.required_flags() & !self.flags == 0)
            .collect()
    }
}

/// Remaining migration data reported by the kernel during precopy
/// (`VFIO_MIG_GET_PRECOPY_INFO`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrecopyInfo {
    /// Bytes that must still be transferred to complete the initial state.
    pub initial_bytes: u64,
    /// Bytes of dirty state that have accumulated since precopy started.
    pub dirty_bytes: u64,
}

/// Keeps or drops the session's data fd after a change to `state` that returned
/// `new_fd`: a new fd replaces the old one; a state without data ends the session;
/// a state with data and no new fd (`PRE_COPY_P2P` to `STOP_COPY`) keeps the old one.
pub(crate) fn update_data_fd(slot: &mut Option<File>, state: u32, new_fd: Option<File>) {
    let has_data = MigrationState::from_raw(state).is_some_and(MigrationState::has_data);
    match new_fd {
        Some(fd) => *slot = Some(fd),
        None if !has_data => *slot = None,
        None => {}
    }
}

/// Reads `file` to its end into a vector grown fallibly (`hint` bytes reserved first).
fn read_to_end_fallible(file: &mut File, hint: usize) -> std::io::Result<Vec<u8>> {
    let oom = || std::io::Error::from_raw_os_error(libc::ENOMEM);
    let mut data = Vec::new();
    data.try_reserve(hint.max(READ_CHUNK)).map_err(|_| oom())?;
    loop {
        let len = data.len();
        if data.capacity() - len < READ_CHUNK {
            data.try_reserve(READ_CHUNK).map_err(|_| oom())?;
        }
        data.resize(len + READ_CHUNK, 0);
        match file.read(&mut data[len..]) {
            Ok(0) => {
                data.truncate(len);
                return Ok(data);
            }
            Ok(n) => data.truncate(len + n),
            Err(e) if e.kind() == IoErrorKind::Interrupted => data.truncate(len),
            Err(e) => return Err(e),
        }
    }
}

/// Migration v2, upstream's names and signatures: what the kernel refuses comes as
/// upstream's variants ([`VfioError::VfioDeviceFeature`], ...; the structured error is
/// logged first). A driver without migration gives `Unsupported` saying so.
impl VfioDevice {
    /// Queries whether the device supports VFIO migration v2
    /// (`VFIO_DEVICE_FEATURE_MIGRATION`): `Some(flags)` (`VFIO_MIGRATION_*`), or `None`
    /// when the kernel or the device's driver has no migration.
    ///
    /// # Errors
    /// The kernel's errno other than ENOTTY or EINVAL.
    pub fn query_migration_support(&self) -> Result<Option<u64>> {
        self.try_query_migration_support()
            .map_err(VfioError::into_upstream)
    }

    /// Sets the migration state (`enum vfio_device_mig_state`, the kernel's numbers; see
    /// [`MigrationState`]). The kernel walks the arcs to it; when the new state opens a
    /// data transfer session, the device keeps its data fd until a state without one.
    ///
    /// # Errors
    /// `Unsupported` for a device without migration; [`VfioError::VfioDeviceFeature`]
    /// when the kernel refuses (EINVAL: no path to that state). After a failure the
    /// device may be in a state on the way; its data fd is dropped.
    pub fn set_migration_state(&self, state: u32) -> Result<()> {
        self.try_set_migration_state(state)
            .map_err(VfioError::into_upstream)
    }

    /// The current migration state (the kernel's number; see [`MigrationState`]).
    ///
    /// # Errors
    /// `Unsupported` for a device without migration; [`VfioError::VfioDeviceFeature`].
    pub fn get_migration_state(&self) -> Result<u32> {
        self.raw_migration_state().map_err(VfioError::into_upstream)
    }

    /// How many bytes the device's state in `STOP_COPY` is expected to take
    /// (`VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`): an estimate the driver gives.
    ///
    /// # Errors
    /// `Unsupported` for a device without migration; [`VfioError::VfioDeviceFeature`].
    pub fn get_mig_data_size(&self) -> Result<u64> {
        self.migration_data_size().map_err(VfioError::into_upstream)
    }

    /// The data left to read in `PRE_COPY` (`VFIO_MIG_GET_PRECOPY_INFO` on the data fd).
    ///
    /// # Errors
    /// [`VfioError::NoMigrationDataFd`] without a session;
    /// [`VfioError::VfioMigGetPrecopyInfo`] (EINVAL outside the precopy states).
    pub fn mig_get_precopy_info(&self) -> Result<PrecopyInfo> {
        self.precopy_info().map_err(VfioError::into_upstream)
    }

    /// Reads from the session's data fd into `buf`; 0 at the end of the data (or, in
    /// `PRE_COPY`, of the data available now).
    ///
    /// # Errors
    /// [`VfioError::NoMigrationDataFd`]; [`VfioError::VfioMigrationDataIo`].
    pub fn read_migration_data(&self, buf: &mut [u8]) -> Result<usize> {
        self.try_read_migration_data(buf)
            .map_err(VfioError::into_upstream)
    }

    /// Reads the session's data fd to its end.
    ///
    /// # Errors
    /// As [`VfioDevice::read_migration_data`].
    pub fn read_migration_data_to_end(&self) -> Result<Vec<u8>> {
        self.try_read_migration_data_to_end()
            .map_err(VfioError::into_upstream)
    }

    /// Writes all of `data` to the session's data fd (in `RESUMING`).
    ///
    /// # Errors
    /// [`VfioError::NoMigrationDataFd`]; [`VfioError::VfioMigrationDataIo`].
    pub fn write_migration_data(&self, data: &[u8]) -> Result<()> {
        self.try_write_migration_data(data)
            .map_err(VfioError::into_upstream)
    }
}

/// Migration v2 with our errors: the kernel's refusals as `Os` with the feature (or
/// `read`/`write`), the device and the errno, and a hint.
impl VfioDevice {
    /// As [`VfioDevice::query_migration_support`], with our errors.
    ///
    /// # Errors
    /// The kernel's errno other than ENOTTY or EINVAL.
    pub fn try_query_migration_support(&self) -> Result<Option<u64>> {
        let mut buf = feature_buf(get(VFIO_DEVICE_FEATURE_MIGRATION), 8);
        match self.device_feature(OP_MIGRATION, &mut buf) {
            Ok(_) => Ok(Some(get_u64(&buf, HEADER))),
            Err(VfioError::Unsupported { .. }) => Ok(None),
            Err(e) if e.errno() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// As [`VfioDevice::set_migration_state`], with our errors.
    ///
    /// # Errors
    /// `Unsupported` for a device without migration; `Os` with the errno otherwise.
    pub fn try_set_migration_state(&self, state: u32) -> Result<()> {
        let mut buf = feature_buf(set(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE), 8);
        put_u32(&mut buf, HEADER, state);
        put_u32(&mut buf, HEADER + 4, u32::MAX); // data_fd = -1
        let mut slot = lock(&self.features.data_fd);
        if let Err(e) = self.device_feature(OP_STATE, &mut buf) {
            *slot = None;
            return Err(e);
        }
        let raw_fd = get_u32(&buf, HEADER + 4) as i32;
        let new_fd = (raw_fd >= 0).then(|| {
            // SAFETY: on success with a state that starts a session the kernel installed a
            // new fd for it and returned it in `data_fd`; nothing else owns it.
            unsafe { File::from_raw_fd(raw_fd) }
        });
        update_data_fd(&mut slot, state, new_fd);
        Ok(())
    }

    fn raw_migration_state(&self) -> Result<u32> {
        let mut buf = feature_buf(get(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE), 8);
        self.device_feature(OP_STATE, &mut buf)?;
        Ok(get_u32(&buf, HEADER))
    }

    /// The driver's estimate of the `STOP_COPY` state's size in bytes.
    ///
    /// # Errors
    /// `Unsupported` for a device without migration; `Os` with the errno otherwise.
    pub fn migration_data_size(&self) -> Result<u64> {
        let mut buf = feature_buf(get(VFIO_DEVICE_FEATURE_MIG_DATA_SIZE), 8);
        self.device_feature(OP_DATA_SIZE, &mut buf)?;
        Ok(get_u64(&buf, HEADER))
    }

    /// The data left to read in `PRE_COPY`.
    ///
    /// # Errors
    /// [`VfioError::NoMigrationDataFd`] without a session; `Os` (EINVAL outside the
    /// precopy states).
    pub fn precopy_info(&self) -> Result<PrecopyInfo> {
        let slot = lock(&self.features.data_fd);
        let fd = slot.as_ref().ok_or(VfioError::NoMigrationDataFd)?;
        let info = ioctls::mig_get_precopy_info(fd)
            .map_err(|e| VfioError::os(OP_PRECOPY, self.data_fd_name(), e))?;
        Ok(PrecopyInfo {
            initial_bytes: info.initial_bytes,
            dirty_bytes: info.dirty_bytes,
        })
    }

    /// As [`VfioDevice::read_migration_data`], with our errors.
    ///
    /// # Errors
    /// [`VfioError::NoMigrationDataFd`]; `Os` (`read`) with the errno.
    pub fn try_read_migration_data(&self, buf: &mut [u8]) -> Result<usize> {
        let mut slot = lock(&self.features.data_fd);
        let fd = slot.as_mut().ok_or(VfioError::NoMigrationDataFd)?;
        fd.read(buf)
            .map_err(|e| VfioError::os("read", self.data_fd_name(), e))
    }

    /// As [`VfioDevice::read_migration_data_to_end`], with our errors; the buffer is grown
    /// fallibly, from [`VfioDevice::migration_data_size`]'s estimate.
    ///
    /// # Errors
    /// As [`VfioDevice::try_read_migration_data`]; `ENOMEM` when it does not fit memory.
    pub fn try_read_migration_data_to_end(&self) -> Result<Vec<u8>> {
        let hint = self
            .migration_data_size()
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .min(1 << 30);
        let mut slot = lock(&self.features.data_fd);
        let fd = slot.as_mut().ok_or(VfioError::NoMigrationDataFd)?;
        read_to_end_fallible(fd, hint).map_err(|e| VfioError::os("read", self.data_fd_name(), e))
    }

    /// As [`VfioDevice::write_migration_data`], with our errors.
    ///
    /// # Errors
    /// [`VfioError::NoMigrationDataFd`]; `Os` (`write`) with the errno.
    pub fn try_write_migration_data(&self, data: &[u8]) -> Result<()> {
        let mut slot = lock(&self.features.data_fd);
        let fd = slot.as_mut().ok_or(VfioError::NoMigrationDataFd)?;
        fd.write_all(data)
            .map_err(|e| VfioError::os("write", self.data_fd_name(), e))
    }

    /// How the data fd is named in errors.
    fn data_fd_name(&self) -> String {
        format!("{} {}", self.name(), crate::error::MIGRATION_DATA_FD)
    }
}

/// Migration v2, typed.
impl VfioDevice {
    /// What the device's migration driver supports, or `None` without one.
    ///
    /// # Errors
    /// As [`VfioDevice::query_migration_support`].
    pub fn migration_support(&self) -> Result<Option<MigrationSupport>> {
        Ok(self
            .try_query_migration_support()?
            .map(|flags| MigrationSupport { flags }))
    }

    /// The current migration state.
    ///
    /// # Errors
    /// `Unsupported` for a device without migration; `Os` with the errno; `Io` for a
    /// number the kernel should not give.
    pub fn migration_state(&self) -> Result<MigrationState> {
        let raw = self.raw_migration_state()?;
        MigrationState::from_raw(raw).ok_or_else(|| {
            VfioError::os(
                OP_STATE,
                self.name().to_string(),
                std::io::Error::new(
                    IoErrorKind::InvalidData,
                    format!("the kernel reports unknown migration state {raw}"),
                ),
            )
        })
    }

    /// Sets the migration state, after checking that the device supports it.
    ///
    /// # Errors
    /// `Unsupported` when the device has no migration, or lacks the flag the state needs
    /// (`RUNNING_P2P` needs P2P, `PRE_COPY` needs PRE_COPY); `InvalidArgument` for
    /// `Error`, which is no target; as [`VfioDevice::try_set_migration_state`] otherwise.
    pub fn set_migration(&self, state: MigrationState) -> Result<()> {
        if state == MigrationState::Error {
            return Err(VfioError::invalid(
                OP_STATE,
                "ERROR is not a state a device can be set to (only a failed transition \
                 leads there; reset the device to leave it)",
            ));
        }
        let support = self.require_migration()?;
        let missing = state.required_flags() & !support.flags;
        if missing != 0 {
            return Err(VfioError::unsupported(
                OP_STATE,
                format!(
                    "{} cannot enter {state}: its migration flags {:#x} lack {missing:#x} \
                     (bit 1 P2P, bit 2 PRE_COPY); it supports {}",
                    self.name(),
                    support.flags,
                    names(&support.states())
                ),
            ));
        }
        self.try_set_migration_state(state as u32)
    }

    /// Saves the device's state: `STOP_COPY` (from `RUNNING` the kernel stops the device
    /// on the way), reads the data fd to its end, then `STOP`. The device stays stopped.
    ///
    /// # Errors
    /// As [`VfioDevice::set_migration`] and [`VfioDevice::try_read_migration_data_to_end`].
    pub fn save_device_state(&self) -> Result<Vec<u8>> {
        self.set_migration(MigrationState::StopCopy)?;
        let data = self.try_read_migration_data_to_end()?;
        self.set_migration(MigrationState::Stop)?;
        Ok(data)
    }

    /// Loads a state [`VfioDevice::save_device_state`] saved (on a device of the same
    /// type): `RESUMING`, writes `data`, then `STOP`, where the driver takes it. The
    /// device stays stopped: set `RUNNING` to run it.
    ///
    /// # Errors
    /// As [`VfioDevice::set_migration`] and [`VfioDevice::try_write_migration_data`];
    /// the kernel's errno from the last step when the driver rejects the state.
    pub fn load_device_state(&self, data: &[u8]) -> Result<()> {
        self.set_migration(MigrationState::Resuming)?;
        self.try_write_migration_data(data)?;
        self.set_migration(MigrationState::Stop)
    }

    fn require_migration(&self) -> Result<MigrationSupport> {
        self.migration_support()?.ok_or_else(|| {
            VfioError::unsupported(
                OP_MIGRATION,
                format!(
                    "{} has no migration driver: the kernel ({}) or its VFIO driver \
                     implements no VFIO migration v2 (VFIO_DEVICE_FEATURE_MIGRATION \
                     answered ENOTTY)",
                    self.name(),
                    crate::device_feature::kernel_release()
                ),
            )
        })
    }
}

fn names(states: &[MigrationState]) -> String {
    states
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    #[test]
    fn states_round_trip_by_number_and_name() {
        for (n, s) in MigrationState::ALL.into_iter().enumerate() {
            assert_eq!(s as u32, n as u32);
            assert_eq!(MigrationState::from_raw(n as u32), Some(s));
            assert_eq!(MigrationState::from_name(s.name()), Some(s));
        }
        assert_eq!(MigrationState::from_raw(8), None);
        assert_eq!(MigrationState::from_name("Running"), None);
        assert_eq!(MigrationState::PreCopyP2p.to_string(), "pre-copy-p2p");
    }

    #[test]
    fn flags_give_states() {
        let all = MigrationSupport { flags: 7 };
        assert!(all.stop_copy() && all.p2p() && all.pre_copy());
        assert_eq!(all.states(), MigrationState::ALL);
        let p2p = MigrationSupport { flags: 3 };
        assert!(!p2p.pre_copy());
        assert!(p2p.states().contains(&MigrationState::RunningP2p));
        assert!(!p2p.states().contains(&MigrationState::PreCopyP2p));
        assert_eq!(
            MigrationState::PreCopyP2p.required_flags(),
            7,
            "PRE_COPY_P2P needs all three"
        );
    }

    fn temp_file(tag: &str) -> File {
        let path = std::env::temp_dir().join(format!("vfio-mig-{tag}-{}", std::process::id()));
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn the_data_fd_lives_as_long_as_its_session() {
        let mut slot = None;
        update_data_fd(
            &mut slot,
            MigrationState::PreCopy as u32,
            Some(temp_file("a")),
        );
        assert!(slot.is_some(), "PRE_COPY opens a session");
        // PRE_COPY_P2P -> STOP_COPY gives no new fd: the precopy fd carries on.
        update_data_fd(&mut slot, MigrationState::StopCopy as u32, None);
        assert!(slot.is_some());
        update_data_fd(&mut slot, MigrationState::Stop as u32, None);
        assert!(slot.is_none(), "STOP ends it");
        update_data_fd(
            &mut slot,
            MigrationState::Resuming as u32,
            Some(temp_file("b")),
        );
        update_data_fd(&mut slot, MigrationState::Running as u32, None);
        assert!(slot.is_none(), "RUNNING ends it");
        // A number the crate does not know has no session.
        slot = Some(temp_file("c"));
        update_data_fd(&mut slot, 99, None);
        assert!(slot.is_none());
    }

    #[test]
    fn reads_to_the_end_across_chunks() {
        let mut f = temp_file("d");
        let data: Vec<u8> = (0..READ_CHUNK * 2 + 17).map(|i| i as u8).collect();
        f.write_all(&data).unwrap();
        f.rewind().unwrap();
        assert_eq!(read_to_end_fallible(&mut f, 10).unwrap(), data);
        assert!(read_to_end_fallible(&mut f, 0).unwrap().is_empty());
    }
}
