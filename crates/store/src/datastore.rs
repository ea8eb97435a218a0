//! Choosing a backend from the `--datastore` setting.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Store, StoreError};

/// The file name of the embedded store inside a server's data directory.
pub const EMBEDDED_FILE: &str = "store.redb";

/// Where a server keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// The embedded store in the file `path`.
    Embedded {
        /// The redb file.
        path: PathBuf,
    },
    /// An etcd v3 cluster.
    Etcd {
        /// `http://host:port` of each member.
        endpoints: Vec<String>,
        /// The key prefix, ending in `/`.
        prefix: String,
    },
}

impl Datastore {
    /// Parses a datastore setting: `None` or `embedded` (the file `store.redb` in `data_dir`), or
    /// `etcd://host:port[,host:port…][/prefix]` (prefix `/registry/` when not given).
    pub fn parse(setting: Option<&str>, data_dir: &Path) -> Result<Datastore, StoreError> {
        let setting = setting.map(str::trim).unwrap_or("embedded");
        if setting.is_empty() || setting == "embedded" {
            return Ok(Datastore::Embedded {
                path: data_dir.join(EMBEDDED_FILE),
            });
        }
        let Some(rest) = setting.strip_prefix("etcd://") else {
            return Err(StoreError::Invalid(format!(
                "unsupported datastore {setting:?}: expected \"embedded\" or etcd://host:port[,host:port...][/prefix]"
            )));
        };
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/registry/"),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let valid = host
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !valid {
                return Err(StoreError::Invalid(format!(
                    "datastore {setting:?}: endpoint {host:?} is not host:port"
                )));
            }
            endpoints.push(format!("http://{host}"));
        }
        let prefix = if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        Ok(Datastore::Etcd { endpoints, prefix })
    }

    /// Opens or connects to the datastore with default settings.
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            Datastore::Embedded { path } => Ok(Arc::new(EmbeddedStore::open(
                path,
                EmbeddedOptions::default(),
            )?)),
            Datastore::Etcd { endpoints, prefix } => {
                let options = EtcdOptions {
                    prefix: prefix.clone(),
                    ..EtcdOptions::default()
                };
                Ok(Arc::new(EtcdStore::connect(endpoints, options).await?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_to_backends() {
        let dir = Path::new("/var/lib/kontti");
        assert_eq!(
            Datastore::parse(None, dir).unwrap(),
            Datastore::Embedded {
                path: dir.join("store.redb")
            }
        );
        assert_eq!(
            Datastore::parse(Some("etcd://127.0.0.1:2379,10.0.0.2:2379"), dir).unwrap(),
            Datastore::Etcd {
                endpoints: vec![
                    "http://127.0.0.1:2379".into(),
                    "http://10.0.0.2:2379".into()
                ],
                prefix: "/registry/".into()
            }
        );
        assert_eq!(
            Datastore::parse(Some("etcd://localhost:2379/kontti"), dir).unwrap(),
            Datastore::Etcd {
                endpoints: vec!["http://localhost:2379".into()],
                prefix: "/kontti/".into()
            }
        );
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let dir = Path::new("/d");
        for (setting, needle) in [
            ("mysql://x", "unsupported datastore"),
            ("etcd://", "endpoint \"\" is not host:port"),
            (
                "etcd://127.0.0.1",
                "endpoint \"127.0.0.1\" is not host:port",
            ),
            ("etcd://127.0.0.1:99999", "is not host:port"),
            ("etcd://a:1,,b:2", "endpoint \"\""),
        ] {
            let err = Datastore::parse(Some(setting), dir).unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)));
            assert!(err.to_string().contains(needle), "{setting}: {err}");
        }
    }
}
