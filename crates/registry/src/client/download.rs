//! Streaming a blob into the store: resumable, verified, adopted atomically.

use std::io::Write;

use kontti_core::Digest;
use reqwest::{Method, StatusCode};

use super::Descriptor;
use super::error::{ClientError, chain};
use super::progress::Progress;
use super::transport::{Repo, status_error};
use crate::blobs::{BlobSink, BlobStore};
use std::sync::Arc;

/// Reads a response body of at most `limit` bytes.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| ClientError::Http {
            url: url.to_owned(),
            reason: chain(&e),
        })?;
        let Some(chunk) = chunk else { return Ok(out) };
        if out.len() + chunk.len() > limit {
            return Err(ClientError::ManifestInvalid {
                reference: url.to_owned(),
                reason: format!("larger than {limit} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
}

/// Writes small content (a manifest) into the store under its digest.
pub(crate) fn store_bytes(
    store: &dyn BlobStore,
    d: &Digest,
    bytes: &[u8],
) -> Result<(), ClientError> {
    let io = |e| ClientError::io(format!("storing {d}"), e);
    if store.blob_size(d).map_err(io)?.is_some() {
        return Ok(());
    }
    let mut sink = store.sink(d, bytes.len() as u64).map_err(io)?;
    sink.truncate().map_err(io)?;
    sink.write_all(bytes).map_err(io)?;
    sink.commit().map_err(io)
}

/// Downloads one blob into the store, resuming a partial ingest.
pub(crate) async fn blob(
    repo: &Repo,
    desc: &Descriptor,
    store: &dyn BlobStore,
    progress: Option<Arc<dyn Progress>>,
) -> Result<(), ClientError> {
    let d = &desc.digest;
    let io = |what: &str, e| ClientError::io(format!("{what} blob {d}"), e);
    let mut sink = store.sink(d, desc.size).map_err(|e| io("opening", e))?;
    let mut offset = sink.offset();
    if offset > desc.size {
        sink.truncate().map_err(|e| io("truncating", e))?;
        offset = 0;
    }
    if let Some(p) = &progress {
        p.start(d, desc.size, offset);
    }
    let url = repo.url(&format!("blobs/{d}"));
    let mut attempt = 0u32;
    while offset < desc.size {
        let from = offset;
        let resp = repo
            .send(Method::GET, &url, |rb| {
                if from > 0 {
                    rb.header(reqwest::header::RANGE, format!("bytes={from}-"))
                } else {
                    rb
                }
            })
            .await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if from > 0 => {}
            StatusCode::OK => {
                if from > 0 {
                    // The registry ignored the range: start over.
                    sink.truncate().map_err(|e| io("truncating", e))?;
                    offset = 0;
                    if let Some(p) = &progress {
                        p.start(d, desc.size, 0);
                    }
                }
            }
            _ => return Err(status_error(&url, resp).await),
        }
        let streamed = stream_into(
            resp,
            sink.as_mut(),
            &mut offset,
            desc.size,
            d,
            progress.as_deref(),
        )
        .await;
        match streamed {
            Ok(()) => break,
            Err(StreamError::Local(e)) => {
                if matches!(e, ClientError::SizeMismatch { .. }) {
                    let _ = sink.truncate();
                }
                return Err(e);
            }
            Err(StreamError::Transport(reason)) => {
                if attempt >= repo.retry().retries {
                    return Err(ClientError::Http { url, reason });
                }
                tracing::debug!(%url, offset, %reason, "download interrupted, resuming");
                tokio::time::sleep(repo.backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
    // The store verifies digest and size on commit; on a mismatch nothing
    // becomes visible and the partial ingest is discarded.
    sink.commit().map_err(|e| {
        // The store refuses content whose digest or size is wrong: that is
        // the registry's fault, not a local I/O failure.
        let refused = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<kontti_image::StoreError>())
            .is_some_and(|se| se.kind() == kontti_core::ErrorKind::Invalid);
        if refused {
            ClientError::Verify {
                digest: d.clone(),
                reason: e.to_string(),
            }
        } else {
            io("verifying", e)
        }
    })?;
    if let Some(p) = &progress {
        p.done(d);
    }
    Ok(())
}

enum StreamError {
    Transport(String),
    Local(ClientError),
}

async fn stream_into(
    mut resp: reqwest::Response,
    sink: &mut dyn BlobSink,
    offset: &mut u64,
    size: u64,
    d: &Digest,
    progress: Option<&dyn Progress>,
) -> Result<(), StreamError> {
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return if *offset < size {
                    Err(StreamError::Transport(format!(
                        "connection closed after {offset} of {size} bytes"
                    )))
                } else {
                    Ok(())
                };
            }
            Err(e) => return Err(StreamError::Transport(chain(&e))),
        };
        if *offset + chunk.len() as u64 > size {
            return Err(StreamError::Local(ClientError::SizeMismatch {
                digest: d.clone(),
                expected: size,
                actual: *offset + chunk.len() as u64,
            }));
        }
        sink.write_all(&chunk)
            .map_err(|e| StreamError::Local(ClientError::io(format!("writing blob {d}"), e)))?;
        *offset += chunk.len() as u64;
        if let Some(p) = progress {
            p.advance(d, chunk.len() as u64);
        }
    }
}
