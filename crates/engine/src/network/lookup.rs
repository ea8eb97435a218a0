//! Finding a container's id and pinned network namespace from a name or an
//! id (prefix), through the on-disk layout: `R/containers/<id>/container.json`
//! (its `name`) and `R/netns/<id>`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::NetError;

/// The full id of the container `name_or_id`: an exact id, a unique id
/// prefix, or a name (with or without docker's leading `/`).
pub fn container_id(root: &Path, name_or_id: &str) -> Result<String, NetError> {
    let dir = root.join("containers");
    let not_found = || NetError::ContainerNotFound(name_or_id.to_owned());
    if name_or_id.is_empty() || name_or_id.contains('/') && !name_or_id.starts_with('/') {
        return Err(not_found());
    }
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(source) => {
            return Err(NetError::Io {
                op: "read",
                path: dir,
                source,
            });
        }
    };
    let ids: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    if ids.iter().any(|id| id == name_or_id) {
        return Ok(name_or_id.to_owned());
    }
    let wanted = name_or_id.trim_start_matches('/');
    for id in &ids {
        if record_name(&dir.join(id).join("container.json")).as_deref() == Some(wanted) {
            return Ok(id.clone());
        }
    }
    let lower_hex = name_or_id
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if lower_hex {
        let matches: Vec<&String> = ids.iter().filter(|id| id.starts_with(name_or_id)).collect();
        match matches.as_slice() {
            [one] => return Ok((*one).clone()),
            [] => {}
            _ => return Err(NetError::AmbiguousContainer(name_or_id.to_owned())),
        }
    }
    Err(not_found())
}

/// The `name` of a container record (`name` or docker's `Name`, leading `/`
/// dropped); `None` when the record is missing or has none.
fn record_name(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let name = value.get("name").or_else(|| value.get("Name"))?.as_str()?;
    Some(name.trim_start_matches('/').to_owned())
}

/// The container's DNS name: its record's name, else its short id.
pub fn container_name(root: &Path, id: &str) -> String {
    record_name(&root.join("containers").join(id).join("container.json"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.get(..12).unwrap_or(id).to_owned())
}

/// The container's pinned network namespace, which exists while it runs.
pub fn container_netns(root: &Path, id: &str) -> Result<PathBuf, NetError> {
    let path = root.join("netns").join(id);
    if path.is_file() {
        Ok(path)
    } else {
        Err(NetError::NoNamespace(id.get(..12).unwrap_or(id).to_owned()))
    }
}
