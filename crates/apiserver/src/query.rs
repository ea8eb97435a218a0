//! The query parameters and request options of API calls.

use serde_json::Value;

use crate::error::ApiError;

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Dropped silently.
    Ignore,
    /// Dropped, with a `Warning` header per field.
    Warn,
    /// Rejected with 400.
    Strict,
}

/// Parsed query parameters.
#[derive(Debug, Clone)]
pub struct Query {
    /// `labelSelector`.
    pub label_selector: String,
    /// `fieldSelector`.
    pub field_selector: String,
    /// `limit` (0 = none).
    pub limit: usize,
    /// `continue`.
    pub continue_token: String,
    /// `resourceVersion`.
    pub resource_version: String,
    /// `resourceVersionMatch`.
    pub resource_version_match: String,
    /// `watch`.
    pub watch: bool,
    /// `allowWatchBookmarks`.
    pub allow_watch_bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `fieldManager`.
    pub field_manager: String,
    /// `force` (server-side apply).
    pub force: bool,
    /// `propagationPolicy`.
    pub propagation_policy: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `includeObject` for tables.
    pub include_object: String,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True")
}

impl Query {
    /// Parses the query string.
    pub fn parse(q: Option<&str>) -> Result<Self, ApiError> {
        let mut out = Query {
            label_selector: String::new(),
            field_selector: String::new(),
            limit: 0,
            continue_token: String::new(),
            resource_version: String::new(),
            resource_version_match: String::new(),
            watch: false,
            allow_watch_bookmarks: false,
            timeout_seconds: None,
            dry_run: false,
            field_validation: FieldValidation::Warn,
            field_manager: String::new(),
            force: false,
            propagation_policy: None,
            grace_period_seconds: None,
            include_object: String::new(),
            send_initial_events: false,
        };
        for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            let v = v.into_owned();
            let bad = |what: &str| {
                ApiError::BadRequest(format!("invalid value {v:?} for query parameter {what}"))
            };
            match k.as_ref() {
                "labelSelector" => out.label_selector = v,
                "fieldSelector" => out.field_selector = v,
                "limit" => out.limit = v.parse().map_err(|_| bad("limit"))?,
                "continue" => out.continue_token = v,
                "resourceVersion" => out.resource_version = v,
                "resourceVersionMatch" => out.resource_version_match = v,
                "watch" => out.watch = truthy(&v),
                "allowWatchBookmarks" => out.allow_watch_bookmarks = truthy(&v),
                "timeoutSeconds" => {
                    out.timeout_seconds = Some(v.parse().map_err(|_| bad("timeoutSeconds"))?)
                }
                "dryRun" => {
                    if v != "All" {
                        return Err(ApiError::BadRequest(format!(
                            "unsupported dryRun value {v:?}: only \"All\" is supported"
                        )));
                    }
                    out.dry_run = true
                }
                "fieldValidation" => {
                    out.field_validation = match v.as_str() {
                        "Ignore" => FieldValidation::Ignore,
                        "Warn" => FieldValidation::Warn,
                        "Strict" => FieldValidation::Strict,
                        _ => return Err(bad("fieldValidation (Ignore, Warn or Strict)")),
                    }
                }
                "fieldManager" => out.field_manager = v,
                "force" => out.force = truthy(&v),
                "propagationPolicy" => out.propagation_policy = Some(v),
                "gracePeriodSeconds" => {
                    out.grace_period_seconds =
                        Some(v.parse().map_err(|_| bad("gracePeriodSeconds"))?)
                }
                "includeObject" => out.include_object = v,
                "sendInitialEvents" => out.send_initial_events = truthy(&v),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Takes delete options from a `DeleteOptions` body (kubectl sends them there).
    pub fn merge_delete_options(&mut self, body: &Value) {
        if let Some(p) = body["propagationPolicy"].as_str() {
            self.propagation_policy = Some(p.to_string());
        }
        if let Some(g) = body["gracePeriodSeconds"].as_i64() {
            self.grace_period_seconds = Some(g);
        }
        if body["orphanDependents"].as_bool() == Some(true) {
            self.propagation_policy = Some("Orphan".into());
        }
        if let Some(Value::Array(d)) = body.get("dryRun")
            && d.iter().any(|x| x == "All")
        {
            self.dry_run = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_parameters() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&limit=5&watch=true&fieldValidation=Strict&dryRun=All",
        ))
        .unwrap();
        assert_eq!(q.label_selector, "app=web");
        assert_eq!(q.limit, 5);
        assert!(q.watch && q.dry_run);
        assert_eq!(q.field_validation, FieldValidation::Strict);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Query::parse(Some("limit=x")).is_err());
        assert!(Query::parse(Some("fieldValidation=Loose")).is_err());
        assert!(Query::parse(Some("dryRun=Some")).is_err());
    }
}
