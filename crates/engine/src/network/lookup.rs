//! Finding a container's id, record and pinned network namespace from a
//! name or an id (prefix), through the engine's records
//! ([`crate::container::Containers`]) and `R/netns/<id>`.

use std::path::{Path, PathBuf};

use super::NetError;
use crate::container::{ContainerRecord, Containers};
use crate::error::EngineError;

fn from_engine(what: &str, e: EngineError) -> NetError {
    match e {
        EngineError::NotFound(_) => NetError::ContainerNotFound(what.to_owned()),
        EngineError::Ambiguous(_) => NetError::AmbiguousContainer(what.to_owned()),
        other => NetError::Record(Box::new(other)),
    }
}

/// The full id of the container `name_or_id`: an exact id, its name, or a
/// unique id prefix.
pub fn container_id(root: &Path, name_or_id: &str) -> Result<String, NetError> {
    Containers::open(root)
        .and_then(|c| c.resolve(name_or_id))
        .map_err(|e| from_engine(name_or_id, e))
}

/// The record of the container `name_or_id`.
pub fn container_record(root: &Path, name_or_id: &str) -> Result<ContainerRecord, NetError> {
    let id = container_id(root, name_or_id)?;
    Containers::open(root)
        .and_then(|c| c.load(&id))
        .map_err(|e| from_engine(name_or_id, e))
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
