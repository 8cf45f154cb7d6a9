//! The value encoding: canonical msgpack (every header as short as the length allows) plus a
//! few extension tags. `lib/codec.js` writes and reads exactly the same bytes; the vectors in
//! `__test__/vectors.json` check both codecs against each other.
//!
//! | JS value | bytes |
//! |---|---|
//! | integer number in [-2^31, 2^32) (not -0) | smallest msgpack int |
//! | any other number (-0, NaN, ±Infinity, fractions, large) | float64 |
//! | BigInt in the 64-bit range | int64 (`d3`), or uint64 (`cf`) above i64::MAX |
//! | string | str (UTF-8) |
//! | Buffer / Uint8Array | bin |
//! | undefined | fixext1 type 0, data 0 (`d4 00 00`, as msgpackr) |
//! | Date | timestamp extension -1 (32/64/96-bit forms); invalid Date `d4 ff ff` (as msgpackr) |
//! | Set | `d4 73 00` then an array (msgpackr's tag form) |
//! | Map | `d4 6d 00` then a map with keys of any type |
//! | plain object | map with string keys |
//!
//! Decoding accepts any msgpack: other int widths become numbers, float32 becomes a number,
//! a map with a non-string key becomes a Map. Nesting deeper than [`MAX_DEPTH`] is refused by
//! both codecs (the decoder must not overflow its stack on hostile bytes).

use rmp::encode as enc;
use rmp::Marker;

use crate::error::{Error, Result};
use crate::value::Value;

/// Deep enough for real data; shallow enough that recursion stays far from any thread's stack
/// limit, even in a debug build (a debug frame here is a few KiB).
pub const MAX_DEPTH: usize = 256;
pub const EXT_UNDEFINED: i8 = 0;
pub const EXT_TIMESTAMP: i8 = -1;
pub const EXT_SET: i8 = 0x73;
pub const EXT_MAP: i8 = 0x6d;

const TWO_32: f64 = 4_294_967_296.0;
const TWO_31: f64 = 2_147_483_648.0;

pub fn encode(v: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    write(&mut out, v, 0)?;
    Ok(out)
}

fn io(e: impl std::fmt::Display) -> Error {
    Error::Encode(e.to_string())
}

fn write(out: &mut Vec<u8>, v: &Value, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::Encode(format!(
            "value is nested more than {MAX_DEPTH} levels deep"
        )));
    }
    match v {
        Value::Array(items) => write_items(out, items, depth)?,
        Value::Object(fields) => {
            enc::write_map_len(out, len32(fields.len())?).map_err(io)?;
            for (k, item) in fields {
                enc::write_str(out, k).map_err(io)?;
                write(out, item, depth + 1)?;
            }
        }
        Value::Map(pairs) => {
            write_tag(out, EXT_MAP)?;
            enc::write_map_len(out, len32(pairs.len())?).map_err(io)?;
            for (k, item) in pairs {
                write(out, k, depth + 1)?;
                write(out, item, depth + 1)?;
            }
        }
        Value::Set(items) => {
            write_tag(out, EXT_SET)?;
            write_items(out, items, depth)?;
        }
        scalar => write_scalar(out, scalar)?,
    }
    Ok(())
}

fn write_items(out: &mut Vec<u8>, items: &[Value], depth: usize) -> Result<()> {
    enc::write_array_len(out, len32(items.len())?).map_err(io)?;
    for item in items {
        write(out, item, depth + 1)?;
    }
    Ok(())
}

/// Kept out of `write` so that each level of recursion costs little stack.
#[inline(never)]
fn write_scalar(out: &mut Vec<u8>, v: &Value) -> Result<()> {
    match v {
        Value::Undefined => enc::write_ext_meta(out, 1, EXT_UNDEFINED)
            .map(|_| out.push(0))
            .map_err(io)?,
        Value::Null => enc::write_nil(out).map_err(io)?,
        Value::Bool(b) => enc::write_bool(out, *b).map_err(io)?,
        Value::Number(n) => write_number(out, *n)?,
        Value::BigInt(i) => {
            if let Ok(i) = i64::try_from(*i) {
                enc::write_i64(out, i).map_err(io)?
            } else {
                let u = u64::try_from(*i)
                    .map_err(|_| Error::Encode("BigInt outside the 64-bit range".into()))?;
                enc::write_u64(out, u).map_err(io)?
            }
        }
        Value::String(s) => enc::write_str(out, s).map_err(io)?,
        Value::Bytes(b) => enc::write_bin(out, b).map_err(io)?,
        Value::Date(ms) => write_date(out, *ms)?,
        _ => unreachable!("containers are written by `write`"),
    }
    Ok(())
}

fn len32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Encode("collection has more than 2^32-1 items".into()))
}

/// msgpackr's "tag" extension form: a one-byte ext whose payload (0) is followed by a value.
fn write_tag(out: &mut Vec<u8>, ty: i8) -> Result<()> {
    enc::write_ext_meta(out, 1, ty).map_err(io)?;
    out.push(0);
    Ok(())
}

fn write_number(out: &mut Vec<u8>, n: f64) -> Result<()> {
    let integral = n.fract() == 0.0 && !(n == 0.0 && n.is_sign_negative());
    if integral && (0.0..TWO_32).contains(&n) {
        enc::write_uint(out, n as u64).map_err(io)?;
    } else if integral && (-TWO_31..0.0).contains(&n) {
        enc::write_sint(out, n as i64).map_err(io)?;
    } else {
        enc::write_f64(out, n).map_err(io)?;
    }
    Ok(())
}

fn write_date(out: &mut Vec<u8>, ms: f64) -> Result<()> {
    if !ms.is_finite() {
        enc::write_ext_meta(out, 1, EXT_TIMESTAMP).map_err(io)?;
        out.push(0xff);
        return Ok(());
    }
    let ms = ms.trunc() as i64;
    let (sec, nsec) = (
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as u32,
    );
    if nsec == 0 && (0..1i64 << 32).contains(&sec) {
        enc::write_ext_meta(out, 4, EXT_TIMESTAMP).map_err(io)?;
        out.extend_from_slice(&(sec as u32).to_be_bytes());
    } else if (0..1i64 << 34).contains(&sec) {
        enc::write_ext_meta(out, 8, EXT_TIMESTAMP).map_err(io)?;
        out.extend_from_slice(&(((nsec as u64) << 34) | sec as u64).to_be_bytes());
    } else {
        enc::write_ext_meta(out, 12, EXT_TIMESTAMP).map_err(io)?;
        out.extend_from_slice(&nsec.to_be_bytes());
        out.extend_from_slice(&sec.to_be_bytes());
    }
    Ok(())
}

pub fn decode(bytes: &[u8]) -> Result<Value> {
    let mut r = Reader { b: bytes, pos: 0 };
    let v = r.value(0)?;
    if r.pos != bytes.len() {
        return Err(Error::Decode(format!(
            "{} bytes after the value",
            bytes.len() - r.pos
        )));
    }
    Ok(v)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

fn short() -> Error {
    Error::Decode("value is truncated".into())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(short)?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn be<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().unwrap())
    }
    fn len(&mut self, bytes: usize) -> Result<usize> {
        Ok(match bytes {
            1 => self.u8()? as usize,
            2 => u16::from_be_bytes(self.be()?) as usize,
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }
    /// A container count can't exceed the bytes left (each item takes at least one byte):
    /// checked before allocating, so a forged count cannot exhaust memory.
    fn count(&mut self, n: usize) -> Result<usize> {
        if n > self.b.len() - self.pos {
            return Err(short());
        }
        Ok(n)
    }

    /// The recursive path: kept small (containers only) so that each level of nesting costs
    /// little stack; scalars are parsed out of line.
    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(Error::Decode(format!(
                "value is nested more than {MAX_DEPTH} levels deep"
            )));
        }
        let b = self.u8()?;
        match b {
            0x90..=0x9f => self.array((b & 0x0f) as usize, depth),
            0xdc => self.sized_container(2, depth, Self::array),
            0xdd => self.sized_container(4, depth, Self::array),
            0x80..=0x8f => self.map((b & 0x0f) as usize, depth, false),
            0xde => self.sized_container(2, depth, Self::object_or_map),
            0xdf => self.sized_container(4, depth, Self::object_or_map),
            0xd4 => self.ext(1, depth),
            0xd5 => self.ext(2, depth),
            0xd6 => self.ext(4, depth),
            0xd7 => self.ext(8, depth),
            0xd8 => self.ext(16, depth),
            0xc7 => self.sized_container(1, depth, Self::ext),
            0xc8 => self.sized_container(2, depth, Self::ext),
            0xc9 => self.sized_container(4, depth, Self::ext),
            _ => self.scalar(b),
        }
    }

    fn sized_container(
        &mut self,
        len_bytes: usize,
        depth: usize,
        f: fn(&mut Self, usize, usize) -> Result<Value>,
    ) -> Result<Value> {
        let n = self.len(len_bytes)?;
        f(self, n, depth)
    }

    fn object_or_map(&mut self, n: usize, depth: usize) -> Result<Value> {
        self.map(n, depth, false)
    }

    #[inline(never)]
    fn scalar(&mut self, b: u8) -> Result<Value> {
        Ok(match Marker::from_u8(b) {
            Marker::FixPos(n) => Value::Number(n as f64),
            Marker::FixNeg(n) => Value::Number(n as f64),
            Marker::Null => Value::Null,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::U8 => Value::Number(self.u8()? as f64),
            Marker::U16 => Value::Number(u16::from_be_bytes(self.be()?) as f64),
            Marker::U32 => Value::Number(u32::from_be_bytes(self.be()?) as f64),
            Marker::U64 => Value::BigInt(u64::from_be_bytes(self.be()?) as i128),
            Marker::I8 => Value::Number(i8::from_be_bytes(self.be()?) as f64),
            Marker::I16 => Value::Number(i16::from_be_bytes(self.be()?) as f64),
            Marker::I32 => Value::Number(i32::from_be_bytes(self.be()?) as f64),
            Marker::I64 => Value::BigInt(i64::from_be_bytes(self.be()?) as i128),
            Marker::F32 => Value::Number(f32::from_be_bytes(self.be()?) as f64),
            Marker::F64 => Value::Number(f64::from_be_bytes(self.be()?)),
            Marker::FixStr(n) => self.string(n as usize)?,
            Marker::Str8 => self.sized(1, Self::string)?,
            Marker::Str16 => self.sized(2, Self::string)?,
            Marker::Str32 => self.sized(4, Self::string)?,
            Marker::Bin8 => self.sized(1, Self::bytes)?,
            Marker::Bin16 => self.sized(2, Self::bytes)?,
            Marker::Bin32 => self.sized(4, Self::bytes)?,
            _ => return Err(Error::Decode("reserved byte 0xc1".into())),
        })
    }

    fn sized(
        &mut self,
        len_bytes: usize,
        f: fn(&mut Self, usize) -> Result<Value>,
    ) -> Result<Value> {
        let n = self.len(len_bytes)?;
        f(self, n)
    }
    fn string(&mut self, n: usize) -> Result<Value> {
        // Invalid UTF-8 becomes U+FFFD, as JS's TextDecoder does.
        Ok(Value::String(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        ))
    }
    fn bytes(&mut self, n: usize) -> Result<Value> {
        Ok(Value::Bytes(self.take(n)?.to_vec()))
    }
    fn array(&mut self, n: usize, depth: usize) -> Result<Value> {
        let n = self.count(n)?;
        (0..n)
            .map(|_| self.value(depth + 1))
            .collect::<Result<_>>()
            .map(Value::Array)
    }
    fn map(&mut self, n: usize, depth: usize, as_map: bool) -> Result<Value> {
        let n = self.count(n)?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((self.value(depth + 1)?, self.value(depth + 1)?));
        }
        if !as_map && pairs.iter().all(|(k, _)| matches!(k, Value::String(_))) {
            let fields = pairs.into_iter().map(|(k, v)| match k {
                Value::String(s) => (s, v),
                _ => unreachable!(),
            });
            return Ok(Value::Object(fields.collect()));
        }
        Ok(Value::Map(pairs))
    }
    fn ext(&mut self, n: usize, depth: usize) -> Result<Value> {
        let ty = self.u8()? as i8;
        let data = self.take(n)?;
        Ok(match (ty, n) {
            (EXT_UNDEFINED, _) => Value::Undefined,
            // The tagged container counts as one level, as it does for the encoders.
            (EXT_SET, 1) => {
                let n = match Marker::from_u8(self.u8()?) {
                    Marker::FixArray(n) => n as usize,
                    Marker::Array16 => self.len(2)?,
                    Marker::Array32 => self.len(4)?,
                    _ => return Err(Error::Decode("Set tag not followed by an array".into())),
                };
                match self.array(n, depth)? {
                    Value::Array(items) => Value::Set(items),
                    _ => unreachable!(),
                }
            }
            (EXT_MAP, 1) => {
                let n = match Marker::from_u8(self.u8()?) {
                    Marker::FixMap(n) => n as usize,
                    Marker::Map16 => self.len(2)?,
                    Marker::Map32 => self.len(4)?,
                    _ => return Err(Error::Decode("Map tag not followed by a map".into())),
                };
                self.map(n, depth, true)?
            }
            (EXT_TIMESTAMP, 1) => Value::Date(f64::NAN),
            (EXT_TIMESTAMP, 4) => {
                Value::Date(u32::from_be_bytes(data.try_into().unwrap()) as f64 * 1000.0)
            }
            (EXT_TIMESTAMP, 8) => {
                let v = u64::from_be_bytes(data.try_into().unwrap());
                Value::Date(date_ms((v & ((1 << 34) - 1)) as i64, (v >> 34) as u32))
            }
            (EXT_TIMESTAMP, 12) => Value::Date(date_ms(
                i64::from_be_bytes(data[4..].try_into().unwrap()),
                u32::from_be_bytes(data[..4].try_into().unwrap()),
            )),
            _ => {
                return Err(Error::Decode(format!(
                    "unknown extension type {ty} with {n} bytes"
                )))
            }
        })
    }
}

/// A Date's time value: whole milliseconds (sub-millisecond nanoseconds are dropped, as JS does).
fn date_ms(sec: i64, nsec: u32) -> f64 {
    sec as f64 * 1000.0 + (nsec / 1_000_000) as f64
}
