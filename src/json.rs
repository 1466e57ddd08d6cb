//! Small helpers over `miniserde::json::Value`: building objects, reading fields, printing.
//!
//! Owns: the JSON conveniences every other module uses. Must not: know about MCP, HTTP or tools.
//! miniserde keeps object keys sorted (a `BTreeMap`), so output key order is alphabetical.

pub use miniserde::json::{Number, Object, Value};

/// Builds a JSON object from `(key, value)` pairs.
pub fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut o = Object::new();
    for (k, v) in pairs {
        o.insert(k.to_string(), v);
    }
    Value::Object(o)
}

pub fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

pub fn int(n: i64) -> Value {
    if n >= 0 {
        Value::Number(Number::U64(n as u64))
    } else {
        Value::Number(Number::I64(n))
    }
}

pub fn float(n: f64) -> Value {
    Value::Number(Number::F64(n))
}

pub fn bool(b: bool) -> Value {
    Value::Bool(b)
}

pub fn arr(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Array(items.into_iter().collect())
}

/// `value[key]` when `value` is an object.
pub fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(o) => o.get(key),
        _ => None,
    }
}

pub fn get_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    match get(value, key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// The value as an `i64`, when it is an integral number (floats such as `5.0` count).
pub fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(Number::U64(n)) => i64::try_from(*n).ok(),
        Value::Number(Number::I64(n)) => Some(*n),
        Value::Number(Number::F64(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    }
}

/// Compact JSON text.
pub fn to_string(value: &Value) -> String {
    miniserde::json::to_string(value)
}

/// Parses JSON text.
pub fn parse(text: &str) -> Option<Value> {
    miniserde::json::from_str(text).ok()
}

/// JSON text indented by two spaces, as the original's tools print their results.
pub fn to_pretty(value: &Value) -> String {
    let mut out = String::new();
    write_pretty(value, 0, &mut out);
    out
}

fn write_pretty(value: &Value, depth: usize, out: &mut String) {
    let pad = |out: &mut String, d: usize| {
        out.push('\n');
        for _ in 0..d {
            out.push_str("  ");
        }
    };
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                write_pretty(item, depth + 1, out);
            }
            pad(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                out.push_str(&to_string(&Value::String(k.clone())));
                out.push_str(": ");
                write_pretty(v, depth + 1, out);
            }
            pad(out, depth);
            out.push('}');
        }
        other => out.push_str(&to_string(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_printing_matches_two_space_json() {
        let v = obj([
            ("b", arr([int(1), s("x")])),
            ("a", obj([])),
            ("c", Value::Null),
        ]);
        assert_eq!(
            to_pretty(&v),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    \"x\"\n  ],\n  \"c\": null\n}"
        );
        assert_eq!(
            parse(&to_pretty(&v)).map(|p| to_string(&p)),
            Some(to_string(&v))
        );
    }

    #[test]
    fn integers_from_any_number_form() {
        assert_eq!(as_i64(&int(-4)), Some(-4));
        assert_eq!(as_i64(&float(5.0)), Some(5));
        assert_eq!(as_i64(&float(5.5)), None);
        assert_eq!(as_i64(&s("5")), None);
    }
}
