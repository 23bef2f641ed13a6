//! The one place that builds JavaScript errors from core errors, and the one place
//! argument values are checked.
//!
//! Errors are real JS objects made here, with `code`, `errno`, `syscall` and `path` as
//! properties: instances of the class the facade registers (`useErrorClass`, its
//! `VfioError`), or plain `Error`s for a raw-binding user who registered none. Made
//! during the native call, their stack starts at the JS function that called in.

use std::cell::Cell;
use std::ptr;

use napi::bindgen_prelude::{Function, JsObjectValue, Object, Unknown};
use napi::{sys, Env, Error, JsValue, Status};
use vfio_ioctls::{ErrorKind, VfioError};

thread_local! {
    /// This thread's addon env (each thread that loads the addon has its own) and a
    /// reference to the registered error class. The reference is deliberately never
    /// deleted: it lives exactly as long as the thread's addon instance.
    static JS_ERRORS: Cell<(sys::napi_env, sys::napi_ref)> =
        const { Cell::new((ptr::null_mut(), ptr::null_mut())) };
}

/// Remembers the env of the thread loading the addon (called by the module init).
pub fn remember_env(env: &Env) {
    JS_ERRORS.with(|cell| cell.set((env.raw(), cell.get().1)));
}

/// Native errors are made as `new class(code, message, { errno, syscall, path })`.
#[napi_derive::napi(
    ts_args_type = "errorClass: new (code: string, message: string, fields: { errno?: number; syscall?: string; path?: string }) => Error"
)]
pub fn use_error_class(env: Env, error_class: Function<'_>) -> napi::Result<()> {
    let mut reference = ptr::null_mut();
    // SAFETY: `env` is this call's env and `error_class` a live value in it; the new
    // reference (count 1) keeps the class alive for the life of this addon instance.
    let status =
        unsafe { sys::napi_create_reference(env.raw(), error_class.raw(), 1, &mut reference) };
    if status != sys::Status::napi_ok {
        return Err(Error::new(
            Status::from(status),
            "useErrorClass: napi_create_reference failed",
        ));
    }
    JS_ERRORS.with(|cell| cell.set((env.raw(), reference)));
    Ok(())
}

/// The JS value of `e`'s error object, made in `env` as the module docs say; `None`
/// where no JS call is running on this thread or the engine refused.
fn error_object(
    code: &str,
    message: &str,
    errno: Option<i32>,
    syscall: Option<&str>,
    path: Option<&str>,
) -> Option<sys::napi_value> {
    let (raw_env, class) = JS_ERRORS.with(Cell::get);
    if raw_env.is_null() {
        return None;
    }
    let env = Env::from_raw(raw_env);
    let mut fields = Object::new(&env).ok()?;
    set_fields(&mut fields, errno, syscall, path)?;
    let code_value = env.create_string(code).ok()?;
    let message_value = env.create_string(message).ok()?;
    if !class.is_null() {
        let mut ctor = ptr::null_mut();
        let mut instance = ptr::null_mut();
        let argv = [code_value.raw(), message_value.raw(), fields.raw()];
        // SAFETY: `class` is a reference made in this thread's env; `argv` holds three
        // live values of this env and `instance` receives the new object.
        let made = unsafe {
            sys::napi_get_reference_value(raw_env, class, &mut ctor) == sys::Status::napi_ok
                && !ctor.is_null()
                && sys::napi_new_instance(raw_env, ctor, argv.len(), argv.as_ptr(), &mut instance)
                    == sys::Status::napi_ok
        };
        if made {
            return Some(instance);
        }
        // The class threw: drop its exception and fall back to a plain Error below.
        let mut thrown = ptr::null_mut();
        // SAFETY: clears a pending exception of this env, if any; `thrown` receives it.
        unsafe { sys::napi_get_and_clear_last_exception(raw_env, &mut thrown) };
    }
    let mut error = ptr::null_mut();
    // SAFETY: `code_value` and `message_value` are live strings of this env.
    if unsafe { sys::napi_create_error(raw_env, code_value.raw(), message_value.raw(), &mut error) }
        != sys::Status::napi_ok
    {
        return None;
    }
    let mut error_obj = Object::from_raw(raw_env, error);
    set_fields(&mut error_obj, errno, syscall, path)?;
    Some(error)
}

/// Sets the kernel's side of an error (`errno`, `syscall`, `path`) on `obj`.
fn set_fields(
    obj: &mut Object<'_>,
    errno: Option<i32>,
    syscall: Option<&str>,
    path: Option<&str>,
) -> Option<()> {
    if let Some(errno) = errno {
        obj.set_named_property("errno", errno).ok()?;
    }
    if let Some(syscall) = syscall {
        obj.set_named_property("syscall", syscall).ok()?;
    }
    if let Some(path) = path {
        obj.set_named_property("path", path).ok()?;
    }
    Some(())
}

/// Builds the JS error for `code` with optional errno, syscall and path.
pub fn js_error(
    code: &str,
    message: &str,
    errno: Option<i32>,
    syscall: Option<&str>,
    path: Option<&str>,
) -> Error {
    let (raw_env, _) = JS_ERRORS.with(Cell::get);
    match error_object(code, message, errno, syscall, path) {
        // SAFETY: `value` was just made in this thread's env, which is running this call.
        Some(value) => Error::from(unsafe { Unknown::from_raw_unchecked(raw_env, value) }),
        None => Error::new(Status::GenericFailure, format!("{code}: {message}")),
    }
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
        &vfio_ioctls::closed_message(what),
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
    if !value.is_finite() || value.fract() != 0.0 {
        return Err(invalid(
            op,
            &format!("{what} must be an integer, got {value}"),
        ));
    }
    if !(0.0..=MAX_SAFE).contains(&value) {
        return Err(out_of_range(
            op,
            &format!("{what} must be in [0, 2^53 - 1], got {value}"),
        ));
    }
    Ok(value as u64)
}

/// A JS number that must be an integer in `[0, 2^32)` (indices, vectors, counts, values):
/// napi would wrap -1 to 0xffffffff and 2^32 + 1 to 1, so it is checked here instead.
pub fn to_u32(op: &str, what: &str, value: f64) -> napi::Result<u32> {
    if !value.is_finite() || value.fract() != 0.0 {
        return Err(invalid(
            op,
            &format!("{what} must be an integer, got {value}"),
        ));
    }
    if !(0.0..=f64::from(u32::MAX)).contains(&value) {
        return Err(out_of_range(
            op,
            &format!("{what} must be in [0, 4294967295], got {value}"),
        ));
    }
    Ok(value as u32)
}

/// A JS number that must be an integer in `[0, 2^31)`, the range of a file descriptor.
pub fn to_fd(op: &str, what: &str, value: f64) -> napi::Result<i32> {
    let v = to_u32(op, what, value)?;
    i32::try_from(v).map_err(|_| out_of_range(op, &format!("{what} {v} is not a file descriptor")))
}

/// The longest string argument taken (PATH_MAX): longer ones are refused without being
/// echoed into the message.
const MAX_TEXT: usize = 4096;

/// A string argument (path, address, driver name): not empty, no NUL, at most PATH_MAX bytes.
pub fn to_text(op: &str, what: &str, value: String) -> napi::Result<String> {
    if value.is_empty() {
        return Err(invalid(op, &format!("{what} must not be empty")));
    }
    if value.len() > MAX_TEXT {
        return Err(invalid(
            op,
            &format!(
                "{what} is {} bytes long; at most {MAX_TEXT} are taken",
                value.len()
            ),
        ));
    }
    if let Some(at) = value.find('\0') {
        return Err(invalid(
            op,
            &format!("{what} contains a NUL character at {at}"),
        ));
    }
    Ok(value)
}

/// An optional string argument, checked as [`to_text`].
pub fn to_opt_text(op: &str, what: &str, value: Option<String>) -> napi::Result<Option<String>> {
    value.map(|v| to_text(op, what, v)).transpose()
}

/// A JS BigInt that must fit u64.
pub fn bigint_to_u64(
    op: &str,
    what: &str,
    value: &napi::bindgen_prelude::BigInt,
) -> napi::Result<u64> {
    let (negative, v, lossless) = value.get_u64();
    if negative || !lossless {
        return Err(out_of_range(op, &format!("{what} must be in [0, 2^64)")));
    }
    Ok(v)
}

/// A u64 given as a number (exact below 2^53, and cheaper to pass) or a BigInt.
pub fn number_or_bigint_to_u64(
    op: &str,
    what: &str,
    value: &napi::bindgen_prelude::Either<f64, napi::bindgen_prelude::BigInt>,
) -> napi::Result<u64> {
    match value {
        napi::bindgen_prelude::Either::A(n) => to_u64(op, what, *n),
        napi::bindgen_prelude::Either::B(b) => bigint_to_u64(op, what, b),
    }
}

/// A huge page size by its name, `2M` or `1G`.
pub fn huge_page_size(op: &str, name: &str) -> napi::Result<vfio_ioctls::HugePageSize> {
    vfio_ioctls::HugePageSize::from_name(name).ok_or_else(|| {
        let shown: String = name.chars().take(16).collect();
        invalid(
            op,
            &format!("hugePages must be '2M' or '1G', got {shown:?}"),
        )
    })
}
