//! Loading and validating a bundle's `config.json`.
//!
//! Parsing goes through `serde_path_to_error`, so a malformed document's error
//! names the field (`config.json: process.user.uid: invalid type ...`).
//! Validation then checks what the types cannot: an existing rootfs, the
//! namespaces' consistency, a process to run.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::de::DeserializeOwned;

use crate::error::RuntimeError;

/// A loaded and validated bundle.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The root file system directory, absolute.
    pub rootfs: PathBuf,
    /// The parsed config.
    pub spec: Spec,
}

/// Parses JSON `bytes` from `file`, naming the failing field in the error.
pub fn parse_json<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, RuntimeError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let detail = if path == "." || path.is_empty() {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        RuntimeError::Config {
            file: file.to_owned(),
            detail,
        }
    })
}

/// Loads `<bundle>/config.json` and validates it.
pub fn load_bundle(dir: &Path) -> Result<Bundle, RuntimeError> {
    let dir = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| RuntimeError::io("current directory", e))?
            .join(dir)
    };
    if !dir.is_dir() {
        return Err(RuntimeError::BundleNotFound(dir));
    }
    let path = dir.join("config.json");
    let bytes = fs::read(&path).map_err(|e| RuntimeError::Config {
        file: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let spec: Spec = parse_json("config.json", &bytes)?;
    let root = spec.root().as_ref().ok_or_else(|| {
        RuntimeError::Invalid("root: missing (the rootfs path is required)".into())
    })?;
    let rootfs = dir.join(root.path());
    if !rootfs.is_dir() {
        return Err(RuntimeError::RootfsMissing(rootfs));
    }
    validate(&spec)?;
    Ok(Bundle { dir, rootfs, spec })
}

/// Checks what serde cannot.
pub fn validate(spec: &Spec) -> Result<(), RuntimeError> {
    let process = spec.process().as_ref().ok_or_else(|| {
        RuntimeError::Invalid("process: missing (a container needs a process)".into())
    })?;
    validate_process(process)?;
    let linux = spec.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    let mut seen = HashSet::new();
    let mut has_user = false;
    let mut has_uts = false;
    for (i, ns) in namespaces.into_iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(RuntimeError::Invalid(format!(
                "linux.namespaces[{i}].type: namespace {:?} is listed twice",
                ns.typ()
            )));
        }
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(RuntimeError::Unsupported(format!(
                "linux.namespaces[{i}]: time namespace"
            )));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(RuntimeError::Invalid(format!(
                    "linux.namespaces[{i}].path: {} is not absolute",
                    p.display()
                )));
            }
            if !p.exists() {
                return Err(RuntimeError::Invalid(format!(
                    "linux.namespaces[{i}].path: {} does not exist",
                    p.display()
                )));
            }
        }
        has_user |= ns.typ() == LinuxNamespaceType::User;
        has_uts |= ns.typ() == LinuxNamespaceType::Uts;
    }
    if !seen.contains(&LinuxNamespaceType::Mount) {
        return Err(RuntimeError::Invalid(
            "linux.namespaces: a mount namespace is required (the rootfs is set up in it)".into(),
        ));
    }
    let has_maps = linux.is_some_and(|l| l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()));
    let new_user = namespaces
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_user && !has_maps {
        return Err(RuntimeError::Invalid(
            "linux.uidMappings: a new user namespace needs uid and gid mappings".into(),
        ));
    }
    if has_maps && !has_user {
        return Err(RuntimeError::Invalid(
            "linux.uidMappings: mappings need a user namespace in linux.namespaces".into(),
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has_uts {
        return Err(RuntimeError::Invalid(
            "hostname: setting a hostname needs a uts namespace".into(),
        ));
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(RuntimeError::Invalid(format!(
                "mounts[{i}].destination: {} is not absolute",
                m.destination().display()
            )));
        }
    }
    Ok(())
}

/// Checks a process (of config.json or of `exec --process`).
pub fn validate_process(process: &Process) -> Result<(), RuntimeError> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(RuntimeError::Invalid(
            "process.args: empty (nothing to run)".into(),
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(RuntimeError::Invalid(format!(
            "process.cwd: {} is not an absolute path",
            process.cwd().display()
        )));
    }
    for (i, e) in process.env().iter().flatten().enumerate() {
        if !e.contains('=') {
            return Err(RuntimeError::Invalid(format!(
                "process.env[{i}]: {e:?} has no '='"
            )));
        }
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        tracing::warn!("process.apparmorProfile is ignored: AppArmor is not supported");
    }
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        tracing::warn!("process.selinuxLabel is ignored: SELinux is not supported");
    }
    Ok(())
}

/// Loads an `exec --process` file.
pub fn load_process(path: &Path) -> Result<Process, RuntimeError> {
    let bytes = fs::read(path).map_err(|e| RuntimeError::Config {
        file: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let p: Process = parse_json(&path.display().to_string(), &bytes)?;
    validate_process(&p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_field_is_named() {
        let doc = br#"{"ociVersion":"1.2.0","process":{"user":{"uid":"zero","gid":0},"cwd":"/"}}"#;
        let e = parse_json::<Spec>("config.json", doc)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config.json: process.user.uid: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn unknown_namespace_is_named() {
        let doc =
            br#"{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#;
        let e = parse_json::<Spec>("config.json", doc)
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.namespaces[1].type"), "{e}");
    }

    #[test]
    fn relative_cwd_is_refused() {
        let doc = br#"{"ociVersion":"1.2.0","root":{"path":"r"},"process":{"user":{"uid":0,"gid":0},"cwd":"tmp","args":["x"]}}"#;
        let spec: Spec = parse_json("config.json", doc).unwrap();
        let e = validate(&spec).unwrap_err().to_string();
        assert!(e.contains("process.cwd"), "{e}");
    }
}
