//! Byte layouts of the embedded backend's records.
//!
//! * A **current record** (table `kv`, keyed by the key): `create_revision` (i64 LE),
//!   `mod_revision` (i64 LE), then the value.
//! * A **history record** (table `log`, keyed by revision): kind (u8: 0 put, 1 delete), commit time
//!   (u64 LE, milliseconds since the Unix epoch), key length (u32 LE) and key, `create_revision`
//!   (i64 LE), value length (u32 LE) and value, then a flag (u8) and, if set, the previous value's
//!   `create_revision`, `mod_revision` and length-prefixed value.
//!
//! Decoding checks every length, so that a damaged file is reported as [`StoreError::Corrupt`].

use crate::{Event, EventKind, KeyValue, Revision, StoreError};

/// Encodes the current record of a key.
pub(crate) fn encode_current(
    create_revision: Revision,
    mod_revision: Revision,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes the current record of `key`.
pub(crate) fn decode_current(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let mut r = Reader { bytes, key };
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: r.rest().to_vec(),
        create_revision,
        mod_revision,
    })
}

/// Encodes the history record of `event`, committed at `time_ms`.
pub(crate) fn encode_event(event: &Event, time_ms: u64) -> Vec<u8> {
    let kv = &event.kv;
    let prev_len = event.prev.as_ref().map_or(0, |p| 20 + p.value.len());
    let mut out = Vec::with_capacity(30 + kv.key.len() + kv.value.len() + prev_len);
    out.push(match event.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    out.extend_from_slice(&time_ms.to_le_bytes());
    put_bytes(&mut out, kv.key.as_bytes());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    put_bytes(&mut out, &kv.value);
    match &event.prev {
        None => out.push(0),
        Some(prev) => {
            out.push(1);
            out.extend_from_slice(&prev.create_revision.to_le_bytes());
            out.extend_from_slice(&prev.mod_revision.to_le_bytes());
            put_bytes(&mut out, &prev.value);
        }
    }
    out
}

/// Decodes the history record stored at `revision`: the event and its commit time.
pub(crate) fn decode_event(revision: Revision, bytes: &[u8]) -> Result<(Event, u64), StoreError> {
    let mut r = Reader { bytes, key: "" };
    let kind = match r.u8()? {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        other => return Err(corrupt(revision, &format!("unknown event kind {other}"))),
    };
    let time_ms = r.u64()?;
    let key = String::from_utf8(r.bytes()?.to_vec())
        .map_err(|_| corrupt(revision, "key is not UTF-8"))?;
    let create_revision = r.i64()?;
    let value = r.bytes()?.to_vec();
    let prev = match r.u8()? {
        0 => None,
        _ => {
            let create_revision = r.i64()?;
            let mod_revision = r.i64()?;
            let value = r.bytes()?.to_vec();
            Some(KeyValue {
                key: key.clone(),
                value,
                create_revision,
                mod_revision,
            })
        }
    };
    let kv = KeyValue {
        key,
        value,
        create_revision,
        mod_revision: revision,
    };
    Ok((Event { kind, kv, prev }, time_ms))
}

/// Reads only the key and commit time of a history record (for prefix filters and time windows).
pub(crate) fn peek_event(bytes: &[u8]) -> Result<(&[u8], u64), StoreError> {
    let mut r = Reader { bytes, key: "" };
    r.u8()?;
    let time_ms = r.u64()?;
    let key = r.bytes()?;
    Ok((key, time_ms))
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are bounded far below 4 GiB by the API server's body limit.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn corrupt(revision: Revision, what: &str) -> StoreError {
    StoreError::Corrupt(format!("history record of revision {revision}: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    key: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < n {
            return Err(StoreError::Corrupt(format!(
                "record {:?} is truncated: {} bytes left, {n} needed",
                self.key,
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], create: i64, modr: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modr,
        }
    }

    #[test]
    fn current_records_round_trip() {
        let bytes = encode_current(3, 7, b"hello");
        assert_eq!(
            decode_current("/k", &bytes).unwrap(),
            kv("/k", b"hello", 3, 7)
        );
        assert!(matches!(
            decode_current("/k", &bytes[..10]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn history_records_round_trip_with_and_without_prev() {
        let put = Event {
            kind: EventKind::Put,
            kv: kv("/k", b"v2", 3, 9),
            prev: Some(kv("/k", b"v1", 3, 5)),
        };
        let bytes = encode_event(&put, 1234);
        assert_eq!(decode_event(9, &bytes).unwrap(), (put, 1234));
        assert_eq!(peek_event(&bytes).unwrap(), (&b"/k"[..], 1234));

        let created = Event {
            kind: EventKind::Put,
            kv: kv("/n", b"", 4, 4),
            prev: None,
        };
        assert_eq!(
            decode_event(4, &encode_event(&created, 1)).unwrap().0,
            created
        );
    }

    #[test]
    fn damaged_history_records_are_corrupt_not_panics() {
        let del = Event {
            kind: EventKind::Delete,
            kv: kv("/k", b"", 3, 10),
            prev: Some(kv("/k", b"v", 3, 9)),
        };
        let bytes = encode_event(&del, 5);
        for cut in 0..bytes.len() {
            assert!(
                matches!(decode_event(10, &bytes[..cut]), Err(StoreError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut bad_kind = bytes.clone();
        bad_kind[0] = 9;
        assert!(matches!(
            decode_event(10, &bad_kind),
            Err(StoreError::Corrupt(_))
        ));
    }
}
