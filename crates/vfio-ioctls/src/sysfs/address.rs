//! PCI addresses (`DDDD:BB:DD.F`): strict parsing, building and formatting.

use std::fmt;
use std::str::FromStr;

use super::parse::hex_field;
use crate::error::{Result, VfioError};

/// A PCI address `DDDD:BB:DD.F` (domain, bus, device 0..=31, function 0..=7).
///
/// Parsing is strict: `DDDD:BB:DD.F` with a domain of 4 to 8 hex digits, or
/// the short form `BB:DD.F` (domain 0); hex digits may be upper or lower
/// case; nothing else is accepted (no whitespace, no path separators).
///
/// ```
/// use vfio_ioctls::sysfs::PciAddress;
///
/// let a: PciAddress = "0000:00:1F.2".parse()?;
/// assert_eq!((a.domain, a.bus, a.device, a.function), (0, 0, 0x1f, 2));
/// // Display gives the form sysfs names devices by: lower case, 4-digit domain.
/// assert_eq!(a.to_string(), "0000:00:1f.2");
/// assert_eq!("00:1f.2".parse::<PciAddress>()?, a);
/// assert_eq!(PciAddress::new(0, 0, 0x1f, 2)?, a);
/// // Nothing else parses, so no path is ever built from one.
/// let e = "00:1f.2/../../x".parse::<PciAddress>().unwrap_err();
/// assert_eq!(e.code(), "ERR_VFIO_INVALID_ARGUMENT");
/// assert!(PciAddress::new(0, 0, 32, 0).is_err(), "device 32 does not exist");
/// # Ok::<(), vfio_ioctls::VfioError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// The PCI domain (segment).
    pub domain: u32,
    /// The bus number.
    pub bus: u8,
    /// The device (slot) number, 0..=31.
    pub device: u8,
    /// The function number, 0..=7.
    pub function: u8,
}

impl PciAddress {
    /// Builds an address, checking that `device` ≤ 31 and `function` ≤ 7.
    pub fn new(domain: u32, bus: u8, device: u8, function: u8) -> Result<Self> {
        if device > 31 || function > 7 {
            return Err(VfioError::invalid(
                "PCI address",
                format!(
                    "device {device:#x} must be at most 0x1f and function {function} at most 7"
                ),
            ));
        }
        Ok(PciAddress {
            domain,
            bus,
            device,
            function,
        })
    }
}

/// Parses a PCI address strictly (see [`PciAddress`]); `None` for anything else.
pub(crate) fn parse_address(s: &str) -> Option<PciAddress> {
    let (head, function) = s.split_once('.')?;
    let function = hex_field(function, 1, 1)?;
    let parts: Vec<&str> = head.split(':').collect();
    let (domain, bus, device) = match parts.as_slice() {
        [domain, bus, device] => (hex_field(domain, 4, 8)?, *bus, *device),
        [bus, device] => (0, *bus, *device),
        _ => return None,
    };
    let bus = u8::try_from(hex_field(bus, 2, 2)?).ok()?;
    let device = hex_field(device, 2, 2)?;
    if device > 31 || function > 7 {
        return None;
    }
    Some(PciAddress {
        domain,
        bus,
        device: device as u8,
        function: function as u8,
    })
}

impl FromStr for PciAddress {
    type Err = VfioError;

    fn from_str(s: &str) -> Result<Self> {
        parse_address(s).ok_or_else(|| {
            VfioError::invalid(
                "parse PCI address",
                format!(
                    "{s:?} is not a PCI address; expected DDDD:BB:DD.F or BB:DD.F in hex \
                     (device 00..1f, function 0..7), e.g. 0000:00:03.0"
                ),
            )
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::addr;
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn sysfs_parses_valid_addresses() {
        assert_eq!(
            addr("0000:00:03.0"),
            PciAddress {
                domain: 0,
                bus: 0,
                device: 3,
                function: 0
            }
        );
        assert_eq!(addr("00:03.0"), addr("0000:00:03.0"));
        assert_eq!(
            addr("ABCD:Ef:1F.7"),
            PciAddress {
                domain: 0xabcd,
                bus: 0xef,
                device: 0x1f,
                function: 7
            }
        );
        assert_eq!(addr("10000:01:00.1").domain, 0x10000);
        assert_eq!(addr("ffffffff:ff:1f.7").domain, 0xffff_ffff);
        assert_eq!(PciAddress::new(0, 1, 2, 3).unwrap(), addr("01:02.3"));
        assert!(PciAddress::new(0, 1, 32, 0).is_err());
    }

    #[test]
    fn sysfs_rejects_invalid_addresses() {
        for bad in [
            "",
            "0000:00:03",
            "0000:00:20.0",
            "0000:00:03.8",
            "00:03.0/../x",
            " 00:03.0",
            "00:03.0 ",
            "0000:00:03.0\n",
            "../../etc",
            "000:00:03.0",
            "000000000:00:03.0",
            "0000:0:03.0",
            "0000:00:3.0",
            "0000:00:03.00",
            "+000:00:03.0",
            "0000:00:03.0.0",
            "0:0000:00:03.0",
            "0000:00:03:0",
            "0000:g0:03.0",
            "0000:00:03.",
        ] {
            let e = bad.parse::<PciAddress>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
            assert!(matches!(
                e,
                VfioError::InvalidArgument {
                    op: "parse PCI address",
                    ..
                }
            ));
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{bad:?}")) && msg.contains("DDDD:BB:DD.F"),
                "{msg}"
            );
        }
    }

    #[test]
    fn sysfs_address_display_round_trips() {
        for s in ["0000:00:03.0", "abcd:ef:1f.7", "10000:01:00.1"] {
            assert_eq!(addr(s).to_string(), s);
            assert_eq!(addr(&addr(s).to_string()), addr(s));
        }
        assert_eq!(addr("00:03.0").to_string(), "0000:00:03.0");
        assert_eq!(addr("ABCD:EF:1F.7").to_string(), "abcd:ef:1f.7");
        assert!(addr("0000:00:03.0") < addr("0000:00:1f.0"));
        assert!(addr("0000:ff:00.0") < addr("0001:00:00.0"));
    }
}
