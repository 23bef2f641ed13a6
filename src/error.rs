//! The one place that builds JavaScript errors from core errors.
//!
//! The reason string carries a JSON record after a marker, which the TypeScript
//! facade (`ts/errors.ts`) decodes into a `VfioError` with `code`, `errno`,
//! `syscall` and `path`. Raw users still see a readable message after the record.

use napi::{Error, Status};
use vfio_ioctls::{ErrorKind, VfioError};

/// Marks a reason string as carrying a structured record (see the module docs).
pub const MARKER: &str = "\u{1f}vfio:";

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds the JS error for `code` with optional errno, syscall and path.
pub fn js_error(
    code: &str,
    message: &str,
    errno: Option<i32>,
    syscall: Option<&str>,
    path: Option<&str>,
) -> Error {
    let mut record = format!("{{\"code\":{}", json_string(code));
    if let Some(errno) = errno {
        record.push_str(&format!(",\"errno\":{errno}"));
    }
    if let Some(syscall) = syscall {
        record.push_str(&format!(",\"syscall\":{}", json_string(syscall)));
    }
    if let Some(path) = path {
        record.push_str(&format!(",\"path\":{}", json_string(path)));
    }
    record.push_str(&format!(",\"message\":{}}}", json_string(message)));
    Error::new(
        Status::GenericFailure,
        format!("{MARKER}{record}\n{code}: {message}"),
    )
}

/// Converts a core error.
pub fn to_js(e: VfioError) -> Error {
    js_error(
        e.code(),
        &e.to_string(),
        e.errno(),
        Some(e.op()),
        e.path().as_deref(),
    )
}

/// `ERR_VFIO_CLOSED` for a call on a closed handle.
pub fn closed(what: &str) -> Error {
    js_error(
        ErrorKind::Closed.code(),
        &format!("the {what} is closed; open it again"),
        None,
        None,
        None,
    )
}

/// `ERR_VFIO_INVALID_ARGUMENT` for bad input found in the binding.
pub fn invalid(op: &str, message: &str) -> Error {
    js_error(
        ErrorKind::InvalidArgument.code(),
        &format!("{op}: {message}"),
        None,
        Some(op),
        None,
    )
}

/// `ERR_VFIO_OUT_OF_RANGE` for bad input found in the binding.
pub fn out_of_range(op: &str, message: &str) -> Error {
    js_error(
        ErrorKind::OutOfRange.code(),
        &format!("{op}: {message}"),
        None,
        Some(op),
        None,
    )
}

/// Converts core results.
pub trait IntoJs<T> {
    /// Maps the error to a JS error.
    fn js(self) -> napi::Result<T>;
}

impl<T> IntoJs<T> for Result<T, VfioError> {
    fn js(self) -> napi::Result<T> {
        self.map_err(to_js)
    }
}

/// A JS number that must be a non-negative safe integer (offsets, lengths).
pub fn to_u64(op: &str, what: &str, value: f64) -> napi::Result<u64> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if !value.is_finite() || value.fract() != 0.0 || !(0.0..=MAX_SAFE).contains(&value) {
        return Err(invalid(
            op,
            &format!("{what} must be a non-negative safe integer, got {value}"),
        ));
    }
    Ok(value as u64)
}

/// A JS BigInt that must fit u64.
pub fn bigint_to_u64(
    op: &str,
    what: &str,
    value: &napi::bindgen_prelude::BigInt,
) -> napi::Result<u64> {
    let (negative, v, lossless) = value.get_u64();
    if negative || !lossless {
        return Err(invalid(
            op,
            &format!("{what} must be a BigInt in [0, 2^64)"),
        ));
    }
    Ok(v)
}
