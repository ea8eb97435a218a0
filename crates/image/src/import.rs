//! `kontti import`: a root filesystem tarball becomes a one-layer image.

use std::cell::RefCell;
use std::io::{self, Read, Write};

use kontti_core::{Digest, ImageRef};

use crate::config::{History, ImageConfig, ImageConfigFile, RootFs};
use crate::image::{Image, ImageError};
use crate::media::{self, Descriptor, PlatformSpec};
use crate::store::{ContentStore, StoreError};
use crate::unpack::decompressed;

/// Errors importing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not a (possibly compressed) tar archive.
    #[error("{source_name} is not a valid tar archive: {reason}")]
    NotATar {
        /// File name or `-`.
        source_name: String,
        /// The parse error.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Resolving the result failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl ImportError {
    /// The kind of failure.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        match self {
            ImportError::NotATar { .. } => kontti_core::ErrorKind::Invalid,
            ImportError::Store(e) => e.kind(),
            ImportError::Image(e) => e.kind(),
        }
    }
}

/// Copies what a reader yields into a writer as it is read, remembering a
/// write failure (disk full) so that it is not mistaken for bad input.
struct Tee<'a, R, W> {
    inner: R,
    out: W,
    write_error: &'a RefCell<Option<io::Error>>,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let msg = e.to_string();
            *self.write_error.borrow_mut() = Some(e);
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }
}

/// Stores `input` (a tar, gzip or zstd tarball of a root filesystem) as
/// the single uncompressed layer of a new image, validating the tar as it
/// streams; names it `name` if given. Nothing is left behind on error.
pub fn import_rootfs(
    store: &ContentStore,
    input: impl Read,
    source_name: &str,
    name: Option<&ImageRef>,
    changes: ImageConfig,
) -> Result<Image, ImportError> {
    let lease = store.lease("import")?;
    let result = import_leased(store, &lease, input, source_name, name, changes);
    if result.is_err() {
        // Whatever was stored before the failure is referenced by nothing.
        drop(lease);
        if let Err(e) = store.gc() {
            tracing::warn!(error = %e, "cannot clean up after a failed import");
        }
    }
    result
}

fn import_leased(
    store: &ContentStore,
    lease: &crate::Lease,
    input: impl Read,
    source_name: &str,
    name: Option<&ImageRef>,
    changes: ImageConfig,
) -> Result<Image, ImportError> {
    let mut writer = store.ingest(lease, None, None)?;
    let ingest_path = writer.data_path().to_owned();
    let write_error = RefCell::new(None);
    let parsed = (|| -> Result<(), ImportError> {
        let not_tar = |e: io::Error| ImportError::NotATar {
            source_name: source_name.to_owned(),
            reason: crate::unpack::one_line(&e),
        };
        let plain = decompressed(input).map_err(not_tar)?;
        let mut archive = tar::Archive::new(Tee {
            inner: plain,
            out: &mut writer,
            write_error: &write_error,
        });
        let mut n = 0usize;
        for entry in archive.entries().map_err(not_tar)? {
            let mut entry = entry.map_err(not_tar)?;
            // Entry data must be read for the stream to advance anyway.
            io::copy(&mut entry, &mut io::sink()).map_err(not_tar)?;
            n += 1;
        }
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(not_tar)?;
        if n == 0 {
            return Err(ImportError::NotATar {
                source_name: source_name.to_owned(),
                reason: "it has no entries".into(),
            });
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        writer.abort();
        if let Some(we) = write_error.into_inner() {
            return Err(StoreError::io("write", &ingest_path, we).into());
        }
        return Err(e);
    }
    let size = writer.offset();
    let diff_id = writer.commit()?;
    let now = crate::time::now_rfc3339();
    let platform = PlatformSpec::host();
    let config = ImageConfigFile {
        created: Some(now.clone()),
        author: None,
        architecture: platform.architecture,
        os: platform.os,
        variant: platform.variant,
        config: Some(changes),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id.clone()],
        },
        history: vec![History {
            created: Some(now),
            created_by: Some(format!("kontti import {source_name}")),
            comment: Some("Imported from a rootfs tarball".into()),
            ..History::default()
        }],
    };
    let config_json = json(&config)?;
    let config_digest = store.put(lease, &config_json, None)?;
    let manifest = media::Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, config_digest, config_json.len() as u64),
        layers: vec![Descriptor::new(media::OCI_LAYER_TAR, diff_id, size)],
        subject: None,
        annotations: Default::default(),
    };
    let target = put_manifest(store, lease, &manifest)?;
    match name {
        Some(n) => store.set_ref(n, &target)?,
        None => store.add_untagged(&target)?,
    }
    Ok(Image::from_descriptor(
        store,
        target,
        &PlatformSpec::host(),
    )?)
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Io {
        op: "serialise",
        path: "json document".into(),
        source: io::Error::other(e),
    })
}

pub(crate) fn put_manifest(
    store: &ContentStore,
    lease: &crate::Lease,
    m: &media::Manifest,
) -> Result<Descriptor, StoreError> {
    let data = json(m)?;
    let d: Digest = store.put(lease, &data, None)?;
    Ok(Descriptor::new(
        m.media_type.as_deref().unwrap_or(media::OCI_MANIFEST),
        d,
        data.len() as u64,
    ))
}
