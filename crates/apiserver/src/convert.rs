//! Conversion between a stored object and the version a request speaks. Only events have two
//! versions over one storage: core/v1 `Event` (stored) and events.k8s.io/v1 `Event`.

use serde_json::{Map, Value};

use crate::resources::{ResourceDef, is_converted_view};

/// (core/v1 field, events.k8s.io/v1 field)
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(
    map: &mut Map<String, Value>,
    from_to: impl Iterator<Item = (&'static str, &'static str)>,
) {
    let pairs: Vec<_> = from_to.collect();
    let mut moved = Vec::new();
    for (from, to) in &pairs {
        if let Some(v) = map.remove(*from) {
            moved.push((*to, v));
        }
    }
    for (to, v) in moved {
        map.insert(to.to_string(), v);
    }
}

/// The stored object as the resource `def` presents it.
pub fn to_view(def: &ResourceDef, mut obj: Value) -> Value {
    if is_converted_view(def)
        && let Value::Object(map) = &mut obj
    {
        rename(map, EVENT_FIELDS.iter().copied());
        if let Some(Value::Object(series)) = map.get_mut("series") {
            rename(
                series,
                [("count", "count"), ("lastObservedTime", "lastObservedTime")].into_iter(),
            );
        }
    }
    if let Value::Object(map) = &mut obj {
        map.insert("apiVersion".into(), Value::String(def.api_version()));
        map.insert("kind".into(), Value::String(def.kind.to_string()));
    }
    obj
}

/// An object of resource `def` in its stored form.
pub fn to_storage(def: &ResourceDef, mut obj: Value) -> Value {
    if is_converted_view(def)
        && let Value::Object(map) = &mut obj
    {
        rename(map, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)));
        map.insert("apiVersion".into(), Value::String("v1".into()));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_versions() {
        let new = find("events.k8s.io", "v1", "events").unwrap();
        let stored = json!({"apiVersion": "v1", "kind": "Event", "message": "hi", "involvedObject": {"name": "p"}});
        let view = to_view(new, stored.clone());
        assert_eq!(view["note"], "hi");
        assert_eq!(view["regarding"]["name"], "p");
        assert_eq!(view["apiVersion"], "events.k8s.io/v1");
        assert_eq!(to_storage(new, view), stored);
    }
}
