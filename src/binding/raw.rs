//! Thin safe wrappers over the raw Node-API calls the binding needs.

use std::ffi::{CStr, CString};
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

use crate::error::Error as CoreError;

/// A JS value passed through untouched (no conversion by napi-rs).
pub struct Raw(pub sys::napi_value);

impl TypeName for Raw {
    fn type_name() -> &'static str {
        "unknown"
    }
    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}
impl ValidateNapiValue for Raw {}
// SAFETY (both impls): the trait signatures are `unsafe fn`; these only pass the handle through.
impl FromNapiValue for Raw {
    unsafe fn from_napi_value(_env: sys::napi_env, v: sys::napi_value) -> Result<Self> {
        Ok(Raw(v))
    }
}
// SAFETY: as above, the value is handed back untouched.
impl ToNapiValue for Raw {
    unsafe fn to_napi_value(_env: sys::napi_env, v: Self) -> Result<sys::napi_value> {
        Ok(v.0)
    }
}

/// Turns a failed Node-API status into an error. If the call left a JS exception pending
/// (e.g. a getter threw), it propagates as is.
/// The reason of an error whose exception JS code threw (a getter, a proxy trap) during a
/// Node-API call, as opposed to one this binding threw.
pub const JS_EXCEPTION: &str = "JS exception";

pub fn check(env: sys::napi_env, status: sys::napi_status) -> Result<()> {
    if status == sys::Status::napi_ok {
        return Ok(());
    }
    let mut pending = false;
    // SAFETY: valid env and out-pointer.
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    if pending {
        return Err(Error::new(
            Status::PendingException,
            JS_EXCEPTION.to_string(),
        ));
    }
    Err(Error::new(
        Status::GenericFailure,
        format!("Node-API call failed with status {status}"),
    ))
}

/// Which JS error class a core error becomes, and its `code`.
fn kind(e: &CoreError) -> (u8, &'static CStr) {
    match e {
        CoreError::KeyTooLong { .. } => (b'R', c"ERR_KV_KEY_TOO_LONG"),
        CoreError::ValueTooLarge { .. } => (b'R', c"ERR_KV_VALUE_TOO_LARGE"),
        CoreError::Full { .. }
        | CoreError::AtCapacity { .. }
        | CoreError::IndexNeedsRoom { .. }
        | CoreError::NoWindow { .. }
        | CoreError::NoSpace { .. } => (b'R', c"ERR_KV_FULL"),
        CoreError::Encode(_) => (b'R', c"ERR_KV_ENCODE"),
        CoreError::Type(_) => (b'T', c"ERR_KV_WRONG_TYPE"),
        CoreError::Timeout(_) => (b'E', c"ERR_KV_TIMEOUT"),
        CoreError::Decode(_) => (b'E', c"ERR_KV_DECODE"),
        CoreError::NotAStore(_) => (b'E', c"ERR_KV_NOT_A_STORE"),
        CoreError::UnsafeFile(_) => (b'E', c"ERR_KV_UNSAFE_FILE"),
        CoreError::Truncated(_) => (b'E', c"ERR_KV_TRUNCATED"),
        CoreError::Lost(_) => (b'E', c"ERR_KV_LOST"),
        CoreError::Layout { .. } => (b'E', c"ERR_KV_LAYOUT"),
        _ => (b'E', c"ERR_KV_CORRUPTED"),
    }
}

/// Throws `e` as a RangeError or Error (with a `code`) and returns the napi-rs error that
/// tells napi-rs an exception is already pending.
pub fn throw(env: sys::napi_env, e: &CoreError) -> Error {
    if let CoreError::Io { code, message } = e {
        // An OS error keeps its errno name as the code, as Node's fs errors do.
        let code = CString::new(code.as_str()).unwrap_or_default();
        return throw_msg(env, b'E', &code, message);
    }
    let (k, code) = kind(e);
    throw_msg(env, k, code, &e.to_string())
}

/// `k`: b'T' TypeError, b'R' RangeError, else Error.
pub fn throw_msg(env: sys::napi_env, k: u8, code: &CStr, msg: &str) -> Error {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: valid env and NUL-terminated strings.
    unsafe {
        match k {
            b'T' => sys::napi_throw_type_error(env, code.as_ptr(), c.as_ptr()),
            b'R' => sys::napi_throw_range_error(env, code.as_ptr(), c.as_ptr()),
            _ => sys::napi_throw_error(env, code.as_ptr(), c.as_ptr()),
        };
    }
    Error::new(Status::PendingException, msg.to_string())
}

pub fn clear_exception(env: sys::napi_env) -> Result<sys::napi_value> {
    let mut e = ptr::null_mut();
    // SAFETY: valid env and out-pointer.
    check(env, unsafe {
        sys::napi_get_and_clear_last_exception(env, &mut e)
    })?;
    Ok(e)
}

pub fn global(env: sys::napi_env, name: &str) -> Result<sys::napi_value> {
    let mut g = ptr::null_mut();
    // SAFETY: valid env and out-pointer.
    check(env, unsafe { sys::napi_get_global(env, &mut g) })?;
    let name = CString::new(name).unwrap();
    get(env, g, &name)
}

pub fn get(env: sys::napi_env, obj: sys::napi_value, name: &CStr) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: valid env, object and NUL-terminated name.
    check(env, unsafe {
        sys::napi_get_named_property(env, obj, name.as_ptr(), &mut v)
    })?;
    Ok(v)
}

pub fn get_number(env: sys::napi_env, obj: sys::napi_value, name: &CStr) -> Result<f64> {
    let v = get(env, obj, name)?;
    let mut n = 0.0;
    // SAFETY: valid env and out-pointer; a non-number yields an error status.
    check(env, unsafe { sys::napi_get_value_double(env, v, &mut n) })?;
    Ok(n)
}

pub fn number(env: sys::napi_env, n: f64) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: valid env and out-pointer.
    check(env, unsafe { sys::napi_create_double(env, n, &mut v) })?;
    Ok(v)
}

pub fn is_null(env: sys::napi_env, v: sys::napi_value) -> Result<bool> {
    let mut t = 0;
    // SAFETY: valid env, value and out-pointer.
    check(env, unsafe { sys::napi_typeof(env, v, &mut t) })?;
    Ok(t == sys::ValueType::napi_null || t == sys::ValueType::napi_undefined)
}

/// A JS string from UTF-8 bytes (invalid sequences become U+FFFD).
pub fn string(env: sys::napi_env, bytes: &[u8]) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: valid env; `bytes` is readable for its length.
    check(env, unsafe {
        sys::napi_create_string_utf8(env, bytes.as_ptr().cast(), bytes.len() as isize, &mut v)
    })?;
    Ok(v)
}

pub fn undefined(env: sys::napi_env) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: valid env and out-pointer.
    check(env, unsafe { sys::napi_get_undefined(env, &mut v) })?;
    Ok(v)
}

pub fn new_instance(
    env: sys::napi_env,
    ctor: sys::napi_value,
    args: &[sys::napi_value],
) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: valid env, constructor and argument array.
    check(env, unsafe {
        sys::napi_new_instance(env, ctor, args.len(), args.as_ptr(), &mut v)
    })?;
    Ok(v)
}

pub fn call(
    env: sys::napi_env,
    this: sys::napi_value,
    f: sys::napi_value,
    args: &[sys::napi_value],
) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: valid env, receiver, function and argument array.
    check(env, unsafe {
        sys::napi_call_function(env, this, f, args.len(), args.as_ptr(), &mut v)
    })?;
    Ok(v)
}

pub fn call_method(
    env: sys::napi_env,
    obj: sys::napi_value,
    name: &CStr,
    args: &[sys::napi_value],
) -> Result<sys::napi_value> {
    let f = get(env, obj, name)?;
    call(env, obj, f, args)
}

pub fn deref(env: sys::napi_env, r: sys::napi_ref) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: `r` is a strong reference of this env, so the value is alive.
    check(env, unsafe {
        sys::napi_get_reference_value(env, r, &mut v)
    })?;
    Ok(v)
}
