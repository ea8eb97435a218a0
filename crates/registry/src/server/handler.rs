//! Request handling: authentication, routing and the answer of each endpoint.

use std::io;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use kontti_core::Digest;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::State;
use super::error::ApiError;
use super::route::{self, Route, RouteError};
use super::storage::StoredManifest;
use crate::media;

/// The response body type.
pub(crate) type Body = BoxBody<Bytes, io::Error>;

/// The largest manifest accepted (as docker's registry: 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;
/// Uploads are written in pieces of about this size.
const WRITE_BATCH: usize = 1 << 20;

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> Body {
    full(Bytes::new())
}

fn respond(status: u16, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

fn set(r: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn error_response(e: &ApiError) -> Response<Body> {
    let body = e.body();
    let len = body.len();
    let mut r = respond(e.status(), full(body));
    set(&mut r, "Content-Type", "application/json");
    set(&mut r, "Content-Length", &len.to_string());
    if matches!(e, ApiError::Unauthorized) {
        set(
            &mut r,
            "WWW-Authenticate",
            "Basic realm=\"kontti-registry\"",
        );
    }
    r
}

/// Answers one request.
pub(crate) async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = percent_decode(req.uri().path());
    let span = tracing::debug_span!("request", %method, %path);
    let _g = span.enter();
    if let Some(h) = &state.htpasswd {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !h.check_header(auth) {
            return error_response(&ApiError::Unauthorized);
        }
    }
    let result = match route::parse(&path) {
        Ok(r) => dispatch(state, r, req).await,
        Err(RouteError::NotFound) => Err(ApiError::NotFound),
        Err(RouteError::BadName(n)) => Err(ApiError::NameInvalid(n)),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            let mut r = error_response(&e);
            if method == Method::HEAD {
                *r.body_mut() = empty();
            }
            r
        }
    }
}

async fn dispatch(
    state: &State,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let m = req.method().clone();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let st = &state.storage;
    match (route, m) {
        (Route::Base, Method::GET | Method::HEAD) => {
            let mut r = respond(200, full("{}"));
            set(&mut r, "Content-Type", "application/json");
            Ok(r)
        }
        (Route::Catalog, Method::GET) => {
            let repos = st.catalog()?;
            let (page, next) = paginate(repos, &query);
            let mut r = json_response(200, &json!({"repositories": page}));
            if let Some((n, last)) = next {
                set(
                    &mut r,
                    "Link",
                    &format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""),
                );
            }
            Ok(r)
        }
        (Route::Tags { name }, Method::GET) => {
            let tags = st.tags(&name)?;
            let (page, next) = paginate(tags, &query);
            let mut r = json_response(200, &json!({"name": name, "tags": page}));
            if let Some((n, last)) = next {
                set(
                    &mut r,
                    "Link",
                    &format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""),
                );
            }
            Ok(r)
        }
        (Route::Manifest { name, reference }, m @ (Method::GET | Method::HEAD)) => {
            let man = st.manifest(&name, &reference)?;
            let len = man.bytes.len();
            let body = if m == Method::HEAD {
                empty()
            } else {
                full(man.bytes)
            };
            let mut r = respond(200, body);
            set(&mut r, "Content-Type", &man.media_type);
            set(&mut r, "Content-Length", &len.to_string());
            set(&mut r, "Docker-Content-Digest", &man.digest.to_string());
            set(&mut r, "ETag", &format!("\"{}\"", man.digest));
            Ok(r)
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            put_manifest(state, &name, &reference, req).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            st.delete_manifest(&name, &reference)?;
            Ok(respond(202, empty()))
        }
        (Route::Blob { name, digest }, m @ (Method::GET | Method::HEAD)) => {
            let d = parse_digest(&digest)?;
            get_blob(
                state,
                &name,
                &d,
                m == Method::HEAD,
                req.headers().get(header::RANGE),
            )
            .await
        }
        (Route::Blob { name, digest }, Method::DELETE) => {
            let d = parse_digest(&digest)?;
            st.delete_blob(&name, &d)?;
            Ok(respond(202, empty()))
        }
        (Route::StartUpload { name }, Method::POST) => {
            start_upload(state, &name, &query, req).await
        }
        (Route::Upload { name, id }, Method::GET) => {
            let off = st.upload_offset(&name, &id)?;
            let mut r = respond(204, empty());
            upload_headers(&mut r, &name, &id, off);
            Ok(r)
        }
        (Route::Upload { name, id }, Method::PATCH) => {
            let start = match req.headers().get(header::CONTENT_RANGE) {
                Some(v) => Some(parse_content_range(v.to_str().unwrap_or(""))?),
                None => None,
            };
            let off = write_body(state, &name, &id, start, req.into_body()).await?;
            let mut r = respond(202, empty());
            upload_headers(&mut r, &name, &id, off);
            Ok(r)
        }
        (Route::Upload { name, id }, Method::PUT) => {
            let digest = query
                .iter()
                .find(|(k, _)| k == "digest")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| ApiError::DigestInvalid("missing digest query parameter".into()))?;
            let d = parse_digest(&digest)?;
            write_body(state, &name, &id, None, req.into_body()).await?;
            st.finish_upload(&name, &id, &d)?;
            Ok(blob_created(&name, &d))
        }
        (Route::Upload { name, id }, Method::DELETE) => {
            st.cancel_upload(&name, &id)?;
            Ok(respond(204, empty()))
        }
        (Route::Referrers { name, digest }, Method::GET) => {
            let d = parse_digest(&digest)?;
            let mut list = st.referrers(&name, &d)?;
            let filter = query
                .iter()
                .find(|(k, _)| k == "artifactType")
                .map(|(_, v)| v.clone());
            if let Some(t) = &filter {
                list.retain(|desc| desc["artifactType"].as_str() == Some(t.as_str()));
            }
            let index = json!({
                "schemaVersion": 2,
                "mediaType": media::OCI_INDEX,
                "manifests": list,
            });
            let mut r = json_response(200, &index);
            set(&mut r, "Content-Type", media::OCI_INDEX);
            if filter.is_some() {
                set(&mut r, "OCI-Filters-Applied", "artifactType");
            }
            Ok(r)
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn json_response(status: u16, v: &serde_json::Value) -> Response<Body> {
    let text = v.to_string();
    let len = text.len();
    let mut r = respond(status, full(text));
    set(&mut r, "Content-Type", "application/json");
    set(&mut r, "Content-Length", &len.to_string());
    r
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::DigestInvalid(e.to_string()))
}

fn blob_created(name: &str, d: &Digest) -> Response<Body> {
    let mut r = respond(201, empty());
    set(&mut r, "Location", &format!("/v2/{name}/blobs/{d}"));
    set(&mut r, "Docker-Content-Digest", &d.to_string());
    set(&mut r, "Content-Length", "0");
    r
}

fn upload_headers(r: &mut Response<Body>, name: &str, id: &str, offset: u64) {
    set(r, "Location", &format!("/v2/{name}/blobs/uploads/{id}"));
    set(r, "Range", &format!("0-{}", offset.saturating_sub(1)));
    set(r, "Docker-Upload-UUID", id);
    set(r, "Content-Length", "0");
}

async fn start_upload(
    state: &State,
    name: &str,
    query: &[(String, String)],
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let st = &state.storage;
    let q = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    if let (Some(mount), Some(from)) = (q("mount"), q("from")) {
        let d = parse_digest(&mount)?;
        if route::valid_name(&from) && st.mount(name, &from, &d)? {
            return Ok(blob_created(name, &d));
        }
    }
    let id = st.start_upload(name)?;
    if let Some(digest) = q("digest") {
        let d = parse_digest(&digest)?;
        let written = write_body(state, name, &id, None, req.into_body()).await;
        if let Err(e) = written {
            let _ = st.cancel_upload(name, &id);
            return Err(e);
        }
        st.finish_upload(name, &id, &d)?;
        return Ok(blob_created(name, &d));
    }
    let mut r = respond(202, empty());
    upload_headers(&mut r, name, &id, 0);
    Ok(r)
}

/// Streams a request body into an upload, in batches; returns the new size.
async fn write_body(
    state: &State,
    name: &str,
    id: &str,
    mut start: Option<u64>,
    mut body: Incoming,
) -> Result<u64, ApiError> {
    let st = &state.storage;
    let mut size = st.upload_offset(name, id)?;
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    loop {
        let frame = body.frame().await;
        let done = frame.is_none();
        if let Some(frame) = frame {
            let frame = frame
                .map_err(|e| ApiError::BlobUploadInvalid(format!("reading request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                batch.extend_from_slice(&data);
            }
        }
        if (done && !batch.is_empty()) || batch.len() >= WRITE_BATCH {
            size = st.append(name, id, start.take(), &batch)?;
            batch.clear();
        }
        if done {
            return Ok(size);
        }
    }
}

async fn put_manifest(
    state: &State,
    name: &str,
    reference: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_owned());
    let limited = http_body_util::Limited::new(req.into_body(), MAX_MANIFEST);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| {
            ApiError::ManifestInvalid(format!("reading body (limit {MAX_MANIFEST} bytes): {e}"))
        })?
        .to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::ManifestInvalid(format!("not JSON: {e}")))?;
    let declared = doc["mediaType"].as_str().map(str::to_owned);
    let media_type = match (&content_type, &declared) {
        (Some(ct), Some(d)) if ct != d && ct != "application/json" => {
            return Err(ApiError::ManifestInvalid(format!(
                "Content-Type {ct} does not match mediaType {d}"
            )));
        }
        (_, Some(d)) => d.clone(),
        (Some(ct), None) if ct != "application/json" => ct.clone(),
        _ if doc.get("manifests").is_some() => media::OCI_INDEX.to_owned(),
        _ => media::OCI_MANIFEST.to_owned(),
    };
    if !media::is_manifest(&media_type) {
        return Err(ApiError::ManifestInvalid(format!(
            "unsupported media type {media_type}"
        )));
    }
    let (tag, digest) = if reference.contains(':') {
        let expected = parse_digest(reference)?;
        let mut h = kontti_image::hash::Hasher::new(expected.algorithm());
        h.update(&bytes);
        let actual = h.finish();
        if actual != expected {
            return Err(ApiError::DigestInvalid(format!(
                "manifest has digest {actual}, not {expected}"
            )));
        }
        (None, expected)
    } else {
        if !route::valid_tag(reference) {
            return Err(ApiError::ManifestInvalid(format!(
                "invalid tag {reference:?}"
            )));
        }
        (Some(reference), kontti_image::hash::sha256(&bytes))
    };
    // Everything the manifest references must be in the repository.
    let st = &state.storage;
    let mut refs: Vec<&serde_json::Value> = Vec::new();
    if media::is_index(&media_type) {
        refs.extend(doc["manifests"].as_array().into_iter().flatten());
    } else {
        refs.push(&doc["config"]);
        refs.extend(doc["layers"].as_array().into_iter().flatten());
    }
    for desc in refs {
        let Some(ds) = desc["digest"].as_str() else {
            return Err(ApiError::ManifestInvalid(
                "a descriptor has no digest".into(),
            ));
        };
        let d = parse_digest(ds)?;
        let foreign = desc["urls"].as_array().is_some_and(|u| !u.is_empty());
        if !foreign && !st.has_content(name, &d)? {
            return Err(ApiError::ManifestBlobUnknown(d.to_string()));
        }
    }
    let subject = match doc["subject"]["digest"].as_str() {
        Some(s) => Some(parse_digest(s)?),
        None => None,
    };
    let referrer = subject.as_ref().map(|s| {
        let artifact_type = doc["artifactType"]
            .as_str()
            .or_else(|| doc["config"]["mediaType"].as_str())
            .unwrap_or("");
        let mut desc = json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": bytes.len(),
            "artifactType": artifact_type,
        });
        if let Some(a) = doc.get("annotations") {
            desc["annotations"] = a.clone();
        }
        (s, desc)
    });
    let stored = StoredManifest {
        digest: digest.clone(),
        media_type,
        bytes: bytes.to_vec(),
    };
    st.put_manifest(name, tag, &stored, referrer)?;
    let mut r = respond(201, empty());
    set(
        &mut r,
        "Location",
        &format!("/v2/{name}/manifests/{digest}"),
    );
    set(&mut r, "Docker-Content-Digest", &digest.to_string());
    set(&mut r, "Content-Length", "0");
    if let Some(s) = subject {
        set(&mut r, "OCI-Subject", &s.to_string());
    }
    Ok(r)
}

async fn get_blob(
    state: &State,
    name: &str,
    d: &Digest,
    head: bool,
    range: Option<&HeaderValue>,
) -> Result<Response<Body>, ApiError> {
    let (size, path) = state.storage.blob(name, d)?;
    let (start, end) = match range.and_then(|v| v.to_str().ok()) {
        Some(r) => parse_range(r, size)?,
        None => (0, size),
    };
    let partial = range.is_some();
    let len = end - start;
    let body = if head || len == 0 {
        empty()
    } else {
        let mut f = tokio::fs::File::open(&path).await?;
        f.seek(io::SeekFrom::Start(start)).await?;
        file_body(f, len)
    };
    let mut r = respond(if partial { 206 } else { 200 }, body);
    set(&mut r, "Content-Type", "application/octet-stream");
    set(&mut r, "Content-Length", &len.to_string());
    set(&mut r, "Docker-Content-Digest", &d.to_string());
    set(&mut r, "Accept-Ranges", "bytes");
    set(&mut r, "ETag", &format!("\"{d}\""));
    if partial {
        set(
            &mut r,
            "Content-Range",
            &format!("bytes {start}-{}/{size}", end.saturating_sub(1)),
        );
    }
    Ok(r)
}

/// Streams `len` bytes of a file.
fn file_body(f: tokio::fs::File, len: u64) -> Body {
    let stream = futures_util::stream::unfold((f, len), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let want = left.min(256 * 1024) as usize;
        let mut buf = vec![0u8; want];
        match f.read(&mut buf).await {
            Ok(0) => Some((
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob file shorter than recorded",
                )),
                (f, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    StreamBody::new(stream).boxed()
}

/// Parses `bytes=START-[END]` against a blob of `size`; returns `[start, end)`.
fn parse_range(value: &str, size: u64) -> Result<(u64, u64), ApiError> {
    let bad = || ApiError::RangeInvalid(format!("range {value:?} for a blob of {size} bytes"));
    let spec = value.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end = if b.trim().is_empty() {
        size
    } else {
        b.trim()
            .parse::<u64>()
            .map_err(|_| bad())?
            .saturating_add(1)
            .min(size)
    };
    if start >= size || end <= start {
        return Err(bad());
    }
    Ok((start, end))
}

/// Parses a PATCH `Content-Range: START-END`; returns START.
fn parse_content_range(value: &str) -> Result<u64, ApiError> {
    let v = value
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let (a, _) = v
        .split_once('-')
        .ok_or_else(|| ApiError::RangeInvalid(format!("Content-Range {value:?}")))?;
    a.trim()
        .parse()
        .map_err(|_| ApiError::RangeInvalid(format!("Content-Range {value:?}")))
}

type Next = Option<(usize, String)>;

/// Applies `n`/`last` pagination to a sorted list.
fn paginate(items: Vec<String>, query: &[(String, String)]) -> (Vec<String>, Next) {
    let last = query
        .iter()
        .find(|(k, _)| k == "last")
        .map(|(_, v)| v.as_str());
    let n = query
        .iter()
        .find(|(k, _)| k == "n")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut rest: Vec<String> = match last {
        Some(l) => items.into_iter().filter(|t| t.as_str() > l).collect(),
        None => items,
    };
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            let last = rest.last().cloned().unwrap_or_default();
            (rest, Some((n, last)))
        }
        _ => (rest, None),
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && s.is_char_boundary(i + 1)
            && s.is_char_boundary(i + 3)
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10).unwrap(), (0, 10));
        assert_eq!(parse_range("bytes=2-4", 10).unwrap(), (2, 5));
        assert_eq!(parse_range("bytes=2-100", 10).unwrap(), (2, 10));
        assert!(parse_range("bytes=10-", 10).is_err());
        assert!(parse_range("items=0-1", 10).is_err());
        assert_eq!(parse_content_range("5-9").unwrap(), 5);
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let q = parse_query("n=2");
        assert_eq!(
            paginate(items.clone(), &q),
            (vec!["a".into(), "b".into()], Some((2, "b".into())))
        );
        let q = parse_query("n=2&last=b");
        assert_eq!(
            paginate(items.clone(), &q),
            (vec!["c".into(), "d".into()], None)
        );
        assert_eq!(paginate(items, &[]).0.len(), 4);
    }

    #[test]
    fn query_decoding() {
        let q = parse_query("digest=sha256%3Aab&from=a%2Fb");
        assert_eq!(q[0], ("digest".into(), "sha256:ab".into()));
        assert_eq!(q[1], ("from".into(), "a/b".into()));
        assert_eq!(percent_decode("%zz%"), "%zz%");
    }
}
