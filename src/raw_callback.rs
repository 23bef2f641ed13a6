//! napi callbacks written by hand, for the calls too hot for napi-rs's generated glue.
//!
//! napi-rs wraps every `#[napi]` function that takes arguments in a native borrow scope
//! (a mutex-guarded allocation and thread-local bookkeeping, there for arguments that
//! borrow class instances). In the TCG guest a call with two number arguments cost
//! 2.7 µs that way, against 0.67 µs for a call with none. A register access takes only
//! numbers (and at most one typed array) and returns a number or nothing, so it needs
//! none of that: these callbacks read their arguments with `napi_get_cb_info` and
//! `napi_get_value_double`, call a plain Rust function and return or throw its result.
//!
//! Each function is a `'static` [`Hot`] whose address is the callback's `data`, so one
//! generic callback per signature serves every function of that signature.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use napi::bindgen_prelude::ToNapiValue;
use napi::{sys, JsError, Result};

use crate::error::invalid;

/// A hot function whose JS arguments are `N` numbers.
pub(crate) struct Hot<const N: usize, R> {
    /// Its JS name (also the `op` of its argument errors).
    pub(crate) name: &'static str,
    pub(crate) call: fn([f64; N]) -> Result<R>,
}

/// A hot function whose JS arguments are `N` numbers and then one typed array of `T`,
/// which it reads or fills during the call.
pub(crate) struct HotArray<const N: usize, T> {
    /// Its JS name (also the `op` of its argument errors).
    pub(crate) name: &'static str,
    pub(crate) call: fn([f64; N], &mut [T]) -> Result<()>,
}

/// An element type a typed array argument may have.
pub(crate) trait Element: Copy {
    /// napi's name for the array type.
    const TYPE: sys::napi_typedarray_type;
    /// The JS class, for the error message.
    const CLASS: &'static str;
    /// Reads the element at `at` of a SharedArrayBuffer, which another thread may write
    /// meanwhile (a relaxed atomic load: no data race on our side).
    ///
    /// # Safety
    /// `at` is aligned for `Self` and valid for reads during the call.
    unsafe fn load_shared(at: *mut Self) -> Self;
    /// Writes `value` at `at` of a SharedArrayBuffer (a relaxed atomic store).
    ///
    /// # Safety
    /// `at` is aligned for `Self` and valid for writes during the call.
    unsafe fn store_shared(at: *mut Self, value: Self);
}

impl Element for u8 {
    const TYPE: sys::napi_typedarray_type = sys::TypedarrayType::uint8_array;
    const CLASS: &'static str = "Uint8Array";
    unsafe fn load_shared(at: *mut u8) -> u8 {
        // SAFETY: as the caller promises (a byte is always aligned).
        unsafe { AtomicU8::from_ptr(at) }.load(Ordering::Relaxed)
    }
    unsafe fn store_shared(at: *mut u8, value: u8) {
        // SAFETY: as the caller promises.
        unsafe { AtomicU8::from_ptr(at) }.store(value, Ordering::Relaxed);
    }
}

impl Element for u32 {
    const TYPE: sys::napi_typedarray_type = sys::TypedarrayType::uint32_array;
    const CLASS: &'static str = "Uint32Array";
    unsafe fn load_shared(at: *mut u32) -> u32 {
        // SAFETY: as the caller promises (a Uint32Array's elements are 4-byte aligned).
        unsafe { AtomicU32::from_ptr(at) }.load(Ordering::Relaxed)
    }
    unsafe fn store_shared(at: *mut u32, value: u32) {
        // SAFETY: as the caller promises.
        unsafe { AtomicU32::from_ptr(at) }.store(value, Ordering::Relaxed);
    }
}

/// What a hot function is to napi: a name and the generic callback of its signature.
pub(crate) trait HotFunction: Sized + 'static {
    /// The callback that reads `data` as `Self`.
    const CALLBACK: Callback;
    /// Its JS name.
    fn name(&self) -> &'static str;

    /// Sets the function as `target[name]`.
    ///
    /// # Safety
    /// `env` is the env of the running call and `target` an object value of it.
    unsafe fn install(&'static self, env: sys::napi_env, target: sys::napi_value) -> Result<()> {
        let data = ptr::from_ref(self).cast_mut().cast::<c_void>();
        // SAFETY: as the caller promises; `CALLBACK` reads `data` as the `Self` it is,
        // which lives for ever.
        unsafe { install(env, target, self.name(), Self::CALLBACK, data) }
    }
}

impl<const N: usize, R: ToNapiValue + 'static> HotFunction for Hot<N, R> {
    const CALLBACK: Callback = number_callback::<N, R>;
    fn name(&self) -> &'static str {
        self.name
    }
}

impl<const N: usize, T: Element + 'static> HotFunction for HotArray<N, T> {
    const CALLBACK: Callback = array_callback::<N, T>;
    fn name(&self) -> &'static str {
        self.name
    }
}

type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// Creates a JS function over `callback` with `data` and sets it as `target[name]`.
///
/// # Safety
/// `env` is the env of the running call, `target` an object value of it, and `data`
/// what `callback` expects, alive as long as the function can be called.
unsafe fn install(
    env: sys::napi_env,
    target: sys::napi_value,
    name: &'static str,
    callback: Callback,
    data: *mut c_void,
) -> Result<()> {
    let mut function = ptr::null_mut();
    let mut key = ptr::null_mut();
    // SAFETY: as the caller promises; `name` is UTF-8 of the given length, and the out
    // pointers are this frame's.
    let ok = unsafe {
        sys::napi_create_function(
            env,
            name.as_ptr().cast(),
            name.len() as isize,
            Some(callback),
            data,
            &mut function,
        ) == sys::Status::napi_ok
            && sys::napi_create_string_utf8(
                env,
                name.as_ptr().cast(),
                name.len() as isize,
                &mut key,
            ) == sys::Status::napi_ok
            && sys::napi_set_property(env, target, key, function) == sys::Status::napi_ok
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "fastAccessors",
            &format!("could not create the function {name}"),
        ))
    }
}

/// The call's first `M` arguments (`undefined` where fewer were given) and its `data`.
///
/// # Safety
/// `env` and `info` are those napi passed to the running callback.
unsafe fn arguments<const M: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> Option<([sys::napi_value; M], *mut c_void)> {
    let mut argc = M;
    let mut argv = [ptr::null_mut(); M];
    let mut data = ptr::null_mut();
    // SAFETY: as the caller promises; `argv` has room for `argc` values.
    let status = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            &mut data,
        )
    };
    (status == sys::Status::napi_ok && !data.is_null()).then_some((argv, data))
}

/// The numbers among `values`, or the invalid-argument error naming the first that is not.
///
/// # Safety
/// `env` is the running call's env and `values` values of it.
unsafe fn numbers<const N: usize>(
    env: sys::napi_env,
    name: &str,
    values: &[sys::napi_value],
) -> Result<[f64; N]> {
    let mut out = [0.0; N];
    for (i, (slot, &value)) in out.iter_mut().zip(values).enumerate() {
        // SAFETY: as the caller promises; `slot` is a valid f64 to write.
        if unsafe { sys::napi_get_value_double(env, value, slot) } != sys::Status::napi_ok {
            return Err(invalid(
                name,
                &format!("argument {} must be a number", i + 1),
            ));
        }
    }
    Ok(out)
}

/// A typed array argument's memory, valid during the call.
struct ArrayArg<T> {
    data: *mut T,
    length: usize,
    /// Backed by a SharedArrayBuffer: another thread may read and write it meanwhile, so
    /// it is never made a Rust slice.
    shared: bool,
}

/// The memory of the typed array `value`, or the invalid-argument error.
///
/// # Safety
/// `env` is the running call's env and `value` a value of it.
unsafe fn typed_array<T: Element>(
    env: sys::napi_env,
    name: &str,
    index: usize,
    value: sys::napi_value,
) -> Result<ArrayArg<T>> {
    let (mut kind, mut length, mut data) = (0, 0, ptr::null_mut());
    let mut buffer = ptr::null_mut();
    // SAFETY: as the caller promises; the out pointers are this frame's (the offset is
    // not wanted). napi refuses a value that is not a typed array.
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env,
            value,
            &mut kind,
            &mut length,
            &mut data,
            &mut buffer,
            ptr::null_mut(),
        )
    };
    if status != sys::Status::napi_ok || kind != T::TYPE {
        return Err(invalid(
            name,
            &format!("argument {index} must be a {}", T::CLASS),
        ));
    }
    // napi_is_arraybuffer is false for a SharedArrayBuffer (the only other backing).
    let mut plain = false;
    // SAFETY: `buffer` is the array's buffer, a value of this call; `plain` is this frame's.
    if unsafe { sys::napi_is_arraybuffer(env, buffer, &mut plain) } != sys::Status::napi_ok {
        return Err(invalid(
            name,
            &format!("argument {index}: could not inspect its buffer"),
        ));
    }
    Ok(ArrayArg {
        data: data.cast::<T>(),
        length: if data.is_null() { 0 } else { length },
        shared: !plain,
    })
}

/// Calls `f` with the array's elements as a slice: the memory itself for an ArrayBuffer
/// (one thread's), a copy for a SharedArrayBuffer, loaded before and, when `f` succeeds,
/// stored back after, element by element with atomics (its other threads see each
/// element whole). A failed call leaves the shared memory as it was, as the facade's
/// `readThroughCopy` (ts/validate.ts) does for the napi-rs methods.
///
/// # Safety
/// `array` is an argument of the running call, whose memory stays valid during it (no JS
/// runs meanwhile, so nothing can detach or resize its buffer).
unsafe fn with_elements<T: Element>(
    array: &ArrayArg<T>,
    f: impl FnOnce(&mut [T]) -> Result<()>,
) -> Result<()> {
    if array.length == 0 {
        return f(&mut []);
    }
    if !array.shared {
        // SAFETY: napi says `data` holds `length` elements of `T` (the array's type was
        // checked), aligned as the array type requires; an ArrayBuffer is only this
        // thread's, and this is the only reference made to it during the call.
        return f(unsafe { std::slice::from_raw_parts_mut(array.data, array.length) });
    }
    let at = |i: usize| array.data.wrapping_add(i);
    let mut copy: Vec<T> = Vec::new();
    // An error, not an abort, when the copy does not fit in memory.
    copy.try_reserve_exact(array.length).map_err(|_| {
        crate::error::to_js(vfio_ioctls::VfioError::os(
            "copying a SharedArrayBuffer",
            format!(
                "a private copy of {} elements (pass an ArrayBuffer's memory instead)",
                array.length
            ),
            std::io::Error::from_raw_os_error(libc::ENOMEM),
        ))
    })?;
    // SAFETY: `at(i)` for `i < length` is an aligned element of the array, valid during
    // the call (napi's word, as above).
    copy.extend((0..array.length).map(|i| unsafe { T::load_shared(at(i)) }));
    f(&mut copy)?;
    for (i, &value) in copy.iter().enumerate() {
        // SAFETY: as for the loads.
        unsafe { T::store_shared(at(i), value) };
    }
    Ok(())
}

/// Returns `result`'s value to JS, or throws its error (and returns nothing).
///
/// # Safety
/// `env` is the running call's env.
unsafe fn finish(env: sys::napi_env, result: Result<sys::napi_value>) -> sys::napi_value {
    match result {
        Ok(value) => value,
        Err(e) => {
            // SAFETY: `env` is the running call's; the error becomes its pending exception.
            unsafe { JsError::from(e).throw_into(env) };
            ptr::null_mut()
        }
    }
}

unsafe extern "C" fn number_callback<const N: usize, R: ToNapiValue>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: napi passes this call's env and info.
    let Some((argv, data)) = (unsafe { arguments::<N>(env, info) }) else {
        return ptr::null_mut();
    };
    // SAFETY: `data` is the `'static Hot<N, R>` that installed this very instantiation.
    let hot = unsafe { &*data.cast::<Hot<N, R>>() };
    // SAFETY: `env` is this call's, `argv` its values.
    let result = unsafe { numbers::<N>(env, hot.name, &argv) }
        .and_then(hot.call)
        // SAFETY: `env` is this call's env.
        .and_then(|value| unsafe { R::to_napi_value(env, value) });
    // SAFETY: `env` is this call's env.
    unsafe { finish(env, result) }
}

unsafe extern "C" fn array_callback<const N: usize, T: Element>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // One slot more than the numbers, for the array (const generics cannot say N + 1):
    // a signature with more numbers does not compile.
    const { assert!(N < 5, "a HotArray takes at most 4 numbers") };
    // SAFETY: napi passes this call's env and info.
    let Some((argv, data)) = (unsafe { arguments::<5>(env, info) }) else {
        return ptr::null_mut();
    };
    // SAFETY: `data` is the `'static HotArray<N, T>` that installed this instantiation.
    let hot = unsafe { &*data.cast::<HotArray<N, T>>() };
    let result = (|| {
        let Some(&array) = argv.get(N) else {
            return Err(invalid(hot.name, "more numbers than the callback reads"));
        };
        // SAFETY: `env` is this call's, `argv` its values.
        let nums = unsafe { numbers::<N>(env, hot.name, &argv[..N]) }?;
        // SAFETY: as above.
        let array = unsafe { typed_array::<T>(env, hot.name, N + 1, array) }?;
        // SAFETY: `array` is this call's argument, used only within it.
        unsafe { with_elements(&array, |elements| (hot.call)(nums, elements)) }?;
        Ok(ptr::null_mut())
    })();
    // SAFETY: `env` is this call's env.
    unsafe { finish(env, result) }
}
