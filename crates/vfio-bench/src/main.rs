//! `vfio-bench`: raw syscalls and volatile accesses vs upstream `vfio-ioctls` 0.10 vs
//! our core, on QEMU's `edu` device, run in the guest by `bench/perf.ts` (`npm run
//! bench`). Variants alternate in batches (the order reverses every batch), the first
//! batch is a warm-up; it prints one JSON object per (op, variant) line: the median and
//! the min/max ns per operation over the batches.
//!
//! `raw` uses the fds and mappings our core opened (setting them up is not measured):
//! it is the syscall or the volatile load alone. `upstream` opens the device in its
//! own container each batch (a VFIO group opens once per process, so ours is closed
//! meanwhile).
//!
//! Usage: vfio-bench [--quick] [--batches N] [ADDRESS]

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio::{
    vfio_device_info, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_irq_info,
    vfio_region_info,
};
use vfio_ioctls::{poller, EventFd, IrqWaiter, VfioContainer, VfioDevice, VolatileAccess};

const VFIO_GROUP_GET_DEVICE_FD: libc::c_ulong = 0x3b6a;
const VFIO_DEVICE_GET_INFO: libc::c_ulong = 0x3b6b;
const VFIO_DEVICE_GET_REGION_INFO: libc::c_ulong = 0x3b6c;
const VFIO_DEVICE_GET_IRQ_INFO: libc::c_ulong = 0x3b6d;
const VFIO_IOMMU_MAP_DMA: libc::c_ulong = 0x3b71;
const VFIO_IOMMU_UNMAP_DMA: libc::c_ulong = 0x3b72;
const CONFIG_REGION: u32 = 7;
/// IOVAs the raw and upstream maps use, far above what our allocator hands out here.
const RAW_IOVA: u64 = 0x4000_0000;
const PAGE: usize = 4096;
/// The `map2m` row: this many 2 MiB buffers, each allocated and mapped.
const BIG: usize = 2 << 20;
const BIG_COUNT: u32 = 64;

type Res<T> = std::result::Result<T, String>;

fn err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

struct Args {
    address: String,
    batches: usize,
    scale: u32,
}

fn args() -> Args {
    let mut a = Args {
        address: "0000:00:03.0".into(),
        batches: 11,
        scale: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                a.batches = 2;
                a.scale = 1;
            }
            "--batches" => {
                a.batches = it.next().and_then(|n| n.parse().ok()).unwrap_or(11);
            }
            _ => a.address = arg,
        }
    }
    a
}

/// Our core's handles, and what raw reuses of them.
struct Ours {
    container: Arc<VfioContainer>,
    device: Arc<VfioDevice>,
    bar: vfio_ioctls::MappedRegion,
    dma: vfio_ioctls::DmaBuffer,
    efd: EventFd,
    /// A non-blocking eventfd, which the waiter and the poller need; MSI goes to it
    /// for the ops that wait with them (see [`with_nonblocking_msi`]).
    nb: Arc<EventFd>,
    bar0_offset: u64,
}

impl Ours {
    fn open(address: &str) -> Res<Ours> {
        let container = Arc::new(VfioContainer::new(None).map_err(|e| e.to_string())?);
        let device =
            Arc::new(VfioDevice::open(address, container.clone()).map_err(|e| e.to_string())?);
        // Bus mastering on, for MSI.
        let mut cmd = [0u8; 2];
        device
            .try_region_read(CONFIG_REGION, &mut cmd, 4)
            .map_err(|e| e.to_string())?;
        cmd[0] |= 0x4;
        device
            .try_region_write(CONFIG_REGION, &cmd, 4)
            .map_err(|e| e.to_string())?;
        let bar = device.map_region(0).map_err(|e| e.to_string())?;
        let dma = container
            .allocate_dma_with(65536, &Default::default())
            .map_err(|e| e.to_string())?;
        let efd = EventFd::new(0).map_err(|e| e.to_string())?;
        device.enable_msi(vec![&efd]).map_err(|e| e.to_string())?;
        let bar0_offset = device.get_region_offset(0);
        let nb = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(|e| e.to_string())?);
        Ok(Ours {
            container,
            device,
            bar,
            dma,
            efd,
            nb,
            bar0_offset,
        })
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.device.disable_msi();
    }
}

/// `len` bytes of fresh anonymous memory, for the raw and upstream maps (`munmap`ed by them).
fn anon(len: usize) -> Res<*mut libc::c_void> {
    // SAFETY: a new private anonymous mapping: no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(err("mmap"));
    }
    Ok(p)
}

/// Runs `f` with MSI signalling `o.nb` (the same vector count: the kernel swaps the
/// eventfd), then gives MSI back to the blocking `o.efd`.
fn with_nonblocking_msi(o: &Ours, f: impl FnOnce(&mut Batch)) -> Res<Batch> {
    let mut out = Batch::new();
    o.device
        .enable_msi(vec![&o.nb])
        .map_err(|e| e.to_string())?;
    f(&mut out);
    o.device
        .enable_msi(vec![&o.efd])
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// How long a wait may take before the bench gives up on the interrupt.
const IRQ_TIMEOUT: Duration = Duration::from_secs(10);

/// ns per operation of `n` runs of `f`.
fn time(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

/// One batch of every op of `variant`: (op, ns/op).
type Batch = Vec<(&'static str, f64)>;

fn raw_batch(o: &Ours, scale: u32) -> Res<Batch> {
    let mut out = Batch::new();
    let fd = o.device.as_raw_fd();
    let mut buf = [0u8; 4];
    out.push((
        "pread4",
        time(200 * scale, || {
            // SAFETY: `buf` is 4 writable bytes; `fd` is the device fd `o` keeps open.
            let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), 4, o.bar0_offset as i64) };
            std::hint::black_box(r);
        }),
    ));
    let bar = o.bar.as_ptr().cast::<u32>();
    out.push((
        "mmioReadU32",
        time(1000 * scale, || {
            // SAFETY: `bar` is the start of BAR0's mapping (4 KiB or more), which `o` keeps mapped; aligned.
            std::hint::black_box(unsafe { std::ptr::read_volatile(bar) });
        }),
    ));
    out.push((
        "mmioReadU32x64",
        time(20 * scale, || {
            for i in 0..64 {
                // SAFETY: as above: edu's ID register (offset 0) and liveness register (4),
                // alternately, in BAR0's mapping; aligned.
                std::hint::black_box(unsafe { std::ptr::read_volatile(bar.add(i & 1)) });
            }
        }) / 64.0,
    ));
    let mem = o.dma.memory().as_ptr().cast::<u32>();
    out.push((
        "dmaReadU32",
        time(10000 * scale, || {
            // SAFETY: `mem` is the start of the 64 KiB DMA buffer `o` owns; page-aligned.
            std::hint::black_box(unsafe { std::ptr::read_volatile(mem) });
        }),
    ));
    let mut big = vec![0u8; 65536];
    out.push((
        "dmaCopy64k",
        time(20 * scale, || {
            // SAFETY: both ranges are 64 KiB: the DMA buffer `o` owns and `big`; distinct.
            unsafe { std::ptr::copy_nonoverlapping(mem.cast::<u8>(), big.as_mut_ptr(), 65536) };
            std::hint::black_box(&big);
        }),
    ));
    let cfd = o.container.as_raw_fd();
    let (map, unmap) = raw_maps(cfd, PAGE, 16 * scale)?;
    out.push(("map4k", map));
    out.push(("unmap4k", unmap));
    out.push(("map2m", raw_maps(cfd, BIG, BIG_COUNT)?.0));
    let bar8 = o.bar.as_ptr();
    let efd = o.efd.as_raw_fd();
    out.push((
        "msiRoundTrip",
        time(20 * scale, || {
            let mut v = 0u64;
            // SAFETY: edu's interrupt raise (0x60) and ack (0x64) registers, in BAR0's mapping
            // `o` keeps (aligned); `v` is 8 writable bytes for the eventfd's counter.
            unsafe {
                std::ptr::write_volatile(bar8.add(0x60).cast::<u32>(), 1);
                libc::read(efd, (&mut v as *mut u64).cast(), 8);
                std::ptr::write_volatile(bar8.add(0x64).cast::<u32>(), 1);
            }
        }),
    ));
    let gfd = o
        .device
        .group()
        .ok_or("the device was opened without a group")?
        .as_raw_fd();
    let name = std::ffi::CString::new(o.device.name()).map_err(|e| e.to_string())?;
    out.push((
        "openInfoClose",
        time(5 * scale, || {
            // SAFETY: GET_DEVICE_FD takes a NUL-terminated name; the info structs are sized by
            // argsz; the fd is closed at the end.
            unsafe {
                let dfd = libc::ioctl(gfd, VFIO_GROUP_GET_DEVICE_FD, name.as_ptr());
                if dfd < 0 {
                    return;
                }
                let mut info = vfio_device_info {
                    argsz: std::mem::size_of::<vfio_device_info>() as u32,
                    ..Default::default()
                };
                libc::ioctl(dfd, VFIO_DEVICE_GET_INFO, &mut info);
                for index in 0..info.num_regions {
                    let mut r = vfio_region_info {
                        argsz: std::mem::size_of::<vfio_region_info>() as u32,
                        index,
                        ..Default::default()
                    };
                    libc::ioctl(dfd, VFIO_DEVICE_GET_REGION_INFO, &mut r);
                }
                for index in 0..info.num_irqs {
                    let mut q = vfio_irq_info {
                        argsz: std::mem::size_of::<vfio_irq_info>() as u32,
                        index,
                        ..Default::default()
                    };
                    libc::ioctl(dfd, VFIO_DEVICE_GET_IRQ_INFO, &mut q);
                }
                libc::close(dfd);
            }
        }),
    ));
    let nb = o.nb.as_raw_fd();
    out.extend(with_nonblocking_msi(o, |out| {
        out.push((
            "msiBlockingWait",
            time(20 * scale, || {
                let mut v = 0u64;
                let mut fds = [libc::pollfd {
                    fd: nb,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                // SAFETY: as msiRoundTrip's; `fds` is one initialised pollfd of the
                // eventfd `o` keeps open, `v` 8 writable bytes.
                unsafe {
                    std::ptr::write_volatile(bar8.add(0x60).cast::<u32>(), 1);
                    libc::poll(fds.as_mut_ptr(), 1, IRQ_TIMEOUT.as_millis() as i32);
                    libc::read(nb, (&mut v as *mut u64).cast(), 8);
                    std::ptr::write_volatile(bar8.add(0x64).cast::<u32>(), 1);
                }
            }),
        ));
    })?);
    Ok(out)
}

fn ours_batch(o: &Ours, address: &str, scale: u32) -> Res<Batch> {
    let mut out = Batch::new();
    let mut buf = [0u8; 4];
    out.push((
        "pread4",
        time(200 * scale, || {
            std::hint::black_box(o.device.try_region_read(0, &mut buf, 0).is_ok());
        }),
    ));
    out.push((
        "mmioReadU32",
        time(1000 * scale, || {
            std::hint::black_box(o.bar.read_u32(0).ok());
        }),
    ));
    let mut values = [0u32; 64];
    out.push((
        "mmioReadU32x64",
        time(20 * scale, || {
            for (i, v) in values.iter_mut().enumerate() {
                *v = (i as u32 & 1) * 4;
            }
            std::hint::black_box(o.bar.read_u32_many(&mut values).is_ok());
        }) / 64.0,
    ));
    out.push((
        "dmaReadU32",
        time(10000 * scale, || {
            std::hint::black_box(o.dma.read_u32(0).ok());
        }),
    ));
    let mut big = vec![0u8; 65536];
    out.push((
        "dmaCopy64k",
        time(20 * scale, || {
            std::hint::black_box(o.dma.read_bytes(0, &mut big).is_ok());
        }),
    ));
    let n = 16 * scale;
    let mut bufs = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for _ in 0..n {
        bufs.push(
            o.container
                .allocate_dma_with(PAGE as u64, &Default::default())
                .map_err(|e| e.to_string())?,
        );
    }
    out.push(("map4k", start.elapsed().as_nanos() as f64 / f64::from(n)));
    let start = Instant::now();
    drop(bufs);
    out.push(("unmap4k", start.elapsed().as_nanos() as f64 / f64::from(n)));
    let start = Instant::now();
    let mut big = Vec::with_capacity(BIG_COUNT as usize);
    for _ in 0..BIG_COUNT {
        big.push(
            o.container
                .allocate_dma_with(BIG as u64, &Default::default())
                .map_err(|e| e.to_string())?,
        );
    }
    out.push((
        "map2m",
        start.elapsed().as_nanos() as f64 / f64::from(BIG_COUNT),
    ));
    drop(big);
    out.push((
        "msiRoundTrip",
        time(20 * scale, || {
            let ok = o.bar.write_u32(0x60, 1).is_ok() && o.efd.read().is_ok();
            std::hint::black_box(ok && o.bar.write_u32(0x64, 1).is_ok());
        }),
    ));
    let container = o.container.clone();
    out.push((
        "openInfoClose",
        time(5 * scale, || {
            // The group stays held by `o.device`: open, info, regions and irqs, close.
            if let Ok(d) = VfioDevice::open(address, container.clone()) {
                std::hint::black_box((d.info(), d.regions().len(), d.irqs().len()));
            }
        }),
    ));
    let waiter = IrqWaiter::new(o.nb.clone(), 0).map_err(|e| e.to_string())?;
    // The epoll thread, then a channel to this thread: the hop the TypeScript API has.
    let (tx, rx) = mpsc::sync_channel::<u32>(64);
    let nb = o.nb.clone();
    out.extend(with_nonblocking_msi(o, |out| {
        out.push((
            "msiBlockingWait",
            time(20 * scale, || {
                let ok = o.bar.write_u32(0x60, 1).is_ok() && waiter.wait(IRQ_TIMEOUT).is_ok();
                std::hint::black_box(ok && o.bar.write_u32(0x64, 1).is_ok());
            }),
        ));
        let on_wake: poller::OnWake = Box::new(move |_, count| {
            let _ = tx.try_send(count);
        });
        let Ok(token) = poller::register(nb, 0, on_wake) else {
            return;
        };
        out.push((
            "msiRoundTripHop",
            time(20 * scale, || {
                let ok = o.bar.write_u32(0x60, 1).is_ok() && rx.recv_timeout(IRQ_TIMEOUT).is_ok();
                std::hint::black_box(ok && o.bar.write_u32(0x64, 1).is_ok());
            }),
        ));
        poller::unregister(token);
    })?);
    Ok(out)
}

fn upstream_batch(address: &str, scale: u32) -> Res<Batch> {
    let mut out = Batch::new();
    let container =
        Arc::new(upstream::VfioContainer::new(None).map_err(|e| format!("upstream: {e}"))?);
    let path = format!("/sys/bus/pci/devices/{address}");
    let device = upstream::VfioDevice::new(Path::new(&path), container.clone(), false)
        .map_err(|e| format!("upstream: {e}"))?;
    let mut buf = [0u8; 4];
    out.push((
        "pread4",
        time(200 * scale, || {
            device.region_read(0, &mut buf, 0);
            std::hint::black_box(&buf);
        }),
    ));
    let (map, unmap) = upstream_maps(&container, PAGE, 16 * scale)?;
    out.push(("map4k", map));
    out.push(("unmap4k", unmap));
    out.push(("map2m", upstream_maps(&container, BIG, BIG_COUNT)?.0));
    out.push((
        "openInfoClose",
        time(5 * scale, || {
            // The group stays held by `device` (upstream's container keeps it): open,
            // info, regions and irqs (read by `new`), close.
            if let Ok(d) = upstream::VfioDevice::new(Path::new(&path), container.clone(), false) {
                std::hint::black_box((d.get_region_size(0), d.max_interrupts()));
            }
        }),
    ));
    Ok(out)
}

/// Allocates (mmap) and maps `count` buffers of `len` bytes, then unmaps (and munmaps)
/// them: ns per buffer of each.
fn raw_maps(cfd: std::os::fd::RawFd, len: usize, count: u32) -> Res<(f64, f64)> {
    let mut ptrs = Vec::with_capacity(count as usize);
    let start = Instant::now();
    for i in 0..count {
        let p = anon(len)?;
        let map = vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
            flags: 3,
            vaddr: p as u64,
            iova: RAW_IOVA + u64::from(i) * len as u64,
            size: len as u64,
        };
        // SAFETY: a valid struct for VFIO_IOMMU_MAP_DMA on the container fd; the memory is ours.
        if unsafe { libc::ioctl(cfd, VFIO_IOMMU_MAP_DMA, &map) } != 0 {
            return Err(err("VFIO_IOMMU_MAP_DMA"));
        }
        ptrs.push(p);
    }
    let map_ns = start.elapsed().as_nanos() as f64 / f64::from(count);
    let start = Instant::now();
    for (i, p) in ptrs.into_iter().enumerate() {
        let mut unmap = vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            iova: RAW_IOVA + i as u64 * len as u64,
            size: len as u64,
            ..Default::default()
        };
        // SAFETY: a valid struct for VFIO_IOMMU_UNMAP_DMA; then the mapping made above goes.
        unsafe {
            if libc::ioctl(cfd, VFIO_IOMMU_UNMAP_DMA, &mut unmap) != 0 {
                return Err(err("VFIO_IOMMU_UNMAP_DMA"));
            }
            libc::munmap(p, len);
        }
    }
    Ok((map_ns, start.elapsed().as_nanos() as f64 / f64::from(count)))
}

/// [`raw_maps`] through upstream's container.
fn upstream_maps(container: &upstream::VfioContainer, len: usize, count: u32) -> Res<(f64, f64)> {
    let mut ptrs = Vec::with_capacity(count as usize);
    let start = Instant::now();
    for i in 0..count {
        let p = anon(len)?;
        // SAFETY: the memory was just mapped and stays mapped until after its unmap below.
        unsafe { container.vfio_dma_map(RAW_IOVA + u64::from(i) * len as u64, len, p.cast()) }
            .map_err(|e| format!("upstream map: {e}"))?;
        ptrs.push(p);
    }
    let map_ns = start.elapsed().as_nanos() as f64 / f64::from(count);
    let start = Instant::now();
    for (i, p) in ptrs.into_iter().enumerate() {
        container
            .vfio_dma_unmap(RAW_IOVA + i as u64 * len as u64, len)
            .map_err(|e| format!("upstream unmap: {e}"))?;
        // SAFETY: the memory mapped above, no longer in the IOMMU.
        unsafe { libc::munmap(p, len) };
    }
    Ok((map_ns, start.elapsed().as_nanos() as f64 / f64::from(count)))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Err(e) = run() {
        eprintln!("vfio-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let a = args();
    let mut results: Vec<(&'static str, &'static str, Vec<f64>)> = Vec::new();
    let mut upstream_ok = true;
    for batch in 0..=a.batches {
        let order: [&str; 3] = if batch % 2 == 0 {
            ["raw", "ours", "upstream"]
        } else {
            ["upstream", "ours", "raw"]
        };
        for variant in order {
            let got = match variant {
                "upstream" if upstream_ok => match upstream_batch(&a.address, a.scale) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("vfio-bench: upstream skipped: {e}");
                        upstream_ok = false;
                        continue;
                    }
                },
                "upstream" => continue,
                _ => {
                    let o = Ours::open(&a.address)?;
                    if variant == "raw" {
                        raw_batch(&o, a.scale)?
                    } else {
                        ours_batch(&o, &a.address, a.scale)?
                    }
                }
            };
            if batch == 0 {
                continue; // warm-up
            }
            for (op, ns) in got {
                // The poller hop is a variant of the round trip, beside ours without it.
                let (op, variant) = match op {
                    "msiRoundTripHop" => ("msiRoundTrip", "oursHop"),
                    _ => (op, variant),
                };
                match results.iter_mut().find(|r| r.0 == op && r.1 == variant) {
                    Some(r) => r.2.push(ns),
                    None => results.push((op, variant, vec![ns])),
                }
            }
        }
    }
    for (op, variant, mut v) in results {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        let med = median(&mut v);
        println!(
            "{{\"op\":\"{op}\",\"variant\":\"{variant}\",\"medianNs\":{med:.1},\"minNs\":{min:.1},\"maxNs\":{max:.1},\"batches\":{}}}",
            v.len()
        );
    }
    Ok(())
}
