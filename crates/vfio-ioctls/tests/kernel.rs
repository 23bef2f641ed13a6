//! Tests against a real kernel's VFIO: run only in the QEMU guest (`guest/run.sh`),
//! which has an emulated Intel IOMMU, QEMU's `edu` device at 0000:00:03.0 (IOMMU
//! group 1) and an NVMe controller at 0000:00:04.0 (group 2).
//!
//! Build on the host, run in the guest, one test at a time (devices are exclusive):
//!
//! ```sh
//! cargo test -p vfio-ioctls --features vm-memory,vfio_cdev --test kernel --no-run
//! VFIO_TEST_IOMMU=iommufd guest/run.sh --kernel 6.12 --timeout 300 -- target/debug/deps/kernel-XXXX --test-threads=1
//! ```
//!
//! `VFIO_TEST_IOMMU` picks the IOMMU backend every test's `container()` uses: `type1`
//! (the default, `/dev/vfio/vfio`), `iommufd-compat` (the same group/container flow with
//! `/dev/iommu` as the container) or `iommufd` (native: an IOAS, devices opened through
//! their cdev; needs `--features vfio_cdev`). Tests about one backend assert what the
//! running mode does. The iommufd modes need a kernel with iommufd (`--kernel 6.12`).
//!
//! On a machine without `VFIO_GUEST=1` and `/dev/vfio/vfio` every test fails (it does
//! not skip): `cargo test` routes this binary into the guest (`.cargo/config.toml`'s
//! runner, scripts/cargo-runner.sh); `npm test` runs it there through test-guest.sh.

#[cfg(feature = "kvm")]
use std::fs::{File, OpenOptions};
use std::io::ErrorKind as IoErrorKind;
#[cfg(feature = "kvm")]
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vfio_ioctls::sysfs::{PciAddress, Sysfs};
use vfio_ioctls::{
    pci_irq, pci_region, ErrorKind, EventFd, MappedRegion, VfioContainer, VfioDevice, VfioError,
    VfioRegionInfoCap, VolatileAccess,
};

// Migration v2, DMA logging and dma-buf export (tests/kernel/migration.rs).
#[path = "kernel/migration.rs"]
mod migration;

/// Panics unless this runs in the guest with VFIO: a host run fails instead of skipping.
fn require_guest() {
    let flag = std::env::var("VFIO_GUEST").unwrap_or_default();
    if flag != "1" {
        panic!(
            "the kernel tests need the QEMU guest (VFIO_GUEST=1 is not set, found {flag:?}): \
             build with `cargo test -p vfio-ioctls --test kernel --no-run` and run the binary with \
             `guest/run.sh -- target/debug/deps/kernel-XXXX --test-threads=1`"
        );
    }
    if !Path::new("/dev/vfio/vfio").exists() {
        panic!("VFIO_GUEST=1 but /dev/vfio/vfio is missing: the vfio modules are not loaded in this guest");
    }
}

const EDU: &str = "0000:00:03.0";
const EDU_SYSFS: &str = "/sys/bus/pci/devices/0000:00:03.0";
const EDU_GROUP: u32 = 1;
const NVME: &str = "0000:00:04.0";
const NVME_GROUP: u32 = 2;

#[allow(non_upper_case_globals)]
const VFIO_TYPE1v2_IOMMU: u32 = 3;
const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 2;
const REGION_READ: u32 = 1;
const REGION_WRITE: u32 = 2;
const REGION_MMAP: u32 = 4;
const REGION_CAPS: u32 = 8;

const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 0x2;
const PCI_COMMAND_MASTER: u16 = 0x4;

// edu registers (QEMU docs/specs/edu.rst), BAR0.
const EDU_ID: u64 = 0x00;
const EDU_LIVENESS: u64 = 0x04;
const EDU_FACTORIAL: u64 = 0x08;
const EDU_STATUS: u64 = 0x20;
const EDU_IRQ_STATUS: u64 = 0x24;
const EDU_IRQ_RAISE: u64 = 0x60;
const EDU_IRQ_ACK: u64 = 0x64;
const EDU_DMA_SRC: u64 = 0x80;
const EDU_DMA_DST: u64 = 0x88;
const EDU_DMA_COUNT: u64 = 0x90;
const EDU_DMA_CMD: u64 = 0x98;
const EDU_DMA_BUF: u64 = 0x40000;
const EDU_DMA_START: u64 = 1;
const EDU_DMA_TO_RAM: u64 = 2;
/// Bytes per edu DMA. Its buffer is 4 KiB, but QEMU before 8.2.1 (this guest runs 7.2)
/// has an off-by-one range check that aborts QEMU for a transfer ending at the buffer's end.
const EDU_DMA_LEN: usize = 2048;

/// Devices are exclusive: one test at a time even without `--test-threads=1`.
static LOCK: Mutex<()> = Mutex::new(());

/// Checks the guest, serialises the test and binds `devices` to vfio-pci.
fn setup(devices: &[&str]) -> MutexGuard<'static, ()> {
    require_guest();
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    for d in devices {
        bind(d);
    }
    guard
}

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn bind(dev: &str) {
    Sysfs::new()
        .bind_vfio(&addr(dev))
        .unwrap_or_else(|e| panic!("binding {dev} to vfio-pci: {e}"));
}

/// The IOMMU backend the suite runs on (`VFIO_TEST_IOMMU`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    Type1,
    Compat,
    Iommufd,
}

fn mode() -> Mode {
    match std::env::var("VFIO_TEST_IOMMU").as_deref() {
        Err(_) | Ok("") | Ok("type1") => Mode::Type1,
        Ok("iommufd-compat") => Mode::Compat,
        Ok("iommufd") => Mode::Iommufd,
        Ok(other) => panic!("VFIO_TEST_IOMMU={other:?}: expected type1, iommufd-compat or iommufd"),
    }
}

/// A container of the suite's backend, serving the hypervisor device `device_fd`.
fn container_with(device_fd: Option<vfio_ioctls::VfioContainerDeviceHandle>) -> Arc<VfioContainer> {
    let m = mode();
    let c = match m {
        Mode::Type1 => VfioContainer::new(device_fd),
        Mode::Compat => VfioContainer::open(Path::new("/dev/iommu"), device_fd),
        #[cfg(feature = "vfio_cdev")]
        Mode::Iommufd => VfioContainer::new_iommufd(device_fd),
        #[cfg(not(feature = "vfio_cdev"))]
        Mode::Iommufd => panic!(
            "VFIO_TEST_IOMMU=iommufd needs the vfio_cdev feature: build with --features vfio_cdev"
        ),
    };
    let c = c.unwrap_or_else(|e| panic!("opening the {m:?} container: {e}"));
    let want = match m {
        Mode::Type1 => vfio_ioctls::IommuBackend::Type1,
        Mode::Compat => vfio_ioctls::IommuBackend::IommufdCompat,
        Mode::Iommufd => vfio_ioctls::IommuBackend::Iommufd,
    };
    assert_eq!(c.backend(), want);
    Arc::new(c)
}

fn container() -> Arc<VfioContainer> {
    container_with(None)
}

/// What `group_ids()` shows while devices of `groups` are open: a native iommufd
/// container holds no groups.
fn held(groups: &[u32]) -> Vec<u32> {
    match mode() {
        Mode::Iommufd => Vec::new(),
        _ => groups.to_vec(),
    }
}

/// Whether the IOMMU (and its mappings) outlives the last device: iommufd's IOAS does.
fn iommu_outlives_devices() -> bool {
    mode() != Mode::Type1
}

fn open(dev: &str, c: &Arc<VfioContainer>) -> Arc<VfioDevice> {
    Arc::new(VfioDevice::open(dev, c.clone()).unwrap_or_else(|e| panic!("opening {dev}: {e}")))
}

fn map_bar0(dev: &Arc<VfioDevice>) -> MappedRegion {
    dev.map_region(pci_region::BAR0)
        .unwrap_or_else(|e| panic!("mapping BAR0 of {}: {e}", dev.name()))
}

fn config_read16(dev: &VfioDevice, offset: u64) -> u16 {
    let mut b = [0u8; 2];
    dev.try_region_read(pci_region::CONFIG, &mut b, offset)
        .unwrap_or_else(|e| panic!("config read at {offset:#x}: {e}"));
    u16::from_le_bytes(b)
}

fn config_write16(dev: &VfioDevice, offset: u64, value: u16) {
    dev.try_region_write(pci_region::CONFIG, &value.to_le_bytes(), offset)
        .unwrap_or_else(|e| panic!("config write at {offset:#x}: {e}"));
}

/// Sets the bus master bit (DMA and MSI need it) keeping the other command bits.
fn enable_bus_master(dev: &VfioDevice) {
    let cmd = config_read16(dev, PCI_COMMAND);
    config_write16(dev, PCI_COMMAND, cmd | PCI_COMMAND_MASTER);
    let now = config_read16(dev, PCI_COMMAND);
    assert_ne!(
        now & PCI_COMMAND_MASTER,
        0,
        "bus master did not stick: command {now:#06x}"
    );
}

/// Polls `done` every millisecond until it is true or `timeout` passes.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for a non-blocking eventfd to be signalled; returns its count and the wait.
fn wait_event(efd: &EventFd, timeout: Duration) -> Option<(u64, Duration)> {
    let start = Instant::now();
    loop {
        match efd.read() {
            Ok(n) => return Some((n, start.elapsed())),
            Err(e) if e.kind() == IoErrorKind::WouldBlock => {}
            Err(e) => panic!("reading the eventfd: {e}"),
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn assert_kind<T: std::fmt::Debug>(
    r: Result<T, VfioError>,
    kind: ErrorKind,
    what: &str,
) -> VfioError {
    match r {
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            println!("{what}: {:?} errno {:?}: {e}", e.kind(), e.errno());
            e
        }
    }
}

fn edu_dma(bar: &MappedRegion, src: u64, dst: u64, len: usize, to_ram: bool) {
    bar.write_u64(EDU_DMA_SRC, src).unwrap();
    bar.write_u64(EDU_DMA_DST, dst).unwrap();
    bar.write_u64(EDU_DMA_COUNT, len as u64).unwrap();
    let cmd = EDU_DMA_START | if to_ram { EDU_DMA_TO_RAM } else { 0 };
    bar.write_u64(EDU_DMA_CMD, cmd).unwrap();
    let start = Instant::now();
    let done = wait_until(Duration::from_secs(5), || {
        bar.read_u64(EDU_DMA_CMD).unwrap() & EDU_DMA_START == 0
    });
    assert!(done, "edu DMA {src:#x} -> {dst:#x} did not finish in 5 s");
    println!(
        "edu DMA {src:#x} -> {dst:#x} ({len} bytes) took {:?}",
        start.elapsed()
    );
}

#[test]
fn container_open() {
    let _g = setup(&[]);
    let c = container();
    assert_eq!(c.api_version().unwrap(), 0);
    assert!(c.check_extension(VFIO_TYPE1v2_IOMMU).unwrap());
    if mode() == Mode::Iommufd {
        // The IOAS exists from the start: info and DMA work before any device.
        let info = c.iommu_info().unwrap();
        println!("IOAS info before any device: {info:?}");
        assert!(!info.iova_ranges.is_empty());
        let dma = c.allocate_dma(4096, 0x10_0000).unwrap();
        assert_eq!(c.dma_mappings(), vec![(0x10_0000, 4096)]);
        drop(dma);
    } else {
        // No group yet: no IOMMU, so no info and no DMA.
        assert_kind(
            c.iommu_info(),
            ErrorKind::InvalidArgument,
            "iommu_info without a group",
        );
        assert_kind(
            c.allocate_dma(4096, 0x10_0000),
            ErrorKind::InvalidArgument,
            "allocate_dma without a group",
        );
    }
    assert!(c.dma_mappings().is_empty());
    assert!(c.group_ids().is_empty());
}

#[test]
fn group_viability_and_attach() {
    let _g = setup(&[EDU]);
    let c = container();
    if mode() == Mode::Iommufd {
        // A native iommufd container has no groups at all.
        let e = assert_kind(
            c.group(EDU_GROUP),
            ErrorKind::Unsupported,
            "a group in a native iommufd container",
        );
        assert!(e.to_string().contains("cdev"), "{e}");
        assert!(c.group_ids().is_empty());
        return;
    }
    let group = c.group(EDU_GROUP).unwrap();
    assert_eq!(group.id(), EDU_GROUP);
    let status = group.status().unwrap();
    println!("group {EDU_GROUP} status {status:#x}");
    assert_eq!(status & VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_FLAGS_VIABLE);
    assert_eq!(
        status & VFIO_GROUP_FLAGS_CONTAINER_SET,
        VFIO_GROUP_FLAGS_CONTAINER_SET
    );
    assert_eq!(c.group_ids(), vec![EDU_GROUP]);
    // Asking again gives the same group.
    assert!(Arc::ptr_eq(&group, &c.group(EDU_GROUP).unwrap()));
    assert!(c.iommu_info().is_ok());
    drop(group);
    assert!(c.group_ids().is_empty());
    if iommu_outlives_devices() {
        // iommufd's compatibility IOAS stays after the last group left.
        c.iommu_info().unwrap();
    } else {
        assert_kind(
            c.iommu_info(),
            ErrorKind::InvalidArgument,
            "iommu_info after the group left",
        );
    }
    // Attaching again works (the kernel released the group).
    let group = c.group(EDU_GROUP).unwrap();
    assert_eq!(c.group_ids(), vec![EDU_GROUP]);
    drop(group);
}

fn check_edu_info(dev: &VfioDevice) {
    let info = dev.info();
    println!("edu info {info:?} can_reset {}", info.can_reset());
    assert!(info.is_pci());
    assert!(info.num_regions >= 9, "{info:?}");
    assert!(info.num_irqs >= 2, "{info:?}");
    assert_eq!(dev.regions().len(), info.num_regions as usize);
    assert_eq!(dev.irqs().len(), info.num_irqs as usize);
    for (i, r) in dev.regions().iter().enumerate() {
        println!("  region {i}: {r:?}");
        assert_eq!(r.index as usize, i);
    }
    for irq in dev.irqs() {
        println!("  irq {irq:?}");
    }
    let bar0 = dev.region(pci_region::BAR0).unwrap();
    assert!(bar0.present);
    assert_eq!(bar0.size, 1 << 20);
    let rwm = REGION_READ | REGION_WRITE | REGION_MMAP;
    assert_eq!(bar0.flags & rwm, rwm, "BAR0 flags {:#x}", bar0.flags);
    let vga = dev.region(pci_region::VGA).unwrap();
    assert!(!vga.present || vga.size == 0, "{vga:?}");
    let config = dev.region(pci_region::CONFIG).unwrap();
    assert!(
        config.present && config.readable() && config.writable() && config.size >= 256,
        "{config:?}"
    );
    assert_eq!(dev.get_region_size(pci_region::BAR0), 1 << 20);
    assert_eq!(dev.get_region_size(99), 0);
}

#[test]
fn device_open_by_path_and_address() {
    let _g = setup(&[EDU]);
    let c = container();
    let by_path = VfioDevice::new(Path::new(EDU_SYSFS), c.clone(), true).unwrap();
    assert_eq!(by_path.name(), EDU);
    assert!(
        by_path.sysfs_path().ends_with(EDU),
        "{}",
        by_path.sysfs_path().display()
    );
    match mode() {
        Mode::Iommufd => {
            assert!(by_path.group().is_none());
            let id = by_path
                .iommufd_dev_id()
                .expect("a cdev bound to iommufd has a device id");
            println!("edu iommufd device id {id}");
        }
        _ => {
            assert_eq!(by_path.group().map(|g| g.id()), Some(EDU_GROUP));
            assert_eq!(by_path.iommufd_dev_id(), None);
        }
    }
    check_edu_info(&by_path);
    drop(by_path);
    assert!(c.group_ids().is_empty());

    let by_bdf = VfioDevice::open("00:03.0", c.clone()).unwrap();
    assert_eq!(by_bdf.name(), EDU);
    check_edu_info(&by_bdf);
    assert_eq!(c.group_ids(), held(&[EDU_GROUP]));
    // The canonical sysfs directory works too.
    let canonical = by_bdf.sysfs_path().to_path_buf();
    drop(by_bdf);
    assert_eq!(
        VfioDevice::new(&canonical, c.clone(), true).unwrap().name(),
        EDU
    );

    // Devices that cannot be opened.
    assert_kind(
        VfioDevice::open("0000:00:1e.0", c.clone()),
        ErrorKind::NotFound,
        "a device that does not exist",
    );
    assert_kind(
        VfioDevice::open("0000:00:05.0", c.clone()),
        ErrorKind::NotFound,
        "virtio-9p, not bound to vfio-pci",
    );
    assert_kind(
        VfioDevice::open("/etc", c.clone()),
        ErrorKind::InvalidArgument,
        "a path outside sysfs",
    );
    assert_kind(
        VfioDevice::open("00:03", c.clone()),
        ErrorKind::InvalidArgument,
        "a malformed address",
    );
    assert!(c.group_ids().is_empty());
}

#[test]
fn config_space_read_write() {
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    assert_eq!(config_read16(&dev, 0), 0x1234);
    assert_eq!(config_read16(&dev, 2), 0x11e8);
    let mut id = [0u8; 4];
    dev.try_region_read(pci_region::CONFIG, &mut id, 0).unwrap();
    assert_eq!(u32::from_le_bytes(id), 0x11e8_1234);
    let cmd = config_read16(&dev, PCI_COMMAND);
    println!("command at open {cmd:#06x}");
    assert_ne!(
        cmd & PCI_COMMAND_MEMORY,
        0,
        "vfio-pci enables memory decoding"
    );
    config_write16(&dev, PCI_COMMAND, cmd | PCI_COMMAND_MASTER);
    assert_eq!(config_read16(&dev, PCI_COMMAND), cmd | PCI_COMMAND_MASTER);
    config_write16(&dev, PCI_COMMAND, cmd & !PCI_COMMAND_MASTER);
    assert_eq!(config_read16(&dev, PCI_COMMAND) & PCI_COMMAND_MASTER, 0);
}

#[test]
fn bar0_mmap_registers() {
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let bar = map_bar0(&dev);
    assert_eq!(bar.index(), pci_region::BAR0);
    assert_eq!(bar.size(), 1 << 20);
    assert_eq!(bar.read_u32(EDU_ID).unwrap(), 0x0100_00ed);
    for x in [0u32, 1, 0x1234_5678, 0xdead_beef] {
        bar.write_u32(EDU_LIVENESS, x).unwrap();
        assert_eq!(bar.read_u32(EDU_LIVENESS).unwrap(), !x);
    }
    bar.write_u32(EDU_FACTORIAL, 10).unwrap();
    let done = wait_until(Duration::from_secs(2), || {
        bar.read_u32(EDU_STATUS).unwrap() & 1 == 0
    });
    assert!(done, "factorial still computing after 2 s");
    assert_eq!(bar.read_u32(EDU_FACTORIAL).unwrap(), 3_628_800);

    assert_kind(
        bar.read_u32(2),
        ErrorKind::InvalidArgument,
        "unaligned read_u32(2)",
    );
    assert_kind(
        bar.read_u32(1 << 20),
        ErrorKind::OutOfRange,
        "read_u32 past BAR0",
    );
    assert_kind(
        bar.write_u64(u64::MAX - 7, 0),
        ErrorKind::OutOfRange,
        "write_u64 at u64::MAX - 7",
    );
    // The same register through pread on the device fd.
    let mut b = [0u8; 4];
    dev.try_region_read(pci_region::BAR0, &mut b, EDU_ID)
        .unwrap();
    assert_eq!(u32::from_le_bytes(b), 0x0100_00ed);
    // Not mappable: config space.
    assert_kind(
        dev.map_region(pci_region::CONFIG),
        ErrorKind::Unsupported,
        "map_region(CONFIG)",
    );
    assert_kind(dev.map_region(99), ErrorKind::OutOfRange, "map_region(99)");
}

#[test]
fn bad_region_accesses() {
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let mut b = [0u8; 4];
    assert_kind(
        dev.try_region_read(99, &mut b, 0),
        ErrorKind::OutOfRange,
        "region_read(99)",
    );
    assert_kind(
        dev.try_region_write(99, &b, 0),
        ErrorKind::OutOfRange,
        "region_write(99)",
    );
    let config_size = dev.region(pci_region::CONFIG).unwrap().size;
    assert_kind(
        dev.try_region_read(pci_region::CONFIG, &mut b, config_size - 2),
        ErrorKind::OutOfRange,
        "config read past end",
    );
    assert_kind(
        dev.try_region_read(pci_region::BAR0, &mut b, 1 << 20),
        ErrorKind::OutOfRange,
        "BAR0 read past end",
    );
    assert_kind(
        dev.try_region_read(pci_region::CONFIG, &mut b, u64::MAX),
        ErrorKind::OutOfRange,
        "u64::MAX offset",
    );
    assert_kind(
        dev.try_region_write(pci_region::CONFIG, &b, u64::MAX),
        ErrorKind::OutOfRange,
        "u64::MAX offset write",
    );
    if !dev.region(pci_region::VGA).unwrap().present {
        assert_kind(
            dev.try_region_read(pci_region::VGA, &mut b, 0),
            ErrorKind::OutOfRange,
            "read of absent VGA region",
        );
    }
    // A good read still works afterwards.
    dev.try_region_read(pci_region::CONFIG, &mut b, 0).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0x11e8_1234);
}

#[test]
fn dma_round_trip_through_edu() {
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let bar = map_bar0(&dev);
    enable_bus_master(&dev);

    let src = c.allocate_dma(4096, 0x10_0000).unwrap();
    assert_eq!((src.iova(), src.size()), (0x10_0000, 4096));
    assert!(src.is_mapped());
    let pattern: Vec<u8> = (0..EDU_DMA_LEN)
        .map(|i| (i * 7 + 3) as u8 ^ (i >> 8) as u8)
        .collect();
    src.write_bytes(0, &pattern).unwrap();
    edu_dma(&bar, src.iova(), EDU_DMA_BUF, EDU_DMA_LEN, false);

    let dst = c.allocate_dma(4096, 0x20_0000).unwrap();
    assert_eq!(c.dma_mappings(), vec![(0x10_0000, 4096), (0x20_0000, 4096)]);
    edu_dma(&bar, EDU_DMA_BUF, dst.iova(), EDU_DMA_LEN, true);
    let mut out = vec![0u8; 4096];
    dst.read_bytes(0, &mut out).unwrap();
    assert_eq!(
        &out[..EDU_DMA_LEN],
        &pattern[..],
        "device -> RAM copy differs"
    );
    assert!(
        out[EDU_DMA_LEN..].iter().all(|&b| b == 0),
        "DMA wrote past its count"
    );

    // After unmapping, the device can no longer reach the memory (the IOMMU faults).
    dst.write_bytes(0, &vec![0u8; 4096]).unwrap();
    dst.unmap().unwrap();
    assert!(!dst.is_mapped());
    assert_eq!(c.dma_mappings(), vec![(0x10_0000, 4096)]);
    edu_dma(&bar, EDU_DMA_BUF, dst.iova(), EDU_DMA_LEN, true);
    dst.read_bytes(0, &mut out).unwrap();
    assert!(
        out.iter().all(|&b| b == 0),
        "the device wrote through an unmapped IOVA"
    );
    drop(src);
    assert!(c.dma_mappings().is_empty());
}

#[test]
fn dma_buffers_follow_the_iommu_context() {
    let _g = setup(&[EDU, NVME]);
    let c = container();
    let edu = open(EDU, &c);
    let nvme = open(NVME, &c);
    assert_eq!(c.group_ids(), held(&[EDU_GROUP, NVME_GROUP]));
    let old = c.allocate_dma(4096, 0x10_0000).unwrap();
    // One group leaving keeps the IOMMU context and its mappings.
    drop(nvme);
    assert_eq!(c.group_ids(), held(&[EDU_GROUP]));
    assert!(old.is_mapped());
    assert_eq!(c.dma_mappings(), vec![(0x10_0000, 4096)]);
    let bar = map_bar0(&edu);
    enable_bus_master(&edu);
    let pattern: Vec<u8> = (0..EDU_DMA_LEN).map(|i| (i % 251) as u8).collect();
    old.write_bytes(0, &pattern).unwrap();
    edu_dma(&bar, old.iova(), EDU_DMA_BUF, EDU_DMA_LEN, false);
    drop(bar);
    drop(edu);
    assert!(c.group_ids().is_empty());
    if iommu_outlives_devices() {
        // iommufd's IOAS (native, or the compatibility one) keeps its mappings when the
        // last device leaves: the buffer stays mapped, and a device opened again uses it.
        assert!(old.is_mapped());
        assert_eq!(c.dma_mappings(), vec![(0x10_0000, 4096)]);
        let edu = open(EDU, &c);
        let bar = map_bar0(&edu);
        enable_bus_master(&edu);
        old.write_bytes(0, &vec![0u8; EDU_DMA_LEN]).unwrap();
        edu_dma(&bar, EDU_DMA_BUF, old.iova(), EDU_DMA_LEN, true);
        let mut out = vec![0u8; EDU_DMA_LEN];
        old.read_bytes(0, &mut out).unwrap();
        assert_eq!(out, pattern, "DMA into the kept mapping failed");
        drop(old);
        assert!(c.dma_mappings().is_empty());
        return;
    }
    // The last group leaving: the kernel drops the context and every mapping with it.
    assert!(c.dma_mappings().is_empty());
    assert!(
        !old.is_mapped(),
        "a buffer whose IOMMU context is gone reports itself mapped"
    );

    // A new context: the same IOVA is free, and dropping the stale buffer leaves the new one alone.
    let edu = open(EDU, &c);
    let new = c.allocate_dma(4096, 0x10_0000).unwrap();
    drop(old);
    assert!(new.is_mapped());
    assert_eq!(c.dma_mappings(), vec![(0x10_0000, 4096)]);
    let bar = map_bar0(&edu);
    enable_bus_master(&edu);
    // edu's buffer was not reset (edu has no reset), so it still holds the pattern.
    edu_dma(&bar, EDU_DMA_BUF, new.iova(), EDU_DMA_LEN, true);
    let mut out = vec![0u8; EDU_DMA_LEN];
    new.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, pattern, "DMA into the new mapping failed");
}

#[test]
fn raw_dma_map_of_caller_memory() {
    use vfio_ioctls::VfioOps;
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let bar = map_bar0(&dev);
    enable_bus_master(&dev);
    let len = 4096usize;
    // SAFETY: a fresh anonymous mapping owned by this test.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(mem, libc::MAP_FAILED);
    let ops: &dyn VfioOps = &*c;
    // SAFETY: the memory stays mapped until after the unmap below and is only read after the DMA.
    unsafe { ops.vfio_dma_map(0x30_0000, len, mem.cast()) }.unwrap();
    assert_eq!(c.dma_mappings(), vec![(0x30_0000, len as u64)]);
    // SAFETY: as above.
    let e = unsafe { ops.vfio_dma_map(0x30_0000, len, mem.cast()) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // SAFETY: as above; an unaligned address is refused before the kernel.
    let e = unsafe { ops.vfio_dma_map(0x40_0000, len, mem.cast::<u8>().add(1)) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    bar.write_u32(EDU_LIVENESS, 0).unwrap();
    // Fill edu's buffer from a DMA buffer, then copy it into the caller's memory.
    let src = c.allocate_dma(4096, 0x10_0000).unwrap();
    src.write_bytes(0, &[0x5a; EDU_DMA_LEN]).unwrap();
    edu_dma(&bar, src.iova(), EDU_DMA_BUF, EDU_DMA_LEN, false);
    edu_dma(&bar, EDU_DMA_BUF, 0x30_0000, EDU_DMA_LEN, true);
    // SAFETY: the DMA has finished; `mem` holds `len` bytes.
    let got = unsafe { std::slice::from_raw_parts(mem.cast::<u8>(), len) }.to_vec();
    assert!(
        got[..EDU_DMA_LEN].iter().all(|&b| b == 0x5a) && got[EDU_DMA_LEN..].iter().all(|&b| b == 0)
    );
    ops.vfio_dma_unmap(0x30_0000, len).unwrap();
    assert_kind(
        ops.vfio_dma_unmap(0x30_0000, len),
        ErrorKind::InvalidArgument,
        "raw unmap twice",
    );
    assert_eq!(c.dma_mappings(), vec![(0x10_0000, 4096)]);
    // SAFETY: unmapped from the IOMMU above; nothing else uses it.
    assert_eq!(unsafe { libc::munmap(mem, len) }, 0);
}

#[test]
fn dma_errors() {
    let _g = setup(&[EDU]);
    let c = container();
    let _dev = open(EDU, &c);
    let a = c.allocate_dma(8192, 0x10_0000).unwrap();
    assert_kind(
        c.allocate_dma(4096, 0x10_0000),
        ErrorKind::InvalidArgument,
        "same IOVA",
    );
    assert_kind(
        c.allocate_dma(8192, 0x0F_F000),
        ErrorKind::InvalidArgument,
        "overlapping the start",
    );
    assert_kind(
        c.allocate_dma(4096, 0x10_1000),
        ErrorKind::InvalidArgument,
        "inside",
    );
    assert_kind(
        c.allocate_dma(4096, 0x20_0800),
        ErrorKind::InvalidArgument,
        "unaligned IOVA",
    );
    assert_kind(
        c.allocate_dma(0, 0x20_0000),
        ErrorKind::InvalidArgument,
        "size 0",
    );
    assert_kind(
        c.allocate_dma(100, 0x20_0000),
        ErrorKind::InvalidArgument,
        "size not a page multiple",
    );
    // Adjacent is fine.
    let b = c.allocate_dma(4096, 0x10_2000).unwrap();
    assert_eq!(c.dma_mappings(), vec![(0x10_0000, 8192), (0x10_2000, 4096)]);
    a.unmap().unwrap();
    assert_kind(a.unmap(), ErrorKind::InvalidArgument, "unmap twice");
    assert_kind(
        c.vfio_dma_unmap(0x30_0000, 4096),
        ErrorKind::InvalidArgument,
        "unmap of nothing",
    );
    assert!(matches!(
        c.vfio_dma_unmap(0x30_0000, 4096),
        Err(VfioError::InvalidDmaUnmapSize)
    ));
    assert_kind(
        c.vfio_dma_unmap(0x10_2000, 8192),
        ErrorKind::InvalidArgument,
        "unmap with the wrong size",
    );

    // An IOVA the IOMMU reserves (the x86 MSI window): the kernel refuses.
    let info = c.iommu_info().unwrap();
    println!("iova ranges {:x?}", info.iova_ranges);
    let msi = 0xfee0_0000u64;
    assert!(
        !info
            .iova_ranges
            .iter()
            .any(|r| r.start <= msi && msi <= r.end),
        "MSI window is in the IOVA ranges"
    );
    match c.allocate_dma(4096, msi) {
        Ok(buf) => panic!("mapping the MSI window at {:#x} succeeded", buf.iova()),
        Err(e) => {
            println!(
                "allocate_dma at {msi:#x}: {:?} errno {:?}: {e}",
                e.kind(),
                e.errno()
            );
            // Refused before the kernel is asked, naming the reserved range.
            assert_eq!(e.errno(), None, "{e}");
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("MSI window"), "{e}");
        }
    }
    // Past the IOMMU's aperture.
    let top = info.iova_ranges.iter().map(|r| r.end).max().unwrap();
    if top < u64::MAX - 0x1_0000 {
        let beyond = (top + 1 + 0xfff) & !0xfff;
        let e = c.allocate_dma(4096, beyond).unwrap_err();
        println!(
            "allocate_dma at {beyond:#x} (past the aperture): {:?} errno {:?}: {e}",
            e.kind(),
            e.errno()
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("outside"), "{e}");
    }
    // Refusals leave no trace in the table.
    assert_eq!(c.dma_mappings(), vec![(0x10_2000, 4096)]);
    drop(b);
    assert!(c.dma_mappings().is_empty());
}

#[test]
fn iommu_info() {
    let _g = setup(&[EDU]);
    let c = container();
    let _dev = open(EDU, &c);
    let info = c.iommu_info().unwrap();
    println!(
        "iommu info: flags {:#x} pgsizes {:#x} ranges {:x?} dma_avail {:?}",
        info.flags, info.iova_pgsizes, info.iova_ranges, info.dma_avail
    );
    assert_ne!(info.iova_pgsizes & 0x1000, 0, "no 4 KiB pages");
    assert!(!info.iova_ranges.is_empty());
    for r in &info.iova_ranges {
        assert!(r.start <= r.end, "{r:?}");
    }
    assert!(info
        .iova_ranges
        .iter()
        .any(|r| r.start <= 0x10_0000 && 0x10_0000 < r.end));
}

#[test]
fn msi_interrupts() {
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let bar = map_bar0(&dev);
    let msi = dev.irqs()[pci_irq::MSI as usize];
    println!("MSI {msi:?}");
    assert!(msi.count >= 1 && msi.eventfd(), "{msi:?}");
    let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    dev.enable_msi(vec![&efd]).unwrap();
    enable_bus_master(&dev);

    bar.write_u32(EDU_IRQ_RAISE, 1).unwrap();
    let (n, latency) =
        wait_event(&efd, Duration::from_secs(2)).expect("no MSI within 2 s of raising it");
    println!("MSI arrived after {latency:?} (count {n})");
    assert!(n >= 1);
    assert_eq!(bar.read_u32(EDU_IRQ_STATUS).unwrap(), 1);
    bar.write_u32(EDU_IRQ_ACK, 1).unwrap();
    assert_eq!(bar.read_u32(EDU_IRQ_STATUS).unwrap(), 0);

    // A second one, with another status bit.
    bar.write_u32(EDU_IRQ_RAISE, 0x100).unwrap();
    assert!(
        wait_event(&efd, Duration::from_secs(2)).is_some(),
        "no second MSI"
    );
    assert_eq!(bar.read_u32(EDU_IRQ_STATUS).unwrap(), 0x100);
    bar.write_u32(EDU_IRQ_ACK, 0x100).unwrap();

    // From user space.
    assert!(matches!(efd.read(), Err(ref e) if e.kind() == IoErrorKind::WouldBlock));
    dev.trigger_irq(pci_irq::MSI, 0).unwrap();
    let (n, _) =
        wait_event(&efd, Duration::from_secs(1)).expect("trigger_irq did not signal the eventfd");
    assert!(n >= 1);
    assert_kind(
        dev.try_trigger_irq(pci_irq::MSI, msi.count),
        ErrorKind::OutOfRange,
        "trigger past the vectors",
    );
    // Upstream's form: upstream's one variant.
    assert!(matches!(
        dev.trigger_irq(pci_irq::MSI, msi.count),
        Err(VfioError::VfioDeviceTriggerIrq)
    ));

    let extra: Vec<EventFd> = (0..msi.count)
        .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
        .collect();
    let mut fds: Vec<&EventFd> = extra.iter().collect();
    fds.push(&efd);
    assert_kind(
        dev.enable_irq_from(pci_irq::MSI, 0, &fds),
        ErrorKind::OutOfRange,
        "more eventfds than vectors",
    );
    assert_kind(
        dev.enable_irq_from(pci_irq::MSI, 0, &[]),
        ErrorKind::OutOfRange,
        "no eventfds",
    );
    assert_kind(
        dev.enable_irq_from(42, 0, &[&efd]),
        ErrorKind::OutOfRange,
        "IRQ index 42",
    );
    assert!(matches!(
        dev.enable_irq(42, vec![&efd]),
        Err(VfioError::VfioDeviceEnableIrq)
    ));
    // MSI is not maskable through VFIO.
    if !msi.maskable() {
        assert_kind(
            dev.mask_irq(pci_irq::MSI),
            ErrorKind::Unsupported,
            "mask MSI",
        );
    }

    dev.disable_msi().unwrap();
    // Disabled: the kernel refuses a trigger for an index that is not enabled.
    let e = dev.try_trigger_irq(pci_irq::MSI, 0).unwrap_err();
    println!(
        "trigger after disable: {:?} errno {:?}",
        e.kind(),
        e.errno()
    );
    assert_eq!(e.errno(), Some(libc::EINVAL));
    // And re-enabling works.
    dev.enable_msi(vec![&efd]).unwrap();
    bar.write_u32(EDU_IRQ_RAISE, 2).unwrap();
    assert!(
        wait_event(&efd, Duration::from_secs(2)).is_some(),
        "no MSI after re-enabling"
    );
    bar.write_u32(EDU_IRQ_ACK, 2).unwrap();
    dev.disable_msi().unwrap();
}

#[test]
fn intx_interrupts() {
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let bar = map_bar0(&dev);
    let intx = dev.irqs()[pci_irq::INTX as usize];
    println!("INTx {intx:?}");
    assert_eq!(intx.count, 1);
    assert!(
        intx.eventfd() && intx.maskable() && intx.automasked(),
        "{intx:?}"
    );
    let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    dev.enable_irq(pci_irq::INTX, vec![&efd]).unwrap();

    bar.write_u32(EDU_IRQ_RAISE, 1).unwrap();
    let (n, latency) = wait_event(&efd, Duration::from_secs(2)).expect("no INTx within 2 s");
    println!("INTx arrived after {latency:?} (count {n})");
    assert_eq!(bar.read_u32(EDU_IRQ_STATUS).unwrap(), 1);
    bar.write_u32(EDU_IRQ_ACK, 1).unwrap();
    dev.unmask_irq(pci_irq::INTX).unwrap();

    // Raised again after the unmask: fires again.
    bar.write_u32(EDU_IRQ_RAISE, 1).unwrap();
    assert!(
        wait_event(&efd, Duration::from_secs(2)).is_some(),
        "no INTx after unmask"
    );
    bar.write_u32(EDU_IRQ_ACK, 1).unwrap();
    dev.unmask_irq(pci_irq::INTX).unwrap();

    // Masked: a raised line does not signal until unmasked.
    dev.mask_irq(pci_irq::INTX).unwrap();
    bar.write_u32(EDU_IRQ_RAISE, 1).unwrap();
    assert!(
        wait_event(&efd, Duration::from_millis(200)).is_none(),
        "INTx fired while masked"
    );
    dev.unmask_irq(pci_irq::INTX).unwrap();
    assert!(
        wait_event(&efd, Duration::from_secs(2)).is_some(),
        "pending INTx did not fire on unmask"
    );
    bar.write_u32(EDU_IRQ_ACK, 1).unwrap();

    // A resample eventfd: writing it unmasks in the kernel.
    let rfd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    dev.set_irq_resample_fd(pci_irq::INTX, vec![&rfd]).unwrap();
    dev.unmask_irq(pci_irq::INTX).unwrap();
    bar.write_u32(EDU_IRQ_RAISE, 1).unwrap();
    assert!(
        wait_event(&efd, Duration::from_secs(2)).is_some(),
        "no INTx with a resample fd set"
    );
    bar.write_u32(EDU_IRQ_ACK, 1).unwrap();
    rfd.write(1).unwrap();
    bar.write_u32(EDU_IRQ_RAISE, 1).unwrap();
    assert!(
        wait_event(&efd, Duration::from_secs(2)).is_some(),
        "no INTx after unmasking through the resample fd"
    );
    bar.write_u32(EDU_IRQ_ACK, 1).unwrap();

    assert_kind(
        dev.enable_irq_from(pci_irq::INTX, 0, &[&efd, &rfd]),
        ErrorKind::OutOfRange,
        "two eventfds for INTx",
    );
    assert!(matches!(
        dev.enable_irq(pci_irq::INTX, vec![&efd, &rfd]),
        Err(VfioError::VfioDeviceEnableIrq)
    ));
    dev.disable_irq(pci_irq::INTX).unwrap();
    // Masking needs INTx enabled: the kernel says EINVAL.
    let e = dev.mask_irq(pci_irq::INTX).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
}

#[test]
fn reset() {
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let can = dev.info().can_reset();
    println!("edu can_reset: {can}");
    if can {
        dev.try_reset().unwrap();
        // Upstream's form returns nothing (it logs a failure).
        dev.reset();
    } else {
        assert_kind(
            dev.try_reset(),
            ErrorKind::Unsupported,
            "reset of a device without a reset method",
        );
    }
    // Still usable.
    let bar = map_bar0(&dev);
    assert_eq!(bar.read_u32(EDU_ID).unwrap(), 0x0100_00ed);
}

#[test]
fn close_and_reopen() {
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let bar = map_bar0(&dev);
    bar.write_u32(EDU_LIVENESS, 7).unwrap();
    drop(bar);
    drop(dev);
    assert!(c.group_ids().is_empty());
    let dev = open(EDU, &c);
    assert_eq!(c.group_ids(), held(&[EDU_GROUP]));
    let bar = map_bar0(&dev);
    assert_eq!(bar.read_u32(EDU_ID).unwrap(), 0x0100_00ed);

    // A second open of the open device, in the same container.
    match VfioDevice::open(EDU, c.clone()) {
        Ok(second) => {
            // Linux 6.1's group interface hands out several fds for one device.
            println!("second open of {EDU} while open: Ok (kernel allows several device fds)");
            assert_eq!(second.name(), EDU);
            drop(second);
            // The first stays usable.
            assert_eq!(bar.read_u32(EDU_ID).unwrap(), 0x0100_00ed);
        }
        Err(e) => {
            println!(
                "second open of {EDU} while open: {:?} errno {:?}: {e}",
                e.kind(),
                e.errno()
            );
            assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
            if mode() == Mode::Iommufd {
                // A cdev opens once at a time: the second bind is refused (EINVAL).
                assert_eq!(e.op(), "VFIO_DEVICE_BIND_IOMMUFD", "{e:?}");
                assert_eq!(e.errno(), Some(libc::EINVAL));
            }
        }
    }
    if mode() == Mode::Iommufd {
        assert!(
            VfioDevice::open(EDU, c.clone()).is_err(),
            "a cdev's device opened twice"
        );
    }
}

#[test]
fn two_containers() {
    let _g = setup(&[EDU, NVME]);
    let c1 = container();
    let c2 = container();
    let edu = open(EDU, &c1);
    let e = assert_kind(
        VfioDevice::open(EDU, c2.clone()),
        ErrorKind::Busy,
        "edu in a second container",
    );
    // The group is in the other container (EBUSY), or the cdev is open already (the
    // second bind says EINVAL).
    let errno = if mode() == Mode::Iommufd {
        libc::EINVAL
    } else {
        libc::EBUSY
    };
    assert_eq!(e.errno(), Some(errno), "{e}");
    assert!(c2.group_ids().is_empty());
    let nvme = open(NVME, &c2);
    assert_eq!(c1.group_ids(), held(&[EDU_GROUP]));
    assert_eq!(c2.group_ids(), held(&[NVME_GROUP]));
    let edu_bar = map_bar0(&edu);
    let nvme_bar = map_bar0(&nvme);
    assert_eq!(edu_bar.read_u32(EDU_ID).unwrap(), 0x0100_00ed);
    assert_ne!(nvme_bar.read_u64(0).unwrap(), 0);
    // Separate IOMMU contexts: the same IOVA in both.
    let a = c1.allocate_dma(4096, 0x10_0000).unwrap();
    let b = c2.allocate_dma(4096, 0x10_0000).unwrap();
    assert_eq!(c1.dma_mappings(), vec![(0x10_0000, 4096)]);
    assert_eq!(c2.dma_mappings(), vec![(0x10_0000, 4096)]);
    drop((a, b));
}

#[test]
fn nvme_bar0_caps_and_mmap() {
    let _g = setup(&[NVME]);
    let c = container();
    let dev = open(NVME, &c);
    println!(
        "nvme info {:?} can_reset {}",
        dev.info(),
        dev.info().can_reset()
    );
    for r in dev.regions().iter().filter(|r| r.present && r.size > 0) {
        println!(
            "  region {}: size {:#x} flags {:#x} offset {:#x} caps {:?}",
            r.index, r.size, r.flags, r.offset, r.caps
        );
    }
    for irq in dev.irqs() {
        println!("  irq {irq:?}");
    }
    let bar0 = dev.region(pci_region::BAR0).unwrap();
    let want = REGION_READ | REGION_WRITE | REGION_MMAP | REGION_CAPS;
    assert_eq!(bar0.flags & want, want, "NVMe BAR0 flags {:#x}", bar0.flags);
    assert!(bar0.size >= 0x1000, "{bar0:?}");
    assert!(!bar0.caps.is_empty());
    let sparse = bar0
        .caps
        .iter()
        .any(|c| matches!(c, VfioRegionInfoCap::SparseMmap(_)));
    let msix = bar0
        .caps
        .iter()
        .any(|c| matches!(c, VfioRegionInfoCap::MsixMappable));
    println!(
        "NVMe BAR0: size {:#x}, sparse mmap {sparse}, msix-mappable {msix}",
        bar0.size
    );
    assert!(dev.irqs()[pci_irq::MSIX as usize].count >= 1);

    // MSI-X: one eventfd per vector, in order; swapping one vector's eventfd.
    let msix = dev.irqs()[pci_irq::MSIX as usize];
    let fds: Vec<EventFd> = (0..3)
        .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
        .collect();
    dev.enable_msix(vec![&fds[0], &fds[1]]).unwrap();
    let pending = |i: usize| fds[i].read().ok();
    dev.trigger_irq(pci_irq::MSIX, 1).unwrap();
    assert_eq!((pending(0), pending(1)), (None, Some(1)));
    dev.trigger_irq(pci_irq::MSIX, 0).unwrap();
    assert_eq!((pending(0), pending(1)), (Some(1), None));
    dev.enable_irq_from(pci_irq::MSIX, 1, &[&fds[2]]).unwrap();
    dev.trigger_irq(pci_irq::MSIX, 1).unwrap();
    assert_eq!((pending(1), pending(2)), (None, Some(1)));
    // A vector the device has but that was not enabled: before Linux 6.5 the kernel
    // refuses it; since its dynamic MSI-X allocation (6.5) a trigger of a vector
    // without an eventfd is a no-op that succeeds. Either way nothing is signalled.
    let result = dev.try_trigger_irq(pci_irq::MSIX, msix.count - 1);
    println!(
        "trigger of MSI-X vector {} (not enabled) on {:?}: {:?}",
        msix.count - 1,
        kernel_release(),
        result.as_ref().map_err(|e| (e.kind(), e.errno()))
    );
    if kernel_at_least(6, 5) {
        assert!(result.is_ok(), "{result:?}");
    } else {
        assert_eq!(result.unwrap_err().errno(), Some(libc::EINVAL));
    }
    assert_eq!((pending(0), pending(1), pending(2)), (None, None, None));
    dev.disable_msix().unwrap();

    let bar = map_bar0(&dev);
    println!("NVMe BAR0 mapped areas {:x?}", bar.areas());
    assert_eq!(bar.areas(), &bar0.mmap_areas()[..]);
    let cap = bar.read_u64(0).unwrap();
    let vs = bar.read_u32(0x08).unwrap();
    println!("NVMe CAP {cap:#x} VS {vs:#x}");
    assert_ne!(cap, 0);
    assert!(vs >= 0x1_0000, "VS {vs:#x}");
    // The same through pread.
    let mut b = [0u8; 4];
    dev.try_region_read(pci_region::BAR0, &mut b, 0x08).unwrap();
    assert_eq!(u32::from_le_bytes(b), vs);

    // The NVMe controller can be reset (edu cannot); it stays usable.
    assert!(dev.info().can_reset());
    dev.try_reset().unwrap();
    assert_eq!(bar.read_u32(0x08).unwrap(), vs);
    assert_eq!(bar.read_u64(0).unwrap(), cap);
}

/// Writes a sysfs control file.
/// The guest kernel's release (`6.1.0-48-amd64`, `6.12.95-vfio`).
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_else(|e| panic!("reading /proc/sys/kernel/osrelease: {e}"))
        .trim()
        .to_owned()
}

/// Whether the guest kernel is `major.minor` or later: the suites run on two kernels
/// (Debian's 6.1 and a built 6.12) and assert what each one does.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = kernel_release();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || -> u32 {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("kernel release {release:?} is not MAJOR.MINOR..."))
    };
    (next(), next()) >= (major, minor)
}

fn sysfs_write(path: &str, value: &str) {
    std::fs::write(path, value).unwrap_or_else(|e| panic!("writing {value:?} to {path}: {e}"));
}

#[test]
fn group_not_viable() {
    // Group 4 holds the q35 LPC (1f.0), SATA (1f.2) and SMBus (1f.3) functions. Bind
    // 1f.3 to vfio-pci; 1f.2 needs a host driver that takes DMA ownership. On Debian's
    // 6.1 (ahci is a module the guest does not load) it has none, and gets
    // iosf_mbi_pci (built in, its probe accepts any device); the built 6.12 has ahci
    // built in, which already holds it.
    const SATA: &str = "0000:00:1f.2";
    const SMBUS: &str = "0000:00:1f.3";
    const HOST_DRIVER: &str = "iosf_mbi_pci";
    let _g = setup(&[SMBUS]);
    let sysfs = Sysfs::new();
    assert_eq!(sysfs.pci_device(&addr(SATA)).unwrap().iommu_group, Some(4));
    assert_eq!(sysfs.pci_device(&addr(SMBUS)).unwrap().iommu_group, Some(4));
    let own_driver = sysfs.pci_device(&addr(SATA)).unwrap().driver;
    let blocker = match &own_driver {
        Some(d) => d.clone(),
        None => {
            sysfs_write(
                &format!("/sys/bus/pci/devices/{SATA}/driver_override"),
                HOST_DRIVER,
            );
            sysfs_write("/sys/bus/pci/drivers_probe", SATA);
            HOST_DRIVER.to_owned()
        }
    };
    let info = sysfs.pci_device(&addr(SATA)).unwrap();
    let restore = || {
        sysfs_write(&format!("/sys/bus/pci/drivers/{blocker}/unbind"), SATA);
        if own_driver.is_none() {
            sysfs_write(
                &format!("/sys/bus/pci/devices/{SATA}/driver_override"),
                "\n",
            );
        }
    };
    assert_eq!(
        info.driver.as_deref(),
        Some(blocker.as_str()),
        "{SATA} did not bind to {blocker}"
    );

    let c = container();
    let result = VfioDevice::open(SMBUS, c.clone());
    let smbus_info = sysfs.pci_device(&addr(SMBUS)).unwrap();
    restore();
    let e = assert_kind(
        result,
        ErrorKind::GroupNotViable,
        "open in a group with a host driver",
    );
    match &e {
        VfioError::GroupNotViable { group, blockers } => {
            assert_eq!(*group, 4);
            assert_eq!(blockers, &vec![format!("{SATA} ({blocker})")]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !smbus_info.vfio_usable,
        "sysfs says {SMBUS} is usable with a blocker in its group"
    );
    assert!(c.group_ids().is_empty());

    // With the host driver gone the group is viable.
    assert!(sysfs.pci_device(&addr(SATA)).unwrap().driver.is_none());
    assert!(sysfs.pci_device(&addr(SMBUS)).unwrap().vfio_usable);
    let dev = VfioDevice::open(SMBUS, c.clone()).unwrap();
    assert_eq!(c.group_ids(), held(&[4]));
    drop(dev);
    // Unbound, the SMBus goes back to what probes it: no driver on 6.1, i801_smbus
    // (built in) on 6.12; unbind_vfio reports the driver that took it.
    let after = sysfs.unbind_vfio(&addr(SMBUS), None).unwrap();
    assert_eq!(after, sysfs.pci_device(&addr(SMBUS)).unwrap().driver);
    assert_ne!(after.as_deref(), Some("vfio-pci"));
    // The guest as it was: SATA back to its own driver.
    if let Some(d) = &own_driver {
        sysfs_write(&format!("/sys/bus/pci/drivers/{d}/bind"), SATA);
        assert_eq!(
            sysfs.pci_device(&addr(SATA)).unwrap().driver.as_deref(),
            Some(d.as_str())
        );
    }
}

#[cfg(feature = "kvm")]
#[test]
fn kvm_vfio_device_registration() {
    use kvm_bindings::kvm_device_attr;
    const KVM_DEV_VFIO_FILE: u32 = 1;
    const KVM_DEV_VFIO_FILE_ADD: u64 = 1;
    const KVM_DEV_VFIO_FILE_DEL: u64 = 2;
    fn attr(op: u64, fd: &i32) -> kvm_device_attr {
        kvm_device_attr {
            group: KVM_DEV_VFIO_FILE,
            attr: op,
            addr: fd as *const i32 as u64,
            flags: 0,
        }
    }

    let _g = setup(&[EDU]);
    let kvm = vfio_ioctls::kvm::create_vm_vfio_device()
        .unwrap_or_else(|e| panic!("creating a KVM VM: {e}"));
    let vm = kvm.vm;
    let probe = kvm.device.try_clone().unwrap().to_kvm().unwrap();
    let c = container_with(Some(Arc::new(kvm.device)));
    assert!(c.device_fd().is_some());
    let dev = open(EDU, &c);

    // The crate registered the group (native iommufd: the device cdev): adding the same
    // file again is EEXIST.
    let group_fd = match dev.group() {
        Some(g) => g.as_raw_fd(),
        None => dev.as_raw_fd(),
    };
    let e = probe
        .set_device_attr(&attr(KVM_DEV_VFIO_FILE_ADD, &group_fd))
        .unwrap_err();
    println!(
        "KVM_DEV_VFIO_FILE_ADD of the registered group: errno {}",
        e.errno()
    );
    assert_eq!(e.errno(), libc::EEXIST);
    // A file that is not a VFIO group is refused.
    let not_group = File::open("/dev/null").unwrap();
    let e = probe
        .set_device_attr(&attr(KVM_DEV_VFIO_FILE_ADD, &not_group.as_raw_fd()))
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);

    drop(dev);
    assert!(c.group_ids().is_empty());
    // The crate removed the group from KVM on the way out: otherwise KVM would still hold
    // the group's file and /dev/vfio/1 could not be opened again (EBUSY).
    let node: std::path::PathBuf = match mode() {
        #[cfg(feature = "vfio_cdev")]
        Mode::Iommufd => {
            let cdev = VfioDevice::open_cdev(Path::new(EDU_SYSFS)).unwrap();
            std::fs::read_link(format!("/proc/self/fd/{}", cdev.as_raw_fd())).unwrap()
        }
        _ => "/dev/vfio/1".into(),
    };
    let fresh = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&node)
        .unwrap_or_else(|e| {
            panic!(
                "reopening {} after the device was dropped: {e} (still registered with KVM?)",
                node.display()
            )
        });
    let fresh_fd = fresh.as_raw_fd();
    let e = probe
        .set_device_attr(&attr(KVM_DEV_VFIO_FILE_DEL, &fresh_fd))
        .unwrap_err();
    println!(
        "KVM_DEV_VFIO_FILE_DEL of an unregistered group: errno {}",
        e.errno()
    );
    assert_eq!(e.errno(), libc::ENOENT);
    // Add then delete works on that fd.
    probe
        .set_device_attr(&attr(KVM_DEV_VFIO_FILE_ADD, &fresh_fd))
        .unwrap();
    probe
        .set_device_attr(&attr(KVM_DEV_VFIO_FILE_DEL, &fresh_fd))
        .unwrap();
    drop(fresh);

    // And the container can take the group again.
    let dev = open(EDU, &c);
    assert_eq!(c.group_ids(), held(&[EDU_GROUP]));
    drop(dev);
    drop(c);
    drop(vm);
}

#[test]
fn unbind_and_bind() {
    let _g = setup(&[EDU]);
    let sysfs = Sysfs::new();
    let edu = addr(EDU);
    let info = sysfs.pci_device(&edu).unwrap();
    assert_eq!(info.driver.as_deref(), Some("vfio-pci"));
    assert_eq!((info.vendor, info.device), (0x1234, 0x11e8));
    assert_eq!(info.iommu_group, Some(EDU_GROUP));
    assert!(info.vfio_usable);
    let listed = sysfs.list_pci_devices().unwrap();
    let e = listed
        .iter()
        .find(|d| d.address == edu)
        .expect("edu not listed");
    assert_eq!(e, &info);

    let now = sysfs.unbind_vfio(&edu, None).unwrap();
    assert_eq!(now, None);
    let info = sysfs.pci_device(&edu).unwrap();
    assert_eq!(info.driver, None);
    assert_eq!(info.driver_override, None);
    assert_eq!(info.iommu_group, Some(EDU_GROUP));
    assert!(!info.vfio_usable);
    assert!(
        wait_until(Duration::from_secs(1), || !Path::new("/dev/vfio/1")
            .exists()),
        "/dev/vfio/1 stayed"
    );
    let c = container();
    assert_kind(
        VfioDevice::open(EDU, c.clone()),
        ErrorKind::NotFound,
        "open while unbound",
    );

    let out = sysfs.bind_vfio(&edu).unwrap();
    assert!(!out.already_bound);
    assert_eq!(out.previous_driver, None);
    let info = sysfs.pci_device(&edu).unwrap();
    assert_eq!(info.driver.as_deref(), Some("vfio-pci"));
    assert_eq!(info.driver_override.as_deref(), Some("vfio-pci"));
    assert!(info.vfio_usable);
    assert!(sysfs.bind_vfio(&edu).unwrap().already_bound);
    let dev = open(EDU, &c);
    assert_eq!(map_bar0(&dev).read_u32(EDU_ID).unwrap(), 0x0100_00ed);
}

#[test]
fn guest_memory_mapped_at_guest_physical_addresses() {
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
    let _g = setup(&[EDU]);
    let c = container();
    let dev = open(EDU, &c);
    let bar = map_bar0(&dev);
    enable_bus_master(&dev);
    let mem: GuestMemoryMmap<()> = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0x40_0000), 0x1000),
        (GuestAddress(0x80_0000), 0x2000),
    ])
    .unwrap();
    // SAFETY: `mem` outlives the mapping: it is unmapped below before `mem` drops.
    unsafe { c.vfio_map_guest_memory(&mem) }.unwrap();
    assert_eq!(
        c.dma_mappings(),
        vec![(0x40_0000, 0x1000), (0x80_0000, 0x2000)]
    );
    // The device writes into "guest" memory at its guest-physical address.
    mem.write_slice(&[0x77; EDU_DMA_LEN], GuestAddress(0x40_0000))
        .unwrap();
    edu_dma(&bar, 0x40_0000, EDU_DMA_BUF, EDU_DMA_LEN, false);
    edu_dma(&bar, EDU_DMA_BUF, 0x80_1000, EDU_DMA_LEN, true);
    let mut got = vec![0u8; EDU_DMA_LEN];
    mem.read_slice(&mut got, GuestAddress(0x80_1000)).unwrap();
    assert!(got.iter().all(|&b| b == 0x77));
    c.vfio_unmap_guest_memory(&mem).unwrap();
    assert!(c.dma_mappings().is_empty());
    assert_kind(
        c.vfio_unmap_guest_memory(&mem),
        ErrorKind::InvalidArgument,
        "unmap guest memory twice",
    );
}

/// The running kernel's (major, minor), from /proc/sys/kernel/osrelease.
#[cfg(feature = "vfio_cdev")]
fn kernel_version() -> (u32, u32, String) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let release = release.trim().to_string();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().unwrap().parse().unwrap();
    let minor = parts.next().unwrap().parse().unwrap();
    (major, minor, release)
}

/// A native iommufd container on a kernel with iommufd (6.2+); on older kernels asserts
/// the refusal (NotFound, naming /dev/iommu and the kernel it needs) and gives `None`.
#[cfg(feature = "vfio_cdev")]
fn iommufd_container_or_refusal() -> Option<Arc<VfioContainer>> {
    let (major, minor, release) = kernel_version();
    let result = VfioContainer::new_iommufd(None);
    if (major, minor) < (6, 2) {
        let e = assert_kind(result, ErrorKind::NotFound, "iommufd before Linux 6.2");
        println!("kernel {release}: {e}");
        assert_eq!((e.op(), e.errno()), ("open", Some(libc::ENOENT)), "{e:?}");
        assert_eq!(e.path().as_deref(), Some("/dev/iommu"));
        assert!(e.to_string().contains("CONFIG_IOMMUFD"), "{e}");
        return None;
    }
    let c = result.unwrap_or_else(|e| panic!("kernel {release}: opening /dev/iommu: {e}"));
    assert_eq!(c.backend(), vfio_ioctls::IommuBackend::Iommufd);
    Some(Arc::new(c))
}

/// edu through a native iommufd container and its cdev, whatever VFIO_TEST_IOMMU says:
/// DMA both ways, MSI, reset, and the IOAS's ranges.
#[cfg(feature = "vfio_cdev")]
#[test]
fn iommufd_cdev_edu_dma_msi_reset() {
    let _g = setup(&[EDU]);
    let Some(c) = iommufd_container_or_refusal() else {
        return;
    };
    let dev = open(EDU, &c);
    assert!(dev.group().is_none());
    assert!(dev.iommufd_dev_id().is_some());
    assert!(c.group_ids().is_empty());
    let info = c.iommu_info().unwrap();
    println!("IOAS ranges with edu attached: {:x?}", info.iova_ranges);
    assert!(
        !info
            .iova_ranges
            .iter()
            .any(|r| r.start <= 0xfee0_0000 && 0xfee0_0000 <= r.end),
        "the MSI window is usable"
    );
    let bar = map_bar0(&dev);
    enable_bus_master(&dev);
    let src = c.allocate_dma(4096, 0x10_0000).unwrap();
    let dst = c.allocate_dma(4096, 0x20_0000).unwrap();
    let pattern: Vec<u8> = (0..EDU_DMA_LEN).map(|i| (i * 13 + 1) as u8).collect();
    src.write_bytes(0, &pattern).unwrap();
    edu_dma(&bar, src.iova(), EDU_DMA_BUF, EDU_DMA_LEN, false);
    edu_dma(&bar, EDU_DMA_BUF, dst.iova(), EDU_DMA_LEN, true);
    let mut out = vec![0u8; EDU_DMA_LEN];
    dst.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, pattern, "edu DMA through the IOAS");

    let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    dev.enable_msi(vec![&efd]).unwrap();
    bar.write_u32(EDU_IRQ_RAISE, 1).unwrap();
    wait_event(&efd, Duration::from_secs(2)).expect("no MSI through the cdev within 2 s");
    bar.write_u32(EDU_IRQ_ACK, 1).unwrap();
    dev.disable_msi().unwrap();

    if dev.info().can_reset() {
        dev.try_reset().unwrap();
    } else {
        assert_kind(
            dev.try_reset(),
            ErrorKind::Unsupported,
            "edu has no reset method",
        );
    }
    assert_eq!(bar.read_u32(EDU_ID).unwrap(), 0x0100_00ed);
}

/// NVMe through a native iommufd container: BAR0's CAP and VS, and a DMA buffer mapped.
#[cfg(feature = "vfio_cdev")]
#[test]
fn iommufd_cdev_nvme() {
    let _g = setup(&[NVME]);
    let Some(c) = iommufd_container_or_refusal() else {
        return;
    };
    let dev = open(NVME, &c);
    assert!(dev.iommufd_dev_id().is_some());
    let bar = map_bar0(&dev);
    let cap = bar.read_u64(0).unwrap();
    let vs = bar.read_u32(8).unwrap();
    println!("nvme CAP {cap:#x} VS {vs:#x}");
    assert_ne!(cap, 0);
    assert!(vs >> 16 >= 1, "NVMe version {vs:#x}");
    let queue = c.allocate_dma(4096, 0x10_0000).unwrap();
    assert!(queue.is_mapped());
    assert_eq!(c.dma_mappings(), vec![(0x10_0000, 4096)]);
}

/// A HWPT of its own on the IOAS: edu DMA still works attached to it, is blocked once
/// detached, and works again back on the IOAS.
#[cfg(feature = "vfio_cdev")]
#[test]
fn iommufd_hwpt_attach_and_detach() {
    let _g = setup(&[EDU]);
    let Some(c) = iommufd_container_or_refusal() else {
        return;
    };
    let dev = open(EDU, &c);
    let bar = map_bar0(&dev);
    enable_bus_master(&dev);
    let buf = c.allocate_dma(4096, 0x10_0000).unwrap();
    let pattern: Vec<u8> = (0..EDU_DMA_LEN).map(|i| (i % 241) as u8).collect();
    buf.write_bytes(0, &pattern).unwrap();
    edu_dma(&bar, buf.iova(), EDU_DMA_BUF, EDU_DMA_LEN, false);

    let dev_id = dev.iommufd_dev_id().unwrap();
    let hwpt = c.alloc_hwpt(dev_id).unwrap();
    println!("HWPT {hwpt} for device {dev_id}");
    dev.attach_hwpt(hwpt).unwrap();
    let mut out = vec![0u8; EDU_DMA_LEN];
    buf.write_bytes(0, &vec![0u8; EDU_DMA_LEN]).unwrap();
    edu_dma(&bar, EDU_DMA_BUF, buf.iova(), EDU_DMA_LEN, true);
    buf.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, pattern, "edu DMA through the HWPT");
    // The HWPT is in use: it cannot be destroyed.
    let e = assert_kind(
        c.destroy_iommufd_object(hwpt),
        ErrorKind::Busy,
        "destroying an attached HWPT",
    );
    assert_eq!(e.op(), "IOMMU_DESTROY", "{e:?}");

    // Detached: the device is blocked from DMA.
    dev.detach_hwpt().unwrap();
    buf.write_bytes(0, &vec![0u8; EDU_DMA_LEN]).unwrap();
    edu_dma(&bar, EDU_DMA_BUF, buf.iova(), EDU_DMA_LEN, true);
    buf.read_bytes(0, &mut out).unwrap();
    assert!(
        out.iter().all(|&b| b == 0),
        "a detached device wrote by DMA"
    );
    c.destroy_iommufd_object(hwpt).unwrap();

    // Back on the IOAS (its id is what the device was attached to at open).
    let e = assert_kind(
        dev.attach_hwpt(hwpt),
        ErrorKind::NotFound,
        "a destroyed HWPT",
    );
    assert!(
        matches!(e, VfioError::VfioDeviceAttachIommufdPt(_)),
        "{e:?}"
    );
    let ioas = vfio_ioctls_ioas_id(&c, &dev);
    dev.attach_hwpt(ioas).unwrap();
    edu_dma(&bar, EDU_DMA_BUF, buf.iova(), EDU_DMA_LEN, true);
    buf.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, pattern, "edu DMA back on the IOAS");
}

/// The IOAS id of a native container, through upstream's `VfioIommufd` view of it: the
/// crate gives it as `VfioIommufd::ioas().id()`; a container made by `new_iommufd`
/// attached the device to it, so re-attaching to the id the kernel knows works.
#[cfg(feature = "vfio_cdev")]
fn vfio_ioctls_ioas_id(c: &VfioContainer, _dev: &VfioDevice) -> u32 {
    c.iommufd_ioas_id()
        .expect("a native iommufd container has an IOAS")
}

/// PASID attach is not in the uAPI up to 6.12: there a clear Unsupported saying so.
#[cfg(feature = "vfio_cdev")]
#[test]
fn iommufd_pasid_attach() {
    let _g = setup(&[EDU]);
    let Some(c) = iommufd_container_or_refusal() else {
        return;
    };
    let dev = open(EDU, &c);
    let ioas = c.iommufd_ioas_id().unwrap();
    let (major, minor, release) = kernel_version();
    let attach = dev.attach_iommufd_pt_pasid(ioas, 1);
    let detach = dev.detach_iommufd_pt_pasid(1);
    if (major, minor) < (6, 13) {
        for (what, r) in [("attach", attach), ("detach", detach)] {
            let e = assert_kind(r, ErrorKind::Unsupported, what);
            println!("kernel {release}: PASID {what}: {e}");
            assert!(e.to_string().contains("VFIO_DEVICE_ATTACH_PASID"), "{e}");
            assert!(e.to_string().contains(&release), "{e}");
        }
    } else {
        // edu has no PASID capability: the kernel refuses with its errno.
        assert!(attach.is_err() && detach.is_err(), "PASID on edu");
    }
    // A device opened through a group has no iommufd page table.
    drop(dev);
    let t1 = Arc::new(VfioContainer::open(Path::new("/dev/iommu"), None).unwrap());
    let dev = open(EDU, &t1);
    for r in [
        dev.attach_iommufd_pt_pasid(ioas, 1),
        dev.attach_hwpt(ioas),
        dev.detach_hwpt(),
    ] {
        let e = assert_kind(
            r,
            ErrorKind::Unsupported,
            "iommufd page tables of a group's device",
        );
        assert!(e.to_string().contains("group"), "{e}");
    }
}

/// Upstream 0.10's iommufd API: `VfioIommufd`, `VfioDevice::new` with it,
/// `open_cdev` + `new_from_fd`, `new_from_bound_fd`, its `VfioOps`.
#[cfg(feature = "vfio_cdev")]
#[test]
fn iommufd_upstream_api() {
    use vfio_ioctls::{IommuFd, VfioIommufd, VfioOps};
    let _g = setup(&[EDU]);
    if iommufd_container_or_refusal().is_none() {
        return;
    }
    let iommufd = Arc::new(IommuFd::new().unwrap());
    let ops = Arc::new(VfioIommufd::new(iommufd.clone(), None, None).unwrap());
    println!("{ops:?}");
    let dyn_ops: Arc<dyn VfioOps> = ops.clone();
    let dev = VfioDevice::new(Path::new(EDU_SYSFS), dyn_ops, true).unwrap();
    assert_eq!(dev.name(), EDU);
    let bar = map_bar0(&Arc::new(dev));
    assert_eq!(bar.read_u32(EDU_ID).unwrap(), 0x0100_00ed);
    drop(bar);

    // The raw map of upstream's trait lands in the crate's table.
    let page = ops.container().allocate_dma(4096, 0x40_0000).unwrap();
    assert_eq!(ops.container().dma_mappings(), vec![(0x40_0000, 4096)]);
    drop(page);

    let cdev = VfioDevice::open_cdev(Path::new(EDU_SYSFS)).unwrap();
    let same = cdev.try_clone().unwrap();
    let dev = VfioDevice::new_from_fd(cdev, ops.clone(), true).unwrap();
    assert_eq!(dev.name(), EDU, "the PCI address is found from the cdev");
    let id = dev.iommufd_dev_id().unwrap();
    // The binding lives on the open file: a dup of it is bound already.
    let bound = VfioDevice::new_from_bound_fd(same, ops.clone(), false).unwrap();
    assert_eq!(bound.iommufd_dev_id(), None);
    println!("edu device id {id}");
    drop(bound);
    drop(dev);
    assert_eq!(ops.ioas().id(), ops.container().iommufd_ioas_id().unwrap());
}
