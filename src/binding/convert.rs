//! JS values <-> [`Value`], for the Rust codec. It classifies values exactly as `lib/codec.js`
//! does (same supported types, same errors, same depth limit), so both codecs write the same
//! bytes and refuse the same values. Crossing Node-API once per property makes this path
//! ~4x slower than the JS codec on small values; it exists so the package works without the
//! JS codec and so each codec can check the other.

use std::ffi::CStr;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use serde_json::Value as Json;

use super::raw::{
    self, check, clear_exception, global, new_instance, throw, throw_msg, JS_EXCEPTION,
};
use crate::codec::{self, MAX_DEPTH};
use crate::value::Value;

/// Ancestors are compared for cycles only below this depth: a cycle always gets that deep,
/// and shallow values pay nothing.
const CYCLE_CHECK_DEPTH: usize = 32;

type V = sys::napi_value;

pub fn encode_from_js(env: sys::napi_env, v: V) -> Result<Vec<u8>> {
    let mut w = Walker {
        env,
        ancestors: Vec::new(),
        path: Vec::new(),
        classes: None,
    };
    let value = match w.value(v) {
        Err(e) if e.status == Status::PendingException && e.reason == JS_EXCEPTION => {
            return Err(w.user_threw());
        }
        other => other?,
    };
    codec::encode(&value).map_err(|e| throw(env, &e))
}

struct Walker {
    env: sys::napi_env,
    ancestors: Vec<V>,
    path: Vec<String>,
    classes: Option<Classes>,
}

const CLASS_NAMES: [&str; 12] = [
    "Object",
    "Map",
    "Set",
    "RegExp",
    "Error",
    "WeakMap",
    "WeakSet",
    "SharedArrayBuffer",
    "WeakRef",
    // Boxed primitives: as objects they would lose their value ({} and {0:'x',1:'y'}).
    "Number",
    "Boolean",
    "String",
];

thread_local! {
    static CLASS_REFS: std::cell::Cell<Option<[sys::napi_ref; CLASS_NAMES.len()]>> = const { std::cell::Cell::new(None) };
}

/// References to this thread's global constructors, made on first use. Looking them up by name
/// on every encode dominated its cost (measured with callgrind: ~9 lookups per call).
fn class_refs(env: sys::napi_env) -> Result<[sys::napi_ref; CLASS_NAMES.len()]> {
    if let Some(refs) = CLASS_REFS.with(|c| c.get()) {
        return Ok(refs);
    }
    let mut refs = [ptr::null_mut(); CLASS_NAMES.len()];
    for (r, name) in refs.iter_mut().zip(CLASS_NAMES) {
        // SAFETY: a strong reference to a live global of this env (one env per thread); it
        // lives as long as the thread.
        check(env, unsafe {
            sys::napi_create_reference(env, global(env, name)?, 1, r)
        })?;
    }
    CLASS_REFS.with(|c| c.set(Some(refs)));
    Ok(refs)
}

#[derive(Clone, Copy)]
struct Classes {
    object_proto: V,
    map: V,
    set: V,
    unsupported: [(V, &'static str); CLASS_NAMES.len() - 3],
}

fn type_of(env: sys::napi_env, v: V) -> Result<sys::napi_valuetype> {
    let mut t = 0;
    // SAFETY: valid env, value and out-pointer.
    check(env, unsafe { sys::napi_typeof(env, v, &mut t) })?;
    Ok(t)
}

macro_rules! is {
    ($env:expr, $f:ident, $v:expr) => {{
        let mut b = false;
        // SAFETY: valid env, value and out-pointer.
        check($env, unsafe { sys::$f($env, $v, &mut b) })?;
        b
    }};
}

fn strict_equals(env: sys::napi_env, a: V, b: V) -> Result<bool> {
    let mut same = false;
    // SAFETY: valid env and values.
    check(env, unsafe {
        sys::napi_strict_equals(env, a, b, &mut same)
    })?;
    Ok(same)
}

fn instance_of(env: sys::napi_env, v: V, ctor: V) -> Result<bool> {
    let mut b = false;
    // SAFETY: valid env, object and constructor.
    check(env, unsafe { sys::napi_instanceof(env, v, ctor, &mut b) })?;
    Ok(b)
}

/// The string as UTF-16, so that a lone surrogate is seen (the UTF-8 call would replace it).
fn utf16(env: sys::napi_env, v: V) -> Result<Vec<u16>> {
    let mut len = 0;
    // SAFETY: a null buffer asks for the length.
    check(env, unsafe {
        sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut len)
    })?;
    let mut buf = vec![0u16; len + 1];
    // SAFETY: buf has room for len + 1 units.
    check(env, unsafe {
        sys::napi_get_value_string_utf16(env, v, buf.as_mut_ptr(), len + 1, &mut len)
    })?;
    buf.truncate(len);
    Ok(buf)
}

/// `Array.isArray(v)`, which sees through proxies.
fn is_array_js(env: sys::napi_env, v: V) -> Result<bool> {
    let array = global(env, "Array")?;
    let is_array = raw::get(env, array, c"isArray")?;
    let mut b = false;
    // SAFETY: valid env and value (the call returns a boolean).
    check(env, unsafe {
        sys::napi_get_value_bool(env, raw::call(env, array, is_array, &[v])?, &mut b)
    })?;
    Ok(b)
}

/// Items of an array-like produced by `Array.from(v)` (used for Map and Set).
fn array_from(env: sys::napi_env, v: V) -> Result<V> {
    let array = global(env, "Array")?;
    let from = raw::get(env, array, c"from")?;
    raw::call(env, array, from, &[v])
}

fn array_items(env: sys::napi_env, arr: V) -> Result<Vec<V>> {
    let mut n = 0;
    // SAFETY: valid env and array.
    check(env, unsafe { sys::napi_get_array_length(env, arr, &mut n) })?;
    // Every item takes a byte at least: an array longer than a value may be fails at once,
    // not after reading 2^32 holes into a vector.
    if n as u64 + 5 > crate::layout::MAX_VALUE_BYTES as u64 {
        return Err(throw(
            env,
            &crate::error::Error::ValueTooLarge {
                len: n as usize,
                max: crate::layout::MAX_VALUE_BYTES,
            },
        ));
    }
    (0..n)
        .map(|i| {
            let mut item = ptr::null_mut();
            // SAFETY: valid env and array; a hole reads as undefined.
            check(env, unsafe {
                sys::napi_get_element(env, arr, i, &mut item)
            })?;
            Ok(item)
        })
        .collect()
}

impl Walker {
    fn string(&self, v: V) -> Result<String> {
        String::from_utf16(&utf16(self.env, v)?).map_err(|_| {
            self.fail("strings must be well-formed UTF-16 (this one has a lone surrogate)")
        })
    }

    /// Replaces the pending exception that the value's own code threw (a getter, a proxy
    /// trap) with a TypeError saying where, the original as its `cause`, as the JS codec does.
    fn user_threw(&self) -> Error {
        let env = self.env;
        let Ok(cause) = clear_exception(env) else {
            return Error::new(Status::PendingException, JS_EXCEPTION.to_string());
        };
        let mut what = String::from("an exception");
        let mut is_error = false;
        // SAFETY: valid env, value and out-pointer.
        unsafe { sys::napi_is_error(env, cause, &mut is_error) };
        if is_error {
            // An Error object (not a proxy): reading its message runs no user code but a getter
            // someone defined on it, which may throw too; then keep the generic words.
            match raw::get(env, cause, c"message").and_then(|m| self.string(m)) {
                Ok(m) => what = m,
                Err(_) => drop(clear_exception(env)),
            }
        }
        let err = self.fail(&format!("reading the value threw: {what}"));
        let code = c"ERR_KV_VALUE_THREW";
        if let Ok(e) = clear_exception(env) {
            // SAFETY: valid env; e is the TypeError just thrown, an ordinary object.
            unsafe {
                let mut code_v = ptr::null_mut();
                sys::napi_create_string_utf8(
                    env,
                    code.as_ptr(),
                    code.count_bytes() as isize,
                    &mut code_v,
                );
                sys::napi_set_named_property(env, e, c"code".as_ptr(), code_v);
                sys::napi_set_named_property(env, e, c"cause".as_ptr(), cause);
                sys::napi_throw(env, e);
            }
        }
        err
    }

    fn fail(&self, msg: &str) -> Error {
        let at = if self.path.is_empty() {
            String::new()
        } else {
            format!(" (at value{})", self.path.concat())
        };
        throw_msg(
            self.env,
            b'T',
            c"ERR_KV_UNSUPPORTED_VALUE",
            &format!("{msg}{at}"),
        )
    }

    fn value(&mut self, v: V) -> Result<Value> {
        let env = self.env;
        // Same rule as the codecs: no value deeper than MAX_DEPTH containers (checked here too,
        // so a deep value cannot overflow this walker's stack).
        if self.ancestors.len() > MAX_DEPTH {
            let msg = format!("value is nested more than {MAX_DEPTH} levels deep");
            return Err(throw_msg(env, b'R', c"ERR_KV_TOO_DEEP", &msg));
        }
        Ok(match type_of(env, v)? {
            sys::ValueType::napi_undefined => Value::Undefined,
            sys::ValueType::napi_null => Value::Null,
            sys::ValueType::napi_boolean => {
                let mut b = false;
                // SAFETY: v is a boolean.
                check(env, unsafe { sys::napi_get_value_bool(env, v, &mut b) })?;
                Value::Bool(b)
            }
            sys::ValueType::napi_number => {
                let mut n = 0.0;
                // SAFETY: v is a number.
                check(env, unsafe { sys::napi_get_value_double(env, v, &mut n) })?;
                Value::Number(n)
            }
            sys::ValueType::napi_string => Value::String(self.string(v)?),
            sys::ValueType::napi_bigint => {
                let (mut sign, mut count, mut words) = (0i32, 2usize, [0u64; 2]);
                // SAFETY: v is a BigInt; we pass room for 2 words and get the real count back.
                check(env, unsafe {
                    sys::napi_get_value_bigint_words(
                        env,
                        v,
                        &mut sign,
                        &mut count,
                        words.as_mut_ptr(),
                    )
                })?;
                let mag = if count <= 1 {
                    words[0] as i128
                } else {
                    i128::MAX
                };
                let i = if sign == 1 { -mag } else { mag };
                if count > 1 || !(i64::MIN as i128..=u64::MAX as i128).contains(&i) {
                    return Err(throw_msg(
                        env,
                        b'R',
                        c"ERR_KV_UNSUPPORTED_VALUE",
                        "BigInt values must fit in 64 bits",
                    ));
                }
                Value::BigInt(i)
            }
            sys::ValueType::napi_symbol => return Err(self.fail("symbols cannot be stored")),
            sys::ValueType::napi_function => return Err(self.fail("functions cannot be stored")),
            _ => self.object(v)?,
        })
    }

    fn object(&mut self, v: V) -> Result<Value> {
        let env = self.env;
        // Arrays and plain objects first: they need none of the type checks below.
        if is!(env, napi_is_array, v) {
            return self.container(v, |w| w.items(array_items(env, v)?).map(Value::Array));
        }
        let mut proto = ptr::null_mut();
        // SAFETY: v is an object.
        check(env, unsafe { sys::napi_get_prototype(env, v, &mut proto) })?;
        let classes = self.classes()?;
        // Node-API sees no prototype through a Proxy: a Proxy of an array is no array to it,
        // but is to Array.isArray (and the JS codec), so ask that in this rare case and copy
        // the items through Array.from.
        let null_proto = type_of(env, proto)? == sys::ValueType::napi_null;
        if null_proto && is_array_js(env, v)? {
            return self.container(v, |w| {
                w.items(array_items(env, array_from(env, v)?)?)
                    .map(Value::Array)
            });
        }
        if null_proto || strict_equals(env, proto, classes.object_proto)? {
            return self.container(v, |w| w.fields(v).map(Value::Object));
        }
        if is!(env, napi_is_typedarray, v) {
            let (mut ty, mut len, mut data, mut ab, mut off) =
                (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
            // SAFETY: v is a typed array.
            check(env, unsafe {
                sys::napi_get_typedarray_info(
                    env, v, &mut ty, &mut len, &mut data, &mut ab, &mut off,
                )
            })?;
            if ty != sys::TypedarrayType::uint8_array {
                return Err(self.fail("typed arrays other than Uint8Array cannot be stored"));
            }
            let bytes = if len == 0 {
                Vec::new()
            } else {
                // SAFETY: V8 reports len bytes at data, alive for this call.
                unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec()
            };
            return Ok(Value::Bytes(bytes));
        }
        if is!(env, napi_is_date, v) {
            let mut ms = 0.0;
            // SAFETY: v is a Date.
            check(env, unsafe { sys::napi_get_date_value(env, v, &mut ms) })?;
            return Ok(Value::Date(ms));
        }
        if is!(env, napi_is_arraybuffer, v)
            || is!(env, napi_is_dataview, v)
            || is!(env, napi_is_promise, v)
        {
            return Err(self.fail("ArrayBuffer, DataView and Promise values cannot be stored"));
        }
        for (ctor, class) in classes.unsupported {
            if instance_of(env, v, ctor)? {
                if matches!(class, "Number" | "Boolean" | "String") {
                    return Err(self.fail(&format!(
                        "boxed {class} objects cannot be stored: store the primitive (valueOf())"
                    )));
                }
                return Err(self.fail(&format!("{class} values cannot be stored")));
            }
        }
        if instance_of(env, v, classes.map)? {
            return self.container(v, |w| {
                let mut pairs = Vec::new();
                for (i, pair) in array_items(env, array_from(env, v)?)?
                    .into_iter()
                    .enumerate()
                {
                    let kv = array_items(env, pair)?;
                    w.path.push(format!(".<map entry {i}>"));
                    pairs.push((w.value(kv[0])?, w.value(kv[1])?));
                    w.path.pop();
                }
                Ok(Value::Map(pairs))
            });
        }
        if instance_of(env, v, classes.set)? {
            return self.container(v, |w| {
                w.items(array_items(env, array_from(env, v)?)?)
                    .map(Value::Set)
            });
        }
        // A class instance: its own fields, as JSON does.
        self.container(v, |w| w.fields(v).map(Value::Object))
    }

    /// The constructors the checks compare against (cached per thread; see `class_refs`).
    fn classes(&mut self) -> Result<Classes> {
        if let Some(c) = self.classes {
            return Ok(c);
        }
        let env = self.env;
        let refs = class_refs(env)?;
        let mut values = [ptr::null_mut(); CLASS_NAMES.len()];
        for (v, r) in values.iter_mut().zip(refs) {
            *v = raw::deref(env, r)?;
        }
        let mut unsupported = [(ptr::null_mut(), ""); CLASS_NAMES.len() - 3];
        for (i, slot) in unsupported.iter_mut().enumerate() {
            *slot = (values[3 + i], CLASS_NAMES[3 + i]);
        }
        let object_proto = raw::get(env, values[0], c"prototype")?;
        let c = Classes {
            object_proto,
            map: values[1],
            set: values[2],
            unsupported,
        };
        self.classes = Some(c);
        Ok(c)
    }

    /// Runs `f` with `v` pushed as an ancestor (for the cycle check).
    fn container(&mut self, v: V, f: impl FnOnce(&mut Self) -> Result<Value>) -> Result<Value> {
        self.enter(v)?;
        let out = f(self);
        self.ancestors.pop();
        out
    }

    fn enter(&mut self, v: V) -> Result<()> {
        if self.ancestors.len() >= CYCLE_CHECK_DEPTH {
            for &a in &self.ancestors {
                let mut same = false;
                // SAFETY: valid env and values.
                check(self.env, unsafe {
                    sys::napi_strict_equals(self.env, a, v, &mut same)
                })?;
                if same {
                    return Err(self.fail("value contains a circular reference"));
                }
            }
        }
        self.ancestors.push(v);
        Ok(())
    }

    fn items(&mut self, items: Vec<V>) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            self.path.push(format!("[{i}]"));
            out.push(self.value(item)?);
            self.path.pop();
        }
        Ok(out)
    }

    fn fields(&mut self, v: V) -> Result<Vec<(String, Value)>> {
        let env = self.env;
        let mut keys = ptr::null_mut();
        // SAFETY: valid env and object; own enumerable string keys, as Object.keys.
        check(env, unsafe {
            sys::napi_get_all_property_names(
                env,
                v,
                sys::KeyCollectionMode::own_only,
                sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
                sys::KeyConversion::numbers_to_strings,
                &mut keys,
            )
        })?;
        let mut out = Vec::new();
        for key in array_items(env, keys)? {
            let name = self.string(key)?;
            self.path.push(format!(".{name}"));
            let mut item = ptr::null_mut();
            // SAFETY: valid env, object and key; a throwing getter leaves an exception pending.
            check(env, unsafe {
                sys::napi_get_property(env, v, key, &mut item)
            })?;
            out.push((name, self.value(item)?));
            self.path.pop();
        }
        Ok(out)
    }
}

pub fn decode_to_js(env: sys::napi_env, bytes: &[u8]) -> Result<V> {
    let value = codec::decode(bytes).map_err(|e| throw(env, &e))?;
    to_js(env, &value)
}

fn string(env: sys::napi_env, s: &str) -> Result<V> {
    super::raw::string(env, s.as_bytes())
}

fn call_each(env: sys::napi_env, target: V, method: &CStr, args: &[V]) -> Result<()> {
    raw::call_method(env, target, method, args).map(|_| ())
}

/// Builds the JS value. Objects get own data properties (a `__proto__` key is defined, never
/// assigned, so it cannot change a prototype).
fn to_js(env: sys::napi_env, v: &Value) -> Result<V> {
    let mut out = ptr::null_mut();
    // SAFETY (all calls below): valid env, values created in this scope, valid out-pointers.
    unsafe {
        match v {
            Value::Undefined => check(env, sys::napi_get_undefined(env, &mut out))?,
            Value::Null => check(env, sys::napi_get_null(env, &mut out))?,
            Value::Bool(b) => check(env, sys::napi_get_boolean(env, *b, &mut out))?,
            Value::Number(n) => check(env, sys::napi_create_double(env, *n, &mut out))?,
            Value::BigInt(i) => match i64::try_from(*i) {
                Ok(i) => check(env, sys::napi_create_bigint_int64(env, i, &mut out))?,
                Err(_) => check(
                    env,
                    sys::napi_create_bigint_uint64(env, *i as u64, &mut out),
                )?,
            },
            Value::String(s) => out = string(env, s)?,
            Value::Bytes(b) => {
                let mut data = ptr::null_mut();
                check(
                    env,
                    sys::napi_create_buffer_copy(
                        env,
                        b.len(),
                        b.as_ptr().cast(),
                        &mut data,
                        &mut out,
                    ),
                )?
            }
            Value::Array(items) => {
                check(
                    env,
                    sys::napi_create_array_with_length(env, items.len(), &mut out),
                )?;
                for (i, item) in items.iter().enumerate() {
                    check(
                        env,
                        sys::napi_set_element(env, out, i as u32, to_js(env, item)?),
                    )?;
                }
            }
            Value::Object(fields) => {
                check(env, sys::napi_create_object(env, &mut out))?;
                for (k, item) in fields {
                    let (key, val) = (string(env, k)?, to_js(env, item)?);
                    if k == "__proto__" {
                        let desc = sys::napi_property_descriptor {
                            utf8name: ptr::null(),
                            name: key,
                            method: None,
                            getter: None,
                            setter: None,
                            value: val,
                            attributes: sys::PropertyAttributes::writable
                                | sys::PropertyAttributes::enumerable
                                | sys::PropertyAttributes::configurable,
                            data: ptr::null_mut(),
                        };
                        check(env, sys::napi_define_properties(env, out, 1, &desc))?;
                    } else {
                        check(env, sys::napi_set_property(env, out, key, val))?;
                    }
                }
            }
            Value::Map(pairs) => {
                out = new_instance(env, global(env, "Map")?, &[])?;
                for (k, item) in pairs {
                    call_each(env, out, c"set", &[to_js(env, k)?, to_js(env, item)?])?;
                }
            }
            Value::Set(items) => {
                out = new_instance(env, global(env, "Set")?, &[])?;
                for item in items {
                    call_each(env, out, c"add", &[to_js(env, item)?])?;
                }
            }
            Value::Date(ms) => check(env, sys::napi_create_date(env, *ms, &mut out))?,
        }
    }
    Ok(out)
}

/// Plain JSON (for small results like `stats()`).
pub fn json_to_js(env: sys::napi_env, j: &Json) -> Result<V> {
    let v = match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => return array_of(env, a),
        Json::Object(o) => {
            let mut out = ptr::null_mut();
            // SAFETY: valid env and out-pointer.
            check(env, unsafe { sys::napi_create_object(env, &mut out) })?;
            for (k, item) in o {
                let (key, val) = (string(env, k)?, json_to_js(env, item)?);
                // SAFETY: valid env, object, key and value.
                check(env, unsafe { sys::napi_set_property(env, out, key, val) })?;
            }
            return Ok(out);
        }
    };
    to_js(env, &v)
}

fn array_of(env: sys::napi_env, a: &[Json]) -> Result<V> {
    let mut out = ptr::null_mut();
    // SAFETY: valid env and out-pointer.
    check(env, unsafe {
        sys::napi_create_array_with_length(env, a.len(), &mut out)
    })?;
    for (i, item) in a.iter().enumerate() {
        // SAFETY: valid env, array and value.
        check(env, unsafe {
            sys::napi_set_element(env, out, i as u32, json_to_js(env, item)?)
        })?;
    }
    Ok(out)
}
