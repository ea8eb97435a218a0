//! Local image operations behind `kontti images`, `tag`, `rmi`, `image
//! inspect` and `image prune`.

use std::collections::{BTreeMap, BTreeSet};

use kontti_core::{Digest, ImageRef};

use crate::gc::GcReport;
use crate::image::{Image, ImageError};
use crate::media::{Descriptor, PlatformSpec};
use crate::snapshot::{Kind, Snapshotter};
use crate::store::ContentStore;

/// One image as `kontti images` lists it.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The image resolved for the host platform.
    pub image: Image,
    /// Its names (empty for an untagged image).
    pub names: Vec<ImageRef>,
}

impl ImageSummary {
    /// The image id (config digest).
    pub fn id(&self) -> &Digest {
        self.image.id()
    }
}

/// Lists the images of the store: one entry per distinct target, with all
/// its names. Entries that cannot be resolved (an index without the host
/// platform, missing blobs) are skipped with a warning.
pub fn list(store: &ContentStore) -> Result<Vec<ImageSummary>, ImageError> {
    let mut by_target: BTreeMap<Digest, (Descriptor, Vec<ImageRef>)> = BTreeMap::new();
    for r in store.refs()? {
        let e = by_target
            .entry(r.target.digest.clone())
            .or_insert_with(|| (r.target.clone(), Vec::new()));
        if let Some(n) = r.name {
            e.1.push(n);
        }
    }
    let mut out = Vec::new();
    for (digest, (target, mut names)) in by_target {
        names.sort();
        match Image::from_descriptor(store, target, &PlatformSpec::host()) {
            Ok(image) => out.push(ImageSummary { image, names }),
            Err(e) => tracing::warn!(%digest, error = %e, "skipping unusable image"),
        }
    }
    Ok(out)
}

/// What a user can name an image by.
#[derive(Debug, Clone)]
pub struct Found {
    /// The image.
    pub image: Image,
    /// The reference the user gave, when it was a name.
    pub by_name: Option<ImageRef>,
    /// Every name the image has.
    pub names: Vec<ImageRef>,
}

/// Finds an image by name (`busybox`, `localhost:5000/a:t`, `name@digest`),
/// by id (`sha256:<hex>`, or a hex prefix of at least 4 characters), or by
/// manifest digest.
pub fn find(store: &ContentStore, what: &str) -> Result<Found, ImageError> {
    let images = list(store)?;
    let hex = what.strip_prefix("sha256:").unwrap_or(what);
    let looks_like_id = hex.len() >= 4
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if looks_like_id {
        let hits: Vec<&ImageSummary> = images
            .iter()
            .filter(|s| s.id().hex().starts_with(hex) || s.image.target.digest.hex() == hex)
            .collect();
        let distinct: BTreeSet<&Digest> = hits.iter().map(|s| s.id()).collect();
        match distinct.len() {
            0 if what.starts_with("sha256:") || hex.len() == 64 => {
                return Err(ImageError::NotFound(what.to_owned()));
            }
            0 => {}
            1 => {
                let s = hits[0];
                return Ok(Found {
                    image: s.image.clone(),
                    by_name: None,
                    names: s.names.clone(),
                });
            }
            _ => return Err(ImageError::Ambiguous(what.to_owned())),
        }
    }
    let r = ImageRef::parse(what)?;
    let image = Image::open(store, &r)?;
    let names = images
        .iter()
        .find(|s| s.image.target.digest == image.target.digest)
        .map(|s| s.names.clone())
        .unwrap_or_default();
    Ok(Found {
        image,
        by_name: Some(r),
        names,
    })
}

/// Gives the image named `source` the additional name `target`.
pub fn tag(store: &ContentStore, source: &str, target: &ImageRef) -> Result<(), ImageError> {
    let found = find(store, source)?;
    if target.tag().is_none() {
        return Err(ImageError::NotFound(format!(
            "{target} (a tag is required)"
        )));
    }
    store.set_ref(target, &found.image.target)?;
    Ok(())
}

/// What `remove` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A name was removed.
    Untagged(ImageRef),
    /// The image (target) was removed.
    Deleted(Digest),
}

/// Removes a name, or an image by id (with all its names if `force`).
/// Content goes when nothing else references it ([`gc`] runs afterwards).
pub fn remove(store: &ContentStore, what: &str, force: bool) -> Result<Vec<Removed>, ImageError> {
    let found = find(store, what)?;
    let mut out = Vec::new();
    let target = found.image.target.digest.clone();
    match &found.by_name {
        Some(r) if r.tag().is_some() => {
            store.remove_ref(r)?;
            out.push(Removed::Untagged(r.clone()));
            let still_named = store.refs()?.iter().any(|n| n.target.digest == target);
            if !still_named {
                out.push(Removed::Deleted(found.image.id().clone()));
            }
        }
        _ => {
            if found.names.len() > 1 && !force {
                return Err(ImageError::MultipleNames {
                    id: found.image.id().short().to_owned(),
                    names: found
                        .names
                        .iter()
                        .map(ImageRef::familiar)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            for n in &found.names {
                out.push(Removed::Untagged(n.clone()));
            }
            store.remove_target(&target)?;
            out.push(Removed::Deleted(found.image.id().clone()));
        }
    }
    store.gc()?;
    Ok(out)
}

/// What `prune` removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Untagged images removed.
    pub images: Vec<Digest>,
    /// The content garbage collection.
    pub content: GcReport,
    /// Snapshots removed.
    pub snapshots: Vec<String>,
}

/// Removes untagged images (all images not in use by a container with
/// `all`), then unreferenced content, then snapshots no image or container
/// needs. Honours leases: content an in-progress pull or build holds stays.
pub fn prune(
    store: &ContentStore,
    snapshotter: Option<&dyn Snapshotter>,
    all: bool,
) -> Result<PruneReport, ImageError> {
    let mut report = PruneReport::default();
    for r in store.refs()? {
        if r.name.is_none() || all {
            store.remove_target(&r.target.digest)?;
            if !report.images.contains(&r.target.digest) {
                report.images.push(r.target.digest);
            }
        }
    }
    report.content = store.gc()?;
    if let Some(sn) = snapshotter {
        report.snapshots = prune_snapshots(store, sn)?;
    }
    Ok(report)
}

/// Removes committed snapshots that no remaining image's chain uses, that
/// no container (active snapshot) sits on and that no live lease (a build,
/// pull or container creation in progress) holds, and abandoned unpacks of
/// processes that died. Runs with the store's gc lock held exclusively, so
/// that a lease taken meanwhile waits ([`ContentStore::protect_snapshot`]).
pub fn prune_snapshots(
    store: &ContentStore,
    sn: &dyn Snapshotter,
) -> Result<Vec<String>, ImageError> {
    let _gc = store.lock_gc_exclusive()?;
    let mut wanted: BTreeSet<String> = store.leased_snapshots()?;
    for s in list(store)? {
        wanted.extend(s.image.chain_ids().iter().map(Digest::to_string));
    }
    let mut removed = Vec::new();
    for info in sn.list()? {
        if info.kind == Kind::Active && extract_owner_dead(&info.key) {
            sn.remove(&info.key)?;
            removed.push(info.key);
        }
    }
    loop {
        let infos = sn.list()?;
        let parents: BTreeSet<String> = infos.iter().filter_map(|i| i.parent.clone()).collect();
        let victims: Vec<String> = infos
            .into_iter()
            .filter(|i| {
                i.kind == Kind::Committed && !wanted.contains(&i.key) && !parents.contains(&i.key)
            })
            .map(|i| i.key)
            .collect();
        if victims.is_empty() {
            break;
        }
        for v in victims {
            sn.remove(&v)?;
            removed.push(v);
        }
    }
    Ok(removed)
}

/// Unpack keys are `extract-<chain>-<pid>-<nanos>-<n>`: true when that
/// process is gone.
fn extract_owner_dead(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("extract-") else {
        return false;
    };
    let mut parts = rest.split('-');
    let _chain = parts.next();
    match parts.next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}
