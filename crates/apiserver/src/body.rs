//! Request bodies: JSON and YAML are the wire formats; the protobuf bodies that kubectl's typed
//! clients send for a few built-in kinds are decoded by [`crate::protobuf`]. Every decoder is
//! bounded: at most [`MAX_DEPTH`] levels of nesting and, for YAML (whose aliases can repeat a node
//! many times), at most [`MAX_NODES`] values and [`MAX_SCALAR_BYTES`] bytes of scalars after
//! expansion.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::ApiError;

/// The deepest nesting accepted in a body.
pub const MAX_DEPTH: usize = 100;
/// The most values a YAML body may expand to.
pub const MAX_NODES: usize = 1 << 20;
/// The most bytes of strings a YAML body may expand to.
pub const MAX_SCALAR_BYTES: usize = 8 << 20;

/// The media types a body may have.
const KNOWN: &[&str] = &[
    "",
    "application/json",
    "application/yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "*/*",
];

/// The media type of a `Content-Type` header value, without parameters.
pub fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Decodes a request body by content type.
pub fn decode_body(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    let media = media_type(content_type);
    if media == crate::protobuf::MEDIA_TYPE {
        return crate::protobuf::decode(bytes);
    }
    if !KNOWN.contains(&media) {
        return Err(ApiError::UnsupportedMediaType(media.to_string()));
    }
    if media.ends_with("yaml") {
        return decode_yaml(bytes);
    }
    if !depth_ok(bytes) {
        return Err(too_deep());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

fn too_deep() -> ApiError {
    ApiError::BadRequest(format!(
        "the request body nests deeper than {MAX_DEPTH} levels"
    ))
}

/// True if JSON text nests at most [`MAX_DEPTH`] levels (a scan before parsing, so that a deep body
/// costs no recursion).
fn depth_ok(v: &[u8]) -> bool {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in v {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Decodes one YAML document (JSON is YAML too) into a JSON value, as Kubernetes does: mapping keys
/// that are numbers or booleans become strings, and a second document is an error.
fn decode_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    let budget = Budget::default();
    let mut docs = serde_yaml_ng::Deserializer::from_slice(bytes);
    let Some(first) = docs.next() else {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    };
    let value = Bounded {
        budget: &budget,
        depth: 0,
    }
    .deserialize(first)
    .map_err(|e| yaml_error(&budget, e))?;
    if value.is_null() {
        return Err(ApiError::BadRequest(
            "the request body is empty: it holds no YAML document".into(),
        ));
    }
    if docs.next().is_some() {
        return Err(ApiError::BadRequest(
            "the request body holds more than one YAML document".into(),
        ));
    }
    Ok(value)
}

fn yaml_error(budget: &Budget, e: serde_yaml_ng::Error) -> ApiError {
    match budget.exceeded.get() {
        Some(Limit::Depth) => too_deep(),
        Some(Limit::Nodes) => ApiError::BadRequest(format!(
            "the request body expands to more than {MAX_NODES} values"
        )),
        Some(Limit::Bytes) => ApiError::BadRequest(format!(
            "the request body expands to more than {MAX_SCALAR_BYTES} bytes of strings"
        )),
        None => ApiError::BadRequest(format!("the request body is not valid YAML: {e}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Depth,
    Nodes,
    Bytes,
}

/// What a body may still expand to.
struct Budget {
    nodes: Cell<usize>,
    bytes: Cell<usize>,
    exceeded: Cell<Option<Limit>>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            nodes: Cell::new(MAX_NODES),
            bytes: Cell::new(MAX_SCALAR_BYTES),
            exceeded: Cell::new(None),
        }
    }
}

impl Budget {
    fn take<E: serde::de::Error>(&self, scalar_bytes: usize) -> Result<(), E> {
        let nodes = self.nodes.get();
        if nodes == 0 {
            return Err(self.fail(Limit::Nodes));
        }
        self.nodes.set(nodes - 1);
        match self.bytes.get().checked_sub(scalar_bytes) {
            Some(left) => {
                self.bytes.set(left);
                Ok(())
            }
            None => Err(self.fail(Limit::Bytes)),
        }
    }

    fn fail<E: serde::de::Error>(&self, limit: Limit) -> E {
        self.exceeded.set(Some(limit));
        E::custom("the request body is too large once expanded")
    }
}

/// A JSON value built under a [`Budget`], at most [`MAX_DEPTH`] levels deep.
#[derive(Clone, Copy)]
struct Bounded<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl Bounded<'_> {
    fn child<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.budget.fail(Limit::Depth));
        }
        Ok(Bounded {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.take(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.take(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.take(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.take(0)?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.take(v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.take(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.budget.take(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.take(0)?;
        let child = self.child()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(child)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.take(0)?;
        let child = self.child()?;
        let mut out = Map::new();
        while let Some(k) = map.next_key_seed(Key(self.budget))? {
            let v = map.next_value_seed(child)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key: a string, or a number or boolean written as a string.
struct Key<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean mapping key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        self.0.take(v.len())?;
        Ok(v.to_string())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        self.0.take(v.len())?;
        Ok(v)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(ct: &str, body: &str) -> u16 {
        decode_body(ct, body.as_bytes()).unwrap_err().status()
    }

    #[test]
    fn json_bodies_are_checked() {
        assert_eq!(status("application/json", "{nope"), 400);
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(status("application/json", &deep), 400);
        assert!(decode_body("application/json", br#"{"a": "[[[[["}"#).is_ok());
        assert_eq!(status("text/plain", "{}"), 415);
    }

    #[test]
    fn yaml_bodies_decode_like_kubernetes() {
        let v = decode_body(
            "application/yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {a: \"1\"}\ndata:\n  1: one\n  true: yes\n  x: 2.5\n",
        )
        .unwrap();
        assert_eq!(v["metadata"]["labels"]["a"], "1");
        assert_eq!(v["data"]["1"], "one");
        assert_eq!(v["data"]["true"], "yes");
        assert_eq!(v["data"]["x"], json!(2.5));
        // JSON is YAML.
        let v = decode_body("application/apply-patch+yaml", br#"{"a": [1, null]}"#).unwrap();
        assert_eq!(v, json!({"a": [1, null]}));
        // Aliases expand.
        let v = decode_body("application/yaml", b"a: &x {b: 1}\nc: *x\n").unwrap();
        assert_eq!(v["c"]["b"], 1);
    }

    #[test]
    fn bad_yaml_is_a_clear_400() {
        let e = decode_body("application/yaml", b"a: [1, 2\nb: c").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("not valid YAML"), "{e}");
        assert!(e.to_string().contains("line"), "{e}");
        let e = decode_body("application/yaml", b"a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.to_string().contains("more than one YAML document"), "{e}");
        assert!(
            decode_body("application/yaml", b"")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert_eq!(status("application/yaml", "a: !custom 1"), 400);
        assert_eq!(status("application/yaml", "[a, b]: c"), 400);
    }

    #[test]
    fn deep_or_huge_yaml_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let e = decode_body("application/yaml", deep.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nests deeper"), "{e}");
        let deep: String = (0..=MAX_DEPTH)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        let e = decode_body("application/yaml", deep.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nests deeper"), "{e}");
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(decode_body("application/yaml", ok.as_bytes()).is_ok());
        // A billion laughs: each level repeats the previous one nine times.
        let mut bomb = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
            ));
        }
        let e = decode_body("application/yaml", bomb.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("repetition limit exceeded"), "{e}");
        // Long strings repeated by aliases.
        let long = format!(
            "a: &a \"{}\"\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
            "x".repeat(1 << 20)
        );
        let e = decode_body("application/yaml", long.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("bytes of strings"), "{e}");
    }
}
