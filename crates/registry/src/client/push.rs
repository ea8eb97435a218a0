//! Pushing: blobs the registry lacks (HEAD first, then a cross-repository
//! mount when a source repository is known, else an upload: monolithic for
//! small blobs, chunked PATCHes for large ones), then the manifests.

use std::sync::Arc;

use bytes::Bytes;
use kontti_core::{Digest, ImageRef};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::ClientError;
use super::progress::Progress;
use super::transport::{Repo, status_error};
use super::{Descriptor, PushImage};
use crate::blobs::BlobStore;

/// Blobs up to this size go in one PUT; larger ones in PATCHes of this size.
pub(crate) const CHUNK: u64 = 32 << 20;

pub(crate) async fn push(
    mut repo: Repo,
    reference: &ImageRef,
    image: &PushImage,
    store: Arc<dyn BlobStore>,
    progress: Arc<dyn Progress>,
    concurrency: usize,
) -> Result<Digest, ClientError> {
    use futures_util::StreamExt;
    if let Some(from) = &image.mount_from
        && from != &repo.name
    {
        repo.add_pull_scope(from);
    }
    let repo = Arc::new(repo);
    let results: Vec<Result<(), ClientError>> =
        futures_util::stream::iter(image.blobs.iter().cloned().map(|d| {
            let repo = repo.clone();
            let store = store.clone();
            let progress = progress.clone();
            let from = image.mount_from.clone().filter(|f| f != &repo.name);
            async move {
                push_blob(
                    &repo,
                    &d,
                    store.as_ref(),
                    progress.as_ref(),
                    from.as_deref(),
                )
                .await
            }
        }))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in results {
        r?;
    }
    for (d, media_type, bytes) in &image.children {
        put_manifest(&repo, &d.to_string(), media_type, bytes).await?;
    }
    let (top, media_type, bytes) = &image.top;
    let target = match (reference.tag(), reference.digest()) {
        (Some(t), _) => t.to_owned(),
        (None, Some(d)) => d.to_string(),
        (None, None) => kontti_core::DEFAULT_TAG.to_owned(),
    };
    let answered = put_manifest(&repo, &target, media_type, bytes).await?;
    if let Some(a) = answered
        && &a != top
    {
        tracing::warn!(expected = %top, registry = %a, "registry reports a different manifest digest");
    }
    Ok(top.clone())
}

async fn put_manifest(
    repo: &Repo,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<Option<Digest>, ClientError> {
    let url = repo.url(&format!("manifests/{reference}"));
    let body = Bytes::copy_from_slice(bytes);
    let resp = repo
        .send(Method::PUT, &url, |rb| {
            rb.header(reqwest::header::CONTENT_TYPE, media_type)
                .body(body.clone())
        })
        .await?;
    if !resp.status().is_success() {
        return Err(status_error(&url, resp).await);
    }
    Ok(resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| Digest::parse(s).ok()))
}

async fn push_blob(
    repo: &Repo,
    desc: &Descriptor,
    store: &dyn BlobStore,
    progress: &dyn Progress,
    mount_from: Option<&str>,
) -> Result<(), ClientError> {
    let d = &desc.digest;
    let blob_url = repo.url(&format!("blobs/{d}"));
    let head = repo.send(Method::HEAD, &blob_url, |rb| rb).await?;
    if head.status() == StatusCode::OK {
        progress.exists(d);
        return Ok(());
    }
    let mut start_url = repo.url("blobs/uploads/");
    if let Some(from) = mount_from {
        start_url = format!("{start_url}?mount={d}&from={from}");
    }
    let resp = repo
        .send(Method::POST, &start_url, |rb| {
            rb.header(reqwest::header::CONTENT_LENGTH, "0")
        })
        .await?;
    match resp.status() {
        StatusCode::CREATED => {
            progress.mounted(d, mount_from.unwrap_or(""));
            return Ok(());
        }
        StatusCode::ACCEPTED => {}
        _ => return Err(status_error(&start_url, resp).await),
    }
    let mut location = location(repo, &resp, &start_url)?;
    let path = store.blob_path(d);
    progress.start(d, desc.size, 0);
    let mut offset = 0u64;
    if desc.size > CHUNK {
        while offset < desc.size {
            let len = CHUNK.min(desc.size - offset);
            let from = offset;
            let p = path.clone();
            let resp = repo
                .send(Method::PATCH, &location, |rb| {
                    rb.header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .header(reqwest::header::CONTENT_LENGTH, len.to_string())
                        .header(
                            reqwest::header::CONTENT_RANGE,
                            format!("{from}-{}", from + len - 1),
                        )
                        .body(file_region(&p, from, len))
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(status_error(&location, resp).await);
            }
            location = super::push::location(repo, &resp, &location)?;
            offset += len;
            progress.advance(d, len);
        }
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = format!("{location}{sep}digest={d}");
    let rest = desc.size - offset;
    let from = offset;
    let resp = repo
        .send(Method::PUT, &put_url, |rb| {
            rb.header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, rest.to_string())
                .body(if rest > 0 {
                    file_region(&path, from, rest)
                } else {
                    reqwest::Body::from(Vec::new())
                })
        })
        .await?;
    if resp.status() != StatusCode::CREATED {
        return Err(status_error(&put_url, resp).await);
    }
    progress.advance(d, rest);
    progress.done(d);
    Ok(())
}

/// The absolute upload URL from a `Location` header.
fn location(repo: &Repo, resp: &reqwest::Response, url: &str) -> Result<String, ClientError> {
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ClientError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
            message: Some("upload answer without Location".into()),
        })?;
    if loc.starts_with("http://") || loc.starts_with("https://") {
        Ok(loc.to_owned())
    } else if loc.starts_with('/') {
        Ok(format!("{}{loc}", repo.base))
    } else {
        Ok(format!("{}/{loc}", repo.base))
    }
}

/// A streaming body of `len` bytes of a file from `offset`.
fn file_region(path: &std::path::Path, offset: u64, len: u64) -> reqwest::Body {
    let path = path.to_owned();
    let stream = futures_util::stream::unfold(
        (None::<tokio::fs::File>, offset, len, path),
        |(file, offset, left, path)| async move {
            if left == 0 {
                return None;
            }
            let mut f = match file {
                Some(f) => f,
                None => match tokio::fs::File::open(&path).await {
                    Ok(mut f) => match f.seek(std::io::SeekFrom::Start(offset)).await {
                        Ok(_) => f,
                        Err(e) => return Some((Err(e), (None, offset, 0, path))),
                    },
                    Err(e) => return Some((Err(e), (None, offset, 0, path))),
                },
            };
            let mut buf = vec![0u8; left.min(256 * 1024) as usize];
            match f.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob shorter than its descriptor",
                    )),
                    (None, offset, 0, path),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((
                        Ok(Bytes::from(buf)),
                        (Some(f), offset + n as u64, left - n as u64, path),
                    ))
                }
                Err(e) => Some((Err(e), (None, offset, 0, path))),
            }
        },
    );
    reqwest::Body::wrap_stream(stream)
}
