//! The small pure parsers and checks of sysfs text: hex fields, the content of id
//! files, `numa_node` and `driver_override`, the names links end in, and driver
//! names before they become path components. No I/O here, so that the property
//! tests (`parser_props`) can drive them with any input.

use std::path::Path;

use crate::error::{Result, VfioError};

/// Parses exactly `len_min..=len_max` hex digits (no sign, no prefix).
pub(super) fn hex_field(s: &str, len_min: usize, len_max: usize) -> Option<u32> {
    if s.len() < len_min || s.len() > len_max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Parses the content of a sysfs hex id file (`vendor`, `class`...): `0x8086` with an
/// optional `0x`/`0X`, 1 to 8 hex digits, surrounding whitespace ignored, and a value
/// that fits in `bits` bits.
pub(crate) fn parse_hex(content: &str, bits: u32) -> Option<u32> {
    let text = content.trim();
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    hex_field(digits, 1, 8).filter(|v| bits >= 32 || *v < (1u32 << bits))
}

/// Parses the content of `numa_node`: a decimal number; negative (`-1`) means unknown
/// (`Some(None)`). `None` when it is not a number.
pub(crate) fn parse_numa_node(content: &str) -> Option<Option<i32>> {
    let node: i32 = content.trim().parse().ok()?;
    Some((node >= 0).then_some(node))
}

/// Parses the content of `driver_override`: `None` when empty or `(null)`.
pub(crate) fn parse_driver_override(content: &str) -> Option<String> {
    Some(content.trim())
        .filter(|s| !s.is_empty() && *s != "(null)")
        .map(str::to_owned)
}

/// The IOMMU group number an `iommu_group` link's last component names: decimal
/// digits only (at most 10), fitting u32.
pub(crate) fn parse_group_number(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The name a symlink target ends in (a driver or group link), when it is UTF-8.
pub(crate) fn link_target_name(target: &Path) -> Option<&str> {
    target.file_name().and_then(|n| n.to_str())
}

/// Checks a driver name before it becomes a path component.
pub(crate) fn validate_driver_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VfioError::invalid(
            "driver name",
            format!("{name:?} is not a driver name; expected letters, digits, '_', '.', '-' (e.g. ahci, nvme)"),
        ))
    }
}
