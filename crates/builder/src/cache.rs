//! The persistent step cache: `builder/cache/<key>.json` under the state
//! root maps a step's [`CacheKey`] to its result: the layer it added (blob
//! descriptor and diff id; none for a step that changed nothing) and the
//! image config after it. Records are written with a rename, so readers see
//! a whole record or none. A record whose layer blob was garbage-collected
//! is a miss.
//!
//! Records never hold a secret: keys exclude secret contents (see
//! `kontti_build::CacheKey`) and RUN steps add no config.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use kontti_build::CacheKey;
use kontti_image::ImageConfig;

use crate::error::BuildError;
use crate::layer::LayerBlob;

/// The result of a step that may change the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheRecord {
    /// The layer the step added; `None` when it changed nothing.
    pub layer: Option<LayerBlob>,
    /// The image config after the step.
    pub config: ImageConfig,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ImageRecord {
    created: String,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct StepCache {
    dir: PathBuf,
}

impl StepCache {
    /// Opens (creating) the cache under `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<StepCache, BuildError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| BuildError::io("create directory", &dir, e))?;
        Ok(StepCache { dir })
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", hex::encode(key.0)))
    }

    /// The record for `key`, if any (an unreadable record is a miss).
    pub fn get(&self, key: &CacheKey) -> Option<CacheRecord> {
        let data = fs::read(self.path(key)).ok()?;
        match serde_json::from_slice(&data) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "ignoring a corrupt cache record");
                None
            }
        }
    }

    /// The creation time of the image last built from `key` (the target
    /// stage's last key with the build's labels), so that an unchanged
    /// rebuild gives the same image.
    pub fn created(&self, key: &CacheKey) -> Option<String> {
        let data = fs::read(self.dir.join(format!("image-{}.json", hex::encode(key.0)))).ok()?;
        serde_json::from_slice::<ImageRecord>(&data)
            .ok()
            .map(|r| r.created)
    }

    /// Records the creation time of the image built from `key`.
    pub fn put_created(&self, key: &CacheKey, created: &str) -> Result<(), BuildError> {
        let record = ImageRecord {
            created: created.to_string(),
        };
        self.write(&format!("image-{}.json", hex::encode(key.0)), &record)
    }

    /// Stores the record for `key`.
    pub fn put(&self, key: &CacheKey, record: &CacheRecord) -> Result<(), BuildError> {
        self.write(&format!("{}.json", hex::encode(key.0)), record)
    }

    fn write<T: serde::Serialize>(&self, name: &str, record: &T) -> Result<(), BuildError> {
        let path = self.dir.join(name);
        let data = serde_json::to_vec(record)
            .map_err(|e| BuildError::io("serialise", &path, io::Error::other(e)))?;
        let tmp = self
            .dir
            .join(format!(".{name}.{}.tmp", crate::workspace::unique_key("w")));
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&data)?;
            fs::rename(&tmp, &path)
        })();
        written.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            BuildError::io("write cache record", &path, e)
        })
    }
}
