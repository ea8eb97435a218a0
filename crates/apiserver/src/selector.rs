//! Label and field selectors, as given in `labelSelector` and `fieldSelector` query parameters.

use serde_json::Value;

/// Why a selector could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// The selector text is malformed.
    #[error("unable to parse requirement {0:?}")]
    Parse(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<(String, Op)>,
}

/// Splits at commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Result<Vec<String>, SelectorError> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError::Parse(s.to_string()))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl Selector {
    /// Parses a selector; `fields` selects field-selector syntax (no set operators).
    pub fn parse(text: &str, fields: bool) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let bad = || SelectorError::Parse(part.to_string());
            let req = if let Some((k, v)) = part.split_once("!=") {
                (k.trim().to_string(), Op::NotEq(v.trim().to_string()))
            } else if let Some((k, v)) = part.split_once("==") {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = part.split_once('=') {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if fields {
                return Err(bad());
            } else if let Some(k) = part.strip_prefix('!') {
                (k.trim().to_string(), Op::NotExists)
            } else if let Some((k, v)) = part.split_once(" notin ") {
                (k.trim().to_string(), Op::NotIn(set_values(v)?))
            } else if let Some((k, v)) = part.split_once(" in ") {
                (k.trim().to_string(), Op::In(set_values(v)?))
            } else if part.contains(' ') || part.contains('(') {
                return Err(bad());
            } else {
                (part.to_string(), Op::Exists)
            };
            if req.0.is_empty() {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    /// Whether nothing is selected on (everything matches).
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Matches against a lookup of keys.
    fn matches_with(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|(k, op)| {
            let v = get(k);
            match op {
                Op::Eq(x) => v.as_deref() == Some(x.as_str()),
                Op::NotEq(x) => v.as_deref() != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.contains(&v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.contains(&v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
            }
        })
    }

    /// Label-selector match against the object's `metadata.labels`.
    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.matches_with(|k| labels.get(k).and_then(Value::as_str).map(str::to_string))
    }

    /// Field-selector match: keys are dotted paths into the object (`metadata.name`, `spec.nodeName`).
    /// A missing field compares as the empty string, as Kubernetes does.
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches_with(|k| {
            let mut cur = obj;
            for seg in k.split('.') {
                cur = &cur[seg];
            }
            Some(match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
        })
    }

    /// The value that an equality requirement on `key` demands, if any (to narrow a range read).
    pub fn required_value(&self, key: &str) -> Option<&str> {
        self.reqs.iter().find_map(|(k, op)| match op {
            Op::Eq(v) if k == key => Some(v.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let m = |s: &str| Selector::parse(s, false).unwrap().matches_labels(&o);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, db)"));
        assert!(!m("app notin (web)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m(""));
    }

    #[test]
    fn field_selectors() {
        let o =
            json!({"metadata": {"name": "a", "namespace": "x"}, "status": {"phase": "Running"}});
        let m = |s: &str| Selector::parse(s, true).unwrap().matches_fields(&o);
        assert!(m("metadata.name=a"));
        assert!(m("status.phase!=Pending,metadata.namespace=x"));
        assert!(m("spec.nodeName="));
        assert!(Selector::parse("a in (b)", true).is_err());
    }

    #[test]
    fn bad_label_selector() {
        assert!(Selector::parse("a in b", false).is_err());
        assert!(Selector::parse("=x", false).is_err());
    }
}
