//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) for the built-in kinds that
//! kubectl's generator commands create.
//!
//! client-go's typed clients for built-in kinds send protobuf and, unlike a CBOR request, do not fall
//! back to JSON on a 415, so `kubectl create deployment|configmap|secret|namespace|service|quota|
//! serviceaccount` could not work against a JSON-only server. This module turns such a body into the
//! JSON object the rest of the server handles; responses stay JSON (the client accepts both).
//!
//! The body is the Kubernetes envelope (`k8s\0` then a `runtime.Unknown` message naming apiVersion
//! and kind around the object's bytes). Objects are decoded against the field tables in
//! [`crate::protobuf_schema`], as Go's JSON encoding would have written them: a field that is not a
//! pointer and holds its zero value is left out (the Go encoder writes every non-pointer field).
//! A field the tables do not know is skipped if it holds a zero value and refused with a 415 that
//! asks for JSON otherwise, so that nothing a client sent is silently dropped.
//!
//! The decoder reads untrusted bytes: every length is checked against what is left, varints are at
//! most ten bytes, and nesting is bounded by the (non-recursive) tables.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::protobuf_schema::{Field, Kind, Message, top_level};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// Decodes an enveloped protobuf body into the JSON object it stands for.
pub fn decode(bytes: &[u8]) -> Result<Value, ApiError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| {
        bad("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"".into())
    })?;
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), None, String::new());
    let mut r = Reader::new(rest);
    while let Some((num, wire)) = r.key()? {
        match (num, wire) {
            (1, Wire::Len) => {
                let mut tm = Reader::new(r.bytes()?);
                while let Some((n, w)) = tm.key()? {
                    match (n, w) {
                        (1, Wire::Len) => api_version = tm.string()?,
                        (2, Wire::Len) => kind = tm.string()?,
                        _ => {
                            tm.skip(w)?;
                        }
                    }
                }
            }
            (2, Wire::Len) => raw = Some(r.bytes()?),
            (3, Wire::Len) => encoding = r.string()?,
            _ => {
                r.skip(wire)?;
            }
        }
    }
    if !encoding.is_empty() {
        return Err(bad(format!(
            "protobuf content encoding {encoding:?} is not supported"
        )));
    }
    let msg = top_level(&api_version, &kind).ok_or_else(|| {
        ApiError::UnsupportedProtobuf(format!(
            "protobuf bodies are decoded for {} only; send {} {} as JSON or YAML",
            crate::protobuf_schema::TOP_LEVEL_NAMES,
            if api_version.is_empty() {
                "<no apiVersion>"
            } else {
                &api_version
            },
            if kind.is_empty() { "<no kind>" } else { &kind },
        ))
    })?;
    let mut obj = message(msg, raw.unwrap_or(&[]))?;
    if let Value::Object(m) = &mut obj {
        let mut out = Map::new();
        out.insert("apiVersion".into(), json!(api_version));
        out.insert("kind".into(), json!(kind));
        out.append(m);
        obj = Value::Object(out);
    }
    Ok(obj)
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(format!("the request body is not valid protobuf: {msg}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

/// A bounds-checked cursor over protobuf bytes.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut out = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| bad("a varint runs past the end".into()))?;
            self.buf = rest;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad("a varint is longer than ten bytes".into()))
    }

    fn key(&mut self) -> Result<Option<(u32, Wire)>, ApiError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        let num = u32::try_from(k >> 3)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(format!("field number {} is invalid", k >> 3)))?;
        let wire = match k & 7 {
            0 => Wire::Varint,
            1 => Wire::Fixed64,
            2 => Wire::Len,
            5 => Wire::Fixed32,
            w => {
                return Err(bad(format!(
                    "wire type {w} of field {num} is not supported"
                )));
            }
        };
        Ok(Some((num, wire)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if n > self.buf.len() {
            return Err(bad(format!(
                "a field of {n} bytes runs past the end ({} left)",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| bad(format!("length {n} is too large")))?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, ApiError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| bad("a string field is not UTF-8".into()))
    }

    /// Skips a value; returns whether it was a zero value (0, or empty bytes).
    fn skip(&mut self, wire: Wire) -> Result<bool, ApiError> {
        Ok(match wire {
            Wire::Varint => self.varint()? == 0,
            Wire::Fixed64 => self.take(8)?.iter().all(|b| *b == 0),
            Wire::Fixed32 => self.take(4)?.iter().all(|b| *b == 0),
            Wire::Len => self.bytes()?.is_empty(),
        })
    }
}

fn expect(field: &Field, msg: &Message, got: Wire, want: Wire) -> Result<(), ApiError> {
    if got == want {
        return Ok(());
    }
    Err(bad(format!(
        "field {} ({}) of {} has wire type {got:?}, expected {want:?}",
        field.number, field.name, msg.name
    )))
}

/// Decodes one message: fields in table order of arrival, zero values of non-pointer fields left out.
fn message(msg: &Message, bytes: &[u8]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    let mut r = Reader::new(bytes);
    while let Some((num, wire)) = r.key()? {
        let Some(field) = msg.fields.iter().find(|f| f.number == num) else {
            if !r.skip(wire)? {
                return Err(ApiError::UnsupportedProtobuf(format!(
                    "field {num} of protobuf message {} is not decoded by this server; send the object as JSON or YAML",
                    msg.name
                )));
            }
            continue;
        };
        let v = match field.kind {
            Kind::Map(value_kind) => {
                expect(field, msg, wire, Wire::Len)?;
                let (k, v) = map_entry(field, msg, value_kind, r.bytes()?)?;
                let slot = out
                    .entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = slot {
                    m.insert(k, v);
                }
                continue;
            }
            kind => value(field, msg, kind, wire, &mut r)?,
        };
        if field.repeated {
            let slot = out
                .entry(field.name)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = slot {
                items.push(v.unwrap_or_else(|| zero_of(field.kind)));
            }
        } else {
            match v {
                Some(v) => {
                    out.insert(field.name.to_string(), v);
                }
                None => {
                    out.remove(field.name);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// The JSON form of a zero value inside a list (where it cannot be left out).
fn zero_of(kind: Kind) -> Value {
    match kind {
        Kind::Str | Kind::Bytes | Kind::Quantity => json!(""),
        Kind::Int | Kind::IntOrString => json!(0),
        Kind::Bool => json!(false),
        Kind::Message(_) | Kind::Map(_) => json!({}),
        Kind::Time => Value::Null,
    }
}

/// One value of `field`; `None` for a zero value that JSON would leave out.
fn value(
    field: &Field,
    msg: &Message,
    kind: Kind,
    wire: Wire,
    r: &mut Reader<'_>,
) -> Result<Option<Value>, ApiError> {
    let keep = field.pointer || field.repeated;
    Ok(match kind {
        Kind::Str => {
            expect(field, msg, wire, Wire::Len)?;
            let s = r.string()?;
            (keep || !s.is_empty()).then(|| json!(s))
        }
        Kind::Bytes => {
            expect(field, msg, wire, Wire::Len)?;
            let b = r.bytes()?;
            (keep || !b.is_empty())
                .then(|| json!(base64::engine::general_purpose::STANDARD.encode(b)))
        }
        Kind::Int => {
            expect(field, msg, wire, Wire::Varint)?;
            // int32 and int64 travel as two's complement 64-bit varints.
            let n = r.varint()? as i64;
            (keep || n != 0).then(|| json!(n))
        }
        Kind::Bool => {
            expect(field, msg, wire, Wire::Varint)?;
            let b = r.varint()? != 0;
            (keep || b).then(|| json!(b))
        }
        Kind::Message(m) => {
            expect(field, msg, wire, Wire::Len)?;
            let v = message(m, r.bytes()?)?;
            (keep || v.as_object().is_some_and(|o| !o.is_empty())).then_some(v)
        }
        Kind::Time => {
            expect(field, msg, wire, Wire::Len)?;
            time(r.bytes()?)?
        }
        Kind::Quantity => {
            expect(field, msg, wire, Wire::Len)?;
            let mut q = Reader::new(r.bytes()?);
            let mut s = String::new();
            while let Some((n, w)) = q.key()? {
                match (n, w) {
                    (1, Wire::Len) => s = q.string()?,
                    _ => {
                        q.skip(w)?;
                    }
                }
            }
            (keep || !s.is_empty()).then(|| json!(s))
        }
        Kind::IntOrString => {
            expect(field, msg, wire, Wire::Len)?;
            int_or_string(r.bytes()?, keep)?
        }
        Kind::Map(_) => None,
    })
}

fn map_entry(
    field: &Field,
    msg: &Message,
    value_kind: &'static Kind,
    bytes: &[u8],
) -> Result<(String, Value), ApiError> {
    let entry = Field {
        number: 2,
        name: field.name,
        kind: *value_kind,
        repeated: false,
        pointer: true,
    };
    let (mut key, mut val) = (String::new(), None);
    let mut r = Reader::new(bytes);
    while let Some((n, w)) = r.key()? {
        match n {
            1 => {
                expect(field, msg, w, Wire::Len)?;
                key = r.string()?;
            }
            2 => val = value(&entry, msg, *value_kind, w, &mut r)?,
            _ => {
                r.skip(w)?;
            }
        }
    }
    Ok((key, val.unwrap_or_else(|| zero_of(*value_kind))))
}

/// `metav1.Time`: seconds and nanos since the epoch; the zero time is JSON `null` (left out).
fn time(bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    let mut r = Reader::new(bytes);
    while let Some((n, w)) = r.key()? {
        match (n, w) {
            (1, Wire::Varint) => secs = r.varint()? as i64,
            (2, Wire::Varint) => nanos = r.varint()? as i64,
            _ => {
                r.skip(w)?;
            }
        }
    }
    if secs == 0 && nanos == 0 {
        return Ok(None);
    }
    let ts = jiff::Timestamp::from_second(secs)
        .map_err(|e| bad(format!("timestamp {secs} is out of range: {e}")))?;
    Ok(Some(json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())))
}

/// `intstr.IntOrString`: type 0 is an integer, 1 a string.
fn int_or_string(bytes: &[u8], keep: bool) -> Result<Option<Value>, ApiError> {
    let (mut ty, mut int, mut s) = (0u64, 0i64, String::new());
    let mut r = Reader::new(bytes);
    while let Some((n, w)) = r.key()? {
        match (n, w) {
            (1, Wire::Varint) => ty = r.varint()?,
            (2, Wire::Varint) => int = i64::from(r.varint()? as i32),
            (3, Wire::Len) => s = r.string()?,
            _ => {
                r.skip(w)?;
            }
        }
    }
    Ok(match ty {
        1 => (keep || !s.is_empty()).then(|| json!(s)),
        _ => (keep || int != 0).then(|| json!(int)),
    })
}

#[cfg(test)]
#[path = "protobuf_tests.rs"]
mod tests;
