//! Fallible allocation of buffers whose size a caller chose (a read length from
//! JavaScript, say): a size the machine cannot give is an error, never an abort.

use crate::error::{Result, VfioError};

/// A zeroed vector of `len` bytes, or `OutOfRange` when it cannot be allocated.
pub(crate) fn try_zeroed(op: &'static str, len: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| {
        VfioError::out_of_range(
            op,
            format!("cannot allocate {len} bytes for the data: read it in smaller pieces"),
        )
    })?;
    buf.resize(len, 0);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn impossible_sizes_are_errors() {
        assert_eq!(try_zeroed("t", 3).unwrap(), vec![0, 0, 0]);
        let e = try_zeroed("t", usize::MAX).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert!(e.to_string().contains("smaller pieces"), "{e}");
    }
}
