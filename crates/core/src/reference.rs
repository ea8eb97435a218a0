//! Image references, normalised as docker normalises them.
//!
//! `busybox` means `docker.io/library/busybox:latest`; `localhost:5000/a/b:t`
//! names registry `localhost:5000`, repository `a/b`, tag `t`;
//! `name@sha256:...` pins a digest (and then no default tag is added).
//! The first path component is a registry when it contains `.` or `:`, is
//! `localhost`, or has an uppercase letter; otherwise the registry is
//! `docker.io`, where one-component names live under `library/`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError};

/// The registry that names without a registry component refer to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const MAX_NAME_LEN: usize = 255;

/// Why a string is not a valid image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Empty input.
    #[error("empty image reference")]
    Empty,
    /// The repository part has uppercase letters.
    #[error("invalid image reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    /// A 64-character hex string looks like an image id, not a name.
    #[error(
        "invalid image reference {0:?}: cannot use a 64-character hex string as a name (use the image id or a digest)"
    )]
    LooksLikeId(String),
    /// The registry part is not a host name with an optional port.
    #[error("invalid image reference {reference:?}: bad registry {registry:?}")]
    BadRegistry {
        /// The whole input.
        reference: String,
        /// The registry part.
        registry: String,
    },
    /// A path component breaks the grammar.
    #[error(
        "invalid image reference {reference:?}: bad repository path component {component:?} (use lowercase letters, digits and single '.', '_', '__' or '-' separators)"
    )]
    BadPath {
        /// The whole input.
        reference: String,
        /// The offending component.
        component: String,
    },
    /// The tag breaks the grammar.
    #[error(
        "invalid image reference {reference:?}: bad tag {tag:?} (use up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-')"
    )]
    BadTag {
        /// The whole input.
        reference: String,
        /// The tag part.
        tag: String,
    },
    /// The name is too long.
    #[error("invalid image reference {0:?}: name longer than 255 characters")]
    TooLong(String),
    /// The digest part is invalid.
    #[error("invalid image reference {reference:?}: {source}")]
    BadDigest {
        /// The whole input.
        reference: String,
        /// What is wrong with the digest.
        source: DigestError,
    },
}

/// A normalised image reference: registry, repository, and a tag and/or a
/// digest (at least one of them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises a reference as docker does.
    pub fn parse(s: &str) -> Result<ImageRef, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::LooksLikeId(s.to_owned()));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::BadDigest {
                    reference: s.to_owned(),
                    source,
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        let (registry, remainder) = split_registry(name_tag);
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t.to_owned())),
            _ => (remainder, None),
        };
        if path.to_lowercase() != path {
            return Err(ReferenceError::Uppercase(s.to_owned()));
        }
        check_registry(s, &registry)?;
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        for component in repository.split('/') {
            if !valid_path_component(component) {
                return Err(ReferenceError::BadPath {
                    reference: s.to_owned(),
                    component: component.to_owned(),
                });
            }
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(s.to_owned()));
        }
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::BadTag {
                reference: s.to_owned(),
                tag: t.clone(),
            });
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            _ => tag,
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io` or `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (references without a digest always have one).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short name docker shows: `busybox`, `user/app`,
    /// `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The short form docker shows: `busybox:latest`, `localhost:5000/a:t@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::BadTag {
                reference: self.to_string(),
                tag: tag.to_owned(),
            });
        }
        Ok(ImageRef {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest`, without tag.
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

fn split_registry(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            let registry = if first == LEGACY_DEFAULT_REGISTRY {
                DEFAULT_REGISTRY
            } else {
                first
            };
            (registry.to_owned(), rest)
        }
        _ => (DEFAULT_REGISTRY.to_owned(), name),
    }
}

fn check_registry(reference: &str, registry: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::BadRegistry {
        reference: reference.to_owned(),
        registry: registry.to_owned(),
    };
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // [IPv6]:port
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            });
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ReferenceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ImageRef::parse(&s)
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(norm("quay.io/a/b/c:v1.2-rc_3"), "quay.io/a/b/c:v1.2-rc_3");
        assert_eq!(norm("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        assert_eq!(norm("[::1]:5000/x:y"), "[::1]:5000/x:y");
        assert_eq!(norm("Registry/x"), "Registry/x:latest");
        assert_eq!(
            norm("a__b/c-d/e---f.g"),
            "docker.io/a__b/c-d/e---f.g:latest"
        );
    }

    #[test]
    fn digests_pin_without_default_tag() {
        let r = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = ImageRef::parse(&format!("localhost:5000/a:t@{D}")).unwrap();
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.familiar(), format!("localhost:5000/a:t@{D}"));
    }

    #[test]
    fn accessors_and_familiar_form() {
        let r = ImageRef::parse("localhost:5000/a/b:t").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.name(), "localhost:5000/a/b");
        let b = ImageRef::parse("busybox").unwrap();
        assert_eq!(b.familiar(), "busybox:latest");
        assert_eq!(b.familiar_name(), "busybox");
        assert_eq!(
            ImageRef::parse("user/app:1").unwrap().familiar(),
            "user/app:1"
        );
        assert_eq!(
            b.with_tag("x").unwrap().to_string(),
            "docker.io/library/busybox:x"
        );
        assert!(b.with_tag("-x").is_err());
    }

    #[test]
    fn refuses_bad_references() {
        let long = format!("a/{}", "b".repeat(260));
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox:.x",
            &format!("busybox:{}", "t".repeat(129)),
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a-/b",
            "_a",
            "busybox@sha256:123",
            "busybox@md5:abc",
            "host:port/a",
            "ex-.com/a",
            "a b",
            &"a".repeat(64).replace('a', "f"),
            &long,
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn serde_uses_the_normalised_string() {
        let r: ImageRef = serde_json::from_str("\"busybox\"").unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            "\"docker.io/library/busybox:latest\""
        );
    }
}
