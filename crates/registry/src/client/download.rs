//! Streaming a blob into the store: resumable, verified, adopted atomically.

use std::io::{Read, Seek, Write};

use kontti_core::Digest;
use reqwest::{Method, StatusCode};

use super::error::{ClientError, chain};
use super::progress::Progress;
use super::transport::{Repo, status_error};
use super::{Descriptor, partial_path};
use crate::blobs::BlobStore;
use crate::digest::Hasher;
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
    let have = store
        .blob_size(d)
        .map_err(|e| ClientError::io(format!("checking blob {d}"), e))?;
    if have.is_some() {
        return Ok(());
    }
    let dir = store.ingest_dir();
    let io = |e| ClientError::io(format!("storing {d}"), e);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let tmp = dir.join(format!(
        "{}-{}.tmp-{}",
        d.algorithm(),
        d.hex(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    store.adopt(&tmp, d).map_err(io)
}

/// Downloads one blob into the store, resuming a partial file.
pub(crate) async fn blob(
    repo: &Repo,
    desc: &Descriptor,
    store: &dyn BlobStore,
    progress: Option<Arc<dyn Progress>>,
) -> Result<(), ClientError> {
    let d = &desc.digest;
    let path = partial_path(store, d);
    let io = |what: &str, e| ClientError::io(format!("{what} {}", path.display()), e);
    std::fs::create_dir_all(store.ingest_dir()).map_err(|e| io("creating directory for", e))?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| io("opening", e))?;
    // Hash what an earlier attempt left.
    let mut hasher = Hasher::new(d.algorithm());
    let mut offset = 0u64;
    {
        let mut buf = vec![0u8; 256 * 1024];
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| io("reading", e))?;
        loop {
            let n = file.read(&mut buf).map_err(|e| io("reading", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
    }
    if offset > desc.size {
        file.set_len(0).map_err(|e| io("truncating", e))?;
        hasher = Hasher::new(d.algorithm());
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
                    file.set_len(0).map_err(|e| io("truncating", e))?;
                    hasher = Hasher::new(d.algorithm());
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
            &mut file,
            &mut hasher,
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
                    let _ = std::fs::remove_file(&path);
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
    if offset != desc.size {
        let _ = std::fs::remove_file(&path);
        return Err(ClientError::SizeMismatch {
            digest: d.clone(),
            expected: desc.size,
            actual: offset,
        });
    }
    let actual = hasher.finish();
    if &actual != d {
        let _ = std::fs::remove_file(&path);
        return Err(ClientError::DigestMismatch {
            expected: d.clone(),
            actual,
            url,
        });
    }
    file.sync_all().map_err(|e| io("syncing", e))?;
    drop(file);
    store.adopt(&path, d).map_err(|e| io("committing", e))?;
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
    file: &mut std::fs::File,
    hasher: &mut Hasher,
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
        file.write_all(&chunk)
            .map_err(|e| StreamError::Local(ClientError::io(format!("writing blob {d}"), e)))?;
        hasher.update(&chunk);
        *offset += chunk.len() as u64;
        if let Some(p) = progress {
            p.advance(d, chunk.len() as u64);
        }
    }
}
