//! Lenient serde helpers. Oakestra's cluster manager is Python: a job document may carry
//! `null` where a list is meant, numbers as floats or strings, and ids as `{"$oid": …}`.
//! These helpers accept those shapes and always serialize the canonical one.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

fn number_from(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => Some(0.0),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Null => Some(0.0),
        _ => None,
    }
}

/// A non-negative integer given as integer, float, numeric string or `null` (→ 0).
pub fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    let n = number_from(&v).ok_or_else(|| D::Error::custom(format!("expected a number, got {v}")))?;
    if !n.is_finite() || n < 0.0 {
        return Err(D::Error::custom(format!("expected a non-negative number, got {v}")));
    }
    Ok(n as u64)
}

/// Like [`u64_lenient`], for `u32` fields.
pub fn u32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u64_lenient(d)?;
    u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} does not fit in u32")))
}

/// A string, `null` (→ ""), a number (→ its decimal form) or a Mongo `{"$oid": "…"}`.
pub fn string_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(map) => match map.get("$oid") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(D::Error::custom("expected a string or {\"$oid\": string}")),
        },
        other => Err(D::Error::custom(format!("expected a string, got {other}"))),
    }
}

/// A list of strings, or `null` (→ empty).
pub fn strings_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// A list of JSON values, or `null` (→ empty).
pub fn values_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    Ok(Option::<Vec<Value>>::deserialize(d)?.unwrap_or_default())
}

/// A string, or a list whose first element is used (the scheduler accepts both shapes for
/// `virtualization`), or `null` (→ "").
pub fn string_or_first<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        Value::Array(items) => match items.into_iter().next() {
            Some(Value::String(s)) => Ok(s),
            None => Ok(String::new()),
            Some(other) => Err(D::Error::custom(format!("expected a string, got {other}"))),
        },
        other => Err(D::Error::custom(format!("expected a string or a list, got {other}"))),
    }
}

/// A boolean given as bool, `null` (→ false), 0/1 or "true"/"false".
pub fn bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(false),
        Value::Number(n) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(D::Error::custom(format!("expected a boolean, got {s:?}"))),
        },
        other => Err(D::Error::custom(format!("expected a boolean, got {other}"))),
    }
}
