//! Media types, descriptors, manifests and indexes (OCI image spec and Docker
//! schema2), and platform selection.
//!
//! OCI and Docker schema2 documents share one shape, so one set of types
//! parses both; the media type says which it is and is checked. These are
//! kontti's own serde types rather than `oci-spec`'s because they carry
//! [`kontti_core::Digest`] directly and accept Docker's media types as first
//! class; the JSON is the same.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use kontti_core::{Digest, ErrorKind};
use serde::{Deserialize, Serialize};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layers (deprecated, still seen).
pub const OCI_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable gzip layer.
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable zstd layer.
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (seen in some tools' output).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (Windows base) layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema1 (unsupported, named for the error message).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Annotation holding a reference name in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd uses for the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Largest manifest, index or config kontti reads (as containerd).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// Errors about media types and documents.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A media type kontti does not handle in this position.
    #[error("unsupported media type {media_type:?} for {what}")]
    UnknownMediaType {
        /// The media type.
        media_type: String,
        /// What the document was expected to be.
        what: &'static str,
    },
    /// JSON that does not parse as the expected document.
    #[error("invalid {what} {digest}: {reason}")]
    BadDocument {
        /// Manifest, index or config.
        what: &'static str,
        /// The blob.
        digest: String,
        /// The parse error.
        reason: String,
    },
    /// No manifest in the index matches the requested platform.
    #[error("no manifest for platform {wanted} in index {index} (available: {available})")]
    PlatformNotFound {
        /// The requested platform (`os/arch[/variant]`).
        wanted: String,
        /// The index digest.
        index: Digest,
        /// What the index offers.
        available: String,
    },
    /// A `--platform` string that is not `os/arch[/variant]`.
    #[error(
        "invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
    )]
    BadPlatform(String),
}

impl MediaError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MediaError::PlatformNotFound { .. } => ErrorKind::NotFound,
            _ => ErrorKind::Invalid,
        }
    }
}

/// A content descriptor: media type, digest, size and optional metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// The content digest.
    pub digest: Digest,
    /// The content size in bytes.
    pub size: u64,
    /// Alternative download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform of a manifest in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type (artifacts and referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor without metadata.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            urls: None,
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }
}

/// A platform as descriptors and configs carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    /// CPU architecture (GOARCH values: amd64, arm64, ...).
    pub architecture: String,
    /// Operating system (GOOS values: linux, windows, ...).
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (v7, v8, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's media type (required by Docker, optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests, one per platform (or per reference in a layout).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The index this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived, never stored in bulk
pub enum Document {
    /// An image manifest.
    Manifest(Manifest),
    /// An index or manifest list.
    Index(Index),
}

/// What a media type names, as far as kontti is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// OCI or Docker manifest.
    Manifest,
    /// OCI index or Docker manifest list.
    Index,
    /// An image config.
    Config,
    /// A layer with the given compression.
    Layer(Compression),
    /// Something else (artifacts, attestations, schema1).
    Other,
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// Classifies a media type.
pub fn media_kind(media_type: &str) -> MediaKind {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => MediaKind::Manifest,
        OCI_INDEX | DOCKER_MANIFEST_LIST => MediaKind::Index,
        OCI_CONFIG | DOCKER_CONFIG => MediaKind::Config,
        OCI_LAYER_TAR | OCI_LAYER_NONDIST_TAR | DOCKER_LAYER_TAR => {
            MediaKind::Layer(Compression::None)
        }
        OCI_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN => {
            MediaKind::Layer(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD => MediaKind::Layer(Compression::Zstd),
        _ => MediaKind::Other,
    }
}

/// Parses a manifest or index whose descriptor says `media_type`. An empty
/// media type (as in some OCI layouts) is inferred from the document.
pub fn parse_document(
    media_type: &str,
    digest: &Digest,
    data: &[u8],
) -> Result<Document, MediaError> {
    let bad = |what: &'static str, e: serde_json::Error| MediaError::BadDocument {
        what,
        digest: digest.to_string(),
        reason: e.to_string(),
    };
    let kind = if media_type.is_empty() || media_type == "application/json" {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(data).map_err(|e| bad("manifest", e))?;
        match (&probe.media_type, &probe.manifests) {
            (Some(mt), _) => media_kind(mt),
            (None, Some(_)) => MediaKind::Index,
            (None, None) => MediaKind::Manifest,
        }
    } else {
        media_kind(media_type)
    };
    let check_inner = |inner: &Option<String>, what: &'static str| match inner {
        Some(mt)
            if !media_type.is_empty() && media_type != "application/json" && mt != media_type =>
        {
            Err(MediaError::BadDocument {
                what,
                digest: digest.to_string(),
                reason: format!("mediaType {mt:?} contradicts its descriptor's {media_type:?}"),
            })
        }
        _ => Ok(()),
    };
    match kind {
        MediaKind::Manifest => {
            let m: Manifest = serde_json::from_slice(data).map_err(|e| bad("manifest", e))?;
            check_inner(&m.media_type, "manifest")?;
            if m.schema_version != 2 {
                return Err(MediaError::BadDocument {
                    what: "manifest",
                    digest: digest.to_string(),
                    reason: format!("schemaVersion {} is not 2", m.schema_version),
                });
            }
            Ok(Document::Manifest(m))
        }
        MediaKind::Index => {
            let i: Index = serde_json::from_slice(data).map_err(|e| bad("index", e))?;
            check_inner(&i.media_type, "index")?;
            if i.schema_version != 2 {
                return Err(MediaError::BadDocument {
                    what: "index",
                    digest: digest.to_string(),
                    reason: format!("schemaVersion {} is not 2", i.schema_version),
                });
            }
            Ok(Document::Index(i))
        }
        _ => Err(MediaError::UnknownMediaType {
            media_type: if media_type.is_empty() {
                "(none)".to_owned()
            } else {
                media_type.to_owned()
            },
            what: "a manifest or index",
        }),
    }
}

/// A platform to select: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// Operating system.
    pub os: String,
    /// Architecture (GOARCH naming).
    pub architecture: String,
    /// Variant, if requested.
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// linux on this machine's architecture (linux/amd64 on x86-64).
    pub fn host() -> PlatformSpec {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        PlatformSpec {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether a descriptor's platform matches. A missing variant matches
    /// the default variant of the architecture.
    pub fn matches(&self, p: &Platform) -> bool {
        if p.os != self.os || normalise_arch(&p.architecture) != normalise_arch(&self.architecture)
        {
            return false;
        }
        let default_variant = match normalise_arch(&self.architecture) {
            "arm64" => Some("v8"),
            _ => None,
        };
        let have = p.variant.as_deref().or(default_variant);
        match self.variant.as_deref() {
            Some(want) => have == Some(want),
            None => true,
        }
    }
}

fn normalise_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Default for PlatformSpec {
    fn default() -> Self {
        PlatformSpec::host()
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for PlatformSpec {
    type Err = MediaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(MediaError::BadPlatform(s.to_owned()));
        }
        Ok(PlatformSpec {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalise_arch(&parts[1].to_ascii_lowercase()).to_owned(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

/// Picks the manifest for `want` from an index. Prefers an exact variant
/// match, then the first entry that matches.
pub fn select_platform<'a>(
    index: &'a Index,
    index_digest: &Digest,
    want: &PlatformSpec,
) -> Result<&'a Descriptor, MediaError> {
    let manifests: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| media_kind(&d.media_type) == MediaKind::Manifest || d.media_type.is_empty())
        .collect();
    // An index with one platform-less manifest is just a wrapper.
    if let [only] = manifests.as_slice()
        && only.platform.is_none()
    {
        return Ok(only);
    }
    let matching: Vec<&Descriptor> = manifests
        .iter()
        .copied()
        .filter(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .collect();
    let exact = matching.iter().find(|d| {
        d.platform.as_ref().and_then(|p| p.variant.as_deref()) == want.variant.as_deref()
    });
    if let Some(d) = exact.or(matching.first()) {
        return Ok(d);
    }
    let available = manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(MediaError::PlatformNotFound {
        wanted: want.to_string(),
        index: index_digest.clone(),
        available: if available.is_empty() {
            "none".to_owned()
        } else {
            available
        },
    })
}

#[cfg(test)]
#[path = "media_tests.rs"]
mod tests;
