//! Migration v2, DMA logging and dma-buf export against the guest's kernel: on 6.12,
//! two mtty mdevs (the kernel's sample mdev driver, built in there) move a serial
//! port's state from one to the other; edu (vfio-pci, no variant driver) refuses
//! migration, logging and export with `Unsupported`. On 6.1 (no mtty) the tests assert
//! that the mtty parent is absent and edu's refusals.

use std::sync::Arc;

use vfio_ioctls::sysfs::Sysfs;
use vfio_ioctls::{
    DmaLoggingRange, ErrorKind, MigrationState, VfioContainer, VfioDevice, VfioError,
};

use super::{assert_kind, container, open, setup, EDU};

const MTTY_TYPE: &str = "mtty-1";
// 16550 registers at region 0 (the port's I/O BAR), as mtty emulates them.
const UART_TX_RX: u64 = 0;
const UART_LCR: u64 = 3;
const UART_LSR: u64 = 5;
const UART_SCR: u64 = 7;
const UART_LSR_DR: u8 = 1;
/// `offsetof(struct mtty_data, ports)` + one `struct serial_port` (mtty.c: 8 registers,
/// a 16-byte FIFO and its 3 indices, 2 flags, a u16 divisor, 3 bytes, padded to 36).
const MTTY_1_DATA_SIZE: usize = 24 + 36;

/// Whether the guest runs the 6.12 kernel (with mtty) rather than Debian's 6.1.
fn kernel_has_mtty() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 12)
}

/// An mtty mdev, removed on drop (after its devices are closed).
struct Mdev {
    uuid: String,
}

impl Mdev {
    fn create(n: u32) -> Mdev {
        let uuid = format!(
            "6d7a7474-0000-4000-8000-{:012x}",
            u64::from(std::process::id()) << 8 | u64::from(n)
        );
        let sysfs = Sysfs::new();
        // A leftover of an earlier run that died.
        let _ = sysfs.remove_mdev(&uuid);
        sysfs
            .create_mdev("mtty", MTTY_TYPE, &uuid)
            .unwrap_or_else(|e| panic!("creating mtty mdev {uuid}: {e}"));
        Mdev { uuid }
    }
}

impl Drop for Mdev {
    fn drop(&mut self) {
        if let Err(e) = Sysfs::new().remove_mdev(&self.uuid) {
            eprintln!("removing mdev {}: {e}", self.uuid);
        }
    }
}

fn read_reg(dev: &VfioDevice, offset: u64) -> u8 {
    let mut b = [0u8];
    dev.try_region_read(0, &mut b, offset)
        .unwrap_or_else(|e| panic!("reading port register {offset}: {e}"));
    b[0]
}

fn write_reg(dev: &VfioDevice, offset: u64, value: u8) {
    dev.try_region_write(0, &[value], offset)
        .unwrap_or_else(|e| panic!("writing port register {offset}: {e}"));
}

/// Two mtty mdevs open in one container. Fields drop in order: the devices close
/// before the container, and both before the mdevs are removed.
struct MttyPair {
    src: Arc<VfioDevice>,
    dst: Arc<VfioDevice>,
    _container: Arc<VfioContainer>,
    _mdevs: (Mdev, Mdev),
}

/// Two mtty mdevs (each its own group), or on 6.1 the assertion that there is no mtty.
fn two_mtty() -> Option<MttyPair> {
    let types = Sysfs::new().mdev_types().expect("listing mdev types");
    if !kernel_has_mtty() {
        assert!(
            types.iter().all(|t| t.parent != "mtty"),
            "6.1 has no mtty, found {types:?}"
        );
        let e = Sysfs::new()
            .create_mdev("mtty", MTTY_TYPE, "6d7a7474-0000-4000-8000-000000000001")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        return None;
    }
    assert!(
        types
            .iter()
            .any(|t| t.parent == "mtty" && t.id == MTTY_TYPE),
        "6.12 builds mtty in: {types:?}"
    );
    let (a, b) = (Mdev::create(1), Mdev::create(2));
    let c = container();
    // One by UUID, one by its sysfs path: both name the device by UUID in its group.
    let src = open(&a.uuid, &c);
    let dst = open(&format!("/sys/bus/mdev/devices/{}", b.uuid), &c);
    assert_eq!(src.name(), a.uuid);
    assert_eq!(dst.name(), b.uuid);
    assert_ne!(
        src.iommu_group().unwrap(),
        dst.iommu_group().unwrap(),
        "each mdev has its own group"
    );
    Some(MttyPair {
        src,
        dst,
        _container: c,
        _mdevs: (a, b),
    })
}

#[test]
fn mtty_state_migrates_between_two_mdevs() {
    let _guard = setup(&[]);
    let Some(pair) = two_mtty() else {
        return;
    };
    let (src, dst) = (&pair.src, &pair.dst);
    // mtty: STOP_COPY | P2P | PRE_COPY.
    assert_eq!(src.query_migration_support().unwrap(), Some(7));
    assert_eq!(src.migration_state().unwrap(), MigrationState::Running);
    assert_eq!(src.get_mig_data_size().unwrap(), MTTY_1_DATA_SIZE as u64);

    // The source port: line control, scratch, three bytes in its loopback FIFO.
    write_reg(src, UART_LCR, 0x03);
    write_reg(src, UART_SCR, 0x5a);
    for byte in *b"vm!" {
        write_reg(src, UART_TX_RX, byte);
    }
    assert_eq!(read_reg(dst, UART_SCR), 0, "the target starts blank");

    let state = src.save_device_state().unwrap();
    assert_eq!(state.len(), MTTY_1_DATA_SIZE);
    assert_eq!(src.migration_state().unwrap(), MigrationState::Stop);
    let e = assert_kind(
        src.read_migration_data(&mut [0u8; 8]),
        ErrorKind::InvalidArgument,
        "no session in STOP",
    );
    assert!(matches!(e, VfioError::NoMigrationDataFd), "{e:?}");

    dst.load_device_state(&state).unwrap();
    assert_eq!(dst.migration_state().unwrap(), MigrationState::Stop);
    dst.set_migration(MigrationState::Running).unwrap();
    assert_eq!(read_reg(dst, UART_LCR), 0x03);
    assert_eq!(read_reg(dst, UART_SCR), 0x5a);
    assert_ne!(read_reg(dst, UART_LSR) & UART_LSR_DR, 0, "data ready");
    let fifo: Vec<u8> = (0..3).map(|_| read_reg(dst, UART_TX_RX)).collect();
    assert_eq!(fifo, b"vm!");
    assert_eq!(
        read_reg(dst, UART_LSR) & UART_LSR_DR,
        0,
        "the FIFO is drained"
    );
    src.set_migration(MigrationState::Running).unwrap();
}

#[test]
fn mtty_precopy_then_stop_copy_is_one_stream() {
    let _guard = setup(&[]);
    let Some(pair) = two_mtty() else {
        return;
    };
    let (src, dst) = (&pair.src, &pair.dst);
    write_reg(src, UART_SCR, 0xc3);
    // Upstream's raw form: the kernel's numbers.
    src.set_migration_state(MigrationState::PreCopy as u32)
        .unwrap();
    assert_eq!(
        src.get_migration_state().unwrap(),
        MigrationState::PreCopy as u32
    );
    let info = src.mig_get_precopy_info().unwrap();
    assert_eq!(
        info.initial_bytes, 24,
        "the header is ready ahead of the stop"
    );
    assert_eq!(info.dirty_bytes, 0);
    let mut stream = vec![0u8; 64];
    let n = src.read_migration_data(&mut stream).unwrap();
    assert_eq!(n, 24);
    stream.truncate(n);
    assert_eq!(src.mig_get_precopy_info().unwrap().initial_bytes, 0);
    // PRE_COPY -> STOP_COPY keeps the same data fd, which now holds the ports.
    src.set_migration(MigrationState::StopCopy).unwrap();
    let e = assert_kind(
        src.mig_get_precopy_info(),
        ErrorKind::InvalidArgument,
        "precopy info in STOP_COPY",
    );
    assert!(
        matches!(&e, VfioError::VfioMigGetPrecopyInfo(inner) if inner.errno() == libc::EINVAL),
        "{e:?}"
    );
    stream.extend(src.read_migration_data_to_end().unwrap());
    assert_eq!(stream.len(), MTTY_1_DATA_SIZE);
    src.set_migration(MigrationState::Running).unwrap();

    // The destination in upstream's raw calls, with the stream in two writes.
    dst.set_migration_state(MigrationState::Resuming as u32)
        .unwrap();
    dst.write_migration_data(&stream[..10]).unwrap();
    dst.write_migration_data(&stream[10..]).unwrap();
    dst.set_migration_state(MigrationState::Stop as u32)
        .unwrap();
    dst.set_migration_state(MigrationState::Running as u32)
        .unwrap();
    assert_eq!(read_reg(dst, UART_SCR), 0xc3);
}

#[test]
fn mtty_refuses_a_bad_stream_and_bad_arcs() {
    let _guard = setup(&[]);
    let Some(pair) = two_mtty() else {
        return;
    };
    let (src, dst) = (&pair.src, &pair.dst);
    let mut state = src.save_device_state().unwrap();
    state[0] ^= 0xff; // the magic
    dst.set_migration(MigrationState::Resuming).unwrap();
    // mtty checks the header as it arrives and answers EFAULT for a bad one: our form
    // names the device and what to do; upstream's is its variant with the errno.
    let e = assert_kind(
        dst.try_write_migration_data(&state),
        ErrorKind::Io,
        "a stream with a bad magic",
    );
    assert_eq!((e.errno(), e.op()), (Some(libc::EFAULT), "write"));
    assert!(e.to_string().contains(dst.name()), "{e}");
    assert!(e.to_string().contains("same type"), "{e}");
    // mtty counted the refused bytes: the stream is full and more is ENOMEM, here in
    // upstream's form (its variant with the errno).
    let e = dst.write_migration_data(&state).unwrap_err();
    assert!(
        matches!(&e, VfioError::VfioMigrationDataIo(io) if io.raw_os_error() == Some(libc::ENOMEM)),
        "{e:?}"
    );
    // More than the device's state (mtty answers ENOMEM).
    let e = assert_kind(
        dst.write_migration_data(&[0u8; 4096]),
        ErrorKind::Io,
        "a stream longer than the device state",
    );
    assert_eq!(e.errno(), Some(libc::ENOMEM));
    assert_eq!(dst.migration_state().unwrap(), MigrationState::Resuming);
    // ERROR is no target; an unknown number is the kernel's EINVAL, after which the
    // data fd is dropped.
    assert_kind(
        src.set_migration(MigrationState::Error),
        ErrorKind::InvalidArgument,
        "ERROR",
    );
    let e = assert_kind(
        dst.set_migration_state(42),
        ErrorKind::InvalidArgument,
        "state 42",
    );
    assert!(matches!(e, VfioError::VfioDeviceFeature(_)), "{e:?}");
    assert!(matches!(
        dst.write_migration_data(&state),
        Err(VfioError::NoMigrationDataFd)
    ));
    src.set_migration(MigrationState::Running).unwrap();
}

#[test]
fn mtty_dma_logging_starts_reports_and_stops() {
    let _guard = setup(&[]);
    let Some(pair) = two_mtty() else {
        return;
    };
    let src = &pair.src;
    // mtty's logging ops accept everything and never report a dirty page.
    assert!(src.dma_logging_supported().unwrap());
    let range = DmaLoggingRange {
        iova: 0x10_0000,
        length: 0x10_0000,
    };
    assert_kind(
        src.report_dma_logging(range, 4096),
        ErrorKind::InvalidArgument,
        "report before start",
    );
    let page = src.start_dma_logging(4096, &[range]).unwrap();
    assert_eq!(page, 4096);
    let e = assert_kind(
        src.start_dma_logging(4096, &[range]),
        ErrorKind::Busy,
        "second start",
    );
    assert!(matches!(e, VfioError::DmaLoggingAlreadyStarted));
    let bitmap = src.report_dma_logging(range, 4096).unwrap();
    assert_eq!(bitmap, vec![0u64; 4], "256 pages, 4 words, none dirty");
    src.stop_dma_logging().unwrap();
    assert!(matches!(
        src.stop_dma_logging(),
        Err(VfioError::DmaLoggingNotStarted)
    ));
    // The kernel's own checks: an unaligned range.
    let odd = DmaLoggingRange {
        iova: 0x1234,
        length: 0x1000,
    };
    let e = assert_kind(
        src.start_dma_logging(4096, &[odd]),
        ErrorKind::InvalidArgument,
        "unaligned range",
    );
    assert_eq!(e.errno(), Some(libc::EINVAL));
}

#[test]
fn edu_refuses_migration_and_dma_logging() {
    let _guard = setup(&[EDU]);
    let c = container();
    let edu = open(EDU, &c);
    assert_eq!(edu.query_migration_support().unwrap(), None);
    assert_eq!(edu.migration_support().unwrap(), None);
    let e = assert_kind(
        edu.set_migration(MigrationState::StopCopy),
        ErrorKind::Unsupported,
        "edu migration",
    );
    assert!(e.to_string().contains("no migration driver"), "{e}");
    let e = assert_kind(
        edu.get_migration_state(),
        ErrorKind::Unsupported,
        "edu state",
    );
    assert!(e.to_string().contains("ENOTTY"), "{e}");
    assert_kind(edu.save_device_state(), ErrorKind::Unsupported, "edu save");
    assert!(!edu.dma_logging_supported().unwrap());
    let range = DmaLoggingRange {
        iova: 0,
        length: 0x1000,
    };
    let e = assert_kind(
        edu.start_dma_logging(4096, &[range]),
        ErrorKind::Unsupported,
        "edu logging",
    );
    assert!(e.to_string().contains("no DMA logging"), "{e}");
    assert_eq!(e.code(), "ERR_VFIO_UNSUPPORTED");
}

#[cfg(feature = "vfio_cdev")]
#[test]
fn dma_buf_export_is_unsupported_on_this_kernel() {
    use vfio_ioctls::VfioRegionDmaRange;
    let _guard = setup(&[EDU]);
    let c = container();
    let edu = open(EDU, &c);
    let range = VfioRegionDmaRange {
        offset: 0,
        length: 0x1000,
    };
    assert!(!edu.dma_buf_supported().unwrap());
    let e = assert_kind(
        edu.dma_buf_file(0, &[range], libc::O_CLOEXEC as u32),
        ErrorKind::Unsupported,
        "edu dma-buf",
    );
    assert!(
        e.to_string().contains("no VFIO_DEVICE_FEATURE_DMA_BUF"),
        "{e}"
    );
    // Upstream's form: Ok(None).
    assert!(edu.export_dma_buf(0, &[range], 0).unwrap().is_none());
    assert!(matches!(
        edu.dma_buf_file(0, &[], 0),
        Err(VfioError::VfioDmaBufNoRange)
    ));
}
