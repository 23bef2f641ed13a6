//! Reading and writing sysfs files, with the errors the module documents: `Os`
//! with the op and the path, `InvalidData` for content that does not parse.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::parse::{link_target_name, parse_hex};
use crate::error::{Result, VfioError};

pub(super) fn path_str(p: &Path) -> String {
    p.display().to_string()
}

pub(super) fn read_error(path: &Path, e: io::Error) -> VfioError {
    VfioError::os("read", path_str(path), e)
}

pub(super) fn malformed(path: &Path, message: String) -> VfioError {
    read_error(path, io::Error::new(io::ErrorKind::InvalidData, message))
}

/// Reads a whole sysfs file.
pub(super) fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| read_error(path, e))
}

/// Reads a sysfs file that may be absent.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(path, e)),
    }
}

/// Writes a whole sysfs control file, which must exist already.
pub(super) fn write_file(path: &Path, content: &str) -> Result<()> {
    log::debug!("sysfs: writing {content:?} to {}", path.display());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| VfioError::os("write", path_str(path), e))?;
    f.write_all(content.as_bytes())
        .map_err(|e| VfioError::os("write", path_str(path), e))
}

/// Reads a hex number like `0x8086` that must fit in `bits` bits.
pub(super) fn read_hex(path: &Path, bits: u32) -> Result<u32> {
    let content = read_file(path)?;
    parse_hex(&content, bits).ok_or_else(|| {
        malformed(
            path,
            format!(
                "expected a hex number of at most {bits} bits like 0x8086, found {:?}",
                content.trim()
            ),
        )
    })
}

pub(super) fn read_u16(path: &Path) -> Result<u16> {
    // read_hex checked the width.
    read_hex(path, 16).map(|v| v as u16)
}

/// The final component of a symlink's target, or `None` when there is no link.
pub(super) fn link_name(link: &Path) -> Result<Option<String>> {
    match fs::read_link(link) {
        Ok(target) => match link_target_name(&target) {
            Some(name) => Ok(Some(name.to_owned())),
            None => Err(VfioError::os(
                "readlink",
                path_str(link),
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("link target {} has no usable name", target.display()),
                ),
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(VfioError::os("readlink", path_str(link), e)),
    }
}
