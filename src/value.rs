//! The values a store holds, as both codecs (Rust and JS) understand them.
//!
//! Also a tagged JSON form used by the shared codec test vectors, so that Rust and JS tests
//! check the same values against the same bytes: plain JSON for what JSON carries, and
//! one-key objects for the rest: `{"$undefined":true}`, `{"$number":"NaN"|"Infinity"|
//! "-Infinity"|"-0"}`, `{"$bigint":"123"}`, `{"$bytes":"0a0b"}`, `{"$map":[[k,v],..]}`,
//! `{"$set":[..]}`, `{"$date":1700000000000}` or `{"$date":"invalid"}`.

use serde_json::{json, Map as JsonMap, Value as Json};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Undefined,
    Null,
    Bool(bool),
    /// A JS number (integers in [-2^31, 2^32) travel as msgpack ints, others as float64).
    Number(f64),
    /// A JS BigInt within the 64-bit range (msgpack int64 / uint64).
    BigInt(i128),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    /// A plain object: string keys in insertion order.
    Object(Vec<(String, Value)>),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// Milliseconds since the epoch; NaN for an invalid Date.
    Date(f64),
}

impl Value {
    /// Equality as the codecs see it: NaN equals NaN, and -0 differs from 0.
    pub fn same(&self, other: &Value) -> bool {
        use Value::*;
        let num = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        match (self, other) {
            (Number(a), Number(b)) | (Date(a), Date(b)) => num(*a, *b),
            (Array(a), Array(b)) | (Set(a), Set(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Object(a), Object(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.same(&y.1))
            }
            (Map(a), Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.0.same(&y.0) && x.1.same(&y.1))
            }
            _ => self == other,
        }
    }

    pub fn to_tagged_json(&self) -> Json {
        match self {
            Value::Undefined => json!({ "$undefined": true }),
            Value::Null => Json::Null,
            Value::Bool(b) => json!(b),
            Value::Number(n) if n.is_nan() => json!({ "$number": "NaN" }),
            Value::Number(n) if n.is_infinite() => {
                json!({ "$number": if *n > 0.0 { "Infinity" } else { "-Infinity" } })
            }
            Value::Number(n) if *n == 0.0 && n.is_sign_negative() => json!({ "$number": "-0" }),
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
                json!(*n as i64)
            }
            Value::Number(n) => json!(n),
            Value::BigInt(i) => json!({ "$bigint": i.to_string() }),
            Value::String(s) => json!(s),
            Value::Bytes(b) => {
                json!({ "$bytes": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
            }
            Value::Array(a) => Json::Array(a.iter().map(Value::to_tagged_json).collect()),
            Value::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), v.to_tagged_json()))
                    .collect(),
            ),
            Value::Map(m) => {
                json!({ "$map": m.iter().map(|(k, v)| json!([k.to_tagged_json(), v.to_tagged_json()])).collect::<Vec<_>>() })
            }
            Value::Set(s) => {
                json!({ "$set": s.iter().map(Value::to_tagged_json).collect::<Vec<_>>() })
            }
            Value::Date(ms) if ms.is_nan() => json!({ "$date": "invalid" }),
            Value::Date(ms) => json!({ "$date": *ms as i64 }),
        }
    }

    pub fn from_tagged_json(j: &Json) -> Result<Value, String> {
        Ok(match j {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.as_f64().ok_or("number")?),
            Json::String(s) => Value::String(s.clone()),
            Json::Array(a) => Value::Array(
                a.iter()
                    .map(Value::from_tagged_json)
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(o) => match tagged(o) {
                Some(("$undefined", _)) => Value::Undefined,
                Some(("$number", t)) => Value::Number(match t.as_str().ok_or("$number")? {
                    "NaN" => f64::NAN,
                    "Infinity" => f64::INFINITY,
                    "-Infinity" => f64::NEG_INFINITY,
                    "-0" => -0.0,
                    other => return Err(format!("$number {other}")),
                }),
                Some(("$bigint", t)) => {
                    Value::BigInt(t.as_str().and_then(|s| s.parse().ok()).ok_or("$bigint")?)
                }
                Some(("$bytes", t)) => {
                    let s = t.as_str().ok_or("$bytes")?;
                    Value::Bytes(
                        (0..s.len())
                            .step_by(2)
                            .map(|i| {
                                u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string())
                            })
                            .collect::<Result<_, _>>()?,
                    )
                }
                Some(("$map", Json::Array(pairs))) => Value::Map(
                    pairs
                        .iter()
                        .map(|p| match p {
                            Json::Array(kv) if kv.len() == 2 => Ok((
                                Value::from_tagged_json(&kv[0])?,
                                Value::from_tagged_json(&kv[1])?,
                            )),
                            _ => Err("$map pair".to_string()),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(("$set", Json::Array(items))) => Value::Set(
                    items
                        .iter()
                        .map(Value::from_tagged_json)
                        .collect::<Result<_, _>>()?,
                ),
                Some(("$date", Json::String(s))) if s == "invalid" => Value::Date(f64::NAN),
                Some(("$date", t)) => Value::Date(t.as_f64().ok_or("$date")?),
                _ => Value::Object(
                    o.iter()
                        .map(|(k, v)| Ok((k.clone(), Value::from_tagged_json(v)?)))
                        .collect::<Result<_, String>>()?,
                ),
            },
        })
    }
}

fn tagged(o: &JsonMap<String, Json>) -> Option<(&str, &Json)> {
    let (k, v) = o.iter().next()?;
    (o.len() == 1 && k.starts_with('$')).then_some((k.as_str(), v))
}
