//! PCI configuration space, parsed: the capability lists and the BAR registers.
//!
//! Pure functions over config-space bytes (no I/O): [`parse_capabilities`] walks the
//! standard list (from the pointer at `0x34`, when bit 4 of the status register says
//! there is one) and, for a 4 KiB buffer, the extended list from `0x100`;
//! [`parse_bars`] decodes the six BAR registers. Both are bounds- and loop-safe: a
//! chain that points outside the buffer, into the header, or back on itself is an
//! error, never a panic or a hang. [`crate::VfioDevice::pci_config_caps`] and
//! [`crate::VfioDevice::pci_bars`] read a device's config space and parse it.
//!
//! ```
//! use vfio_ioctls::{parse_capabilities, PciCapability};
//!
//! let mut config = vec![0u8; 256];
//! config[0x06] = 0x10; // status: capability list
//! config[0x34] = 0x40; // first capability
//! config[0x40..0x44].copy_from_slice(&[0x05, 0x00, 0x80, 0x00]); // MSI, 64-bit, last
//! let caps = parse_capabilities(&config)?;
//! assert_eq!(
//!     caps.standard,
//!     [PciCapability::Msi { offset: 0x40, multiple_message_capable: 0, is_64bit: true, per_vector_masking: false }]
//! );
//! # Ok::<(), vfio_ioctls::VfioError>(())
//! ```

use crate::error::{Result, VfioError};

/// Offset of the status register (16 bits).
const STATUS: usize = 0x06;
/// Status register bit: the device has a capability list.
const STATUS_CAP_LIST: u16 = 1 << 4;
/// Offset of the capabilities pointer (8 bits).
const CAP_PTR: usize = 0x34;
/// The first byte after the standard header: capabilities live at or above it.
const HEADER_END: usize = 0x40;
/// Conventional config space's size; the extended list starts here.
const EXT_START: usize = 0x100;
/// PCI Express config space's size.
const EXT_END: usize = 0x1000;
/// Offset of BAR 0; BARs 1 to 5 follow, 4 bytes each.
const BAR0: usize = 0x10;
/// How many BAR registers a type 0 header has.
const NUM_BARS: usize = 6;

/// What to tell the user when config space does not parse.
const HINT: &str = "the device's config space is malformed, or it stopped answering \
    (reads of all ones); compare with `lspci -vvv`, or reset the device";

/// Capability ids (PCI Local Bus spec, "Capability IDs").
mod cap_id {
    pub const PM: u8 = 0x01;
    pub const MSI: u8 = 0x05;
    pub const VENDOR: u8 = 0x09;
    pub const PCIE: u8 = 0x10;
    pub const MSIX: u8 = 0x11;
}

/// One capability of the standard list, typed where the library knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PciCapability {
    /// MSI (id `0x05`).
    Msi {
        /// Offset of the capability in config space.
        offset: u16,
        /// Multiple Message Capable: log2 of the vectors the device can use (0 to 5).
        multiple_message_capable: u8,
        /// The message address is 64-bit.
        is_64bit: bool,
        /// The device has per-vector mask and pending bits.
        per_vector_masking: bool,
    },
    /// MSI-X (id `0x11`).
    Msix {
        /// Offset of the capability in config space.
        offset: u16,
        /// Number of table entries (the register's N-1 field, plus one).
        table_size: u16,
        /// The BAR holding the table (0 to 5).
        table_bir: u8,
        /// Offset of the table in that BAR.
        table_offset: u32,
        /// The BAR holding the pending-bit array (0 to 5).
        pba_bir: u8,
        /// Offset of the pending-bit array in that BAR.
        pba_offset: u32,
    },
    /// PCI Express (id `0x10`).
    PciExpress {
        /// Offset of the capability in config space.
        offset: u16,
        /// Capability version (1 or 2).
        version: u8,
        /// Device/port type (0 endpoint, 1 legacy endpoint, 4 root port, 9 RC integrated
        /// endpoint, ...).
        device_type: u8,
    },
    /// Power Management (id `0x01`).
    PowerManagement {
        /// Offset of the capability in config space.
        offset: u16,
        /// The version field of the PMC register.
        version: u8,
    },
    /// Vendor-specific (id `0x09`).
    Vendor {
        /// Offset of the capability in config space.
        offset: u16,
        /// Its length byte (the capability's size, header included).
        length: u8,
    },
    /// Any other capability.
    Unknown {
        /// Capability id.
        id: u8,
        /// Offset of the capability in config space.
        offset: u16,
    },
}

impl PciCapability {
    /// Offset of the capability in config space.
    pub fn offset(&self) -> u16 {
        match self {
            PciCapability::Msi { offset, .. }
            | PciCapability::Msix { offset, .. }
            | PciCapability::PciExpress { offset, .. }
            | PciCapability::PowerManagement { offset, .. }
            | PciCapability::Vendor { offset, .. }
            | PciCapability::Unknown { offset, .. } => *offset,
        }
    }

    /// The capability id.
    pub fn id(&self) -> u8 {
        match self {
            PciCapability::Msi { .. } => cap_id::MSI,
            PciCapability::Msix { .. } => cap_id::MSIX,
            PciCapability::PciExpress { .. } => cap_id::PCIE,
            PciCapability::PowerManagement { .. } => cap_id::PM,
            PciCapability::Vendor { .. } => cap_id::VENDOR,
            PciCapability::Unknown { id, .. } => *id,
        }
    }
}

/// One capability of the extended list (PCI Express config space from `0x100`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PciExtCapability {
    /// Extended capability id (e.g. `0x0001` AER, `0x000b` vendor-specific).
    pub id: u16,
    /// Capability version (4 bits).
    pub version: u8,
    /// Offset in config space.
    pub offset: u16,
}

/// Both capability lists of a device, in chain order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciCapabilities {
    /// The standard list (from the pointer at `0x34`).
    pub standard: Vec<PciCapability>,
    /// The extended list (from `0x100`; empty unless config space is 4 KiB).
    pub extended: Vec<PciExtCapability>,
}

/// One decoded BAR register.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PciBar {
    /// BAR index (0 to 5); a 64-bit BAR takes this slot and the next.
    pub index: u8,
    /// Memory space (`false`: I/O space).
    pub memory: bool,
    /// A 64-bit memory BAR.
    pub is_64bit: bool,
    /// A prefetchable memory BAR.
    pub prefetchable: bool,
    /// The base address the BAR holds (flag bits cleared). What the device sees in the
    /// guest or host physical map; the size comes from the VFIO region, not from this.
    pub address: u64,
}

fn read_u8(config: &[u8], at: usize) -> Option<u8> {
    config.get(at).copied()
}

fn read_u16(config: &[u8], at: usize) -> Option<u16> {
    let b = config.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32(config: &[u8], at: usize) -> Option<u32> {
    let b = config.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn truncated(op: &'static str, what: &str, at: usize, len: usize) -> VfioError {
    VfioError::out_of_range(
        op,
        format!("{what} at {at:#x} lies past the {len:#x} bytes of config space read; {HINT}"),
    )
}

/// Parses both capability lists of config-space bytes.
///
/// The standard list is walked when the buffer holds the header (64 bytes) and the
/// status register's capability-list bit is set; the extended list when the buffer is
/// 4 KiB (PCI Express config space) and `0x100` holds something other than 0 or all ones.
///
/// # Errors
/// `OutOfRange` for a buffer shorter than the header, or a pointer into the header or
/// past the buffer (a capability cut off by its end included); `InvalidArgument` for a
/// chain that comes back to a capability it has visited.
pub fn parse_capabilities(config: &[u8]) -> Result<PciCapabilities> {
    Ok(PciCapabilities {
        standard: parse_standard(config)?,
        extended: parse_extended(config)?,
    })
}

fn parse_standard(config: &[u8]) -> Result<Vec<PciCapability>> {
    const OP: &str = "parse_capabilities";
    let len = config.len();
    let status = read_u16(config, STATUS)
        .ok_or_else(|| truncated(OP, "the status register", STATUS, len))?;
    if len < HEADER_END {
        return Err(truncated(
            OP,
            "the end of the standard header",
            HEADER_END,
            len,
        ));
    }
    let mut caps = Vec::new();
    if status & STATUS_CAP_LIST == 0 {
        return Ok(caps);
    }
    // Pointers are dword-aligned: the bottom two bits are reserved (PCI spec 6.7).
    let mut at = usize::from(read_u8(config, CAP_PTR).unwrap_or(0) & 0xfc);
    // One bit per dword of conventional config space: a revisit is a loop.
    let mut visited = [false; EXT_START / 4];
    while at != 0 {
        if at < HEADER_END {
            return Err(VfioError::out_of_range(
                OP,
                format!("a capability pointer {at:#x} points into the standard header (below {HEADER_END:#x}); {HINT}"),
            ));
        }
        let seen = visited
            .get_mut(at / 4)
            .ok_or_else(|| truncated(OP, "a capability", at, len))?;
        if *seen {
            return Err(VfioError::invalid(
                OP,
                format!("the capability list loops back to {at:#x}; {HINT}"),
            ));
        }
        *seen = true;
        let id = read_u8(config, at).ok_or_else(|| truncated(OP, "a capability", at, len))?;
        let next = read_u8(config, at + 1).ok_or_else(|| truncated(OP, "a capability", at, len))?;
        caps.push(parse_one(config, id, at)?);
        at = usize::from(next & 0xfc);
    }
    Ok(caps)
}

/// Decodes the capability `id` at `at` (its header is known to be in the buffer).
fn parse_one(config: &[u8], id: u8, at: usize) -> Result<PciCapability> {
    const OP: &str = "parse_capabilities";
    let len = config.len();
    // `at` < 0x100 (the visited table bounds it), so it fits in a u16.
    let offset = u16::try_from(at).map_err(|_| truncated(OP, "a capability", at, len))?;
    let short = |what: &str| truncated(OP, what, at, len);
    let cap = match id {
        cap_id::MSI => {
            let control = read_u16(config, at + 2).ok_or_else(|| short("an MSI capability"))?;
            PciCapability::Msi {
                offset,
                multiple_message_capable: ((control >> 1) & 0x7) as u8,
                is_64bit: control & (1 << 7) != 0,
                per_vector_masking: control & (1 << 8) != 0,
            }
        }
        cap_id::MSIX => {
            let control = read_u16(config, at + 2).ok_or_else(|| short("an MSI-X capability"))?;
            let table = read_u32(config, at + 4).ok_or_else(|| short("an MSI-X capability"))?;
            let pba = read_u32(config, at + 8).ok_or_else(|| short("an MSI-X capability"))?;
            PciCapability::Msix {
                offset,
                table_size: (control & 0x7ff) + 1,
                table_bir: (table & 0x7) as u8,
                table_offset: table & !0x7,
                pba_bir: (pba & 0x7) as u8,
                pba_offset: pba & !0x7,
            }
        }
        cap_id::PCIE => {
            let caps = read_u16(config, at + 2).ok_or_else(|| short("a PCI Express capability"))?;
            PciCapability::PciExpress {
                offset,
                version: (caps & 0xf) as u8,
                device_type: ((caps >> 4) & 0xf) as u8,
            }
        }
        cap_id::PM => {
            let pmc =
                read_u16(config, at + 2).ok_or_else(|| short("a Power Management capability"))?;
            PciCapability::PowerManagement {
                offset,
                version: (pmc & 0x7) as u8,
            }
        }
        cap_id::VENDOR => PciCapability::Vendor {
            offset,
            length: read_u8(config, at + 2).ok_or_else(|| short("a vendor-specific capability"))?,
        },
        id => PciCapability::Unknown { id, offset },
    };
    Ok(cap)
}

fn parse_extended(config: &[u8]) -> Result<Vec<PciExtCapability>> {
    const OP: &str = "parse_capabilities";
    let mut caps = Vec::new();
    if config.len() < EXT_END {
        return Ok(caps);
    }
    let first = read_u32(config, EXT_START).unwrap_or(0);
    // No extended capabilities (0), or none readable (all ones, e.g. behind a bridge
    // that does not forward extended config cycles).
    if first == 0 || first == u32::MAX {
        return Ok(caps);
    }
    let mut visited = [false; (EXT_END - EXT_START) / 4];
    let mut at = EXT_START;
    loop {
        if !(EXT_START..EXT_END).contains(&at) {
            return Err(VfioError::out_of_range(
                OP,
                format!(
                    "an extended capability pointer {at:#x} lies outside [{EXT_START:#x}, {EXT_END:#x}); {HINT}"
                ),
            ));
        }
        let seen = visited
            .get_mut((at - EXT_START) / 4)
            .ok_or_else(|| truncated(OP, "an extended capability", at, config.len()))?;
        if *seen {
            return Err(VfioError::invalid(
                OP,
                format!("the extended capability list loops back to {at:#x}; {HINT}"),
            ));
        }
        *seen = true;
        let header = read_u32(config, at)
            .ok_or_else(|| truncated(OP, "an extended capability", at, config.len()))?;
        caps.push(PciExtCapability {
            id: (header & 0xffff) as u16,
            version: ((header >> 16) & 0xf) as u8,
            offset: u16::try_from(at)
                .map_err(|_| truncated(OP, "an extended capability", at, config.len()))?,
        });
        // The next pointer is bits 31:20, dword-aligned (bottom two bits reserved).
        let next = ((header >> 20) & 0xffc) as usize;
        if next == 0 {
            return Ok(caps);
        }
        at = next;
    }
}

/// Decodes the six BAR registers (`0x10` to `0x27`) of a type 0 header. The upper half
/// of a 64-bit BAR is not listed on its own, so the result has one entry per BAR, in
/// index order: slots the device does not implement decode as 32-bit memory at 0 (check
/// the VFIO region's size, as [`crate::VfioDevice::pci_bars`] does).
///
/// # Errors
/// `OutOfRange` for a buffer that ends before the BARs do; `InvalidArgument` for a
/// memory BAR of a reserved type, or a 64-bit BAR in slot 5 (no upper half).
pub fn parse_bars(config: &[u8]) -> Result<Vec<PciBar>> {
    const OP: &str = "parse_bars";
    let mut bars = Vec::with_capacity(NUM_BARS);
    let mut i = 0;
    while i < NUM_BARS {
        let at = BAR0 + 4 * i;
        let low = read_u32(config, at)
            .ok_or_else(|| truncated(OP, "a BAR register", at, config.len()))?;
        // `i` < 6.
        let index = i as u8;
        if low & 1 != 0 {
            bars.push(PciBar {
                index,
                memory: false,
                is_64bit: false,
                prefetchable: false,
                address: u64::from(low & !0x3),
            });
            i += 1;
            continue;
        }
        let prefetchable = low & (1 << 3) != 0;
        let base = u64::from(low & !0xf);
        match (low >> 1) & 0x3 {
            0 => {
                bars.push(PciBar {
                    index,
                    memory: true,
                    is_64bit: false,
                    prefetchable,
                    address: base,
                });
                i += 1;
            }
            2 => {
                let high_at = at + 4;
                if i + 1 >= NUM_BARS {
                    return Err(VfioError::invalid(
                        OP,
                        format!(
                            "BAR {i} is 64-bit but is the last BAR, with no upper half; {HINT}"
                        ),
                    ));
                }
                let high = read_u32(config, high_at)
                    .ok_or_else(|| truncated(OP, "a BAR register", high_at, config.len()))?;
                bars.push(PciBar {
                    index,
                    memory: true,
                    is_64bit: true,
                    prefetchable,
                    address: (u64::from(high) << 32) | base,
                });
                i += 2;
            }
            t => {
                return Err(VfioError::invalid(
                    OP,
                    format!("BAR {i} ({low:#010x}) has the reserved memory type {t:#b}; {HINT}"),
                ))
            }
        }
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A 256-byte config space with the capability bit set and the list at `first`.
    fn space(len: usize, first: u8) -> Vec<u8> {
        let mut c = vec![0u8; len];
        c[0..4].copy_from_slice(&[0x34, 0x12, 0xe8, 0x11]);
        c[STATUS] = 0x10;
        c[CAP_PTR] = first;
        c
    }

    fn put(c: &mut [u8], at: usize, bytes: &[u8]) {
        c[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn put32(c: &mut [u8], at: usize, v: u32) {
        put(c, at, &v.to_le_bytes());
    }

    /// QEMU's edu: one 1 MiB 32-bit memory BAR, MSI (64-bit) then PCI Express.
    fn edu() -> Vec<u8> {
        let mut c = space(256, 0x40);
        put32(&mut c, BAR0, 0xfea0_0000);
        put(&mut c, 0x40, &[0x05, 0x80, 0x80, 0x00]);
        put(&mut c, 0x80, &[0x10, 0x00, 0x02, 0x00]);
        c
    }

    /// An NVMe controller: a 64-bit BAR0, MSI-X with table and PBA in BAR0, PM, PCIe,
    /// and an extended list (AER then a vendor-specific one).
    fn nvme() -> Vec<u8> {
        let mut c = space(4096, 0x40);
        put32(&mut c, BAR0, 0xfebf_0004);
        put32(&mut c, BAR0 + 4, 0x0000_0001);
        put32(&mut c, BAR0 + 8, 0x0000_c001);
        put(&mut c, 0x40, &[0x11, 0x80, 0x3f, 0x00]);
        put32(&mut c, 0x44, 0x0000_2000);
        put32(&mut c, 0x48, 0x0000_3000);
        put(&mut c, 0x80, &[0x01, 0x60, 0x03, 0x00]);
        put(&mut c, 0x60, &[0x10, 0x00, 0x02, 0x00]);
        put32(&mut c, 0x100, 0x1401_0001);
        put32(&mut c, 0x140, 0x0001_000b);
        c
    }

    #[test]
    fn edu_like_layout() {
        let caps = parse_capabilities(&edu()).unwrap();
        assert_eq!(
            caps.standard,
            [
                PciCapability::Msi {
                    offset: 0x40,
                    multiple_message_capable: 0,
                    is_64bit: true,
                    per_vector_masking: false
                },
                PciCapability::PciExpress {
                    offset: 0x80,
                    version: 2,
                    device_type: 0
                },
            ]
        );
        assert!(caps.extended.is_empty());
        assert_eq!(caps.standard[1].id(), 0x10);
        assert_eq!(caps.standard[0].offset(), 0x40);
        let bars = parse_bars(&edu()).unwrap();
        assert_eq!(bars.len(), 6);
        assert_eq!(
            bars[0],
            PciBar {
                index: 0,
                memory: true,
                is_64bit: false,
                prefetchable: false,
                address: 0xfea0_0000
            }
        );
    }

    #[test]
    fn nvme_like_layout() {
        let caps = parse_capabilities(&nvme()).unwrap();
        assert_eq!(
            caps.standard,
            [
                PciCapability::Msix {
                    offset: 0x40,
                    table_size: 64,
                    table_bir: 0,
                    table_offset: 0x2000,
                    pba_bir: 0,
                    pba_offset: 0x3000
                },
                PciCapability::PowerManagement {
                    offset: 0x80,
                    version: 3
                },
                PciCapability::PciExpress {
                    offset: 0x60,
                    version: 2,
                    device_type: 0
                },
            ]
        );
        assert_eq!(
            caps.extended,
            [
                PciExtCapability {
                    id: 1,
                    version: 1,
                    offset: 0x100
                },
                PciExtCapability {
                    id: 0xb,
                    version: 1,
                    offset: 0x140
                },
            ]
        );
        let bars = parse_bars(&nvme()).unwrap();
        assert_eq!(
            bars[0],
            PciBar {
                index: 0,
                memory: true,
                is_64bit: true,
                prefetchable: false,
                address: 0x1_febf_0000
            }
        );
        // The upper half is not a BAR of its own; BAR 2 is I/O.
        assert_eq!(
            bars.iter().map(|b| b.index).collect::<Vec<_>>(),
            [0, 2, 3, 4, 5]
        );
        assert_eq!(
            bars[1],
            PciBar {
                index: 2,
                memory: false,
                is_64bit: false,
                prefetchable: false,
                address: 0xc000
            }
        );
    }

    #[test]
    fn vendor_unknown_prefetchable_and_masking() {
        let mut c = space(256, 0x50);
        put(&mut c, 0x50, &[0x09, 0x58, 0x08, 0x00]);
        put(&mut c, 0x58, &[0x0d, 0x60, 0x00, 0x00]);
        put(&mut c, 0x60, &[0x05, 0x00, 0x0a, 0x01]);
        put32(&mut c, BAR0, 0xe000_000c);
        put32(&mut c, BAR0 + 4, 0x2);
        let caps = parse_capabilities(&c).unwrap();
        assert_eq!(
            caps.standard,
            [
                PciCapability::Vendor {
                    offset: 0x50,
                    length: 8
                },
                PciCapability::Unknown {
                    id: 0x0d,
                    offset: 0x58
                },
                PciCapability::Msi {
                    offset: 0x60,
                    multiple_message_capable: 5,
                    is_64bit: false,
                    per_vector_masking: true
                },
            ]
        );
        let bars = parse_bars(&c).unwrap();
        assert_eq!(bars[0].address, 0x2_e000_0000);
        assert!(bars[0].prefetchable && bars[0].is_64bit);
    }

    #[test]
    fn no_capability_list_bit_means_none() {
        let mut c = edu();
        c[STATUS] = 0;
        assert!(parse_capabilities(&c).unwrap().standard.is_empty());
        // Extended space of zeros, or of all ones, holds no list.
        let mut c = space(4096, 0);
        assert_eq!(parse_capabilities(&c).unwrap(), PciCapabilities::default());
        put32(&mut c, 0x100, u32::MAX);
        assert!(parse_capabilities(&c).unwrap().extended.is_empty());
    }

    #[test]
    fn loops_are_errors() {
        let mut c = space(256, 0x40);
        put(&mut c, 0x40, &[0x05, 0x44, 0, 0]);
        put(&mut c, 0x44, &[0x01, 0x40, 0, 0]);
        let e = parse_capabilities(&c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("loops back to 0x40"), "{e}");
        // A capability pointing at itself.
        let mut c = space(256, 0x40);
        put(&mut c, 0x40, &[0x05, 0x40, 0, 0]);
        assert!(parse_capabilities(&c).is_err());
        // The extended list too.
        let mut c = space(4096, 0);
        put32(&mut c, 0x100, 0x2000_0001);
        put32(&mut c, 0x200, 0x1000_0002);
        let e = parse_capabilities(&c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.to_string()
                .contains("extended capability list loops back to 0x100"),
            "{e}"
        );
    }

    #[test]
    fn bad_pointers_are_errors() {
        // Into the header.
        let mut c = space(256, 0x10);
        let e = parse_capabilities(&c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert!(e.to_string().contains("into the standard header"), "{e}");
        // A next pointer into the header.
        c[CAP_PTR] = 0x40;
        put(&mut c, 0x40, &[0x05, 0x20, 0, 0]);
        assert_eq!(
            parse_capabilities(&c).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        // Past a short buffer.
        let c = space(0x80, 0x90);
        let e = parse_capabilities(&c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert!(e.to_string().contains("0x90"), "{e}");
        // An extended pointer below 0x100.
        let mut c = space(4096, 0);
        put32(&mut c, 0x100, 0x0400_0001);
        let e = parse_capabilities(&c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert!(e.to_string().contains("0x40"), "{e}");
    }

    #[test]
    fn truncation_is_an_error() {
        // A header cut short.
        assert_eq!(
            parse_capabilities(&[]).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            parse_capabilities(&edu()[..0x3f]).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        // A capability whose body the buffer cuts off.
        let mut c = space(0x4a, 0x40);
        put(&mut c, 0x40, &[0x11, 0x00, 0x3f, 0x00]);
        let e = parse_capabilities(&c).unwrap_err();
        assert!(e.to_string().contains("MSI-X"), "{e}");
        // The BARs.
        assert_eq!(
            parse_bars(&edu()[..0x27]).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        let mut c = edu()[..0x28].to_vec();
        put32(&mut c, BAR0 + 20, 0x4);
        let e = parse_bars(&c).unwrap_err();
        assert!(e.to_string().contains("BAR 5 is 64-bit"), "{e}");
        put32(&mut c, BAR0 + 20, 0x2);
        assert!(parse_bars(&c)
            .unwrap_err()
            .to_string()
            .contains("reserved memory type"));
        // Without the capability bit a short (64-byte) header is enough.
        let mut c = space(HEADER_END, 0);
        c[STATUS] = 0;
        assert!(parse_capabilities(&c).unwrap().standard.is_empty());
    }

    mod props {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngAlgorithm};

        fn config() -> Config {
            Config {
                cases: std::env::var("PROPTEST_CASES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100_000),
                failure_persistence: None,
                rng_algorithm: RngAlgorithm::XorShift,
                ..Config::default()
            }
        }

        /// Config space with random bytes, the capability bit set, and pointers that
        /// are more often inside the buffer than not.
        fn arb_space() -> impl Strategy<Value = Vec<u8>> {
            (
                prop_oneof![Just(256usize), Just(4096usize), 0usize..300],
                vec((0usize..4096, any::<u8>()), 0..64),
                any::<u8>(),
            )
                .prop_map(|(len, pokes, first)| {
                    let mut c = vec![0u8; len];
                    if len > CAP_PTR {
                        c[STATUS] = 0x10;
                        c[CAP_PTR] = first;
                    }
                    for (at, v) in pokes {
                        if let Some(b) = c.get_mut(at % len.max(1)) {
                            *b = v;
                        }
                    }
                    c
                })
        }

        proptest! {
            #![proptest_config(config())]
            #[test]
            fn never_panics(c in arb_space()) {
                if let Ok(caps) = parse_capabilities(&c) {
                    prop_assert!(caps.standard.len() <= 48);
                    prop_assert!(caps.extended.len() <= 960);
                    for cap in &caps.standard {
                        prop_assert!(usize::from(cap.offset()) >= HEADER_END);
                        prop_assert_eq!(c[usize::from(cap.offset())], cap.id());
                    }
                }
                if let Ok(bars) = parse_bars(&c) {
                    prop_assert!(bars.len() <= NUM_BARS);
                }
            }
        }
    }
}
