//! Huge pages for DMA memory: the sizes x86 and arm64 offer, how to ask mmap for them,
//! and what to say when the kernel has none free.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::VfioError;

/// Where the kernel keeps one pool per huge page size.
const HUGEPAGES_DIR: &str = "/sys/kernel/mm/hugepages";

/// A huge page size DMA memory can be backed by (`MAP_HUGETLB`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum HugePageSize {
    /// 2 MiB pages (`MAP_HUGE_2MB`), the default huge page size on x86-64 and arm64 (4K).
    Size2M,
    /// 1 GiB pages (`MAP_HUGE_1GB`), usually reserved on the kernel command line.
    Size1G,
}

impl HugePageSize {
    /// Every size, smallest first.
    pub const ALL: [HugePageSize; 2] = [HugePageSize::Size2M, HugePageSize::Size1G];

    /// The page size in bytes.
    ///
    /// ```
    /// use vfio_ioctls::HugePageSize;
    /// assert_eq!(HugePageSize::Size2M.bytes(), 2 << 20);
    /// assert_eq!(HugePageSize::Size1G.bytes(), 1 << 30);
    /// ```
    pub fn bytes(self) -> u64 {
        match self {
            HugePageSize::Size2M => 2 << 20,
            HugePageSize::Size1G => 1 << 30,
        }
    }

    /// The short name, `2M` or `1G` (what the TypeScript option takes).
    pub fn name(self) -> &'static str {
        match self {
            HugePageSize::Size2M => "2M",
            HugePageSize::Size1G => "1G",
        }
    }

    /// The size named `2M` or `1G`.
    ///
    /// ```
    /// use vfio_ioctls::HugePageSize;
    /// assert_eq!(HugePageSize::from_name("1G"), Some(HugePageSize::Size1G));
    /// assert_eq!(HugePageSize::from_name("4K"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The mmap flags that ask for anonymous memory of this page size.
    pub(crate) fn mmap_flags(self) -> libc::c_int {
        libc::MAP_HUGETLB
            | match self {
                HugePageSize::Size2M => libc::MAP_HUGE_2MB,
                HugePageSize::Size1G => libc::MAP_HUGE_1GB,
            }
    }

    /// The kernel's pool of this size: `/sys/kernel/mm/hugepages/hugepages-<kB>kB`.
    pub(crate) fn pool_dir(self, root: &Path) -> PathBuf {
        root.join(format!("hugepages-{}kB", self.bytes() >> 10))
    }
}

impl fmt::Display for HugePageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HugePageSize::Size2M => "2 MiB",
            HugePageSize::Size1G => "1 GiB",
        })
    }
}

/// The error for a failed huge page mmap of `len` bytes: with ENOMEM, how many pages of
/// the size are free and how to reserve more; any other errno as it came.
pub(crate) fn mmap_error(size: HugePageSize, len: u64, source: io::Error) -> VfioError {
    mmap_error_in(Path::new(HUGEPAGES_DIR), size, len, source)
}

/// [`mmap_error`] with the pools under `root` (a fake sysfs in tests).
pub(crate) fn mmap_error_in(
    root: &Path,
    size: HugePageSize,
    len: u64,
    source: io::Error,
) -> VfioError {
    let pool = size.pool_dir(root);
    let target = format!("{size} huge pages for a DMA buffer of {len:#x} bytes");
    if !pool.is_dir() {
        return VfioError::unsupported(
            "mmap",
            format!(
                "{target}: {source}: this kernel or CPU offers no {size} huge pages ({} is missing); \
                 choose another hugePages size or none",
                pool.display()
            ),
        );
    }
    if source.raw_os_error() != Some(libc::ENOMEM) {
        return VfioError::os("mmap", target, source);
    }
    let free_path = pool.join("free_hugepages");
    let free = std::fs::read_to_string(&free_path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    VfioError::HugePages {
        size,
        needed: len.div_ceil(size.bytes()),
        free,
        free_path,
        source,
    }
}

/// What a [`VfioError::HugePages`] says after the kernel's error: how many are free and
/// how to reserve more.
pub(crate) fn reserve_hint(
    size: HugePageSize,
    needed: u64,
    free: Option<u64>,
    free_path: &Path,
) -> String {
    let free = free.map_or("an unknown number of".to_string(), |n| n.to_string());
    let nr = free_path.with_file_name("nr_hugepages");
    let how = match size {
        HugePageSize::Size2M => format!(
            "`echo N > /proc/sys/vm/nr_hugepages` (the default size) or `echo N > {}`",
            nr.display()
        ),
        HugePageSize::Size1G => format!(
            "`echo N > {}`, or hugepagesz=1G hugepages=N on the kernel command line (memory \
             fragments after boot)",
            nr.display()
        ),
    };
    format!(
        "{free} {size} huge pages are free ({}; HugePages_Free in /proc/meminfo for the default \
         size) and this buffer needs {needed}: reserve more as root with {how}",
        free_path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::assert_mentions;
    use crate::ErrorKind;
    use vmm_sys_util::tempdir::TempDir;

    fn enomem() -> io::Error {
        io::Error::from_raw_os_error(libc::ENOMEM)
    }

    #[test]
    fn names_sizes_and_flags() {
        for s in HugePageSize::ALL {
            assert_eq!(HugePageSize::from_name(s.name()), Some(s));
            assert_ne!(s.mmap_flags() & libc::MAP_HUGETLB, 0);
        }
        // The size encoding is log2 of the page size above MAP_HUGE_SHIFT.
        assert_eq!(
            HugePageSize::Size2M.mmap_flags() >> libc::MAP_HUGE_SHIFT,
            21
        );
        assert_eq!(
            HugePageSize::Size1G.mmap_flags() >> libc::MAP_HUGE_SHIFT,
            30
        );
        assert_eq!(
            HugePageSize::Size2M.pool_dir(Path::new("/x")),
            Path::new("/x/hugepages-2048kB")
        );
        assert_eq!(HugePageSize::Size1G.to_string(), "1 GiB");
        assert_eq!(HugePageSize::from_name("2m"), None);
    }

    #[test]
    fn enomem_says_how_many_are_free_and_how_to_reserve() {
        let root = TempDir::new().unwrap();
        let pool = HugePageSize::Size2M.pool_dir(root.as_path());
        std::fs::create_dir(&pool).unwrap();
        std::fs::write(pool.join("free_hugepages"), "1\n").unwrap();
        let e = mmap_error_in(root.as_path(), HugePageSize::Size2M, 6 << 20, enomem());
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert_eq!(e.code(), "ERR_VFIO_OUT_OF_RANGE");
        assert_eq!((e.op(), e.errno()), ("mmap", Some(libc::ENOMEM)));
        assert_eq!(
            e.path(),
            Some(pool.join("free_hugepages").display().to_string())
        );
        assert_mentions(
            &e,
            &[
                "1 2 MiB huge pages are free",
                "needs 3",
                "/proc/sys/vm/nr_hugepages",
                "HugePages_Free",
                "hugepages-2048kB/nr_hugepages",
            ],
        );
    }

    #[test]
    fn an_unreadable_count_and_1g_pages_still_say_what_to_do() {
        let root = TempDir::new().unwrap();
        std::fs::create_dir(HugePageSize::Size1G.pool_dir(root.as_path())).unwrap();
        let e = mmap_error_in(root.as_path(), HugePageSize::Size1G, 1 << 30, enomem());
        let msg = e.to_string();
        assert!(msg.contains("an unknown number of 1 GiB"), "{msg}");
        assert!(msg.contains("hugepagesz=1G"), "{msg}");
    }

    #[test]
    fn a_missing_pool_is_unsupported_and_other_errnos_pass_through() {
        let root = TempDir::new().unwrap();
        let e = mmap_error_in(root.as_path(), HugePageSize::Size1G, 1 << 30, enomem());
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            e.to_string().contains("hugepages-1048576kB is missing"),
            "{e}"
        );
        std::fs::create_dir(HugePageSize::Size2M.pool_dir(root.as_path())).unwrap();
        let e = mmap_error_in(
            root.as_path(),
            HugePageSize::Size2M,
            2 << 20,
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert_eq!(
            (e.kind(), e.errno()),
            (ErrorKind::InvalidArgument, Some(libc::EINVAL))
        );
        assert!(
            e.to_string().contains("2 MiB huge pages for a DMA buffer"),
            "{e}"
        );
    }
}
