//! Byte-level access to the kernel's variable-length ioctl buffers.
//!
//! Buffers are `Vec<u64>` so they are 8-aligned for the kernel's structs; fields are
//! read and written at byte offsets in native endianness.

/// Views a u64 buffer as bytes.
pub(crate) fn as_bytes(buf: &[u64]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements and the length covers exactly
    // the same memory, borrowed for the same lifetime.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), std::mem::size_of_val(buf)) }
}

fn as_bytes_mut(buf: &mut [u64]) -> &mut [u8] {
    // SAFETY: as `as_bytes`; every byte pattern is a valid u64, so writes through the
    // byte view cannot make the buffer invalid.
    unsafe {
        std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(buf))
    }
}

/// Writes a u32 at a byte offset; offsets past the end are ignored (callers size buffers).
pub(crate) fn put_u32(buf: &mut [u64], at: usize, value: u32) {
    if let Some(dst) = as_bytes_mut(buf).get_mut(at..at + 4) {
        dst.copy_from_slice(&value.to_ne_bytes());
    }
}

/// Writes a u64 at a byte offset; offsets past the end are ignored (callers size buffers).
pub(crate) fn put_u64(buf: &mut [u64], at: usize, value: u64) {
    if let Some(dst) = as_bytes_mut(buf).get_mut(at..at + 8) {
        dst.copy_from_slice(&value.to_ne_bytes());
    }
}

/// Reads a u32 at a byte offset (0 past the end).
pub(crate) fn get_u32(buf: &[u64], at: usize) -> u32 {
    as_bytes(buf)
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0)
}

/// Reads a u64 at a byte offset (0 past the end).
pub(crate) fn get_u64(buf: &[u64], at: usize) -> u64 {
    as_bytes(buf)
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_ne_bytes)
        .unwrap_or(0)
}

/// Sets the `argsz` (the first u32) of an ioctl buffer to its length.
pub(crate) fn set_argsz(buf: &mut [u64], len: usize) {
    put_u32(buf, 0, u32::try_from(len).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_at_byte_offsets() {
        let mut buf = vec![u64::MAX; 3];
        set_argsz(&mut buf, 24);
        put_u32(&mut buf, 8, 7);
        assert_eq!(get_u32(&buf, 0), 24);
        assert_eq!(get_u32(&buf, 4), u32::MAX);
        assert_eq!(get_u32(&buf, 8), 7);
        assert_eq!(get_u64(&buf, 16), u64::MAX);
        assert_eq!(get_u32(&buf, 22), 0, "past the end reads as 0");
        put_u32(&mut buf, 22, 1); // ignored, no panic
    }
}
