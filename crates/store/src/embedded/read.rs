//! Reads of the embedded backend, each in one redb read transaction (a consistent snapshot).

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};

use super::codec::{decode_current, decode_event, peek_event};
use super::{KV, LOG, META, db_error};
use crate::{Event, KeyValue, RangeResult, Revision, StoreError};

/// The revision and compaction point recorded in a snapshot.
pub(super) fn meta(txn: &ReadTransaction) -> Result<(Revision, Revision), StoreError> {
    let meta = txn.open_table(META).map_err(db_error)?;
    let get = |name: &str| -> Result<Revision, StoreError> {
        Ok(meta
            .get(name)
            .map_err(db_error)?
            .map(|v| v.value())
            .unwrap_or(0))
    };
    Ok((get("revision")?, get("compacted")?))
}

pub(super) fn get(db: &Database, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let kv = txn.open_table(KV).map_err(db_error)?;
    match kv.get(key).map_err(db_error)? {
        Some(bytes) => Ok(Some(decode_current(key, bytes.value())?)),
        None => Ok(None),
    }
}

pub(super) fn count(db: &Database, prefix: &str) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let kv = txn.open_table(KV).map_err(db_error)?;
    let mut n = 0;
    for entry in kv.range::<&str>(prefix..).map_err(db_error)? {
        let (key, _) = entry.map_err(db_error)?;
        if !key.value().starts_with(prefix) {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// Keys with `prefix` after `start_after`, at most `limit` (0 = all), as of `at`.
pub(super) fn range(
    db: &Database,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    at: Option<Revision>,
) -> Result<RangeResult, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let (current, compacted) = meta(&txn)?;
    let at = at.unwrap_or(current);
    if at > current {
        return Err(StoreError::Invalid(format!(
            "revision {at} is in the future: the current revision is {current}"
        )));
    }
    if at < compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted,
        });
    }
    let kv = txn.open_table(KV).map_err(db_error)?;
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut kvs = Vec::new();
    let mut more = false;
    if at == current {
        for entry in kv
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(db_error)?
        {
            let (key, value) = entry.map_err(db_error)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if limit > 0 && kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(decode_current(key, value.value())?);
        }
        return Ok(RangeResult {
            kvs,
            more,
            revision: at,
        });
    }

    // A past revision: start from the current state of the range and undo, newest first, every event
    // after `at` (each history record carries the value it replaced).
    let in_range = |key: &str| key.starts_with(prefix) && start_after.is_none_or(|a| key > a);
    let mut state = BTreeMap::new();
    for entry in kv
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(db_error)?
    {
        let (key, value) = entry.map_err(db_error)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        state.insert(key.to_owned(), decode_current(key, value.value())?);
    }
    let log = txn.open_table(LOG).map_err(db_error)?;
    for entry in log.range((at + 1)..=current).map_err(db_error)?.rev() {
        let (rev, record) = entry.map_err(db_error)?;
        let (key, _) = peek_event(record.value())?;
        if !std::str::from_utf8(key).is_ok_and(in_range) {
            continue;
        }
        let (event, _) = decode_event(rev.value(), record.value())?;
        match event.prev {
            Some(prev) => state.insert(event.kv.key, prev),
            None => state.remove(&event.kv.key),
        };
    }
    let total = state.len();
    kvs = state
        .into_values()
        .take(if limit == 0 { usize::MAX } else { limit })
        .collect();
    more = kvs.len() < total;
    Ok(RangeResult {
        kvs,
        more,
        revision: at,
    })
}

/// Up to `max` events of `prefix` with revisions in `(after, until]`, and the last revision examined.
pub(super) fn history(
    db: &Database,
    prefix: &str,
    after: Revision,
    until: Revision,
    max: usize,
) -> Result<(Vec<Event>, Revision), StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let (_, compacted) = meta(&txn)?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let log = txn.open_table(LOG).map_err(db_error)?;
    let mut events = Vec::new();
    let mut cursor = after;
    for entry in log.range((after + 1)..=until).map_err(db_error)? {
        let (rev, record) = entry.map_err(db_error)?;
        let rev = rev.value();
        let (key, _) = peek_event(record.value())?;
        if key.starts_with(prefix.as_bytes()) {
            events.push(decode_event(rev, record.value())?.0);
        }
        cursor = rev;
        if events.len() >= max {
            return Ok((events, cursor));
        }
    }
    Ok((events, until.max(cursor)))
}

/// The newest revision committed before `cutoff_ms`, if any is still in the history.
pub(super) fn last_revision_before(
    db: &Database,
    cutoff_ms: u64,
) -> Result<Option<Revision>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let log = txn.open_table(LOG).map_err(db_error)?;
    let mut last = None;
    for entry in log.iter().map_err(db_error)? {
        let (rev, record) = entry.map_err(db_error)?;
        let (_, time_ms) = peek_event(record.value())?;
        if time_ms >= cutoff_ms {
            break;
        }
        last = Some(rev.value());
    }
    Ok(last)
}
