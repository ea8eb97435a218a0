//! Named references: tag → manifest (or index) descriptor, kept in the
//! layout's `index.json` so that OCI tools can read the store.
//!
//! Each entry carries the full normalised reference in
//! `org.opencontainers.image.ref.name` and `io.containerd.image.name`.
//! Untagged images (imported or loaded without a name, or whose tag moved)
//! are entries without a name, so that garbage collection keeps them until
//! `rmi` or `image prune`. Updates take `locks/index.lock`, rewrite the file
//! and rename it into place, so readers never see a torn file.

use std::collections::BTreeMap;
use std::fs;

use kontti_core::{Digest, ImageRef};

use crate::media::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, Index, OCI_INDEX};
use crate::store::{ContentStore, Result, StoreError};

pub(crate) fn empty_index() -> Index {
    Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_owned()),
        artifact_type: None,
        manifests: Vec::new(),
        subject: None,
        annotations: BTreeMap::new(),
    }
}

/// One entry of the store's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRef {
    /// The reference, or `None` for an untagged image.
    pub name: Option<ImageRef>,
    /// The manifest or index it points at.
    pub target: Descriptor,
}

impl ContentStore {
    /// All entries of the index.
    pub fn refs(&self) -> Result<Vec<NamedRef>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .map(|d| NamedRef {
                name: ref_name(&d),
                target: d,
            })
            .collect())
    }

    /// The target of a tag (or of a digest reference present in the index).
    pub fn resolve_ref(&self, r: &ImageRef) -> Result<Option<Descriptor>> {
        let refs = self.refs()?;
        if r.tag().is_some() {
            return Ok(refs
                .into_iter()
                .find(|n| n.name.as_ref() == Some(r))
                .map(|n| n.target));
        }
        let Some(d) = r.digest() else { return Ok(None) };
        Ok(refs
            .into_iter()
            .find(|n| &n.target.digest == d && n.name.as_ref().is_none_or(|x| x.name() == r.name()))
            .map(|n| n.target))
    }

    /// Points `r` at `target`, replacing what it pointed at. An image that
    /// loses its last name stays as an untagged entry. The target must be in
    /// the store (protect it with a lease while writing it).
    pub fn set_ref(&self, r: &ImageRef, target: &Descriptor) -> Result<()> {
        if !self.has(&target.digest) {
            return Err(StoreError::NotFound(target.digest.clone()));
        }
        self.update_index(|idx| {
            let old = take_named(idx, r);
            let mut d = strip(target);
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), r.to_string());
            d.annotations
                .insert(ANNOTATION_IMAGE_NAME.to_owned(), r.to_string());
            idx.manifests
                .retain(|m| !(ref_name(m).is_none() && m.digest == target.digest));
            idx.manifests.push(d);
            if let Some(old) = old {
                keep_untagged(idx, old);
            }
        })
    }

    /// Records an untagged image (no-op if the image has an entry already).
    pub fn add_untagged(&self, target: &Descriptor) -> Result<()> {
        if !self.has(&target.digest) {
            return Err(StoreError::NotFound(target.digest.clone()));
        }
        self.update_index(|idx| keep_untagged(idx, strip(target)))
    }

    /// Removes a name; returns what it pointed at. The content stays until
    /// garbage collection.
    pub fn remove_ref(&self, r: &ImageRef) -> Result<Option<Descriptor>> {
        let mut removed = None;
        self.update_index(|idx| removed = take_named(idx, r))?;
        Ok(removed)
    }

    /// Removes every entry (named or not) pointing at `digest`.
    pub fn remove_target(&self, digest: &Digest) -> Result<usize> {
        let mut n = 0;
        self.update_index(|idx| {
            let before = idx.manifests.len();
            idx.manifests.retain(|m| &m.digest != digest);
            n = before - idx.manifests.len();
        })?;
        Ok(n)
    }

    pub(crate) fn read_index(&self) -> Result<Index> {
        let p = self.index_path();
        let data = fs::read(&p).map_err(|e| StoreError::io("read", &p, e))?;
        serde_json::from_slice(&data).map_err(|e| StoreError::BadLayout {
            path: p,
            reason: format!("index.json does not parse: {e}"),
        })
    }

    fn update_index(&self, f: impl FnOnce(&mut Index)) -> Result<()> {
        let _gc = self.lock_gc_shared()?;
        let _g = self.lock_index()?;
        let mut idx = self.read_index()?;
        f(&mut idx);
        self.write_index(&idx)
    }
}

fn ref_name(d: &Descriptor) -> Option<ImageRef> {
    d.annotations
        .get(ANNOTATION_IMAGE_NAME)
        .or_else(|| d.annotations.get(ANNOTATION_REF_NAME))
        .and_then(|s| ImageRef::parse(s).ok())
}

fn take_named(idx: &mut Index, r: &ImageRef) -> Option<Descriptor> {
    let pos = idx
        .manifests
        .iter()
        .position(|m| ref_name(m).as_ref() == Some(r))?;
    Some(strip(&idx.manifests.remove(pos)))
}

fn keep_untagged(idx: &mut Index, d: Descriptor) {
    if !idx.manifests.iter().any(|m| m.digest == d.digest) {
        idx.manifests.push(d);
    }
}

fn strip(d: &Descriptor) -> Descriptor {
    let mut d = d.clone();
    d.annotations.remove(ANNOTATION_REF_NAME);
    d.annotations.remove(ANNOTATION_IMAGE_NAME);
    d
}
