//! Fallible allocation of buffers whose size a caller chose (a read length from
//! JavaScript, say): a size the machine cannot give is an error, never an abort.

use crate::error::{Result, VfioError};

/// A zeroed vector of `len` elements (bytes, or the u64 words of an ioctl buffer), or
/// `OutOfRange` when it cannot be allocated.
pub(crate) fn try_zeroed<T: Copy + Default>(op: &'static str, len: usize) -> Result<Vec<T>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        VfioError::out_of_range(
            op,
            format!("cannot allocate {bytes} bytes for the data: read it in smaller pieces"),
        )
    })?;
    buf.resize(len, T::default());
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn impossible_sizes_are_errors() {
        assert_eq!(try_zeroed::<u8>("t", 3).unwrap(), vec![0, 0, 0]);
        assert_eq!(try_zeroed::<u64>("t", 2).unwrap(), vec![0, 0]);
        let e = try_zeroed::<u8>("t", usize::MAX).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert!(e.to_string().contains("smaller pieces"), "{e}");
    }
}
