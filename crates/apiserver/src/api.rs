//! The request pipeline: routing, authentication, authorization (allow-all), decoding, and the
//! verbs over the [`Registry`].

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use crate::discovery;
use crate::error::ApiError;
use crate::http::{Body, User, error_response, json_bytes, json_response};
use crate::openapi;
use crate::query::Query;
use crate::registry::{PatchType, Registry};
use crate::resources::{ResourceDef, Subresource, find};
use crate::table;

pub use crate::body::{MAX_DEPTH, decode_body};

/// The largest request body accepted (3 MiB, as Kubernetes).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Where a request goes.
#[derive(Debug)]
enum Route {
    Version,
    Health,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String),
    Resource {
        def: &'static ResourceDef,
        ns: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

fn route(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => return Ok(Route::Health),
        ["api"] => return Ok(Route::Api),
        ["apis"] => return Ok(Route::Apis),
        ["apis", g] => return Ok(Route::Group(g.to_string())),
        ["api", v] => return Ok(Route::GroupVersion(String::new(), v.to_string())),
        ["apis", g, v] => return Ok(Route::GroupVersion(g.to_string(), v.to_string())),
        ["openapi", "v2"] => return Ok(Route::OpenApiV2),
        ["openapi", "v3"] => return Ok(Route::OpenApiV3Index),
        ["openapi", "v3", rest @ ..] => return Ok(Route::OpenApiV3(rest.join("/"))),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::NoRoute),
    };
    let namespaced_target = rest.len() >= 3
        && rest[0] == "namespaces"
        && find(group, version, rest[2]).is_some_and(|d| d.namespaced);
    let (ns, rest) = if namespaced_target {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let def = find(group, version, rest[0]).ok_or(ApiError::NoRoute)?;
    if rest.len() > 3 {
        return Err(ApiError::NoRoute);
    }
    Ok(Route::Resource {
        def,
        ns,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

/// The API: a registry plus the request pipeline.
pub struct Api {
    registry: Registry,
    server_address: String,
    openapi_v2_pb: std::sync::OnceLock<Vec<u8>>,
}

fn header(req: &Request<Incoming>, name: hyper::header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Reads and discards up to 4 × [`MAX_BODY`] of a refused body, so that an HTTP/1.1 client that is
/// still sending gets the 413 rather than a reset connection. Nothing is kept.
async fn drain(mut body: Incoming) {
    let mut seen = 0usize;
    while seen < 4 * MAX_BODY {
        match body.frame().await {
            Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

async fn read_body(req: Request<Incoming>) -> Result<(String, Bytes), ApiError> {
    let ct = header(&req, hyper::header::CONTENT_TYPE).to_string();
    if let Some(len) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY
    {
        drain(req.into_body()).await;
        return Err(ApiError::TooLarge { limit: MAX_BODY });
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::TooLarge { limit: MAX_BODY }
            } else {
                ApiError::BadRequest(format!("reading the request body failed: {e}"))
            }
        })?;
    Ok((ct, body.to_bytes()))
}

fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = hyper::header::HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

fn list_object(def: &ResourceDef, items: Vec<Value>, rv: String, cont: Option<String>) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": meta, "items": items})
}

impl Api {
    /// An API over `registry`, advertising `server_address` in `/api`.
    pub fn new(registry: Registry, server_address: String) -> Self {
        Api {
            registry,
            server_address,
            openapi_v2_pb: std::sync::OnceLock::new(),
        }
    }

    /// The registry (for in-process controllers).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Handles one request.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        user: Option<User>,
    ) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let span = tracing::debug_span!("request", %method, %path);
        let _g = span.enter();
        match self.dispatch(req, user).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(status = e.status(), error = %e, "request failed");
                error_response(&e)
            }
        }
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: Request<Incoming>,
        user: Option<User>,
    ) -> Result<Response<Body>, ApiError> {
        let target = route(req.uri().path());
        if !matches!(target, Ok(Route::Health)) && user.is_none() {
            return Err(ApiError::Unauthorized);
        }
        // Authorization: allow-all until RBAC lands.
        let accept = header(&req, hyper::header::ACCEPT).to_string();
        let get = req.method() == Method::GET;
        let target = target?;
        let legacy = matches!(target, Route::Api);
        match target {
            Route::Health => Ok(json_bytes(200, b"ok".to_vec(), "text/plain")),
            Route::Version if get => Ok(json_response(
                200,
                &json!({
                    "major": "1", "minor": "33", "gitVersion": openapi::KUBERNETES_VERSION, "gitCommit": "", "gitTreeState": "clean",
                    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "n/a", "compiler": "rustc", "platform": "linux/amd64",
                }),
            )),
            Route::Api | Route::Apis if get => {
                if let Some(v) = discovery::aggregated_version(&accept) {
                    let doc = discovery::aggregated(legacy, v);
                    let ct = format!(
                        "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                    );
                    return Ok(json_bytes(
                        200,
                        serde_json::to_vec(&doc).unwrap_or_default(),
                        &ct,
                    ));
                }
                Ok(json_response(
                    200,
                    &if legacy {
                        discovery::api_versions(&self.server_address)
                    } else {
                        discovery::api_group_list()
                    },
                ))
            }
            Route::Group(g) if get => discovery::api_group(&g)
                .map(|v| json_response(200, &v))
                .ok_or(ApiError::NoRoute),
            Route::GroupVersion(g, v) if get => discovery::resource_list(&g, &v)
                .map(|d| json_response(200, &d))
                .ok_or(ApiError::NoRoute),
            Route::OpenApiV2 if get => {
                if accept.contains("protobuf") && !accept.contains("json") {
                    let bytes = self
                        .openapi_v2_pb
                        .get_or_init(|| crate::openapi_pb::encode_document(&openapi::v2_document()))
                        .clone();
                    return Ok(json_bytes(200, bytes, "application/octet-stream"));
                }
                Ok(json_response(200, &openapi::v2_document()))
            }
            Route::OpenApiV3Index if get => Ok(json_response(200, &openapi::v3_index())),
            Route::OpenApiV3(p) if get => openapi::v3_document(&p)
                .map(|d| json_response(200, &d))
                .ok_or(ApiError::NoRoute),
            Route::Resource { def, ns, name, sub } => {
                self.resource(req, def, ns, name, sub, &accept).await
            }
            _ => Err(ApiError::MethodNotAllowed),
        }
    }

    async fn resource(
        self: &Arc<Self>,
        req: Request<Incoming>,
        def: &'static ResourceDef,
        ns: Option<String>,
        name: Option<String>,
        sub: Option<String>,
        accept: &str,
    ) -> Result<Response<Body>, ApiError> {
        let mut q = Query::parse(req.uri().query())?;
        let sub = match sub.as_deref() {
            None => None,
            Some("status") if def.has(Subresource::Status) => Some(Subresource::Status),
            Some("scale") if def.has(Subresource::Scale) => Some(Subresource::Scale),
            Some("finalize") if def.kind == "Namespace" => Some(Subresource::Status),
            Some(_) => return Err(ApiError::NoRoute),
        };
        let finalize = req.uri().path().ends_with("/finalize");
        if def.namespaced && ns.is_none() && name.is_some() {
            return Err(ApiError::NoRoute);
        }
        let reg = &self.registry;
        let as_table = table::wants_table(accept);
        let ns_ref = ns.as_deref();
        let method = req.method().clone();
        match (method, name) {
            (Method::GET, None) if q.watch => crate::watch::watch(reg, def, ns, q, as_table).await,
            (Method::GET, None) => {
                let page = reg.list(def, ns_ref, &q).await?;
                let rv = page.revision.to_string();
                if as_table {
                    return Ok(json_response(
                        200,
                        &table::table(
                            def,
                            &page.items,
                            &rv,
                            page.continue_token.as_deref(),
                            &q.include_object,
                        ),
                    ));
                }
                Ok(json_response(
                    200,
                    &list_object(def, page.items, rv, page.continue_token),
                ))
            }
            (Method::GET, Some(name)) => {
                let (obj, _) = reg.get(def, ns_ref, &name).await?;
                let obj = if sub == Some(Subresource::Scale) {
                    Registry::scale_of(def, &obj)
                } else {
                    obj
                };
                if as_table && sub.is_none() {
                    let rv = obj["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    return Ok(json_response(
                        200,
                        &table::table(
                            def,
                            std::slice::from_ref(&obj),
                            &rv,
                            None,
                            &q.include_object,
                        ),
                    ));
                }
                Ok(json_response(200, &obj))
            }
            (Method::POST, None) => {
                let (ct, bytes) = read_body(req).await?;
                let body = decode_body(&ct, &bytes)?;
                let (obj, warnings) = reg.create(def, ns_ref, body, &q).await?;
                Ok(with_warnings(json_response(201, &obj), &warnings))
            }
            (Method::PUT, Some(name)) => {
                let (ct, bytes) = read_body(req).await?;
                let body = decode_body(&ct, &bytes)?;
                let (obj, warnings) = if finalize {
                    reg.finalize_namespace(def, &name, body["spec"]["finalizers"].clone(), &q)
                        .await?
                } else {
                    reg.update(def, ns_ref, &name, body, sub, &q).await?
                };
                Ok(with_warnings(json_response(200, &obj), &warnings))
            }
            (Method::PATCH, Some(name)) => {
                let (ct, bytes) = read_body(req).await?;
                let media = ct.split(';').next().unwrap_or("").trim().to_string();
                let ptype = match media.as_str() {
                    "application/json-patch+json" => PatchType::Json,
                    "application/merge-patch+json" => PatchType::Merge,
                    "application/strategic-merge-patch+json" => PatchType::Strategic,
                    "application/apply-patch+yaml" => PatchType::Apply,
                    other => return Err(ApiError::UnsupportedMediaType(other.to_string())),
                };
                let body = decode_body(&ct, &bytes)?;
                let (obj, warnings, created) =
                    reg.patch(def, ns_ref, &name, ptype, &body, sub, &q).await?;
                Ok(with_warnings(
                    json_response(if created { 201 } else { 200 }, &obj),
                    &warnings,
                ))
            }
            (Method::DELETE, Some(name)) => {
                let (ct, bytes) = read_body(req).await?;
                if !bytes.is_empty() {
                    let body = decode_body(&ct, &bytes)?;
                    q.merge_delete_options(&body);
                }
                let (obj, gone) = reg.delete(def, ns_ref, &name, &q).await?;
                Ok(json_response(if gone { 200 } else { 202 }, &obj))
            }
            (Method::DELETE, None) => {
                let (ct, bytes) = read_body(req).await?;
                if !bytes.is_empty() {
                    let body = decode_body(&ct, &bytes)?;
                    q.merge_delete_options(&body);
                }
                let page = reg.list(def, ns_ref, &q).await?;
                let mut deleted = Vec::new();
                for o in page.items {
                    let n = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                    let ons = o["metadata"]["namespace"].as_str().map(str::to_string);
                    match reg.delete(def, ons.as_deref(), &n, &q).await {
                        Ok((obj, _)) => deleted.push(obj),
                        Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(json_response(
                    200,
                    &list_object(def, deleted, page.revision.to_string(), None),
                ))
            }
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resources() {
        match route("/apis/apps/v1/namespaces/default/deployments/web/scale").unwrap() {
            Route::Resource { def, ns, name, sub } => {
                assert_eq!(def.kind, "Deployment");
                assert_eq!(ns.as_deref(), Some("default"));
                assert_eq!(name.as_deref(), Some("web"));
                assert_eq!(sub.as_deref(), Some("scale"));
            }
            other => panic!("{other:?}"),
        }
        match route("/api/v1/namespaces/kube-system").unwrap() {
            Route::Resource { def, ns, name, .. } => {
                assert_eq!(def.kind, "Namespace");
                assert!(ns.is_none());
                assert_eq!(name.as_deref(), Some("kube-system"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            route("/api/v1/pods").unwrap(),
            Route::Resource {
                ns: None,
                name: None,
                ..
            }
        ));
        assert!(route("/apis/apps/v1/widgets").is_err());
    }
}
